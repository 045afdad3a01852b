//! Host, domain and interface name checks. Downstream code (DNS encoding,
//! DHCP option 12/15/81, SO_BINDTODEVICE) assumes names within these limits.

const MAX_LABEL: usize = 63;
const MAX_NAME: usize = 253;
/// IFNAMSIZ less the terminating NUL.
const MAX_IFNAME: usize = 15;

fn label_char_ok(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

/// A domain name in presentation form; one trailing dot is dropped.
pub(crate) fn check_domain(name: &str) -> Result<String, String> {
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    if trimmed.is_empty() {
        return Err("empty domain name".to_string());
    }
    if trimmed.len() > MAX_NAME {
        return Err(format!(
            "domain name is {} characters long, more than {MAX_NAME}",
            trimmed.len()
        ));
    }
    for label in trimmed.split('.') {
        if label.is_empty() {
            return Err(format!("'{name}' has an empty label"));
        }
        if label.len() > MAX_LABEL {
            return Err(format!(
                "label '{label}' is {} characters long, more than {MAX_LABEL}",
                label.len()
            ));
        }
        if let Some(c) = label.chars().find(|c| !label_char_ok(*c)) {
            return Err(format!("'{name}' contains the character '{c}'"));
        }
    }
    Ok(trimmed.to_string())
}

/// A hostname, possibly qualified: returns (host label, domain part).
pub(crate) fn check_hostname(name: &str) -> Result<(String, Option<String>), String> {
    let full = check_domain(name).map_err(|e| format!("bad hostname: {e}"))?;
    match full.split_once('.') {
        Some((host, domain)) => Ok((host.to_string(), Some(domain.to_string()))),
        None => Ok((full, None)),
    }
}

pub(crate) fn check_interface(name: &str) -> Result<String, String> {
    if name.is_empty() {
        return Err("empty interface name".to_string());
    }
    if name.len() > MAX_IFNAME {
        return Err(format!(
            "interface name '{name}' is longer than {MAX_IFNAME} characters"
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| c.is_whitespace() || *c == '/' || c.is_control())
    {
        return Err(format!("interface name '{name}' contains {c:?}"));
    }
    Ok(name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains() {
        assert_eq!(check_domain("lan.example.").unwrap(), "lan.example");
        assert!(check_domain("").is_err());
        assert!(check_domain("a..b").is_err());
        assert!(check_domain("bad name").is_err());
        assert!(check_domain(&"a".repeat(64)).is_err());
        assert!(check_domain(&"a".repeat(63)).is_ok());
        let long = vec!["abcdefghi"; 26].join(".");
        assert!(long.len() > 253);
        assert!(check_domain(&long).is_err());
    }

    #[test]
    fn hostnames_split_domain() {
        assert_eq!(
            check_hostname("nas.home.lan").unwrap(),
            ("nas".to_string(), Some("home.lan".to_string()))
        );
        assert_eq!(
            check_hostname("printer").unwrap(),
            ("printer".to_string(), None)
        );
        assert!(check_hostname("under_score").is_ok());
        assert!(check_hostname("bad!").is_err());
    }

    #[test]
    fn interfaces() {
        assert!(check_interface("eth0").is_ok());
        assert!(check_interface("eth*").is_ok());
        assert!(check_interface("").is_err());
        assert!(check_interface("averyveryverylongname").is_err());
    }
}
