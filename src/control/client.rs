//! The client end of the control socket, for the `status`, `leases` and
//! `failover partner-down` commands. Blocking and bounded: a command run
//! by keepalived must never hang.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use super::protocol::RequestKind;

/// Longer than the server's own bound on an answer, so the server's
/// error message arrives rather than our timeout.
pub const REPLY_WAIT: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nobody answered: no server, a stale socket, or no reply in time.
    #[error("no answer from the control socket {path}: {reason}")]
    NoAnswer { path: String, reason: String },
    #[error("control socket {path}: the reply is not JSON: {reason}")]
    BadReply { path: String, reason: String },
    /// The server answered with an error.
    #[error("{0}")]
    Server(String),
}

/// Sends `kind` and returns the server's JSON document; an `{"error"}`
/// document becomes [`ClientError::Server`].
pub fn request(
    path: &Path,
    kind: RequestKind,
    wait: Duration,
) -> Result<serde_json::Value, ClientError> {
    let name = path.display().to_string();
    let no_answer = |e: io::Error| ClientError::NoAnswer {
        path: name.clone(),
        reason: match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                format!("no reply within {} s", wait.as_secs())
            }
            _ => e.to_string(),
        },
    };
    let mut stream = UnixStream::connect(path).map_err(no_answer)?;
    stream.set_read_timeout(Some(wait)).map_err(no_answer)?;
    stream.set_write_timeout(Some(wait)).map_err(no_answer)?;
    stream
        .write_all(format!("{}\n", kind.as_str()).as_bytes())
        .map_err(no_answer)?;
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).map_err(no_answer)?;
    if reply.is_empty() {
        return Err(ClientError::NoAnswer {
            path: name,
            reason: "the server closed the connection without a reply".into(),
        });
    }
    let doc: serde_json::Value =
        serde_json::from_slice(&reply).map_err(|e| ClientError::BadReply {
            path: name,
            reason: e.to_string(),
        })?;
    if let Some(message) = doc.get("error") {
        let message = message
            .as_str()
            .map_or_else(|| message.to_string(), str::to_string);
        return Err(ClientError::Server(message));
    }
    Ok(doc)
}
