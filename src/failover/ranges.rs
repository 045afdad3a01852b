//! What both nodes of a pair must agree on before lease data moves: the
//! dynamic ranges and the split. Sent as a hash in the hello; the readable
//! form goes into the refusal message when they differ.

use sha2::{Digest, Sha256};

use crate::config::Config;

pub fn describe(cfg: &Config, split_percent: u8) -> String {
    let ranges: Vec<String> = cfg
        .dhcp_ranges
        .iter()
        .filter(|r| !r.is_static)
        .map(|r| format!("{}-{}", r.start, r.end))
        .collect();
    format!(
        "ranges [{}], failover-split {split_percent}",
        ranges.join(", ")
    )
}

pub fn fingerprint(description: &str) -> [u8; 32] {
    Sha256::digest(description.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_split_both_count() {
        let cfg = crate::config::parse_conf_text(
            "dhcp-range=198.18.0.10,198.18.0.99\ndhcp-range=198.18.1.10,198.18.1.20\ndhcp-range=198.18.2.5,static\n",
            "t",
        )
        .unwrap();
        let d = describe(&cfg, 50);
        assert_eq!(
            d,
            "ranges [198.18.0.10-198.18.0.99, 198.18.1.10-198.18.1.20], failover-split 50"
        );
        assert_ne!(fingerprint(&d), fingerprint(&describe(&cfg, 40)));
    }
}
