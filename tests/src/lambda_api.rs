//! A local AWS Lambda Runtime API, and the real Lambda binaries run against it.
//!
//! [`LambdaApi`] is a small HTTP/1.1 server on `127.0.0.1` (standard library only) that
//! speaks the Runtime API (version `2018-06-01`) the way the `lambda_runtime` crate 1.5
//! uses it:
//!
//! | request | answer |
//! |---|---|
//! | `GET /2018-06-01/runtime/invocation/next` | blocks until an event is queued, then 200 with the payload and `Lambda-Runtime-Aws-Request-Id`, `Lambda-Runtime-Deadline-Ms`, `Lambda-Runtime-Invoked-Function-Arn`, `Lambda-Runtime-Trace-Id` |
//! | `POST /2018-06-01/runtime/invocation/{id}/response` | 202; the body is the invocation's result |
//! | `POST /2018-06-01/runtime/invocation/{id}/error` | 202; the body (`{"errorType", "errorMessage"}`) is its error |
//! | `POST /2018-06-01/runtime/init/error` | 202; recorded as an init error |
//! | anything else | 404 |
//!
//! Connections are kept alive (hyper's pool reuses them) and bodies may be sized or
//! chunked. A `next` whose client went away gives its event back to the queue, so a killed
//! function never swallows an event meant for the next one. Every `next` is timestamped on
//! arrival ([`LambdaApi::next_requests`]): the first one is the moment the function's init
//! finished, which is what a cold start is measured to.
//!
//! [`Function`] starts a built binary (`target/<profile>/<name>`, next to the running test
//! or bench executable) under `timeout -s KILL 600`, with the Lambda environment
//! (`AWS_LAMBDA_RUNTIME_API` and the function's name, memory and version), `AWS_REGION`,
//! dummy credentials and nothing from the caller's environment but `PATH`. Its standard
//! output and error go to files ([`Function::log`]) for failure messages; dropping it kills
//! it by process id.
//!
//! ```no_run
//! use std::time::Duration;
//! use tozai_tests::lambda_api::{Function, LambdaApi};
//!
//! let api = LambdaApi::start();
//! let function = Function::spawn("tozai-sync-judge", &api, &[("TOZAI_TABLE", "t")]);
//! let answer = function.invoke(serde_json::json!({"source": "x", "detail-type": "y"}));
//! assert!(answer.is_ok(), "{}", function.log());
//! ```

use std::collections::{BTreeMap, VecDeque};
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tempfile::TempDir;

use crate::server::proc_stat_field;

/// The server stops answering, and a function is killed, after this many seconds.
pub const LIFETIME_SECS: u32 = 600;
/// The Runtime API's version prefix.
pub const PREFIX: &str = "/2018-06-01/runtime";
/// How long [`Function::invoke`] waits for an answer.
pub const INVOKE_TIMEOUT: Duration = Duration::from_secs(120);
/// The access key id of the dummy credentials every [`Function`] gets.
pub const ACCESS_KEY_ID: &str = "AKIDLAMBDATEST";
/// The secret of the dummy credentials every [`Function`] gets.
pub const SECRET_ACCESS_KEY: &str = "lambda/test+SECRET";
/// The account in the function ARNs handed out.
pub const ACCOUNT_ID: &str = "123456789012";

/// The dummy credentials every [`Function`] signs with (give them to the stand-ins).
pub fn credentials() -> tozai::git_auth::Credentials {
    tozai::git_auth::Credentials {
        access_key_id: ACCESS_KEY_ID.into(),
        secret_access_key: SECRET_ACCESS_KEY.into(),
        session_token: None,
    }
}

/// One invocation: what was sent, when, and what came back.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub id: String,
    pub payload: Value,
    pub queued_at: Instant,
    /// When a `next` handed it to the function.
    pub delivered_at: Option<Instant>,
    /// When its response or error arrived.
    pub answered_at: Option<Instant>,
    /// `Ok(response)` or `Err(error body)`, once answered.
    pub outcome: Option<Result<Value, Value>>,
    deadline_ms: u128,
}

