//! The host name rule a lease carries: one legal DNS label. It lives with
//! the lease, below the DHCP engine that reduces client names to it, so a
//! record from the partner or a dnsmasq lease file is held to the same rule
//! without the lease table importing the engine.

/// A legal host label: letters, digits, hyphen and underscore (as dnsmasq
/// accepts), not starting with a hyphen, 1..=63 bytes.
pub fn legal_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && !s.starts_with('-')
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
}
