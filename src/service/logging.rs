//! Where log lines go: stderr, a file, syslog, or stderr and syslog, as
//! dnsmasq chooses from `log-facility` and the foreground flags; and
//! `log-async`, a bounded queue to a writer thread that drops (and counts)
//! lines rather than make the server wait for a slow log.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

use super::syslog::{self, Syslog};
use crate::config::{Config, LogFacility};

/// dnsmasq's facility when none is named.
const DEFAULT_FACILITY: &str = "daemon";
/// How long the exit waits for queued lines to be written.
const FLUSH_WAIT: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("cannot open log file {}: {source}", path.display())]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("log-facility: {0}")]
    Facility(#[from] syslog::UnknownFacility),
    #[error("cannot start the log writer thread: {0}")]
    Thread(std::io::Error),
    #[error("logging was already set up: {0}")]
    Init(String),
}

/// One place a whole log line can be written.
pub trait LineSink: Send + Sync {
    fn write_line(&self, level: Level, line: &[u8]);
}

struct Stderr;

impl LineSink for Stderr {
    fn write_line(&self, _: Level, line: &[u8]) {
        let _ = std::io::stderr().lock().write_all(line);
    }
}

struct FileSink(Mutex<File>);

impl LineSink for FileSink {
    fn write_line(&self, _: Level, line: &[u8]) {
        if let Ok(mut f) = self.0.lock() {
            let _ = f.write_all(line);
        }
    }
}

impl LineSink for Syslog {
    fn write_line(&self, level: Level, line: &[u8]) {
        self.send(level, line);
    }
}

enum Msg {
    /// The last field: lines dropped just before this one.
    Line(Arc<dyn LineSink>, Level, Vec<u8>, u64),
    Flush(std::sync::mpsc::Sender<()>),
}

/// The `log-async` queue: senders never wait; a full queue drops the line
/// and counts it, and the next line that gets in carries the count, so the
/// writer reports the loss where it happened.
#[derive(Clone)]
pub struct Queue {
    tx: SyncSender<Msg>,
    dropped: Arc<AtomicU64>,
}

impl Queue {
    /// Starts the writer thread with room for `depth` lines.
    pub fn start(depth: usize) -> Result<Queue, std::io::Error> {
        let (tx, rx) = sync_channel(depth.max(1));
        std::thread::Builder::new()
            .name("twinmasq-log".into())
            .spawn(move || write_queued(rx))?;
        Ok(Queue {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
        })
    }

    fn push(&self, sink: &Arc<dyn LineSink>, level: Level, line: Vec<u8>) {
        let lost = self.dropped.swap(0, Ordering::Relaxed);
        match self
            .tx
            .try_send(Msg::Line(Arc::clone(sink), level, line, lost))
        {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.dropped.fetch_add(lost + 1, Ordering::Relaxed);
            }
            // The writer is gone (it never exits while we hold a sender,
            // but should it): write in place rather than lose the line.
            Err(TrySendError::Disconnected(Msg::Line(sink, level, line, _))) => {
                sink.write_line(level, &line)
            }
            Err(TrySendError::Disconnected(Msg::Flush(_))) => {}
        }
    }

    /// Waits (bounded) until every line queued so far is written.
    pub fn flush(&self, wait: Duration) -> bool {
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let deadline = Instant::now() + wait;
        let mut msg = Msg::Flush(done_tx);
        loop {
            match self.tx.try_send(msg) {
                Ok(()) => break,
                Err(TrySendError::Full(m)) if Instant::now() < deadline => {
                    msg = m;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(_) => return false,
            }
        }
        done_rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .is_ok()
    }

    /// Lines dropped and not yet reported.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

fn write_queued(rx: Receiver<Msg>) {
    while let Ok(msg) = rx.recv() {
        match msg {
            Msg::Line(sink, level, line, lost) => {
                if lost > 0 {
                    let note = format!("{lost} log lines dropped: the log-async queue was full\n");
                    sink.write_line(Level::WARN, note.as_bytes());
                }
                sink.write_line(level, &line);
            }
            Msg::Flush(done) => {
                let _ = done.send(());
            }
        }
    }
}

/// tracing's writer factory: one [`Line`] per event, sent whole when the
/// formatter is done with it, so a syslog datagram is one event.
pub struct Lines {
    sink: Arc<dyn LineSink>,
    queue: Option<Queue>,
}

impl Lines {
    pub fn new(sink: Arc<dyn LineSink>, queue: Option<Queue>) -> Lines {
        Lines { sink, queue }
    }

    fn line(&self, level: Level) -> Line {
        Line {
            buf: Vec::with_capacity(128),
            level,
            sink: Arc::clone(&self.sink),
            queue: self.queue.clone(),
        }
    }
}

impl<'a> MakeWriter<'a> for Lines {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        self.line(Level::INFO)
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Line {
        self.line(*meta.level())
    }
}

pub struct Line {
    buf: Vec<u8>,
    level: Level,
    sink: Arc<dyn LineSink>,
    queue: Option<Queue>,
}

impl Write for Line {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let line = std::mem::take(&mut self.buf);
        match &self.queue {
            Some(q) => q.push(&self.sink, self.level, line),
            None => self.sink.write_line(self.level, &line),
        }
    }
}

/// Where the lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Stderr,
    File(PathBuf),
    Syslog(String),
}

