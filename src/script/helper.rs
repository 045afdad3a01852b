//! The root helper for `dhcp-script`, as dnsmasq has one: a process
//! started while the server is still root, before it drops to `user`, that
//! runs the script as root (or as `dhcp-scriptuser`) on the server's
//! behalf. The server sends one request per run over a socket pair and
//! reads back the script's output lines and how the run ended; the helper
//! parses nothing from the network, only these requests from its parent.
//!
//! It is the server's own binary, started with [`ARG`], the number of its
//! end of the socket pair, the script's path and the uid and gid to run it
//! as (exec, not a bare fork: the server already runs threads). Those come
//! from its command line only, never from a request: a server taken over
//! after the drop can ask for runs of the configured script, with
//! `DNSMASQ_*` variables, and nothing else. The helper ends when the server
//! closes the socket, and with the server if that is killed.
//!
//! The wire: one JSON object per line each way.

use std::io::{self, BufRead, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use super::events::{Invocation, MANAGED_VARS};
use super::runner::{run_script, Outcome};

/// argv[1] that makes the binary the helper.
pub const ARG: &str = "__dhcp-script-helper";

#[derive(Debug, Serialize, Deserialize)]
struct Request {
    args: Vec<String>,
    env: Vec<(String, String)>,
    timeout_ms: u64,
}

/// What the helper runs, from its command line.
struct Script {
    path: PathBuf,
    run_as: Option<(u32, u32)>,
}

#[derive(Debug, Serialize, Deserialize)]
enum Reply {
    /// A line the script printed.
    Output(String),
    /// The run ended: the raw wait status.
    Exited(i32),
    TimedOut,
    NotStarted(String),
    WaitFailed(String),
}

/// The server's side: the helper process and the socket to it.
pub struct Helper {
    child: Child,
    stream: Option<UnixStream>,
}

impl Helper {
    /// Starts the helper for the script at `path`, run as `run_as` (root
    /// when `None`). Call while still root, before the drop.
    pub fn spawn(path: &std::path::Path, run_as: Option<(u32, u32)>) -> io::Result<Helper> {
        let (ours, theirs) = UnixStream::pair()?;
        let fd = theirs.as_raw_fd();
        let exe = std::env::current_exe()?;
        let mut cmd = Command::new(exe);
        cmd.arg(ARG).arg(fd.to_string()).arg(path);
        if let Some((uid, gid)) = run_as {
            cmd.arg(uid.to_string()).arg(gid.to_string());
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::null());
        // SAFETY: between fork and exec the closure only calls fcntl(2),
        // which is async-signal-safe, on a descriptor the child inherits.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(move || {
                // Keep the helper's end open across exec.
                let flags = libc::fcntl(fd, libc::F_GETFD);
                if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn()?;
        drop(theirs);
        Ok(Helper {
            child,
            stream: Some(ours),
        })
    }

    /// The socket, for the runner's runtime to take over.
    pub fn take_stream(&mut self) -> Option<UnixStream> {
        self.stream.take()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        // Closing the socket ends the helper; reap it if it already has.
        self.stream = None;
        let _ = self.child.try_wait();
    }
}

/// The runner's end of the socket, on the runner's own runtime.
pub struct Client {
    reader: BufReader<tokio::net::unix::OwnedReadHalf>,
    writer: tokio::net::unix::OwnedWriteHalf,
}

impl Client {
    pub fn new(stream: UnixStream) -> io::Result<Client> {
        stream.set_nonblocking(true)?;
        let (r, w) = tokio::net::UnixStream::from_std(stream)?.into_split();
        Ok(Client {
            reader: BufReader::new(r),
            writer: w,
        })
    }

    /// Has the helper run the script once; `on_line` gets each line it
    /// printed.
    pub async fn run(
        &mut self,
        inv: &Invocation,
        timeout: Duration,
        on_line: impl Fn(String),
    ) -> Outcome {
        let req = Request {
            args: inv.args.clone(),
            env: inv
                .env
                .iter()
                .map(|(k, v)| ((*k).to_string(), v.clone()))
                .collect(),
            timeout_ms: timeout.as_millis() as u64,
        };
        let lost =
            |e: io::Error| Outcome::NotStarted(io::Error::other(format!("script helper: {e}")));
        let mut line = match serde_json::to_string(&req) {
            Ok(l) => l,
            Err(e) => return lost(io::Error::other(e)),
        };
        line.push('\n');
        if let Err(e) = self.writer.write_all(line.as_bytes()).await {
            return lost(e);
        }
        loop {
            let mut reply = String::new();
            match self.reader.read_line(&mut reply).await {
                Ok(0) => return lost(io::ErrorKind::UnexpectedEof.into()),
                Ok(_) => {}
                Err(e) => return lost(e),
            }
            match serde_json::from_str::<Reply>(&reply) {
                Ok(Reply::Output(l)) => on_line(l),
                Ok(Reply::Exited(raw)) => return Outcome::Exited(ExitStatus::from_raw(raw)),
                Ok(Reply::TimedOut) => return Outcome::TimedOut,
                Ok(Reply::NotStarted(e)) => return Outcome::NotStarted(io::Error::other(e)),
                Ok(Reply::WaitFailed(e)) => return Outcome::WaitFailed(io::Error::other(e)),
                Err(e) => return lost(io::Error::other(e)),
            }
        }
    }
}

/// The helper process's `main`, given the arguments after [`ARG`]: the
/// descriptor, the script, and optionally the uid and gid to run it as.
/// Serves requests until the server closes the socket. Returns the exit
/// code.
pub fn main(args: &[String]) -> u8 {
    // SAFETY: prctl(2) with PR_SET_PDEATHSIG and a signal number.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
    }
    let num = |i: usize| args.get(i).and_then(|a| a.parse::<u32>().ok());
    let (Some(fd), Some(path)) = (
        args.first().and_then(|a| a.parse::<i32>().ok()),
        args.get(1),
    ) else {
        eprintln!("twinmasq: {ARG}: expected a descriptor and a script path");
        return 2;
    };
    // The server closed what its starter left open before it started us;
    // anything else here (an older server's leak) goes too, so the
    // scripts it runs as root inherit nothing but stdio.
    crate::service::fds::close_inherited(&[fd]);
    // Open across our exec only; the scripts we start must not get it.
    // SAFETY: fcntl(2) on a descriptor number; a bad one just fails.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFD);
        if flags >= 0 {
            libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
        }
    }
    let script = Script {
        path: PathBuf::from(path),
        run_as: num(2).zip(num(3)),
    };
    // SAFETY: the server passed this descriptor, its end of a socket
    // pair, open across exec for us alone.
    let stream = unsafe { UnixStream::from_raw_fd(fd) };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("twinmasq: {ARG}: {e}");
            return 1;
        }
    };
    let reader = match stream.try_clone() {
        Ok(s) => io::BufReader::new(s),
        Err(e) => {
            eprintln!("twinmasq: {ARG}: {e}");
            return 1;
        }
    };
    let mut writer = stream;
    for line in reader.lines() {
        let Ok(line) = line else { break };
        let reply = match serde_json::from_str::<Request>(&line) {
            Ok(req) => runtime.block_on(serve(&script, &req, &mut writer)),
            Err(e) => Reply::NotStarted(format!("bad request: {e}")),
        };
        if send(&mut writer, &reply).is_err() {
            break;
        }
    }
    0
}

