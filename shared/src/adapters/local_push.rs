//! Local standbys pushed like servers: a libgit2 transport that speaks git's protocol with
//! `git receive-pack PATH` over the child's standard input and output, as git's own
//! `file://` transport and ssh do.
//!
//! libgit2's built-in local transport writes into a local repository directly, in process:
//! the standby's hooks (`pre-receive`, `update`, `post-receive`) never run, its
//! `receive.*` settings do not apply, a refusal cannot happen, and nothing is counted as
//! sent. [`Git2Mirror`](super::git_mirror::Git2Mirror) instead gives libgit2 a local
//! standby as [`server_url`] (`tozai-local://PATH`), which this transport serves: libgit2's
//! smart protocol (the same code as over HTTPS) reads the ref advertisement, sends the
//! commands and the pack, and reads `report-status`, with side-band messages (a hook's
//! output) going to the push's sideband callback. A push to a local standby then behaves
//! as one to a git server: a hook's refusal is a rejected ref with the hook's message, and
//! the bytes sent are the pack's. Fetches from a local source stay on libgit2's local
//! transport (`git upload-pack` serves a `tozai-local://` fetch, but nothing asks for one).
//!
//! The child process:
//! - is `git receive-pack ABSOLUTE-PATH` (or `git upload-pack`), with no shell, `git` found
//!   on `PATH` (a missing git is an error naming it, not retried), and without the
//!   variables that would point it at another repository (`GIT_DIR`, `GIT_CONFIG_COUNT`...:
//!   `git rev-parse --local-env-vars`, which git clears for its local transports too);
//! - keeps the first [`MAX_STDERR`] bytes of its standard error (git sends a hook's output
//!   over the side band; standard error carries its fatal errors), named in the error when
//!   it ends before the exchange does;
//! - is waited for when libgit2 is done with the stream, whether the push ended or failed:
//!   its standard input is closed (the end of the conversation), its output drained, and
//!   it exits by itself once its `post-receive` hook has run, as `git push` waits for it.
//!   One still running [`WAIT`] later is killed with its hooks: it runs in a process group
//!   of its own, and the whole group is killed (`killpg`), so a hung hook is not left
//!   behind. Either way it is reaped: no zombie is left.
//!
//! ```
//! use tozai::adapters::local_push::server_url;
//! assert_eq!(server_url("/srv/git/core.git").unwrap(), "tozai-local:///srv/git/core.git");
//! assert_eq!(server_url("https://example.com/r").unwrap(), "https://example.com/r");
//! ```

use std::borrow::Cow;
use std::io::{self, Read, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use git2::transport::{Service, SmartSubtransport, SmartSubtransportStream, Transport};
use git2::{Error, ErrorClass, ErrorCode};

/// The URL scheme this transport serves (registered with libgit2 by name).
const SCHEME_NAME: &str = "tozai-local";
/// What libgit2 is given for a local standby: this, then the path.
pub const SCHEME: &str = "tozai-local://";
/// How long a server may run once libgit2 is done with it (its `post-receive` hook) before
/// it is killed.
pub const WAIT: Duration = Duration::from_secs(60);
/// The most standard-error bytes kept from a server.
pub const MAX_STDERR: usize = 4096;
/// What git clears for its local transports (`git rev-parse --local-env-vars`).
const LOCAL_ENV_VARS: &[&str] = &[
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_CONFIG",
    "GIT_CONFIG_PARAMETERS",
    "GIT_CONFIG_COUNT",
    "GIT_OBJECT_DIRECTORY",
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_IMPLICIT_WORK_TREE",
    "GIT_GRAFT_FILE",
    "GIT_INDEX_FILE",
    "GIT_NO_REPLACE_OBJECTS",
    "GIT_REPLACE_REF_BASE",
    "GIT_PREFIX",
    "GIT_SHALLOW_FILE",
    "GIT_COMMON_DIR",
];

/// The registration's result, once.
static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();

/// Registers the transport with libgit2 (once; later calls do nothing).
///
/// Call it before any other thread uses libgit2: the binaries do, first thing in `main`,
/// through [`init_tls`](super::git_mirror::init_tls); `Git2Mirror::new` calls it too.
pub fn register() {
    REGISTERED.get_or_init(|| {
        // SAFETY: `git_transport_register` appends to libgit2's global list of custom
        // transports without a lock, and every transport lookup (any fetch, push or
        // listing, on any thread) reads that list, so it must not run while another thread
        // uses a libgit2 remote. `OnceLock` runs it once; the CLI, the mirror Lambda and
        // the test suite call it through `init_tls` before they start any thread, so it
        // has run before any other thread exists. `Git2Mirror::new` calls it too, for a
        // library user that did not: such a program must make its first `Git2Mirror`
        // before other threads use libgit2 remotes (documented there and on `init_tls`).
        // The factory is `Send + Sync` and owns nothing.
        unsafe {
            git2::transport::register(SCHEME_NAME, |remote| {
                Transport::smart(remote, false, LocalServer)
            })
        }
        .map_err(|e| e.message().to_owned())
    });
}

/// The URL to give libgit2 for a standby: a local path as [`SCHEME`] and the path, so that
/// it is pushed through `git receive-pack`; any other URL as it is. An error when the
/// transport could not be registered.
pub fn server_url(url: &str) -> Result<Cow<'_, str>, Error> {
    if url.contains("://") {
        return Ok(Cow::Borrowed(url));
    }
    register();
    match REGISTERED.get() {
        Some(Ok(())) => Ok(Cow::Owned(format!("{SCHEME}{url}"))),
        Some(Err(e)) => Err(Error::from_str(&format!(
            "cannot register the transport that pushes local standbys through git receive-pack: {e}"
        ))),
        None => Err(Error::from_str("the local transport is not registered")),
    }
}

