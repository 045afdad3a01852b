//! Decoding a client's message into the fields the engine decides on.
//!
//! Validation happens before any dhcproto accessor that could panic (hlen
//! beyond 16 makes `chaddr()` slice out of bounds), and options are read one
//! at a time through the borrowed message so a malformed option costs only
//! itself, never the options after it.

use std::net::Ipv4Addr;

use dhcproto::v4::{borrowed, MessageType, Opcode};

use super::hostname::{self, Fqdn};

/// Why a packet was not a request we can act on. Each is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("shorter than a BOOTP header")]
    TooShort,
    #[error("not a BOOTREQUEST")]
    NotRequest,
    #[error("hardware address length out of range")]
    BadHlen,
    #[error("no DHCP magic cookie")]
    NoCookie,
    #[error("no DHCP message type")]
    NoMessageType,
    #[error("message type a server does not receive")]
    UnexpectedType,
}

/// One parsed option-81 / option-12 name plus what the client asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub msg_type: MessageType,
    pub xid: u32,
    pub secs: u16,
    pub broadcast: bool,
    pub htype: u8,
    /// `hlen` bytes of chaddr (validated ≤ 16).
    pub chaddr: Vec<u8>,
    pub hops: u8,
    pub ciaddr: Ipv4Addr,
    pub giaddr: Ipv4Addr,
    pub requested_ip: Option<Ipv4Addr>,
    pub server_id: Option<Ipv4Addr>,
    pub client_id: Option<Vec<u8>>,
    /// Option 12, already checked to be a legal host label.
    pub hostname: Option<String>,
    pub fqdn: Option<Fqdn>,
    /// Option 55, in the client's order.
    pub params: Option<Vec<u8>>,
    /// Option 57.
    pub max_size: Option<u16>,
    /// Option 80.
    pub rapid_commit: bool,
    /// Option 51.
    pub lease_time: Option<u32>,
    /// Option 82, echoed verbatim to the relay (RFC 3046).
    pub relay_info: Option<Vec<u8>>,
    /// Options that were present but malformed and so ignored.
    pub bad_options: u32,
}

pub const MAX_HLEN: u8 = 16;

pub fn decode(bytes: &[u8]) -> Result<Request, DecodeError> {
    let msg = borrowed::Message::new(bytes).map_err(|_| DecodeError::TooShort)?;
    if msg.opcode() != Opcode::BootRequest {
        return Err(DecodeError::NotRequest);
    }
    let hlen = msg.hlen();
    if hlen == 0 || hlen > MAX_HLEN {
        return Err(DecodeError::BadHlen);
    }
    if bytes[236..240] != dhcproto::v4::MAGIC {
        return Err(DecodeError::NoCookie);
    }

    let mut req = Request {
        msg_type: MessageType::Unknown(0),
        xid: msg.xid(),
        secs: msg.secs(),
        broadcast: msg.flags().broadcast(),
        htype: bytes[1],
        chaddr: msg.chaddr().to_vec(),
        hops: msg.hops(),
        ciaddr: msg.ciaddr(),
        giaddr: msg.giaddr(),
        requested_ip: None,
        server_id: None,
        client_id: None,
        hostname: None,
        fqdn: None,
        params: None,
        max_size: None,
        rapid_commit: false,
        lease_time: None,
        relay_info: None,
        bad_options: 0,
    };
    let mut msg_type = None;

    for opt in msg.opts() {
        let data = opt.data();
        let ok = match u8::from(opt.code()) {
            53 => match data {
                [t] => {
                    msg_type = Some(MessageType::from(*t));
                    true
                }
                _ => false,
            },
            50 => set_addr(&mut req.requested_ip, data),
            54 => set_addr(&mut req.server_id, data),
            61 => {
                // A client-id needs a type byte and at least one byte of id.
                let ok = data.len() >= 2;
                if ok {
                    req.client_id = Some(data.to_vec());
                }
                ok
            }
            12 => match hostname::from_option12(data) {
                Some(name) => {
                    req.hostname = Some(name);
                    true
                }
                None => false,
            },
            81 => match hostname::parse_fqdn(data) {
                Some(f) => {
                    req.fqdn = Some(f);
                    true
                }
                None => false,
            },
            55 => {
                req.params = Some(data.to_vec());
                true
            }
            57 => match <[u8; 2]>::try_from(data) {
                Ok(b) => {
                    req.max_size = Some(u16::from_be_bytes(b));
                    true
                }
                Err(_) => false,
            },
            80 => {
                req.rapid_commit = data.is_empty();
                data.is_empty()
            }
            51 => match <[u8; 4]>::try_from(data) {
                Ok(b) => {
                    req.lease_time = Some(u32::from_be_bytes(b));
                    true
                }
                Err(_) => false,
            },
            82 => {
                req.relay_info = Some(data.to_vec());
                true
            }
            _ => true,
        };
        if !ok {
            req.bad_options += 1;
        }
    }

    if truncated_options(&bytes[240..]) {
        req.bad_options += 1;
    }

    req.msg_type = match msg_type {
        None => return Err(DecodeError::NoMessageType),
        Some(
            t @ (MessageType::Discover
            | MessageType::Request
            | MessageType::Decline
            | MessageType::Release
            | MessageType::Inform),
        ) => t,
        Some(_) => return Err(DecodeError::UnexpectedType),
    };
    Ok(req)
}

/// dhcproto's option iterator stops quietly at an option that runs past
/// the end of the packet; walking the lengths tells us so we can count it.
fn truncated_options(mut opts: &[u8]) -> bool {
    loop {
        match opts {
            [] | [255, ..] => return false,
            [0, rest @ ..] => opts = rest,
            [_, len, rest @ ..] if rest.len() >= usize::from(*len) => {
                opts = &rest[usize::from(*len)..]
            }
            _ => return true,
        }
    }
}

