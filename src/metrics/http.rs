//! The HTTP side: a tiny HTTP/1.1 responder for `GET /metrics` on its own
//! TCP listener. One request per connection (`Connection: close`), a
//! capped request head read under a deadline, a few connections at once;
//! everything else gets a short error status. A scraper needs no more, and
//! nothing a client sends can hold more than a few kilobytes or seconds.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::render::{render, CONTENT_TYPE};
use super::snapshot::{MetricsSources, Reply, Scrape, Source};

/// Connections served at once; more are closed at once (a scraper that
/// finds them busy tries at its next interval).
pub const MAX_CONNECTIONS: usize = 8;
/// The most a request head may take: a scraper's is a few hundred bytes.
pub const MAX_HEAD: usize = 8 << 10;
/// Time a client has to send its request head.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a client has to take the answer.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time each engine task has to answer with its snapshot; it answers
/// between two packets, so only a stuck task misses this.
pub const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause after a failed accept (out of descriptors), so the loop does not
/// spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot listen for metrics on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// What a request head asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Metrics { head_only: bool },
    NotFound,
    MethodNotAllowed,
    BadRequest,
}

/// Reads the request line of `head` (the bytes before the blank line).
/// Only the path matters; a query string is allowed and ignored, as
/// Prometheus's `params` would add one.
pub fn route(head: &[u8]) -> Route {
    let Ok(text) = std::str::from_utf8(head) else {
        return Route::BadRequest;
    };
    let line = text.split("\r\n").next().unwrap_or("");
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Route::BadRequest;
    };
    if !version.starts_with("HTTP/1.") || method.is_empty() || !target.starts_with('/') {
        return Route::BadRequest;
    }
    let path = target.split('?').next().unwrap_or(target);
    if path != "/metrics" {
        return Route::NotFound;
    }
    match method {
        "GET" => Route::Metrics { head_only: false },
        "HEAD" => Route::Metrics { head_only: true },
        _ => Route::MethodNotAllowed,
    }
}

/// The bound listener; bound at start-up so a taken port stops the start.
pub struct MetricsListener {
    listener: TcpListener,
}

/// Binds `addr`. Call inside the runtime.
pub fn bind(addr: SocketAddr) -> Result<MetricsListener, MetricsError> {
    let err = |source| MetricsError::Bind { addr, source };
    let std = std::net::TcpListener::bind(addr).map_err(err)?;
    std.set_nonblocking(true).map_err(err)?;
    let listener = TcpListener::from_std(std).map_err(err)?;
    Ok(MetricsListener { listener })
}

impl MetricsListener {
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Answers scrapes until `shutdown` resolves.
    pub async fn serve(self, sources: MetricsSources, shutdown: impl Future<Output = ()>) {
        let started = Instant::now();
        let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        // Dropping the stream closes it: over the bound.
                        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                            continue;
                        };
                        let sources = sources.clone();
                        tokio::spawn(async move {
                            handle(stream, &sources, started).await;
                            drop(permit);
                        });
                    }
                    Err(e) => {
                        tracing::debug!("metrics: accept: {e}");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                    }
                },
            }
        }
    }
}

#[derive(Debug)]
enum HeadError {
    /// Closed or failed before the head ended: nobody to answer.
    Gone,
    /// More than [`MAX_HEAD`] without the head ending.
    TooLarge,
}

/// Reads up to the blank line that ends the request head.
async fn read_head(stream: &mut TcpStream) -> Result<Vec<u8>, HeadError> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await.map_err(|_| HeadError::Gone)?;
        if n == 0 {
            return Err(HeadError::Gone);
        }
        let scan_from = buf.len().saturating_sub(3);
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf[scan_from..].windows(4).position(|w| w == b"\r\n\r\n") {
            buf.truncate(scan_from + end);
            return Ok(buf);
        }
        if buf.len() > MAX_HEAD {
            return Err(HeadError::TooLarge);
        }
    }
}