/// A `POST /runtime/init/error`.
#[derive(Debug, Clone)]
pub struct InitError {
    pub at: Instant,
    /// The `Lambda-Runtime-Function-Error-Type` header.
    pub error_type: Option<String>,
    /// The body (`{"errorType", "errorMessage"}`), or the raw text when it is not JSON.
    pub body: Value,
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<String>,
    invocations: BTreeMap<String, Invocation>,
    next_requests: Vec<Instant>,
    init_errors: Vec<InitError>,
    /// `METHOD PATH -> STATUS`, in order, for failure messages.
    log: Vec<String>,
    seq: u64,
    stopped: bool,
    function_arn: String,
}

#[derive(Debug)]
struct Inner {
    state: Mutex<State>,
    changed: Condvar,
    addr: SocketAddr,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `payload` (delivered by the next `next`, oldest first) with a deadline
    /// `timeout` from now; returns the invocation's request id.
    fn submit(&self, payload: Value, timeout: Duration) -> String {
        let mut state = self.lock();
        state.seq += 1;
        let id = format!(
            "{:08x}-0000-4000-8000-{:012x}",
            std::process::id(),
            state.seq
        );
        let deadline_ms = (SystemTime::now() + timeout)
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        state.invocations.insert(
            id.clone(),
            Invocation {
                id: id.clone(),
                payload,
                queued_at: Instant::now(),
                delivered_at: None,
                answered_at: None,
                outcome: None,
                deadline_ms,
            },
        );
        state.queue.push_back(id.clone());
        drop(state);
        self.changed.notify_all();
        id
    }

