//! Hardware addresses and client ids as text, in dnsmasq's form, so the
//! lease file, `twinmasq leases`, the script's arguments and the log lines
//! all read the way tools written for dnsmasq expect, and cannot drift
//! apart.

use std::fmt::Write as _;

/// ARPHRD_ETHER: the one hardware type dnsmasq writes without a prefix.
pub const HTYPE_ETHER: u8 = 1;

/// Appends lowercase two-digit hex joined by colons; nothing for no bytes.
pub fn push_colon_hex(out: &mut String, bytes: &[u8]) {
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        let _ = write!(out, "{b:02x}");
    }
}

pub fn colon_hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    push_colon_hex(&mut out, bytes);
    out
}

/// Appends a hardware address as dnsmasq's lease file has it: colon hex,
/// prefixed by the type in hex and a dash (`06-…`) unless it is Ethernet.
/// An empty address keeps the prefix (`01-`), so the field is never empty
/// and the space-separated line still parses.
pub fn push_hw_text(out: &mut String, htype: u8, hwaddr: &[u8]) {
    if htype != HTYPE_ETHER || hwaddr.is_empty() {
        let _ = write!(out, "{htype:02x}-");
    }
    push_colon_hex(out, hwaddr);
}

pub fn hw_text(htype: u8, hwaddr: &[u8]) -> String {
    let mut out = String::with_capacity(3 + hwaddr.len() * 3);
    push_hw_text(&mut out, htype, hwaddr);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hw_text_follows_dnsmasq() {
        let mac = [0x02, 0xab, 0x00, 0x10, 0x20, 0xff];
        assert_eq!(hw_text(1, &mac), "02:ab:00:10:20:ff");
        assert_eq!(hw_text(6, &mac), "06-02:ab:00:10:20:ff");
        assert_eq!(hw_text(32, &[0x0a; 3]), "20-0a:0a:0a");
        assert_eq!(hw_text(6, &[1, 2]), "06-01:02");
        assert_eq!(hw_text(1, &[]), "01-");
        assert_eq!(hw_text(0, &[]), "00-");
    }

    #[test]
    fn colon_hex_has_no_prefix() {
        assert_eq!(colon_hex(&[1, 0xab]), "01:ab");
        assert_eq!(colon_hex(&[]), "");
    }
}