/// dnsmasq's choice: a file or `-` as given; a facility means syslog;
/// nothing means syslog's DAEMON. In the foreground, stderr as well, so
/// `-k` and `-d` runs show their log where they were started.
pub fn outputs(cfg: &Config, foreground: bool) -> Vec<Output> {
    let syslog = match &cfg.log_facility {
        Some(LogFacility::File(path)) => return vec![Output::File(path.clone())],
        Some(LogFacility::Stderr) => return vec![Output::Stderr],
        Some(LogFacility::Syslog(name)) => Output::Syslog(name.clone()),
        None => Output::Syslog(DEFAULT_FACILITY.to_string()),
    };
    if foreground {
        vec![Output::Stderr, syslog]
    } else {
        vec![syslog]
    }
}

/// Keeps the `log-async` writer; dropping it waits for queued lines.
pub struct LogGuard {
    queue: Option<Queue>,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        if let Some(q) = &self.queue {
            q.flush(FLUSH_WAIT);
        }
    }
}

fn filter(cfg: &Config) -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_from_env("TWINMASQ_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(if cfg.log_dhcp {
            "info,twinmasq=debug"
        } else {
            "info"
        })
    })
}

/// Installs the global subscriber. Call once, after any fork: the
/// `log-async` writer is a thread, and threads do not survive a fork.
pub fn init(cfg: &Config, foreground: bool) -> Result<LogGuard, LogError> {
    let queue = match cfg.log_async.filter(|n| *n > 0) {
        Some(n) => Some(Queue::start(n as usize).map_err(LogError::Thread)?),
        None => None,
    };
    let mut layers: Vec<Box<dyn Layer<Registry> + Send + Sync>> = Vec::new();
    for out in outputs(cfg, foreground) {
        let layer = match out {
            Output::Stderr => tracing_subscriber::fmt::layer()
                .with_target(false)
                .with_writer(Lines::new(Arc::new(Stderr), queue.clone()))
                .boxed(),
            Output::File(path) => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .map_err(|source| LogError::File { path, source })?;
                tracing_subscriber::fmt::layer()
                    .with_target(false)
                    .with_ansi(false)
                    .with_writer(Lines::new(
                        Arc::new(FileSink(Mutex::new(file))),
                        queue.clone(),
                    ))
                    .boxed()
            }
            // syslog stamps the time and carries the severity itself.
            Output::Syslog(name) => tracing_subscriber::fmt::layer()
                .with_target(false)
                .with_ansi(false)
                .with_level(false)
                .without_time()
                .with_writer(Lines::new(
                    Arc::new(Syslog::new(syslog::facility_code(&name)?)),
                    queue.clone(),
                ))
                .boxed(),
        };
        layers.push(layer);
    }
    tracing_subscriber::registry()
        .with(layers)
        .with(filter(cfg))
        .try_init()
        .map_err(|e| LogError::Init(e.to_string()))?;
    Ok(LogGuard { queue })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Barrier;

    /// Blocks its first write until the test lets it go, recording lines.
    struct Gate {
        barrier: Barrier,
        first: std::sync::atomic::AtomicBool,
        lines: Mutex<Vec<String>>,
    }

    impl LineSink for Gate {
        fn write_line(&self, _: Level, line: &[u8]) {
            if !self.first.swap(true, Ordering::SeqCst) {
                self.barrier.wait();
            }
            self.lines
                .lock()
                .unwrap()
                .push(String::from_utf8_lossy(line).into_owned());
        }
    }

    #[test]
    fn a_full_queue_drops_counts_and_reports_without_blocking() {
        let gate = Arc::new(Gate {
            barrier: Barrier::new(2),
            first: Default::default(),
            lines: Mutex::new(Vec::new()),
        });
        let sink: Arc<dyn LineSink> = gate.clone();
        let queue = Queue::start(2).unwrap();
        let lines = Lines::new(sink, Some(queue.clone()));
        // The writer takes line 0 and blocks in the sink; 1 and 2 fill the
        // queue; 3..10 find it full. None of these writes may wait.
        let started = Instant::now();
        for i in 0..10 {
            let mut l = lines.make_writer();
            write!(l, "line {i}").unwrap();
            drop(l);
            if i == 0 {
                // Let the writer take line 0 off the queue before going on.
                while gate.lines.lock().unwrap().is_empty() && !gate.first.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
        assert!(started.elapsed() < Duration::from_millis(500));
        assert_eq!(queue.dropped(), 7);
        gate.barrier.wait();
        // Room again once the writer has taken the queued lines.
        while gate.lines.lock().unwrap().len() < 3 {
            std::thread::sleep(Duration::from_millis(1));
        }
        let mut l = lines.make_writer();
        write!(l, "after").unwrap();
        drop(l);
        assert!(queue.flush(Duration::from_secs(5)));
        let got = gate.lines.lock().unwrap().clone();
        assert_eq!(
            got,
            vec![
                "line 0",
                "line 1",
                "line 2",
                "7 log lines dropped: the log-async queue was full\n",
                "after"
            ]
        );
    }

    #[test]
    fn outputs_follow_dnsmasq() {
        let mut cfg = Config::default();
        let daemon = Output::Syslog("daemon".into());
        assert_eq!(outputs(&cfg, false), vec![daemon.clone()]);
        assert_eq!(outputs(&cfg, true), vec![Output::Stderr, daemon]);
        cfg.log_facility = Some(LogFacility::Syslog("local3".into()));
        assert_eq!(outputs(&cfg, false), vec![Output::Syslog("local3".into())]);
        cfg.log_facility = Some(LogFacility::File("/x/log".into()));
        assert_eq!(outputs(&cfg, true), vec![Output::File("/x/log".into())]);
        cfg.log_facility = Some(LogFacility::Stderr);
        assert_eq!(outputs(&cfg, false), vec![Output::Stderr]);
    }
}