    /// Waits at most `timeout` for invocation `id`'s outcome; `None` when it did not come.
    fn wait(&self, id: &str, timeout: Duration) -> Option<Result<Value, Value>> {
        let end = Instant::now() + timeout;
        let mut state = self.lock();
        loop {
            if let Some(outcome) = state.invocations.get(id).and_then(|i| i.outcome.clone()) {
                return Some(outcome);
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            state = self
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Takes invocation `id` out of the queue if no function has picked it up yet.
    fn withdraw(&self, id: &str) {
        self.lock().queue.retain(|q| q != id);
    }

    fn first_next_after(&self, since: Instant) -> Option<Instant> {
        self.lock()
            .next_requests
            .iter()
            .copied()
            .find(|t| *t >= since)
    }

    fn stop(&self) {
        self.lock().stopped = true;
        self.changed.notify_all();
        // Unblocks the accept loop.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

/// A running Runtime API; see the [module documentation](self). Dropping it stops it.
#[derive(Debug)]
pub struct LambdaApi {
    inner: Arc<Inner>,
    acceptor: Option<JoinHandle<()>>,
}

impl LambdaApi {
    /// Listens on a free loopback port; answers for [`LIFETIME_SECS`] at most.
    pub fn start() -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .expect("cannot bind a loopback port for the Lambda Runtime API");
        let addr = listener.local_addr().expect("the listener has an address");
        let inner = Arc::new(Inner {
            state: Mutex::new(State {
                function_arn: format!("arn:aws:lambda:us-east-1:{ACCOUNT_ID}:function:tozai-test"),
                ..State::default()
            }),
            changed: Condvar::new(),
            addr,
        });
        let acceptor = {
            let inner = Arc::clone(&inner);
            std::thread::Builder::new()
                .name("lambda-api-accept".into())
                .spawn(move || accept_loop(&listener, &inner))
                .expect("cannot start the Runtime API thread")
        };
        {
            let inner = Arc::clone(&inner);
            std::thread::Builder::new()
                .name("lambda-api-watchdog".into())
                .spawn(move || {
                    let end = Instant::now() + Duration::from_secs(LIFETIME_SECS.into());
                    let mut state = inner.lock();
                    while !state.stopped {
                        let left = end.saturating_duration_since(Instant::now());
                        if left.is_zero() {
                            drop(state);
                            inner.stop();
                            return;
                        }
                        state = inner
                            .changed
                            .wait_timeout(state, left)
                            .unwrap_or_else(|e| e.into_inner())
                            .0;
                    }
                })
                .expect("cannot start the Runtime API watchdog");
        }
        Self {
            inner,
            acceptor: Some(acceptor),
        }
    }

    /// `127.0.0.1:PORT`: the value of `AWS_LAMBDA_RUNTIME_API`.
    pub fn address(&self) -> String {
        self.inner.addr.to_string()
    }

    /// Sets the `Lambda-Runtime-Invoked-Function-Arn` handed out with each event.
    pub fn set_function_arn(&self, arn: &str) {
        self.inner.lock().function_arn = arn.to_owned();
    }

    /// Queues `payload` (delivered by the next `next`, oldest first) with a deadline
    /// `timeout` from now; returns the invocation's request id.
    pub fn submit(&self, payload: Value, timeout: Duration) -> String {
        self.inner.submit(payload, timeout)
    }

    /// Waits at most `timeout` for invocation `id`'s outcome; `None` when it did not come.
    pub fn wait(&self, id: &str, timeout: Duration) -> Option<Result<Value, Value>> {
        self.inner.wait(id, timeout)
    }

    /// Takes invocation `id` out of the queue if no function has picked it up yet.
    pub fn withdraw(&self, id: &str) {
        self.inner.withdraw(id);
    }

    /// Queues `payload` and waits for its outcome: `Ok(response)` or `Err(error body)`.
    /// Panics, showing the requests received, when nothing answers within `timeout`.
    pub fn invoke(&self, payload: Value, timeout: Duration) -> Result<Value, Value> {
        let id = self.submit(payload, timeout);
        match self.wait(&id, timeout) {
            Some(outcome) => outcome,
            None => {
                self.withdraw(&id);
                panic!(
                    "no function answered invocation {id} within {timeout:?}; Runtime API requests:\n{}",
                    self.requests().join("\n")
                )
            }
        }
    }

    /// The invocation `id` as it stands.
    pub fn invocation(&self, id: &str) -> Option<Invocation> {
        self.inner.lock().invocations.get(id).cloned()
    }

    /// When each `GET .../invocation/next` arrived, in order.
    pub fn next_requests(&self) -> Vec<Instant> {
        self.inner.lock().next_requests.clone()
    }

    /// Waits at most `timeout` until `count` `next` requests have arrived; returns them
    /// (fewer on a timeout).
    pub fn wait_next_requests(&self, count: usize, timeout: Duration) -> Vec<Instant> {
        let end = Instant::now() + timeout;
        let mut state = self.inner.lock();
        while state.next_requests.len() < count {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            state = self
                .inner
                .changed
                .wait_timeout(state, left.min(Duration::from_millis(100)))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        state.next_requests.clone()
    }

    /// The init errors posted so far.
    pub fn init_errors(&self) -> Vec<InitError> {
        self.inner.lock().init_errors.clone()
    }

    /// Every request answered so far: `METHOD PATH -> STATUS`.
    pub fn requests(&self) -> Vec<String> {
        self.inner.lock().log.clone()
    }
}

impl Drop for LambdaApi {
    fn drop(&mut self) {
        self.inner.stop();
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, inner: &Arc<Inner>) {
    for stream in listener.incoming() {
        if inner.lock().stopped {
            return;
        }
        let Ok(stream) = stream else { continue };
        let inner = Arc::clone(inner);
        let _ = std::thread::Builder::new()
            .name("lambda-api-conn".into())
            .spawn(move || serve_connection(stream, &inner));
    }
}

/// One parsed request.
struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn read_line(reader: &mut impl BufRead) -> std::io::Result<Option<String>> {
    let mut line = Vec::new();
    if reader.read_until(b'\n', &mut line)? == 0 {
        return Ok(None);
    }
    while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        line.pop();
    }
    Ok(Some(String::from_utf8_lossy(&line).into_owned()))
}

fn bad(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned())
}

/// Reads one request; `None` when the client closed the connection between requests.
fn read_request(reader: &mut impl BufRead) -> std::io::Result<Option<Request>> {
    let request_line = loop {
        match read_line(reader)? {
            None => return Ok(None),
            Some(l) if l.is_empty() => continue,
            Some(l) => break l,
        }
    };
    let mut parts = request_line.split(' ');
    let method = parts.next().unwrap_or_default().to_owned();
    let path = parts.next().ok_or_else(|| bad("no path"))?.to_owned();
    let mut headers = Vec::new();
    loop {
        let line = read_line(reader)?.ok_or_else(|| bad("headers cut off"))?;
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    let mut request = Request {
        method,
        path,
        headers,
        body: Vec::new(),
    };
    if request
        .header("transfer-encoding")
        .is_some_and(|t| t.to_ascii_lowercase().contains("chunked"))
    {
        loop {
            let size_line = read_line(reader)?.ok_or_else(|| bad("chunk cut off"))?;
            let size = usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| bad("bad chunk size"))?;
            if size == 0 {
                // Trailers, up to the empty line.
                while read_line(reader)?.is_some_and(|l| !l.is_empty()) {}
                break;
            }
            let start = request.body.len();
            request.body.resize(start + size, 0);
            reader.read_exact(&mut request.body[start..])?;
            read_line(reader)?;
        }
    } else if let Some(len) = request.header("content-length") {
        let len: usize = len.parse().map_err(|_| bad("bad content-length"))?;
        request.body.resize(len, 0);
        reader.read_exact(&mut request.body)?;
    }
    Ok(Some(request))
}

fn write_response(
    stream: &mut TcpStream,
    status: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    stream.write_all(&out)?;
    stream.flush()
}

/// True when the client has closed its side (a read would return end of file).
fn peer_closed(stream: &TcpStream) -> bool {
    if stream.set_nonblocking(true).is_err() {
        return true;
    }
    let mut byte = [0u8; 1];
    let closed = match stream.peek(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    };
    let _ = stream.set_nonblocking(false);
    closed
}

fn body_json(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap_or_else(|_| json!(String::from_utf8_lossy(body)))
}

fn serve_connection(stream: TcpStream, inner: &Arc<Inner>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(LIFETIME_SECS.into())));
    let _ = stream.set_nodelay(true);
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    loop {
        let request = match read_request(&mut reader) {
            Ok(Some(r)) => r,
            Ok(None) | Err(_) => return,
        };
        let arrived = Instant::now();
        let path = request
            .path
            .split('?')
            .next()
            .unwrap_or_default()
            .to_owned();
        let answered = if request.method == "GET" && path == format!("{PREFIX}/invocation/next") {
            inner.lock().next_requests.push(arrived);
            inner.changed.notify_all();
            deliver_next(inner, &mut writer)
        } else if request.method == "POST" && path == format!("{PREFIX}/init/error") {
            inner.lock().init_errors.push(InitError {
                at: arrived,
                error_type: request
                    .header("lambda-runtime-function-error-type")
                    .map(str::to_owned),
                body: body_json(&request.body),
            });
            inner.changed.notify_all();
            accepted(&mut writer).map(|()| "202")
        } else if let Some((id, kind)) = request
            .method
            .eq("POST")
            .then(|| {
                path.strip_prefix(&format!("{PREFIX}/invocation/"))
                    .and_then(|rest| rest.split_once('/'))
            })
            .flatten()
            && (kind == "response" || kind == "error")
        {
            let mut state = inner.lock();
            let known = state.invocations.get(id).map(|i| i.outcome.is_none());
            match (known, state.invocations.get_mut(id)) {
                (Some(true), Some(invocation)) => {
                    let body = body_json(&request.body);
                    invocation.outcome = Some(if kind == "response" {
                        Ok(body)
                    } else {
                        Err(body)
                    });
                    invocation.answered_at = Some(arrived);
                    drop(state);
                    inner.changed.notify_all();
                    accepted(&mut writer).map(|()| "202")
                }
                _ => {
                    let (status, why) = if known.is_some() {
                        ("400 Bad Request", "InvalidStateTransition")
                    } else {
                        ("404 Not Found", "InvalidRequestID")
                    };
                    drop(state);
                    let body = json!({"errorType": why, "errorMessage": format!("request {id}")});
                    write_response(&mut writer, status, &[], body.to_string().as_bytes())
                        .map(|()| if known.is_some() { "400" } else { "404" })
                }
            }
        } else {
            let body = json!({"errorType": "NotFound", "errorMessage": request.path});
            write_response(
                &mut writer,
                "404 Not Found",
                &[],
                body.to_string().as_bytes(),
            )
            .map(|()| "404")
        };
        let status = match &answered {
            Ok(s) => (*s).to_owned(),
            Err(e) => format!("failed: {e}"),
        };
        inner
            .lock()
            .log
            .push(format!("{} {} -> {status}", request.method, request.path));
        if answered.is_err() {
            let _ = writer.shutdown(Shutdown::Both);
            return;
        }
    }
}

fn accepted(writer: &mut TcpStream) -> std::io::Result<()> {
    write_response(writer, "202 Accepted", &[], br#"{"status":"OK"}"#)
}

/// Waits for a queued event and hands it over; an event that cannot be written goes back
/// to the front of the queue.
fn deliver_next(inner: &Arc<Inner>, writer: &mut TcpStream) -> std::io::Result<&'static str> {
    loop {
        let mut state = inner.lock();
        if state.stopped {
            return Err(std::io::Error::other("the Runtime API stopped"));
        }
        if let Some(id) = state.queue.pop_front() {
            let arn = state.function_arn.clone();
            let invocation = state
                .invocations
                .get_mut(&id)
                .expect("a queued invocation is known");
            invocation.delivered_at = Some(Instant::now());
            let body = invocation.payload.to_string();
            let deadline = invocation.deadline_ms.to_string();
            drop(state);
            let trace = format!(
                "Root=1-{:08x}-{:0>24};Parent={:0>16};Sampled=0",
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs()),
                id.replace('-', "").get(..24).unwrap_or("0"),
                "1"
            );
            let headers = [
                ("Lambda-Runtime-Aws-Request-Id", id.clone()),
                ("Lambda-Runtime-Deadline-Ms", deadline),
                ("Lambda-Runtime-Invoked-Function-Arn", arn),
                ("Lambda-Runtime-Trace-Id", trace),
            ];
            return match write_response(writer, "200 OK", &headers, body.as_bytes()) {
                Ok(()) => Ok("200"),
                Err(e) => {
                    let mut state = inner.lock();
                    if let Some(i) = state.invocations.get_mut(&id) {
                        i.delivered_at = None;
                    }
                    state.queue.push_front(id);
                    drop(state);
                    inner.changed.notify_all();
                    Err(e)
                }
            };
        }
        let state = inner
            .changed
            .wait_timeout(state, Duration::from_millis(100))
            .unwrap_or_else(|e| e.into_inner())
            .0;
        let idle = state.queue.is_empty();
        drop(state);
        if idle && peer_closed(writer) {
            return Err(std::io::Error::other(
                "the function closed the connection while waiting",
            ));
        }
    }
}

// ---------------------------------------------------------------- the function

/// The directory of the running test or bench executable's profile (`target/debug`,
/// `target/release`), where `cargo build` puts the binaries; `$TOZAI_LAMBDA_BIN_DIR`
/// overrides it.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("TOZAI_LAMBDA_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("cannot find the running executable");
    exe.parent() // deps/
        .and_then(Path::parent) // target/<profile>/
        .unwrap_or_else(|| panic!("unexpected executable location {}", exe.display()))
        .to_owned()
}