/// The subtransport: each action starts a git server process on the URL's path.
struct LocalServer;

impl SmartSubtransport for LocalServer {
    fn action(
        &self,
        url: &str,
        action: Service,
    ) -> Result<Box<dyn SmartSubtransportStream>, Error> {
        let path = url
            .strip_prefix(SCHEME)
            .ok_or_else(|| Error::from_str(&format!("not a {SCHEME} URL: {url}")))?;
        let program = match action {
            Service::UploadPackLs | Service::UploadPack => "upload-pack",
            Service::ReceivePackLs | Service::ReceivePack => "receive-pack",
        };
        let path = std::path::absolute(path).map_err(|e| {
            Error::from_str(&format!(
                "cannot make the standby's path {path} absolute: {e}"
            ))
        })?;
        let mut command = Command::new("git");
        command.arg(program).arg(&path);
        for var in LOCAL_ENV_VARS {
            command.env_remove(var);
        }
        let server = ServerProcess::spawn(command, format!("git {program}"), WAIT)
            .map_err(|e| spawn_error(program, &e))?;
        tracing::debug!(standby = %path.display(), server = program, pid = server.child.id(), "started the local standby's git server");
        Ok(Box::new(server))
    }

    fn close(&self) -> Result<(), Error> {
        Ok(())
    }
}

/// A server that could not be started, naming git when it is missing. Not a network
/// error: it is not retried.
fn spawn_error(program: &str, e: &io::Error) -> Error {
    let why = if e.kind() == io::ErrorKind::NotFound {
        "git was not found on PATH".to_owned()
    } else {
        e.to_string()
    };
    Error::new(
        ErrorCode::GenericError,
        ErrorClass::None,
        format!("cannot run `git {program}` for the local standby: {why}"),
    )
}

/// A running git server: its standard output read and its standard input written by
/// libgit2; waited for (or killed) and reaped when dropped.
struct ServerProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Option<ChildStdout>,
    stderr: Stderr,
    /// `git receive-pack`, for messages.
    what: String,
    wait: Duration,
}

impl ServerProcess {
    fn spawn(mut command: Command, what: String, wait: Duration) -> io::Result<Self> {
        use std::os::unix::process::CommandExt;
        let mut child = command
            // A group of its own, with its hooks: killed together (`kill_group`).
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let stderr = Stderr::capture(child.stderr.take());
        Ok(Self {
            stdin: child.stdin.take(),
            stdout: child.stdout.take(),
            child,
            stderr,
            what,
            wait,
        })
    }

    /// The server stopped talking (or listening) before the exchange was over: how it
    /// ended, and what it printed.
    fn ended_early(&mut self) -> io::Error {
        let ended = match wait_until(&mut self.child, Instant::now() + self.wait) {
            Some(status) => status.to_string(),
            None => "it still runs".to_owned(),
        };
        let said = self.stderr.text(Instant::now() + Duration::from_secs(1));
        let said = said.trim();
        io::Error::other(if said.is_empty() {
            format!("{} ended early ({ended})", self.what)
        } else {
            format!("{} ended early ({ended}): {said}", self.what)
        })
    }
}