fn set_addr(slot: &mut Option<Ipv4Addr>, data: &[u8]) -> bool {
    match <[u8; 4]>::try_from(data) {
        Ok(b) => {
            *slot = Some(Ipv4Addr::from(b));
            true
        }
        Err(_) => false,
    }
}

impl Request {
    /// The hostname the client offered, from option 81 if present (it is
    /// the newer, richer option), else option 12.
    pub fn offered_name(&self) -> Option<&str> {
        self.fqdn
            .as_ref()
            .and_then(|f| f.host_label.as_deref())
            .or(self.hostname.as_deref())
    }

    pub fn wants(&self, code: u8) -> bool {
        self.params.as_ref().is_some_and(|p| p.contains(&code))
    }
}

#[cfg(test)]
pub(crate) mod build {
    //! A tiny request builder for tests: real wire bytes, not structs.
    use std::net::Ipv4Addr;

    pub struct RawRequest {
        pub bytes: Vec<u8>,
    }

    impl RawRequest {
        pub fn new(msg_type: u8, mac: [u8; 6], xid: u32) -> Self {
            let mut b = vec![0u8; 240];
            b[0] = 1;
            b[1] = 1;
            b[2] = 6;
            b[4..8].copy_from_slice(&xid.to_be_bytes());
            b[28..34].copy_from_slice(&mac);
            b[236..240].copy_from_slice(&[99, 130, 83, 99]);
            let mut r = RawRequest { bytes: b };
            r.opt(53, &[msg_type]);
            r
        }
        pub fn opt(&mut self, code: u8, data: &[u8]) -> &mut Self {
            self.bytes.push(code);
            self.bytes.push(data.len() as u8);
            self.bytes.extend_from_slice(data);
            self
        }
        pub fn ciaddr(&mut self, ip: Ipv4Addr) -> &mut Self {
            self.bytes[12..16].copy_from_slice(&ip.octets());
            self
        }
        pub fn giaddr(&mut self, ip: Ipv4Addr) -> &mut Self {
            self.bytes[24..28].copy_from_slice(&ip.octets());
            self
        }
        pub fn broadcast(&mut self) -> &mut Self {
            self.bytes[10] = 0x80;
            self
        }
        /// The header's `secs` (bytes 8..10, big-endian).
        pub fn secs(&mut self, secs: u16) -> &mut Self {
            self.bytes[8..10].copy_from_slice(&secs.to_be_bytes());
            self
        }
        pub fn finish(&mut self) -> Vec<u8> {
            let mut b = self.bytes.clone();
            b.push(255);
            b
        }
    }
}

#[cfg(test)]
mod tests {
    use super::build::RawRequest;
    use super::*;

    #[test]
    fn decodes_a_discover_with_options() {
        let bytes = RawRequest::new(1, [2, 0, 0, 0, 0, 1], 7)
            .opt(55, &[1, 3, 6, 15])
            .opt(61, &[1, 2, 0, 0, 0, 0, 1])
            .opt(12, b"laptop")
            .opt(50, &[198, 18, 0, 9])
            .secs(300)
            .finish();
        let r = decode(&bytes).unwrap();
        assert_eq!(r.msg_type, MessageType::Discover);
        assert_eq!(r.xid, 7);
        assert_eq!(r.secs, 300);
        assert_eq!(r.chaddr, vec![2, 0, 0, 0, 0, 1]);
        assert_eq!(r.params.as_deref(), Some(&[1, 3, 6, 15][..]));
        assert_eq!(r.hostname.as_deref(), Some("laptop"));
        assert_eq!(r.requested_ip, Some(Ipv4Addr::new(198, 18, 0, 9)));
        assert_eq!(r.bad_options, 0);
    }

    #[test]
    fn a_bad_option_does_not_cost_the_ones_after_it() {
        let bytes = RawRequest::new(3, [2, 0, 0, 0, 0, 1], 7)
            .opt(12, &[0xff, 0xfe, 0x00])
            .opt(50, &[1, 2, 3])
            .opt(55, &[1, 3])
            .finish();
        let r = decode(&bytes).unwrap();
        assert_eq!(r.hostname, None);
        assert_eq!(r.requested_ip, None);
        assert_eq!(r.params.as_deref(), Some(&[1, 3][..]));
        assert_eq!(r.bad_options, 2);
    }

    #[test]
    fn rejects_what_is_not_a_usable_request() {
        let good = RawRequest::new(1, [2, 0, 0, 0, 0, 1], 7).finish();
        assert_eq!(decode(&good[..200]), Err(DecodeError::TooShort));
        let mut reply = good.clone();
        reply[0] = 2;
        assert_eq!(decode(&reply), Err(DecodeError::NotRequest));
        for hlen in [0u8, 17, 255] {
            let mut b = good.clone();
            b[2] = hlen;
            assert_eq!(decode(&b), Err(DecodeError::BadHlen));
        }
        let mut nocookie = good.clone();
        nocookie[236] = 0;
        assert_eq!(decode(&nocookie), Err(DecodeError::NoCookie));
        let offer = RawRequest::new(2, [2, 0, 0, 0, 0, 1], 7).finish();
        assert_eq!(decode(&offer), Err(DecodeError::UnexpectedType));
        let mut notype = good[..240].to_vec();
        notype.push(255);
        assert_eq!(decode(&notype), Err(DecodeError::NoMessageType));
    }
}