/// The built binary `name` (`tozai-sync-judge`); a missing one is a failure saying how to
/// build it.
pub fn lambda_bin(name: &str) -> PathBuf {
    let dir = bin_dir();
    let bin = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    let profile = dir.file_name().and_then(|n| n.to_str()).unwrap_or("debug");
    let flag = if profile == "debug" { "" } else { " --release" };
    assert!(
        bin.is_file(),
        "{} does not exist: build it first: cargo build{flag} -p {name} \
         (or cargo build{flag} --workspace --bins)",
        bin.display()
    );
    bin
}

/// A Lambda binary running against a [`LambdaApi`]; see the [module documentation](self).
#[derive(Debug)]
pub struct Function {
    name: String,
    api: Arc<Inner>,
    child: Mutex<Option<Child>>,
    /// The function's own process (the watchdog's child), unless it ended before it was
    /// seen.
    pid: Option<u32>,
    spawned_at: Instant,
    dir: TempDir,
}

impl Function {
    /// Starts `target/<profile>/<binary>` against `api` with the Lambda environment,
    /// `AWS_REGION=us-east-1` unless `env` sets it, dummy credentials ([`credentials`]) and
    /// `env` (later entries win).
    pub fn spawn(binary: &str, api: &LambdaApi, env: &[(&str, &str)]) -> Self {
        let bin = lambda_bin(binary);
        let timeout = crate::server::find_program("timeout", &[]).unwrap_or_else(|| {
            panic!("`timeout` is not installed: install coreutils (apt-get install -y coreutils)")
        });
        let dir = tempfile::Builder::new()
            .prefix("tozai-lambda-")
            .tempdir()
            .expect("cannot create the function's temporary directory");
        let home = dir.path().join("home");
        fs::create_dir_all(home.join(".aws")).expect("cannot create the function's home");
        for file in ["config", "credentials"] {
            fs::write(home.join(".aws").join(file), "").expect("cannot write an AWS file");
        }
        let region = env
            .iter()
            .rev()
            .find(|(k, _)| *k == "AWS_REGION")
            .map_or("us-east-1", |(_, v)| *v);
        let function_name = env
            .iter()
            .rev()
            .find(|(k, _)| *k == "AWS_LAMBDA_FUNCTION_NAME")
            .map_or(binary, |(_, v)| *v);
        api.set_function_arn(&format!(
            "arn:aws:lambda:{region}:{ACCOUNT_ID}:function:{function_name}"
        ));
        let stdout = File::create(dir.path().join("stdout")).expect("cannot create stdout");
        let stderr = File::create(dir.path().join("stderr")).expect("cannot create stderr");
        let mut cmd = Command::new(&timeout);
        cmd.args(["-s", "KILL", &LIFETIME_SECS.to_string()])
            .arg(&bin)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &home)
            // The stand-ins' CA, trusted the way a user would add one: the only TLS setting.
            .env("SSL_CERT_FILE", crate::tls::ca_file())
            .env("LC_ALL", "C")
            .env("TZ", "UTC")
            .env("AWS_LAMBDA_RUNTIME_API", api.address())
            .env("AWS_LAMBDA_FUNCTION_NAME", function_name)
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env(
                "AWS_LAMBDA_LOG_GROUP_NAME",
                format!("/aws/lambda/{function_name}"),
            )
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "2024/04/01/[$LATEST]test")
            .env("AWS_EXECUTION_ENV", "AWS_Lambda_provided.al2023")
            .env("LAMBDA_TASK_ROOT", dir.path())
            .env("AWS_REGION", region)
            .env("AWS_DEFAULT_REGION", region)
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", home.join(".aws/config"))
            .env("AWS_SHARED_CREDENTIALS_FILE", home.join(".aws/credentials"))
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        let spawned_at = Instant::now();
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
        // None when it ended before it could be seen (an init that fails at once).
        let pid = function_pid(&mut child, Duration::from_secs(10));
        Self {
            name: binary.to_owned(),
            api: Arc::clone(&api.inner),
            child: Mutex::new(Some(child)),
            pid,
            spawned_at,
            dir,
        }
    }

    /// The binary's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The function's own process id (not its watchdog's); `None` when the process ended
    /// before it could be seen.
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// When the process was spawned (just before `spawn`).
    pub fn spawned_at(&self) -> Instant {
        self.spawned_at
    }

    /// The function's standard output and standard error so far, and the Runtime API's
    /// request log, for failure messages.
    pub fn log(&self) -> String {
        let read = |f: &str| fs::read_to_string(self.dir.path().join(f)).unwrap_or_default();
        let requests = self.api.lock().log.join("\n");
        format!(
            "--- {} stdout\n{}--- {} stderr\n{}--- Runtime API requests\n{requests}\n",
            self.name,
            read("stdout"),
            self.name,
            read("stderr")
        )
    }

    /// Its standard output so far (the JSON log lines and decision records).
    pub fn stdout(&self) -> String {
        fs::read_to_string(self.dir.path().join("stdout")).unwrap_or_default()
    }

    /// Its standard error so far.
    pub fn stderr(&self) -> String {
        fs::read_to_string(self.dir.path().join("stderr")).unwrap_or_default()
    }

    /// How the process ended, if it has.
    pub fn try_exit(&self) -> Option<ExitStatus> {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        child.as_mut()?.try_wait().ok().flatten()
    }

    /// Waits at most `timeout` for the process to end.
    pub fn wait_exit(&self, timeout: Duration) -> Option<ExitStatus> {
        let end = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_exit() {
                return Some(status);
            }
            if Instant::now() > end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until the function asks for its first event (its init is done) and returns
    /// when that was; `Err` with the exit status when it ended first. Panics on a timeout.
    pub fn wait_ready(&self, timeout: Duration) -> Result<Instant, Option<ExitStatus>> {
        let end = Instant::now() + timeout;
        loop {
            if let Some(at) = self.api.first_next_after(self.spawned_at) {
                return Ok(at);
            }
            if let Some(status) = self.try_exit() {
                return Err(Some(status));
            }
            if Instant::now() > end {
                panic!(
                    "{} did not ask for an event within {timeout:?}\n{}",
                    self.name,
                    self.log()
                );
            }
            let state = self.api.lock();
            let _ = self
                .api
                .changed
                .wait_timeout(state, Duration::from_millis(20));
        }
    }

    /// Invokes the function with `payload` and waits for its outcome (at most
    /// [`INVOKE_TIMEOUT`]); panics with the function's log when it dies or does not answer.
    pub fn invoke(&self, payload: Value) -> Result<Value, Value> {
        let id = self.api.submit(payload, INVOKE_TIMEOUT);
        self.outcome(&id, INVOKE_TIMEOUT)
    }

    /// Queues `payload` for the function without waiting; see [`outcome`](Self::outcome).
    pub fn submit(&self, payload: Value) -> String {
        self.api.submit(payload, INVOKE_TIMEOUT)
    }

    /// Waits for invocation `id`'s outcome; panics with the function's log when the
    /// function dies or does not answer within `timeout`.
    pub fn outcome(&self, id: &str, timeout: Duration) -> Result<Value, Value> {
        let api = &self.api;
        let end = Instant::now() + timeout;
        loop {
            if let Some(outcome) = api.wait(id, Duration::from_millis(100)) {
                return outcome;
            }
            if let Some(status) = self.try_exit() {
                api.withdraw(id);
                panic!(
                    "{} exited ({status}) before answering invocation {id}\n{}",
                    self.name,
                    self.log()
                );
            }
            if Instant::now() > end {
                api.withdraw(id);
                panic!(
                    "{} did not answer invocation {id} within {timeout:?}\n{}",
                    self.name,
                    self.log()
                );
            }
        }
    }

    /// Peak resident set size so far (`VmHWM` of /proc/PID/status), in KiB.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        peak_rss_kib(self.pid?)
    }

    /// CPU time used so far (all threads, exited ones included).
    pub fn cpu(&self) -> Option<CpuTime> {
        cpu_time(self.pid?)
    }

    /// Kills the function and its watchdog (SIGKILL), and reaps them.
    pub fn kill(&self) {
        let Some(mut child) = self.child.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return;
        };
        let watchdog = child.id();
        if child.try_wait().ok().flatten().is_none() {
            // `timeout` runs in a process group of its own: kill the group, after checking
            // it is that group; else the function by its process id.
            if proc_stat_field(watchdog, 2) == Some(u64::from(watchdog)) {
                kill(&format!("-{watchdog}"));
            } else if let Some(pid) = self
                .pid
                .filter(|pid| proc_stat_field(*pid, 1) == Some(u64::from(watchdog)))
            {
                kill(&pid.to_string());
            }
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Function {
    fn drop(&mut self) {
        self.kill();
    }
}

/// CPU time from /proc: `utime + stime` of /proc/PID/stat (clock ticks, every thread,
/// exited ones included) and the sum of the live threads' `schedstat` run times
/// (nanoseconds, finer but blind to threads that have exited).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuTime {
    /// `utime + stime`, in clock ticks.
    pub ticks: u64,
    /// The same in nanoseconds, at the tick's resolution.
    pub ticks_ns: u64,
    /// Σ /proc/PID/task/*/schedstat first field, in nanoseconds.
    pub schedstat_ns: u64,
}