impl Read for ServerProcess {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = match self.stdout.as_mut() {
            Some(out) => out.read(buf)?,
            None => 0,
        };
        // libgit2 reads only when it expects more: the end of the output is an error.
        if n == 0 && !buf.is_empty() {
            return Err(self.ended_early());
        }
        Ok(n)
    }
}

impl Write for ServerProcess {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some(input) = self.stdin.as_mut() else {
            return Err(io::ErrorKind::BrokenPipe.into());
        };
        match input.write(buf) {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Err(self.ended_early()),
            other => other,
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stdin.as_mut().map_or(Ok(()), |input| input.flush())
    }
}

impl Drop for ServerProcess {
    /// The end of the conversation, however it went: the server reads the end of its
    /// input, finishes (its `post-receive` hook) and exits; one still running after
    /// [`WAIT`](Self::wait) is killed. Reaped either way.
    fn drop(&mut self) {
        drop(self.stdin.take());
        // What it still prints (a post-receive hook's output) must not fill the pipe.
        if let Some(mut out) = self.stdout.take() {
            let _ = std::thread::Builder::new()
                .name("tozai-local-push-drain".into())
                .spawn(move || io::copy(&mut out, &mut io::sink()));
        }
        let pid = self.child.id();
        match wait_until(&mut self.child, Instant::now() + self.wait) {
            Some(status) => {
                tracing::debug!(server = %self.what, pid, status = %status, "the local standby's git server ended");
            }
            None => {
                tracing::warn!(server = %self.what, pid, wait_s = self.wait.as_secs(), "the local standby's git server still runs (its post-receive hook?); killing it and its hooks");
                if let Err(e) = kill_group(&self.child) {
                    tracing::warn!(server = %self.what, pid, error = %e, "cannot kill the local standby's git server");
                }
                if let Err(e) = self.child.wait() {
                    tracing::warn!(server = %self.what, pid, error = %e, "cannot reap the local standby's git server");
                }
            }
        }
    }
}