async fn serve(script: &Script, req: &Request, writer: &mut UnixStream) -> Reply {
    // Only the variables a run may carry: the helper sets nothing else.
    let env = req
        .env
        .iter()
        .filter_map(|(k, v)| {
            MANAGED_VARS
                .iter()
                .find(|m| **m == k.as_str())
                .map(|m| (*m, v.clone()))
        })
        .collect();
    let inv = Invocation {
        args: req.args.clone(),
        env,
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let outcome = run_script(
        &script.path,
        &inv,
        script.run_as,
        Duration::from_millis(req.timeout_ms),
        move |l| {
            let _ = tx.send(l);
        },
    )
    .await;
    // Output first, so the server logs it before the outcome.
    while let Ok(l) = rx.try_recv() {
        if send(writer, &Reply::Output(l)).is_err() {
            break;
        }
    }
    match outcome {
        Outcome::Exited(st) => Reply::Exited(st.into_raw()),
        Outcome::TimedOut => Reply::TimedOut,
        Outcome::NotStarted(e) => Reply::NotStarted(e.to_string()),
        Outcome::WaitFailed(e) => Reply::WaitFailed(e.to_string()),
    }
}

fn send(w: &mut UnixStream, reply: &Reply) -> io::Result<()> {
    let mut line = serde_json::to_string(reply).map_err(io::Error::other)?;
    line.push('\n');
    w.write_all(line.as_bytes())
}