/// The kernel's clock ticks per second (`getconf CLK_TCK`, 100 on Linux).
pub fn clock_ticks_per_second() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100)
    })
}

/// The CPU time process `pid` used so far.
pub fn cpu_time(pid: u32) -> Option<CpuTime> {
    let utime = proc_stat_field(pid, 11)?;
    let stime = proc_stat_field(pid, 12)?;
    let ticks = utime + stime;
    let mut schedstat_ns = 0;
    for task in fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let Ok(task) = task else { continue };
        if let Some(ns) = fs::read_to_string(task.path().join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        {
            schedstat_ns += ns;
        }
    }
    Some(CpuTime {
        ticks,
        ticks_ns: ticks * 1_000_000_000 / clock_ticks_per_second(),
        schedstat_ns,
    })
}

/// `VmHWM` (peak resident set size) of process `pid`, in KiB.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// The process the watchdog `child` runs (its only child), once it has exec'd; `None`
/// when the watchdog ends first or nothing shows up within `timeout`.
fn function_pid(child: &mut Child, timeout: Duration) -> Option<u32> {
    let parent = child.id();
    let end = Instant::now() + timeout;
    loop {
        if !matches!(child.try_wait(), Ok(None)) {
            return None;
        }
        let listed = fs::read_to_string(format!("/proc/{parent}/task/{parent}/children"));
        let found = match listed {
            Ok(children) => children
                .split_whitespace()
                .next()
                .and_then(|p| p.parse().ok()),
            // A kernel without CONFIG_PROC_CHILDREN: look for the parent in every process.
            Err(_) => fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
                let pid: u32 = e.file_name().to_str()?.parse().ok()?;
                (proc_stat_field(pid, 1) == Some(u64::from(parent))).then_some(pid)
            }),
        };
        // The child shows up once forked: wait until it has exec'd (its exe changes).
        if let Some(pid) = found
            && fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| !exe.ends_with("timeout"))
        {
            return Some(pid);
        }
        if Instant::now() > end {
            return found;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

fn kill(target: &str) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", target])
        .stderr(Stdio::null())
        .status();
}