/// Kills the process group `child` leads (it was spawned with `process_group(0)`): the
/// server and the hooks it started.
fn kill_group(child: &Child) -> io::Result<()> {
    let group = libc::pid_t::try_from(child.id()).map_err(io::Error::other)?;
    // SAFETY: killpg only sends a signal. `group` is the group the child leads; the child
    // is not reaped yet, so its id cannot have been reused by another process.
    if unsafe { libc::killpg(group, libc::SIGKILL) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Waits for `child` to exit until `deadline`; `None` if it still runs then (or cannot be
/// waited for).
fn wait_until(child: &mut Child, deadline: Instant) -> Option<ExitStatus> {
    let mut pause = Duration::from_millis(1);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) => {}
            Err(_) => return None,
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// A child's standard error, read by a thread of its own (so that the pipe never fills),
/// keeping the first [`MAX_STDERR`] bytes.
struct Stderr {
    kept: Arc<Mutex<Vec<u8>>>,
    reader: Option<JoinHandle<()>>,
}

impl Stderr {
    fn capture(stream: Option<std::process::ChildStderr>) -> Self {
        let kept = Arc::new(Mutex::new(Vec::new()));
        let reader = stream.and_then(|mut stream| {
            let kept = kept.clone();
            std::thread::Builder::new()
                .name("tozai-local-push-stderr".into())
                .spawn(move || {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = stream.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        let mut kept = kept.lock().unwrap_or_else(|p| p.into_inner());
                        let room = MAX_STDERR.saturating_sub(kept.len());
                        kept.extend_from_slice(&buf[..n.min(room)]);
                    }
                })
                .ok()
        });
        Self { kept, reader }
    }

    /// What was kept, once the stream ended or at `deadline`, as text.
    fn text(&mut self, deadline: Instant) -> String {
        while self
            .reader
            .as_ref()
            .is_some_and(|r| !r.is_finished() && Instant::now() < deadline)
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        let kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        String::from_utf8_lossy(&kept).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// The process is gone: neither running nor a zombie.
    fn reaped(pid: u32) -> bool {
        !Path::new(&format!("/proc/{pid}")).exists()
    }

    fn bare_repo() -> tempfile::TempDir {
        let dir = tempfile::TempDir::new().unwrap();
        let status = Command::new("git")
            .args(["init", "-q", "--bare"])
            .arg(dir.path())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .status()
            .unwrap();
        assert!(status.success());
        dir
    }

    fn receive_pack(repo: &Path) -> Command {
        let mut c = Command::new("git");
        c.arg("receive-pack").arg(repo);
        c
    }

    #[test]
    fn local_paths_go_through_the_transport_and_urls_do_not() {
        let rows = [
            ("/srv/git/core.git", "tozai-local:///srv/git/core.git"),
            ("regions/osaka.git", "tozai-local://regions/osaka.git"),
            ("/srv/a:b.git", "tozai-local:///srv/a:b.git"),
            ("https://h/v1/repos/r", "https://h/v1/repos/r"),
            ("http://127.0.0.1:8080/r", "http://127.0.0.1:8080/r"),
        ];
        for (url, want) in rows {
            assert_eq!(server_url(url).unwrap(), want, "{url}");
        }
    }

    #[test]
    fn a_server_that_ends_is_reaped_when_the_stream_is_dropped() {
        let repo = bare_repo();
        let mut server =
            ServerProcess::spawn(receive_pack(repo.path()), "git receive-pack".into(), WAIT)
                .unwrap();
        let pid = server.child.id();
        let mut advertised = [0u8; 4];
        server.read_exact(&mut advertised).unwrap();
        assert!(
            advertised.iter().all(u8::is_ascii_hexdigit),
            "a pkt-line length"
        );
        drop(server);
        assert!(reaped(pid), "git receive-pack {pid} is left");
    }

    #[test]
    fn a_server_that_does_not_end_is_killed_and_reaped() {
        let mut command = Command::new("sleep");
        command.arg("30");
        let server =
            ServerProcess::spawn(command, "sleep".into(), Duration::from_millis(50)).unwrap();
        let pid = server.child.id();
        let started = Instant::now();
        drop(server);
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(reaped(pid), "sleep {pid} is left");
    }

    /// Regression (review of issue 12): only the server was killed, and its hung hook
    /// was left running.
    #[test]
    fn a_server_killed_takes_its_hung_hook_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let hook_pid = dir.path().join("hook.pid");
        // The "server" starts a "hook" that hangs, records its pid, and waits for it.
        let mut command = Command::new("sh");
        command.arg("-c").arg(format!(
            "sleep 30 & echo $! > '{}'; wait",
            hook_pid.display()
        ));
        let server =
            ServerProcess::spawn(command, "sh".into(), Duration::from_millis(300)).unwrap();
        let pid = server.child.id();
        let deadline = Instant::now() + Duration::from_secs(3);
        let hook = loop {
            if let Some(p) = std::fs::read_to_string(&hook_pid)
                .ok()
                .and_then(|t| t.trim().parse::<i32>().ok())
            {
                break p;
            }
            assert!(Instant::now() < deadline, "the hook never started");
            std::thread::sleep(Duration::from_millis(10));
        };
        let started = Instant::now();
        drop(server);
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(reaped(pid), "the server {pid} is left");
        // The hook, a child of the killed server, is reaped by init once dead.
        let deadline = Instant::now() + Duration::from_secs(3);
        while Path::new(&format!("/proc/{hook}")).exists()
            && !std::fs::read_to_string(format!("/proc/{hook}/stat"))
                .is_ok_and(|s| s.contains(") Z "))
        {
            assert!(Instant::now() < deadline, "the hook {hook} still runs");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn a_server_that_ends_early_is_named_with_its_status_and_what_it_printed() {
        let mut command = Command::new("sh");
        command.args(["-c", "echo 'fatal: not a git repository' >&2; exit 128"]);
        let mut server = ServerProcess::spawn(command, "git receive-pack".into(), WAIT).unwrap();
        let pid = server.child.id();
        let e = server.read(&mut [0u8; 16]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "git receive-pack ended early (exit status: 128): fatal: not a git repository"
        );
        drop(server);
        assert!(reaped(pid));
    }

    #[test]
    fn only_the_first_bytes_of_stderr_are_kept() {
        let mut command = Command::new("sh");
        command.args(["-c", "head -c 100000 /dev/zero | tr '\\0' x >&2; exit 1"]);
        let mut server = ServerProcess::spawn(command, "git upload-pack".into(), WAIT).unwrap();
        let e = server.read(&mut [0u8; 16]).unwrap_err().to_string();
        let prefix = "git upload-pack ended early (exit status: 1): ";
        assert!(e.starts_with(prefix), "{e}");
        assert_eq!(e.len(), prefix.len() + MAX_STDERR);
    }

    #[test]
    fn a_missing_git_is_named() {
        let e = spawn_error("receive-pack", &io::Error::from(io::ErrorKind::NotFound));
        assert_eq!(
            e.to_string(),
            "cannot run `git receive-pack` for the local standby: git was not found on PATH"
        );
        assert_eq!(
            e.class(),
            ErrorClass::None,
            "not a network error: not retried"
        );
    }
}
