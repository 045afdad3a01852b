//! The shared failover key: one line of at least 64 hex digits (256 bits)
//! in a file only its owner can read. The link refuses to run without one.

use std::path::Path;

pub const MIN_KEY_BYTES: usize = 32;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("failover key file {path}: cannot read it: {reason}")]
    Unreadable { path: String, reason: String },
    #[error("failover key file {path} is readable by other users (mode {mode:o}): chmod 600 it")]
    WorldReadable { path: String, mode: u32 },
    #[error("failover key file {path}: not hex digits on one line")]
    NotHex { path: String },
    #[error("failover key file {path}: {bits} bits of key, at least 256 needed (64 hex digits)")]
    TooShort { path: String, bits: usize },
}

#[derive(Clone, PartialEq, Eq)]
pub struct Key(Vec<u8>);

impl std::fmt::Debug for Key {
    // A key never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

impl Key {
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Parses the text of a key file (one line of hex, surrounding blanks
    /// allowed). `path` only names the file in errors.
    pub fn parse(text: &str, path: &str) -> Result<Key, KeyError> {
        let hex = text.trim();
        if hex.is_empty() || hex.lines().count() != 1 || hex.len() % 2 != 0 {
            return Err(KeyError::NotHex { path: path.into() });
        }
        let bytes: Option<Vec<u8>> = (0..hex.len())
            .step_by(2)
            .map(|i| {
                hex.get(i..i + 2)
                    .and_then(|b| u8::from_str_radix(b, 16).ok())
            })
            .collect();
        let bytes = bytes.ok_or_else(|| KeyError::NotHex { path: path.into() })?;
        if bytes.len() < MIN_KEY_BYTES {
            return Err(KeyError::TooShort {
                path: path.into(),
                bits: bytes.len() * 8,
            });
        }
        Ok(Key(bytes))
    }

    /// Reads and checks a key file: owner-only permissions, then contents.
    pub fn load(path: &Path) -> Result<Key, KeyError> {
        use std::os::unix::fs::PermissionsExt;
        let name = path.display().to_string();
        let unreadable = |e: std::io::Error| KeyError::Unreadable {
            path: name.clone(),
            reason: e.to_string(),
        };
        let mode = std::fs::metadata(path)
            .map_err(unreadable)?
            .permissions()
            .mode()
            & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyError::WorldReadable { path: name, mode });
        }
        let text = std::fs::read_to_string(path).map_err(unreadable)?;
        Key::parse(&text, &name)
    }

    /// A new key as its file's text, from 32 random bytes the caller draws
    /// from the OS (`twinmasq failover gen-key`).
    pub fn format_new(random: [u8; MIN_KEY_BYTES]) -> String {
        let mut s: String = random.iter().map(|b| format!("{b:02x}")).collect();
        s.push('\n');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_good_keys_and_names_each_fault() {
        let good = "ab".repeat(32);
        assert_eq!(
            Key::parse(&format!("  {good}\n"), "k")
                .unwrap()
                .as_bytes()
                .len(),
            32
        );
        assert_eq!(
            Key::parse(&"ab".repeat(31), "k"),
            Err(KeyError::TooShort {
                path: "k".into(),
                bits: 248
            })
        );
        assert_eq!(
            Key::parse(&"zz".repeat(32), "k"),
            Err(KeyError::NotHex { path: "k".into() })
        );
        assert_eq!(
            Key::parse(&format!("{good}\n{good}"), "k"),
            Err(KeyError::NotHex { path: "k".into() })
        );
        assert_eq!(
            Key::parse("", "k"),
            Err(KeyError::NotHex { path: "k".into() })
        );
        let formatted = Key::format_new([7; 32]);
        assert_eq!(Key::parse(&formatted, "k").unwrap().as_bytes(), &[7; 32]);
        assert_eq!(format!("{:?}", Key::parse(&good, "k").unwrap()), "Key(..)");
    }

    #[test]
    fn load_refuses_missing_and_group_or_world_readable_files() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("tmq-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("key");
        assert!(matches!(Key::load(&p), Err(KeyError::Unreadable { .. })));
        std::fs::write(&p, Key::format_new([1; 32])).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            Key::load(&p),
            Err(KeyError::WorldReadable { mode: 0o644, .. })
        ));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(Key::load(&p).unwrap().as_bytes(), &[1; 32]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