/// The tests' and the bench's `tozai.toml` in the seed's layout: Tokyo (`ap-northeast-1`,
/// CodeCommit `core-infra`) the primary, Osaka (`ap-northeast-3`, `core-infra-dr`: one git
/// stand-in serves both, so the names differ) the standby, and one pipeline
/// `core-infra-deploy` in each region.
pub fn seed_config() -> String {
    r#"primary = "tokyo"
base_branch = "main"

[regions.tokyo]
aws_region = "ap-northeast-1"
repository = "core-infra"

[regions.osaka]
aws_region = "ap-northeast-3"
repository = "core-infra-dr"

[sync]
branches = ["main", "release/*"]
tags = ["v*"]

[sync.to.osaka]
paths = ["common/**", "secondary/**"]
exclude = ["**/*.md", "docs/**"]

[sync.to.tokyo]
paths = ["common/**", "primary/**"]
exclude = ["**/*.md", "docs/**"]

[[pipeline]]
name = "tokyo-core"
region = "tokyo"
codepipeline = "core-infra-deploy"
branches = ["main"]
paths = ["common/**", "primary/**"]
exclude = ["**/*.md", "docs/**"]

[[pipeline]]
name = "osaka-core"
region = "osaka"
codepipeline = "core-infra-deploy"
branches = ["main"]
paths = ["common/**", "secondary/**"]
exclude = ["**/*.md", "docs/**"]
"#
    .to_owned()
}
