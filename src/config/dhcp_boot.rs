//! `dhcp-boot=`, the plain tag lists of `dhcp-ignore=` and
//! `dhcp-broadcast=`, and `dhcp-vendorclass=`/`dhcp-userclass=`, read
//! field by field as dnsmasq reads them.

use std::net::Ipv4Addr;

use super::error::FieldError;
use super::tags::{set_tag, strip_match_prefix, tag_match};
use super::types::{ClassMatch, DhcpBoot, TagMatch};
use super::value::{split_fields, unhide};

/// `[tag:]name,[tag:]!name,...`: dnsmasq takes the `tag:` prefix as
/// optional here, so a bare name is a tag too.
pub(crate) fn tag_list(value: &str) -> Result<Vec<TagMatch>, FieldError> {
    split_fields(value)
        .into_iter()
        .map(|f| tag_match(strip_match_prefix(f).unwrap_or(f)))
        .collect()
}

/// `[set:]tag,text`; dnsmasq's vendor class also takes
/// `[set:]tag,enterprise:N,text` (RFC 3925's option 124), not done here.
pub(crate) fn class_match(value: &str, user: bool) -> Result<ClassMatch, FieldError> {
    let (tag, rest) = value
        .split_once(',')
        .ok_or_else(|| FieldError::bad("expected a tag and a class"))?;
    let tag = set_tag(tag.strip_prefix("set:").unwrap_or(tag))?;
    let rest = rest.trim_start_matches([' ', '\t']);
    let data = match rest.split_once(',') {
        None => rest,
        Some((first, _)) if !user && first.starts_with("enterprise:") => {
            return Err(FieldError::not_yet(
                "enterprise: (vendor-identifying classes, option 124)",
            ))
        }
        Some(_) => return Err(FieldError::bad("more than a tag and a class")),
    };
    Ok(ClassMatch {
        user,
        set_tag: tag,
        data: unhide(data).into_bytes(),
    })
}

/// dnsmasq keeps an empty field as "not given".
fn text_field(field: &str) -> Option<String> {
    let text = unhide(field);
    (!text.is_empty()).then_some(text)
}

pub(crate) fn parse(value: &str) -> Result<DhcpBoot, FieldError> {
    let fields = split_fields(value);
    // Leading `tag:` fields are conditions; the first other one is the
    // file name, even when it looks like something else.
    let first_other = fields
        .iter()
        .position(|f| strip_match_prefix(f).is_none())
        .ok_or_else(|| FieldError::bad("no boot file name after the tags"))?;
    let match_tags = fields[..first_other]
        .iter()
        .filter_map(|f| strip_match_prefix(f))
        .map(tag_match)
        .collect::<Result<Vec<_>, _>>()?;
    let rest = &fields[first_other..];
    let file = text_field(rest[0]);
    let sname = rest.get(1).and_then(|f| text_field(f));
    // dnsmasq takes everything after the second comma as the server.
    let next_server = match rest.get(2..).filter(|r| !r.is_empty()) {
        None => None,
        Some(server) => {
            let text = unhide(&server.join(","));
            match text.parse::<Ipv4Addr>() {
                // 0.0.0.0 is dnsmasq's "no address given".
                Ok(a) if a.is_unspecified() => None,
                Ok(a) => Some(a),
                Err(_) => {
                    return Err(FieldError::not_yet(format!(
                        "a TFTP server given by name ('{text}')"
                    )))
                }
            }
        }
    };
    Ok(DhcpBoot {
        match_tags,
        file,
        sname,
        next_server,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(name: &str, negate: bool) -> TagMatch {
        TagMatch {
            name: name.into(),
            negate,
        }
    }

    #[test]
    fn tag_lists_take_bare_and_prefixed_names() {
        assert_eq!(tag_list("tag:!known").unwrap(), vec![tag("known", true)]);
        assert_eq!(
            tag_list("tag:eth1,net:guest,printer,#old").unwrap(),
            vec![
                tag("eth1", false),
                tag("guest", false),
                tag("printer", false),
                tag("old", true)
            ]
        );
        assert!(tag_list("tag:").is_err());
    }

    #[test]
    fn class_matches() {
        let m = class_match("set:pxe,PXEClient", false).unwrap();
        assert_eq!((m.user, m.set_tag.as_str()), (false, "pxe"));
        assert_eq!(m.data, b"PXEClient".to_vec());
        let m = class_match("ipxe,iPXE", true).unwrap();
        assert_eq!((m.user, m.set_tag.as_str()), (true, "ipxe"));
        assert_eq!(m.data, b"iPXE".to_vec());
        assert!(class_match("set:x,", false).unwrap().data.is_empty());
        assert!(matches!(
            class_match("set:x", false),
            Err(FieldError::Bad(_))
        ));
        assert!(matches!(
            class_match("set:x,a,b", true),
            Err(FieldError::Bad(_))
        ));
        assert!(matches!(
            class_match("set:x,a,b", false),
            Err(FieldError::Bad(_))
        ));
        assert!(matches!(
            class_match("set:x,enterprise:3561,foo", false),
            Err(FieldError::NotYet(_))
        ));
    }

    #[test]
    fn file_only() {
        let b = parse("pxelinux.0").unwrap();
        assert!(b.match_tags.is_empty());
        assert_eq!(b.file.as_deref(), Some("pxelinux.0"));
        assert_eq!(b.sname, None);
        assert_eq!(b.next_server, None);
    }

    #[test]
    fn tags_file_server_and_address() {
        let b = parse("tag:bios,tag:!ipxe,undionly.kpxe,boothost,198.18.0.9").unwrap();
        assert_eq!(b.match_tags, vec![tag("bios", false), tag("ipxe", true)]);
        assert_eq!(b.file.as_deref(), Some("undionly.kpxe"));
        assert_eq!(b.sname.as_deref(), Some("boothost"));
        assert_eq!(b.next_server, Some(Ipv4Addr::new(198, 18, 0, 9)));
        // An empty server name with an address: the OpenWrt form.
        let b = parse("pxelinux.0,,198.18.0.9").unwrap();
        assert_eq!(b.sname, None);
        assert_eq!(b.next_server, Some(Ipv4Addr::new(198, 18, 0, 9)));
        let b = parse("pxelinux.0,boothost,0.0.0.0").unwrap();
        assert_eq!(b.next_server, None);
    }

    #[test]
    fn refused_forms() {
        assert!(matches!(parse("tag:x"), Err(FieldError::Bad(_))));
        assert!(matches!(
            parse("pxelinux.0,boothost,tftp.example"),
            Err(FieldError::NotYet(_))
        ));
        assert!(matches!(
            parse("pxelinux.0,boothost,198.18.0.9,x"),
            Err(FieldError::NotYet(_))
        ));
    }
}
