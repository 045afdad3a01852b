//! The control socket: a Unix stream socket only its owner may use (mode
//! 0600: `partner-down` changes which addresses the node hands out). Each
//! connection sends one request line and gets one JSON document back.
//!
//! Bounded in every way a local client could abuse: a few connections at
//! once, a short time to send the request, a short request, and a bound on
//! the time to take the answer.

use std::future::Future;
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::protocol::{error_json, ControlRequest, RequestError, RequestKind, MAX_REQUEST};

/// Connections served at once; more wait in the kernel's listen queue
/// (their own timeouts bound the wait) until one ends.
pub const MAX_CONNECTIONS: usize = 8;
/// Time a client has to send its request line.
pub const READ_TIMEOUT: Duration = Duration::from_secs(2);
/// Time the DHCP task has to answer; it answers between two packets, so
/// only a stuck task misses this.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a client has to take the answer (a large lease table included).
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long, and how much, a client's surplus input is read after the
/// reply before closing (see [`handle`]).
const DRAIN_TIMEOUT: Duration = Duration::from_millis(500);
const DRAIN_MAX: usize = 64 << 10;
/// Pause after a failed accept (out of descriptors, say), so the loop
/// does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("control socket {path}: another server answers there")]
    InUse { path: String },
    #[error("control socket {path}: a file that is not a socket is in the way")]
    NotASocket { path: String },
    #[error("control socket {path}: {what}: {source}")]
    Io {
        path: String,
        what: &'static str,
        source: io::Error,
    },
}

/// The bound socket. Its file is removed when this is dropped (serving
/// ended, or the start failed after the bind), if the file is still ours:
/// another server may have replaced it meanwhile.
pub struct ControlSocket {
    listener: UnixListener,
    path: PathBuf,
    /// Device and inode of the socket file we made.
    id: (u64, u64),
}

impl ControlSocket {
    /// Binds `path` with mode 0600. A socket file nobody answers on is left
    /// over from a server that died: it is removed. A live one is not: two
    /// servers must not steal each other's socket. Call inside a runtime.
    pub fn bind(path: &Path) -> Result<ControlSocket, ControlError> {
        let name = path.display().to_string();
        let io_err = |what: &'static str| {
            let name = name.clone();
            move |source| ControlError::Io {
                path: name,
                what,
                source,
            }
        };
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_socket() => {
                if std::os::unix::net::UnixStream::connect(path).is_ok() {
                    return Err(ControlError::InUse { path: name });
                }
                match std::fs::remove_file(path) {
                    Ok(()) => tracing::info!("removed the stale control socket {name}"),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_err("cannot remove the stale socket")(e)),
                }
            }
            Ok(_) => return Err(ControlError::NotASocket { path: name }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("cannot inspect it")(e)),
        }
        let std_listener = bind_private(path).map_err(io_err("cannot create it"))?;
        let meta = std::fs::symlink_metadata(path).map_err(io_err("cannot inspect it"))?;
        std_listener
            .set_nonblocking(true)
            .map_err(io_err("cannot make it non-blocking"))?;
        let listener =
            UnixListener::from_std(std_listener).map_err(io_err("cannot register it"))?;
        Ok(ControlSocket {
            listener,
            path: path.to_path_buf(),
            id: (meta.dev(), meta.ino()),
        })
    }

    /// Accepts connections and passes their requests to `requests` until
    /// `shutdown` resolves; then removes the socket file (on drop).
    pub async fn serve(
        self,
        requests: mpsc::Sender<ControlRequest>,
        shutdown: impl Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        loop {
            // A slot first, then a connection: while all are taken, new
            // clients wait in the listen queue instead of being turned away.
            let permit = tokio::select! {
                _ = &mut shutdown => break,
                permit = Arc::clone(&permits).acquire_owned() => match permit {
                    Ok(permit) => permit,
                    // The semaphore is never closed.
                    Err(_) => break,
                },
            };
            let stream = tokio::select! {
                _ = &mut shutdown => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        tracing::warn!("control socket: accept: {e}");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                        continue;
                    }
                },
            };
            let requests = requests.clone();
            tokio::spawn(async move {
                handle(stream, requests).await;
                drop(permit);
            });
        }
    }

    fn remove(&self) {
        let ours = std::fs::symlink_metadata(&self.path)
            .is_ok_and(|m| m.file_type().is_socket() && (m.dev(), m.ino()) == self.id);
        if ours {
            if let Err(e) = std::fs::remove_file(&self.path) {
                tracing::warn!(
                    "cannot remove the control socket {}: {e}",
                    self.path.display()
                );
            }
        }
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Binds the socket in a fresh owner-only directory beside `path`, sets
/// its mode to 0600 and renames it into place, so there is no moment at
/// which another user could connect (as there would be between bind and
/// chmod in place), whatever the umask; and no process-wide umask change.
fn bind_private(path: &Path) -> io::Result<std::os::unix::net::UnixListener> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    // Short: a socket path has room for 107 bytes only.
    let dir = parent.join(format!(".tmqctl-{:016x}", rand::random::<u64>()));
    std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
    let tmp = dir.join("s");
    let result = std::os::unix::net::UnixListener::bind(&tmp).and_then(|l| {
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
        std::fs::rename(&tmp, path)?;
        Ok(l)
    });
    let _ = std::fs::remove_file(&tmp);
    let _ = std::fs::remove_dir(&dir);
    result
}