fn response(status: &str, content_type: &str, body: &str, head_only: bool) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

fn plain(status: &str) -> Vec<u8> {
    response(
        status,
        "text/plain; charset=utf-8",
        &format!("{status}\n"),
        false,
    )
}

async fn handle(mut stream: TcpStream, sources: &MetricsSources, started: Instant) {
    let answer = match tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream)).await {
        Ok(Ok(head)) => match route(&head) {
            Route::Metrics { head_only } => {
                let body = render(&gather(sources, started).await);
                response("200 OK", CONTENT_TYPE, &body, head_only)
            }
            Route::NotFound => plain("404 Not Found"),
            Route::MethodNotAllowed => plain("405 Method Not Allowed"),
            Route::BadRequest => plain("400 Bad Request"),
        },
        Ok(Err(HeadError::TooLarge)) => plain("431 Request Header Fields Too Large"),
        Ok(Err(HeadError::Gone)) => return,
        Err(_) => plain("408 Request Timeout"),
    };
    let write = async {
        stream.write_all(&answer).await?;
        stream.shutdown().await
    };
    if let Ok(Err(e)) = tokio::time::timeout(WRITE_TIMEOUT, write).await {
        tracing::debug!("metrics: write: {e}");
    }
}

/// Asks both tasks at once; each part that does not answer in time is
/// reported as down, the rest still rendered.
async fn gather(sources: &MetricsSources, started: Instant) -> Scrape {
    let (dhcp, dns) = tokio::join!(ask(&sources.dhcp), ask(&sources.dns));
    Scrape {
        version: env!("CARGO_PKG_VERSION").to_string(),
        uptime_secs: started.elapsed().as_secs(),
        dhcp,
        dns,
    }
}

async fn ask<T>(tx: &Option<mpsc::Sender<Reply<T>>>) -> Source<T> {
    let Some(tx) = tx else {
        return Source::Off;
    };
    let (reply, answer) = oneshot::channel();
    if tx.try_send(reply).is_err() {
        return Source::NoAnswer;
    }
    match tokio::time::timeout(SNAPSHOT_TIMEOUT, answer).await {
        Ok(Ok(snapshot)) => Source::Answered(snapshot),
        _ => Source::NoAnswer,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let r = |s: &str| route(s.as_bytes());
        assert_eq!(
            r("GET /metrics HTTP/1.1\r\nHost: x"),
            Route::Metrics { head_only: false }
        );
        assert_eq!(
            r("GET /metrics?x=1 HTTP/1.0"),
            Route::Metrics { head_only: false }
        );
        assert_eq!(
            r("HEAD /metrics HTTP/1.1"),
            Route::Metrics { head_only: true }
        );
        assert_eq!(r("POST /metrics HTTP/1.1"), Route::MethodNotAllowed);
        assert_eq!(r("GET / HTTP/1.1"), Route::NotFound);
        assert_eq!(r("GET /metricsx HTTP/1.1"), Route::NotFound);
        for bad in [
            "",
            "GET",
            "GET /metrics",
            "GET /metrics HTTP/2 x",
            "GET metrics HTTP/1.1",
            "GET /metrics SPDY",
        ] {
            assert_eq!(r(bad), Route::BadRequest, "{bad:?}");
        }
        assert_eq!(route(b"GET /\xff HTTP/1.1"), Route::BadRequest);
    }

    #[test]
    fn responses_close_and_count_their_body() {
        let text = String::from_utf8(response("200 OK", CONTENT_TYPE, "a 1\n", false)).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains("\r\nContent-Length: 4\r\n"), "{text}");
        assert!(text.contains("\r\nConnection: close\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\na 1\n"), "{text}");
        let head = String::from_utf8(response("200 OK", CONTENT_TYPE, "a 1\n", true)).unwrap();
        assert!(
            head.ends_with("Content-Length: 4\r\nConnection: close\r\n\r\n"),
            "{head}"
        );
    }
}
