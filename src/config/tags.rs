//! `tag:`/`set:` prefixes, shared by dhcp-range, dhcp-host and dhcp-option.

use super::error::FieldError;
use super::types::TagMatch;
use super::value::unhide;

fn check_tag_name(name: &str) -> Result<String, FieldError> {
    let name = unhide(name);
    if name.is_empty() {
        return Err(FieldError::bad("empty tag name"));
    }
    if name.contains(char::is_whitespace) {
        return Err(FieldError::bad(format!(
            "tag name '{name}' contains whitespace"
        )));
    }
    Ok(name)
}

/// `name` or `!name` (the negated match; dnsmasq still reads the older
/// `#name` as `!name`).
pub(crate) fn tag_match(body: &str) -> Result<TagMatch, FieldError> {
    match body.strip_prefix('!').or_else(|| body.strip_prefix('#')) {
        Some(rest) => Ok(TagMatch {
            name: check_tag_name(rest)?,
            negate: true,
        }),
        None => Ok(TagMatch {
            name: check_tag_name(body)?,
            negate: false,
        }),
    }
}

pub(crate) fn set_tag(body: &str) -> Result<String, FieldError> {
    if body.starts_with('!') {
        return Err(FieldError::bad(format!(
            "cannot set the negated tag '{body}'"
        )));
    }
    check_tag_name(body)
}

/// `tag:x`, and dnsmasq's older spelling `net:x`.
pub(crate) fn strip_match_prefix(field: &str) -> Option<&str> {
    field
        .strip_prefix("tag:")
        .or_else(|| field.strip_prefix("net:"))
}
