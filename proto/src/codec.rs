//! The only place that knows the binary encoding. Everything stored on disk
//! or sent on the link goes through `encode`/`decode`, so swapping bincode for
//! another format touches this file alone.

use serde::{de::DeserializeOwned, Serialize};

/// Upper bound on one decoded value, so a corrupt length prefix in a stored
/// record or a hostile frame cannot make the decoder allocate without limit.
pub const MAX_DECODE_BYTES: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("cannot encode: {0}")]
    Encode(String),
    #[error("cannot decode: {0}")]
    Decode(String),
    #[error("cannot decode: {0} trailing bytes after the value")]
    Trailing(usize),
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_DECODE_BYTES>()
}

pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    bincode::serde::encode_to_vec(value, config()).map_err(|e| CodecError::Encode(e.to_string()))
}

/// Decodes exactly one value; trailing bytes are an error because a record
/// with junk after it is not a record we wrote.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (value, used) = bincode::serde::decode_from_slice(bytes, config())
        .map_err(|e| CodecError::Decode(e.to_string()))?;
    if used != bytes.len() {
        return Err(CodecError::Trailing(bytes.len() - used));
    }
    Ok(value)
}