/// Reads the request line: up to a newline or the end of input, at most
/// [`MAX_REQUEST`] bytes.
async fn read_request(stream: &mut UnixStream) -> Result<Vec<u8>, RequestError> {
    let mut line = Vec::with_capacity(64);
    let mut chunk = [0u8; 64];
    loop {
        let n = match stream.read(&mut chunk).await {
            Ok(n) => n,
            // A reset before a full line: nothing sensible to parse.
            Err(_) => return Err(RequestError::Empty),
        };
        if n == 0 {
            return Ok(line);
        }
        line.extend_from_slice(&chunk[..n]);
        if let Some(end) = line.iter().position(|&b| b == b'\n') {
            line.truncate(end);
            return Ok(line);
        }
        if line.len() > MAX_REQUEST {
            return Err(RequestError::TooLong);
        }
    }
}

async fn answer(stream: &mut UnixStream, requests: &mpsc::Sender<ControlRequest>) -> Vec<u8> {
    let line = match tokio::time::timeout(READ_TIMEOUT, read_request(stream)).await {
        Ok(Ok(line)) => line,
        Ok(Err(e)) => return error_json(&e.to_string()),
        Err(_) => {
            return error_json(&format!(
                "no request line within {} s",
                READ_TIMEOUT.as_secs()
            ))
        }
    };
    let kind = match RequestKind::parse(&line) {
        Ok(kind) => kind,
        Err(e) => return error_json(&e.to_string()),
    };
    let (tx, rx) = oneshot::channel();
    let asked = async {
        requests
            .send(ControlRequest { kind, reply: tx })
            .await
            .ok()?;
        rx.await.ok()
    };
    match tokio::time::timeout(REPLY_TIMEOUT, asked).await {
        // Rendering a large lease table takes a while: off this thread,
        // which also runs the DHCP engine.
        Ok(Some(reply)) => tokio::task::spawn_blocking(move || reply.to_json())
            .await
            .unwrap_or_else(|e| error_json(&format!("cannot encode the reply: {e}"))),
        Ok(None) => error_json("the server is shutting down"),
        Err(_) => error_json(&format!(
            "the DHCP task did not answer within {} s",
            REPLY_TIMEOUT.as_secs()
        )),
    }
}

async fn handle(mut stream: UnixStream, requests: mpsc::Sender<ControlRequest>) {
    let reply = answer(&mut stream, &requests).await;
    let written = tokio::time::timeout(WRITE_TIMEOUT, async {
        stream.write_all(&reply).await?;
        stream.shutdown().await
    })
    .await;
    match written {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!("control socket: writing the reply: {e}"),
        Err(_) => tracing::debug!("control socket: client did not take the reply in time"),
    }
    // Closing with input still unread makes the kernel reset the
    // connection, and the client may lose the reply to that (a request
    // that was too long, say): read on until the client closes, bounded.
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, async {
        let mut sink = [0u8; 4096];
        let mut total = 0;
        while total < DRAIN_MAX {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_owner_only_replaces_stale_and_keeps_live_sockets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctl.sock");
        // A socket file nobody listens on any more.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let sock = ControlSocket::bind(&path).unwrap();
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
            // Nothing left beside it.
            assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
            assert!(matches!(
                ControlSocket::bind(&path),
                Err(ControlError::InUse { .. })
            ));
            sock.remove();
            assert!(!path.exists());
        });
        std::fs::write(&path, "not a socket").unwrap();
        rt.block_on(async {
            assert!(matches!(
                ControlSocket::bind(&path),
                Err(ControlError::NotASocket { .. })
            ));
        });
    }
}
