//! `dhcp-name-match=set:tag,name[*]`: a tag for clients by the host name
//! they offer. (`dhcp-ignore-names` is a plain tag list, read as
//! `dhcp-ignore` is.)

use super::error::FieldError;
use super::tags::set_tag;
use super::types::NameMatch;
use super::value::unhide;

/// `[set:]tag,name`, where a trailing `*` makes `name` a prefix (as
/// dnsmasq reads it: `*` alone matches every name).
pub(crate) fn name_match(value: &str) -> Result<NameMatch, FieldError> {
    let (tag, rest) = value
        .split_once(',')
        .ok_or_else(|| FieldError::bad("expected a tag and a name"))?;
    let set_tag = set_tag(tag.strip_prefix("set:").unwrap_or(tag))?;
    let rest = unhide(rest.trim_start_matches([' ', '\t']));
    if rest.is_empty() {
        return Err(FieldError::bad("expected a tag and a name"));
    }
    let (name, prefix) = match rest.strip_suffix('*') {
        Some(n) => (n.to_string(), true),
        None => (rest, false),
    };
    // The engine matches the name's first label, the only part a lease
    // publishes; dnsmasq compares the whole name the client sent.
    if name.contains('.') {
        return Err(FieldError::not_yet("a name with a domain ('.')"));
    }
    Ok(NameMatch {
        set_tag,
        name,
        prefix,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(tag: &str, name: &str, prefix: bool) -> NameMatch {
        NameMatch {
            set_tag: tag.into(),
            name: name.into(),
            prefix,
        }
    }

    #[test]
    fn forms() {
        assert_eq!(
            name_match("set:dhcp_bogus_hostname,localhost").unwrap(),
            m("dhcp_bogus_hostname", "localhost", false)
        );
        assert_eq!(name_match("bogus,wpad*").unwrap(), m("bogus", "wpad", true));
        assert_eq!(name_match("all,*").unwrap(), m("all", "", true));
        assert!(matches!(name_match("set:x"), Err(FieldError::Bad(_))));
        assert!(matches!(name_match("set:x,"), Err(FieldError::Bad(_))));
        assert!(matches!(name_match("set:,wpad"), Err(FieldError::Bad(_))));
        assert!(matches!(name_match("set:!x,wpad"), Err(FieldError::Bad(_))));
        assert!(matches!(
            name_match("set:x,wpad.lan"),
            Err(FieldError::NotYet(_))
        ));
    }
}
