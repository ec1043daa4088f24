//! git's smart HTTP receive-pack, protocol v0/v1, client side: enough to push an existing
//! pack file as it is, for the first mirror into an empty standby (see
//! [`git_mirror`](super::git_mirror)).
//!
//! The pure part (pkt-lines, the ref advertisement, the request's command list, the
//! side-band demultiplexer and the `report-status` parser) never panics on what a server
//! sends: malformed input is a `ProtocolError`. The transport part ([`push_pack`]) speaks
//! HTTP/1.1 with hyper (rustls for https), on a small current-thread tokio runtime of its
//! own, in a thread of its own: it works the same whether the caller is plain synchronous
//! code (the CLI) or a `spawn_blocking` task of a runtime (the Lambda), and never starts a
//! runtime inside an async context.
//!
//! The exchange, from git's `Documentation/gitprotocol-http.txt` and `gitprotocol-pack.txt`:
//!
//! 1. `GET <url>/info/refs?service=git-receive-pack`: `# service=git-receive-pack`, a flush,
//!    the refs (an empty repository advertises only `0{40} capabilities^{}`, carrying the
//!    capabilities after a NUL), a flush.
//! 2. `POST <url>/git-receive-pack`: one pkt-line per ref, `OLD NEW NAME`, the first with
//!    `\0` and the capabilities the client uses; a flush; the pack bytes.
//! 3. The answer: with `side-band-64k`, pkt-lines whose first byte is the band (1: the
//!    `report-status` pkt-lines, 2: messages and progress, 3: a fatal error), then a flush.
//!    `report-status` is `unpack ok` (or `unpack <error>`), then `ok <ref>` or
//!    `ng <ref> <reason>` per ref, then a flush.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::error_chain;
use crate::ports::GitCredentials;

/// The longest pkt-line, its 4-byte length included.
const MAX_PKT_LEN: usize = 65520;
/// A flush-pkt.
const FLUSH: &[u8] = b"0000";
/// The all-zero object id: "no ref" as an old value.
pub const ZERO_ID: &str = "0000000000000000000000000000000000000000";
/// The most `report-status` bytes accepted (4,000 refs take about half a megabyte).
const MAX_REPORT: usize = 16 * 1024 * 1024;
/// The most message bytes kept from band 2 (progress lines are not kept).
const MAX_MESSAGES: usize = 4096;

/// What a server sent that does not follow the protocol, or a fatal error it reported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum ProtocolError {
    #[error("malformed {what} from the server: {detail}")]
    Malformed { what: &'static str, detail: String },
    #[error("the server reported an error: {0}")]
    Server(String),
    #[error("cannot encode the request: {0}")]
    Request(String),
}

fn malformed(what: &'static str, detail: impl Into<String>) -> ProtocolError {
    ProtocolError::Malformed {
        what,
        detail: detail.into(),
    }
}

/// Shows at most 60 bytes of what the server sent, escaped, for error messages.
fn shown(bytes: &[u8]) -> String {
    let cut = &bytes[..bytes.len().min(60)];
    let mut s = cut.escape_ascii().to_string();
    if bytes.len() > cut.len() {
        s.push_str("...");
    }
    s
}

// ---- pkt-lines ----

/// One pkt-line read from a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pkt<'a> {
    /// `0000`
    Flush,
    /// `0001` (protocol v2 only)
    Delim,
    /// `0002` (protocol v2 only)
    ResponseEnd,
    Data(&'a [u8]),
}

/// Appends `data` as one pkt-line to `out`.
fn write_pkt(out: &mut Vec<u8>, data: &[u8]) -> Result<(), ProtocolError> {
    let len = data.len() + 4;
    if len > MAX_PKT_LEN {
        return Err(ProtocolError::Request(format!(
            "a pkt-line of {len} bytes is longer than {MAX_PKT_LEN}"
        )));
    }
    out.extend_from_slice(format!("{len:04x}").as_bytes());
    out.extend_from_slice(data);
    Ok(())
}

/// Reads the pkt-line at the start of `buf`: `None` when `buf` does not hold all of it
/// yet, else the pkt-line and the number of bytes it took.
fn read_pkt(buf: &[u8]) -> Result<Option<(Pkt<'_>, usize)>, ProtocolError> {
    let Some(head) = buf.get(..4) else {
        return Ok(None);
    };
    let len = std::str::from_utf8(head)
        .ok()
        .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
        .and_then(|h| usize::from_str_radix(h, 16).ok())
        .ok_or_else(|| malformed("pkt-line", format!("bad length {}", shown(head))))?;
    match len {
        0 => Ok(Some((Pkt::Flush, 4))),
        1 => Ok(Some((Pkt::Delim, 4))),
        2 => Ok(Some((Pkt::ResponseEnd, 4))),
        3 => Err(malformed("pkt-line", "length 3")),
        _ if len > MAX_PKT_LEN => Err(malformed(
            "pkt-line",
            format!("length {len} is over {MAX_PKT_LEN}"),
        )),
        _ => Ok(buf.get(4..len).map(|data| (Pkt::Data(data), len))),
    }
}

/// Every pkt-line of a complete buffer, in order; trailing bytes that do not make a whole
/// pkt-line are an error.
fn read_all_pkts(mut buf: &[u8]) -> Result<Vec<Pkt<'_>>, ProtocolError> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        match read_pkt(buf)? {
            Some((pkt, used)) => {
                out.push(pkt);
                buf = &buf[used..];
            }
            None => return Err(malformed("pkt-line", format!("truncated: {}", shown(buf)))),
        }
    }
    Ok(out)
}

fn strip_newline(data: &[u8]) -> &[u8] {
    data.strip_suffix(b"\n").unwrap_or(data)
}

fn is_object_id(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

// ---- the advertisement ----

/// The answer to `GET info/refs?service=git-receive-pack`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Advertisement {
    /// `(object id, name)` of every advertised ref, `.have` lines included; the
    /// `capabilities^{}` placeholder of an empty repository is not a ref.
    pub refs: Vec<(String, String)>,
    pub capabilities: Vec<String>,
}

impl Advertisement {
    pub fn parse(body: &[u8]) -> Result<Self, ProtocolError> {
        const WHAT: &str = "ref advertisement";
        let pkts = read_all_pkts(body)?;
        let mut pkts = pkts.as_slice();
        // The smart HTTP preamble: `# service=git-receive-pack`, a flush.
        if let [Pkt::Data(d), rest @ ..] = pkts
            && d.starts_with(b"# service=")
        {
            if strip_newline(d) != b"# service=git-receive-pack" {
                return Err(malformed(WHAT, format!("service line {}", shown(d))));
            }
            let [Pkt::Flush, rest @ ..] = rest else {
                return Err(malformed(WHAT, "no flush after the service line"));
            };
            pkts = rest;
        }
        if let [Pkt::Data(d), rest @ ..] = pkts
            && strip_newline(d) == b"version 1"
        {
            pkts = rest;
        }
        let mut out = Self::default();
        let mut first = true;
        loop {
            match pkts {
                [Pkt::Flush] => break,
                [Pkt::Data(d), rest @ ..] => {
                    let line = strip_newline(d);
                    if let Some(e) = line.strip_prefix(b"ERR ") {
                        return Err(ProtocolError::Server(
                            String::from_utf8_lossy(e).into_owned(),
                        ));
                    }
                    let (r, caps) = match line.iter().position(|&b| b == 0) {
                        Some(nul) if first => (&line[..nul], Some(&line[nul + 1..])),
                        Some(_) => return Err(malformed(WHAT, "capabilities after the first ref")),
                        None => (line, None),
                    };
                    if let Some(caps) = caps {
                        let caps = std::str::from_utf8(caps)
                            .map_err(|_| malformed(WHAT, "capabilities are not UTF-8"))?;
                        out.capabilities = caps.split_whitespace().map(str::to_owned).collect();
                    }
                    let r = std::str::from_utf8(r)
                        .map_err(|_| malformed(WHAT, format!("ref line {}", shown(r))))?;
                    let (id, name) = r
                        .split_once(' ')
                        .filter(|(id, name)| is_object_id(id) && !name.is_empty())
                        .ok_or_else(|| malformed(WHAT, format!("ref line {}", shown(line))))?;
                    let placeholder = first && id == ZERO_ID && name == "capabilities^{}";
                    if !placeholder {
                        out.refs.push((id.to_owned(), name.to_owned()));
                    }
                    first = false;
                    pkts = rest;
                }
                [] => return Err(malformed(WHAT, "it ends without a flush")),
                [other, ..] => return Err(malformed(WHAT, format!("unexpected {other:?}"))),
            }
        }
        Ok(out)
    }

    /// True when the server offers capability `name` (`ofs-delta`, or `agent` for
    /// `agent=...`).
    pub fn offers(&self, name: &str) -> bool {
        self.capabilities
            .iter()
            .any(|c| c == name || c.split_once('=').is_some_and(|(k, _)| k == name))
    }

    /// The value of a `name=value` capability.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.capabilities.iter().find_map(|c| {
            c.split_once('=')
                .and_then(|(k, v)| (k == name).then_some(v))
        })
    }
}

// ---- the request ----

/// One ref update of a push: `old` is [`ZERO_ID`] for a creation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefUpdate {
    pub old: String,
    pub new: String,
    pub name: String,
}

/// The start of the POST body: the commands (capabilities on the first) and a flush. The
/// pack follows.
fn command_list(updates: &[RefUpdate], capabilities: &[&str]) -> Result<Vec<u8>, ProtocolError> {
    if updates.is_empty() {
        return Err(ProtocolError::Request("no ref to update".into()));
    }
    let mut out = Vec::new();
    for (i, u) in updates.iter().enumerate() {
        if !is_object_id(&u.old) || !is_object_id(&u.new) {
            return Err(ProtocolError::Request(format!(
                "bad object id for {}",
                u.name
            )));
        }
        if u.name.is_empty() || u.name.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(ProtocolError::Request(format!("bad ref name {:?}", u.name)));
        }
        let mut line = format!("{} {} {}", u.old, u.new, u.name).into_bytes();
        if i == 0 {
            line.push(0);
            line.extend_from_slice(capabilities.join(" ").as_bytes());
        }
        write_pkt(&mut out, &line)?;
    }
    out.extend_from_slice(FLUSH);
    Ok(out)
}

/// The number of objects in a pack, from its 12-byte header (`PACK`, version 2 or 3).
pub(super) fn pack_object_count(header: &[u8]) -> Result<u32, ProtocolError> {
    let [b'P', b'A', b'C', b'K', v0, v1, v2, v3, c0, c1, c2, c3, ..] = *header else {
        return Err(malformed("pack header", shown(header)));
    };
    let version = u32::from_be_bytes([v0, v1, v2, v3]);
    if !matches!(version, 2 | 3) {
        return Err(malformed("pack header", format!("version {version}")));
    }
    Ok(u32::from_be_bytes([c0, c1, c2, c3]))
}

// ---- the answer ----

/// What the server reported for a push.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Report {
    /// `Err` with the server's words when it could not unpack the pack.
    pub unpack: Result<(), String>,
    /// Every reported ref: `None` when updated, else the server's reason.
    pub refs: BTreeMap<String, Option<String>>,
}

/// Parses a `report-status` stream (pkt-lines ending with a flush).
fn parse_report(stream: &[u8]) -> Result<Report, ProtocolError> {
    const WHAT: &str = "report-status";
    let pkts = read_all_pkts(stream)?;
    let text = |d: &[u8]| {
        std::str::from_utf8(strip_newline(d))
            .map(str::to_owned)
            .map_err(|_| malformed(WHAT, format!("line {}", shown(d))))
    };
    let mut pkts = pkts.into_iter();
    let unpack = match pkts.next() {
        Some(Pkt::Data(d)) => match text(d)?.strip_prefix("unpack ") {
            Some("ok") => Ok(()),
            Some(e) => Err(e.to_owned()),
            None => return Err(malformed(WHAT, format!("no unpack status: {}", shown(d)))),
        },
        Some(other) => return Err(malformed(WHAT, format!("unexpected {other:?}"))),
        None => return Err(malformed(WHAT, "empty")),
    };
    let mut refs = BTreeMap::new();
    loop {
        match pkts.next() {
            Some(Pkt::Flush) => break,
            Some(Pkt::Data(d)) => {
                let line = text(d)?;
                if let Some(name) = line.strip_prefix("ok ") {
                    refs.insert(name.to_owned(), None);
                } else if let Some(rest) = line.strip_prefix("ng ") {
                    let (name, reason) = rest.split_once(' ').unwrap_or((rest, "rejected"));
                    refs.insert(name.to_owned(), Some(reason.to_owned()));
                } else {
                    return Err(malformed(WHAT, format!("line {}", shown(d))));
                }
            }
            Some(other) => return Err(malformed(WHAT, format!("unexpected {other:?}"))),
            None => return Err(malformed(WHAT, "it ends without a flush")),
        }
    }
    if let Some(extra) = pkts.next() {
        return Err(malformed(WHAT, format!("{extra:?} after the final flush")));
    }
    Ok(Report { unpack, refs })
}

/// True for git's progress lines, which are not kept as messages.
fn is_progress(line: &str) -> bool {
    const PROGRESS: &[&str] = &[
        "Resolving deltas",
        "Counting objects",
        "Compressing objects",
        "Receiving objects",
        "Unpacking objects",
        "Checking connectivity",
        "Checking objects",
        "Writing objects",
        "Enumerating objects",
    ];
    PROGRESS.iter().any(|p| line.starts_with(p))
}

/// Splits the answer to the POST into the report and the server's messages, fed as the
/// bytes arrive.
#[derive(Debug)]
struct Demux {
    sideband: bool,
    pending: Vec<u8>,
    report: Vec<u8>,
    /// Band 2 text not yet ended by `\n` or `\r`.
    partial_line: Vec<u8>,
    messages: String,
    ended: bool,
}

impl Demux {
    /// `sideband`: the request asked for `side-band-64k`.
    pub fn new(sideband: bool) -> Self {
        Self {
            sideband,
            pending: Vec::new(),
            report: Vec::new(),
            partial_line: Vec::new(),
            messages: String::new(),
            ended: false,
        }
    }

    /// Takes the next bytes of the answer.
    pub fn feed(&mut self, data: &[u8]) -> Result<(), ProtocolError> {
        if !self.sideband {
            if self.report.len() + data.len() > MAX_REPORT {
                return Err(malformed("report-status", "too long"));
            }
            self.report.extend_from_slice(data);
            return Ok(());
        }
        self.pending.extend_from_slice(data);
        let mut used = 0;
        while let Some((pkt, n)) = read_pkt(&self.pending[used..])? {
            used += n;
            if self.ended {
                return Err(malformed("side-band answer", "data after the final flush"));
            }
            match pkt {
                Pkt::Flush => self.ended = true,
                Pkt::Data([1, d @ ..]) => {
                    if self.report.len() + d.len() > MAX_REPORT {
                        return Err(malformed("report-status", "too long"));
                    }
                    self.report.extend_from_slice(d);
                }
                Pkt::Data([2, d @ ..]) => {
                    let d = d.to_vec();
                    self.message(&d);
                }
                Pkt::Data([3, d @ ..]) => {
                    let text = String::from_utf8_lossy(d).trim().to_owned();
                    return Err(ProtocolError::Server(text));
                }
                Pkt::Data(d) => {
                    return Err(malformed(
                        "side-band answer",
                        format!("packet {}", shown(d)),
                    ));
                }
                other => {
                    return Err(malformed(
                        "side-band answer",
                        format!("unexpected {other:?}"),
                    ));
                }
            }
        }
        self.pending.drain(..used);
        Ok(())
    }

    fn message(&mut self, text: &[u8]) {
        for &b in text {
            if b == b'\n' || b == b'\r' {
                let line = String::from_utf8_lossy(&self.partial_line)
                    .trim()
                    .to_owned();
                self.partial_line.clear();
                if !line.is_empty()
                    && !is_progress(&line)
                    && self.messages.len() + line.len() < MAX_MESSAGES
                {
                    self.messages.push_str(&line);
                    self.messages.push('\n');
                }
            } else if self.partial_line.len() < MAX_MESSAGES {
                self.partial_line.push(b);
            }
        }
    }

    /// The report and the messages (one a line, progress left out), once the answer ended.
    pub fn finish(mut self) -> Result<(Report, String), ProtocolError> {
        if self.sideband {
            if !self.pending.is_empty() {
                return Err(malformed(
                    "side-band answer",
                    format!("truncated: {}", shown(&self.pending)),
                ));
            }
            if !self.ended {
                return Err(malformed("side-band answer", "it ends without a flush"));
            }
        }
        self.message(b"\n");
        Ok((parse_report(&self.report)?, self.messages))
    }
}

// ---- HTTP ----

/// The pushed refs and where the pack is.
#[derive(Clone, Copy)]
pub struct PackPush<'a> {
    /// The repository's `http://` or `https://` URL.
    pub url: &'a str,
    pub credentials: Option<&'a dyn GitCredentials>,
    pub updates: &'a [RefUpdate],
    /// A self-contained pack: it goes as it is.
    pub pack: &'a Path,
}

/// What the server answered to a complete push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushReport {
    pub refs: BTreeMap<String, Option<String>>,
    /// What the server printed (a hook's reasons), one a line, progress left out.
    pub messages: String,
}

/// Why a push over [`push_pack`] did not complete.
#[derive(Debug)]
pub enum PushFailure {
    /// Nothing of the push was sent and it cannot be done this way (the server's
    /// capabilities, a standby that is not empty, ...).
    Declined(String),
    /// The server refused the login, or went on asking for one.
    Auth(String),
    /// A network error before the POST body started: trying again is safe.
    Transient(Box<dyn std::error::Error + Send + Sync>),
    /// The server's certificate was refused (rustls' reason): never retried.
    Certificate(String),
    /// The POST body started and then something failed: the standby may or may not have
    /// taken some refs.
    Interrupted(String),
}

/// Logins for one request or git2 operation: the first, and a fresh one after each
/// refusal (a 401 here, another call of the credentials callback in
/// [`git_mirror`](super::git_mirror)).
pub(super) const MAX_AUTH_ATTEMPTS: u32 = 3;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const ADVERTISEMENT_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest silence accepted while reading the answer to the POST.
const ANSWER_IDLE_TIMEOUT: Duration = Duration::from_secs(600);
const CHUNK: usize = 256 * 1024;
const USER_AGENT: &str = concat!("git/2.0 (tozai ", env!("CARGO_PKG_VERSION"), ")");

/// Pushes `push.pack` with `push.updates` to an empty repository, checking first that the
/// server still advertises no ref and offers `report-status` and `ofs-delta`.
/// `on_bytes` is called from the calling thread with the pack bytes handed to the
/// connection so far.
pub fn push_pack(
    push: PackPush<'_>,
    on_bytes: Option<&dyn Fn(u64)>,
) -> Result<PushReport, PushFailure> {
    let sent = Arc::new(AtomicU64::new(0));
    let done = AtomicBool::new(false);
    let caller = std::thread::current();
    std::thread::scope(|s| {
        // A thread of its own: no runtime context there, whatever the caller's.
        let worker = s.spawn(|| {
            let result = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => {
                    let result = rt.block_on(exchange(push, sent.clone()));
                    // Not waiting for a name lookup that outlived its time-out.
                    rt.shutdown_background();
                    result
                }
                Err(e) => Err(PushFailure::Declined(format!(
                    "cannot start a runtime: {e}"
                ))),
            };
            done.store(true, Ordering::Release);
            caller.unpark();
            result
        });
        let mut reported = 0;
        while !done.load(Ordering::Acquire) && !worker.is_finished() {
            std::thread::park_timeout(Duration::from_millis(100));
            let now = sent.load(Ordering::Relaxed);
            if let Some(f) = on_bytes
                && now != reported
            {
                reported = now;
                f(now);
            }
        }
        worker.join().unwrap_or_else(|_| {
            Err(PushFailure::Interrupted(
                "the push's thread panicked".into(),
            ))
        })
    })
}

/// A request body: nothing, or the command list followed by a file.
struct UploadBody {
    head: Option<Bytes>,
    file: Option<std::fs::File>,
    remaining: u64,
    /// File bytes handed out so far.
    sent: Arc<AtomicU64>,
    /// Set once any byte of the body was handed out.
    started: Arc<AtomicBool>,
}

impl UploadBody {
    fn empty() -> Self {
        Self {
            head: None,
            file: None,
            remaining: 0,
            sent: Arc::default(),
            started: Arc::default(),
        }
    }
}

impl Body for UploadBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        if let Some(head) = self.head.take() {
            self.started.store(true, Ordering::Release);
            return Poll::Ready(Some(Ok(Frame::data(head))));
        }
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let n = usize::try_from(self.remaining).map_or(CHUNK, |r| r.min(CHUNK));
        let mut chunk = vec![0; n];
        // A local file the cache lock keeps still: reading it blocks only this runtime's
        // one thread, which has nothing else to do meanwhile.
        let read = match self.file.as_mut() {
            Some(f) => f.read_exact(&mut chunk),
            None => Err(std::io::Error::other("no file")),
        };
        if let Err(e) = read {
            return Poll::Ready(Some(Err(e)));
        }
        self.remaining -= n as u64;
        self.started.store(true, Ordering::Release);
        self.sent.fetch_add(n as u64, Ordering::Relaxed);
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(chunk)))))
    }

    fn is_end_stream(&self) -> bool {
        self.head.is_none() && self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.head.as_ref().map_or(0, |h| h.len() as u64) + self.remaining)
    }
}

enum AnyClient {
    Http(Client<HttpConnector, UploadBody>),
    Https(Client<hyper_rustls::HttpsConnector<HttpConnector>, UploadBody>),
}

impl AnyClient {
    fn new(url: &str) -> Result<Self, PushFailure> {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        http.set_nodelay(true);
        let mut builder = Client::builder(TokioExecutor::new());
        builder.pool_max_idle_per_host(1);
        if url.starts_with("http://") {
            return Ok(Self::Http(builder.build(http)));
        }
        http.enforce_http(false);
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(provider)
            .map_err(|e| PushFailure::Declined(format!("no TLS roots: {e}")))?
            .https_only()
            .enable_http1()
            .wrap_connector(http);
        Ok(Self::Https(builder.build(https)))
    }

    fn request(&self, request: Request<UploadBody>) -> hyper_util::client::legacy::ResponseFuture {
        match self {
            Self::Http(c) => c.request(request),
            Self::Https(c) => c.request(request),
        }
    }
}

/// Standard base64 with padding, for the Basic login.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A fresh `Authorization` header from the credentials, marked sensitive.
fn authorization(credentials: &dyn GitCredentials) -> Result<HeaderValue, PushFailure> {
    let login = credentials.login().map_err(PushFailure::Auth)?;
    let basic = base64(format!("{}:{}", login.username, login.password).as_bytes());
    let mut value = HeaderValue::from_str(&format!("Basic {basic}"))
        .map_err(|_| PushFailure::Auth("the login cannot go in a header".into()))?;
    value.set_sensitive(true);
    Ok(value)
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn timed_out(what: &str) -> BoxError {
    Box::new(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("timed out {what}"),
    ))
}

/// Sends the request `make` builds, with a fresh login each time, again after a 401 (at
/// most [`MAX_AUTH_ATTEMPTS`] logins), and returns the first answer that is not a 401. A
/// network error is [`PushFailure::Transient`] unless the request body had started.
async fn send(
    client: &AnyClient,
    credentials: Option<&dyn GitCredentials>,
    mut make: impl FnMut() -> Result<(Request<UploadBody>, Arc<AtomicBool>), PushFailure>,
    timeout: Option<Duration>,
) -> Result<Response<Incoming>, PushFailure> {
    for attempt in 1..=MAX_AUTH_ATTEMPTS {
        let (mut request, started) = make()?;
        if let Some(c) = credentials {
            request
                .headers_mut()
                .insert(header::AUTHORIZATION, authorization(c)?);
        }
        let answer = client.request(request);
        let answer = match timeout {
            Some(t) => tokio::time::timeout(t, answer)
                .await
                .map_err(|_| timed_out("waiting for the server")),
            None => Ok(answer.await),
        };
        let response = match answer {
            Ok(Ok(r)) => r,
            Ok(Err(e)) if started.load(Ordering::Acquire) => {
                return Err(PushFailure::Interrupted(format!(
                    "the connection failed during the push: {}",
                    error_chain(&e)
                )));
            }
            Ok(Err(e)) => return Err(transport_failure(e)),
            Err(e) => return Err(PushFailure::Transient(e)),
        };
        match response.status() {
            StatusCode::UNAUTHORIZED if credentials.is_none() => {
                return Err(PushFailure::Auth(
                    "the server asked for credentials and this location has none".into(),
                ));
            }
            StatusCode::UNAUTHORIZED if attempt < MAX_AUTH_ATTEMPTS => {
                tracing::debug!(attempt, "401 from the standby; signing a fresh login");
            }
            StatusCode::UNAUTHORIZED => {
                return Err(PushFailure::Auth(format!(
                    "credentials refused {MAX_AUTH_ATTEMPTS} times (status code: 401)"
                )));
            }
            StatusCode::FORBIDDEN => {
                return Err(PushFailure::Auth(
                    "credentials refused (status code: 403)".into(),
                ));
            }
            _ => return Ok(response),
        }
    }
    unreachable!("the last attempt returns")
}

/// The next data of a response body; `None` at its end.
async fn next_data(body: &mut Incoming, idle: Duration) -> Result<Option<Bytes>, BoxError> {
    loop {
        let frame = std::future::poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx));
        match tokio::time::timeout(idle, frame)
            .await
            .map_err(|_| timed_out("reading the answer"))?
        {
            None => return Ok(None),
            Some(Err(e)) => return Err(Box::new(e)),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    return Ok(Some(data));
                }
            }
        }
    }
}

fn content_type_is(response: &Response<Incoming>, want: &str) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().is_some_and(|t| t.trim() == want))
}

/// A 5xx is worth trying again, as for libgit2's path; any other status means this way
/// does not work here.
/// A request that failed before anything was sent: a refused certificate, or a network
/// error worth retrying.
fn transport_failure(e: hyper_util::client::legacy::Error) -> PushFailure {
    match refused_certificate(&e) {
        Some(why) => PushFailure::Certificate(format!("{why:?}")),
        None => PushFailure::Transient(Box::new(e)),
    }
}

/// rustls' reason for refusing the server's certificate, wherever it is in `e`'s chain
/// (the connector wraps it in `io::Error`s, whose `source` skips what they wrap).
fn refused_certificate<'e>(
    e: &'e (dyn std::error::Error + 'static),
) -> Option<&'e rustls::CertificateError> {
    if let Some(rustls::Error::InvalidCertificate(why)) = e.downcast_ref::<rustls::Error>() {
        return Some(why);
    }
    let wrapped = e
        .downcast_ref::<std::io::Error>()
        .and_then(std::io::Error::get_ref)
        .and_then(|inner| refused_certificate(inner));
    wrapped.or_else(|| e.source().and_then(refused_certificate))
}

fn unexpected_status(status: StatusCode, what: &str) -> PushFailure {
    if status.is_server_error() {
        PushFailure::Transient(Box::new(std::io::Error::other(format!(
            "unexpected http status code: {} ({what})",
            status.as_u16()
        ))))
    } else {
        PushFailure::Declined(format!("{what}: status code {}", status.as_u16()))
    }
}

/// The most advertisement bytes read: an empty repository's takes a few hundred.
const MAX_ADVERTISEMENT: usize = 1024 * 1024;

async fn exchange(push: PackPush<'_>, sent: Arc<AtomicU64>) -> Result<PushReport, PushFailure> {
    let base = push.url.trim_end_matches('/');
    let client = AnyClient::new(base)?;

    // 1. The advertisement: still empty, and the capabilities this needs.
    let url = format!("{base}/info/refs?service=git-receive-pack");
    let make = || {
        let request = Request::builder()
            .method(Method::GET)
            .uri(&url)
            .header(header::USER_AGENT, USER_AGENT)
            .header(header::PRAGMA, "no-cache")
            .header(header::ACCEPT, "*/*")
            .body(UploadBody::empty())
            .map_err(|e| PushFailure::Declined(format!("cannot make the request: {e}")))?;
        Ok((request, Arc::default()))
    };
    let response = send(&client, push.credentials, make, Some(ADVERTISEMENT_TIMEOUT)).await?;
    if response.status() != StatusCode::OK {
        return Err(unexpected_status(
            response.status(),
            "reading the standby's refs",
        ));
    }
    if !content_type_is(&response, "application/x-git-receive-pack-advertisement") {
        return Err(PushFailure::Declined(
            "not a smart HTTP receive-pack advertisement".into(),
        ));
    }
    let mut body = response.into_body();
    let mut advertised = Vec::new();
    let read = async {
        while let Some(data) = next_data(&mut body, ADVERTISEMENT_TIMEOUT).await? {
            advertised.extend_from_slice(&data);
            if advertised.len() > MAX_ADVERTISEMENT {
                return Ok(false);
            }
        }
        Ok::<_, BoxError>(true)
    };
    match tokio::time::timeout(ADVERTISEMENT_TIMEOUT, read).await {
        Ok(Ok(true)) => {}
        Ok(Ok(false)) => {
            return Err(PushFailure::Declined(
                "the standby advertises many refs".into(),
            ));
        }
        Ok(Err(e)) => return Err(PushFailure::Transient(e)),
        Err(_) => {
            return Err(PushFailure::Transient(timed_out(
                "reading the standby's refs",
            )));
        }
    }
    let advertisement =
        Advertisement::parse(&advertised).map_err(|e| PushFailure::Declined(e.to_string()))?;
    if let Some((_, name)) = advertisement.refs.first() {
        return Err(PushFailure::Declined(format!(
            "the standby is not empty (it has {name})"
        )));
    }
    for needed in ["report-status", "ofs-delta"] {
        if !advertisement.offers(needed) {
            return Err(PushFailure::Declined(format!(
                "the server does not offer {needed}"
            )));
        }
    }
    if advertisement
        .value("object-format")
        .is_some_and(|f| f != "sha1")
    {
        return Err(PushFailure::Declined(
            "the standby does not use SHA-1".into(),
        ));
    }
    let sideband = advertisement.offers("side-band-64k");
    let agent = format!("agent=tozai/{}", env!("CARGO_PKG_VERSION"));
    let mut capabilities = vec!["report-status"];
    if sideband {
        capabilities.push("side-band-64k");
    }
    if advertisement.offers("agent") {
        capabilities.push(&agent);
    }
    let head = Bytes::from(
        command_list(push.updates, &capabilities)
            .map_err(|e| PushFailure::Declined(e.to_string()))?,
    );

    // 2. The commands and the pack, streamed from the file.
    let url = format!("{base}/git-receive-pack");
    let make = || {
        let cannot_read = |e: std::io::Error| {
            PushFailure::Declined(format!("cannot read {}: {e}", push.pack.display()))
        };
        let file = std::fs::File::open(push.pack).map_err(cannot_read)?;
        let len = file.metadata().map_err(cannot_read)?.len();
        let started = Arc::new(AtomicBool::new(false));
        sent.store(0, Ordering::Relaxed);
        let body = UploadBody {
            head: Some(head.clone()),
            file: Some(file),
            remaining: len,
            sent: sent.clone(),
            started: started.clone(),
        };
        let request = Request::builder()
            .method(Method::POST)
            .uri(&url)
            .header(header::USER_AGENT, USER_AGENT)
            .header(
                header::CONTENT_TYPE,
                "application/x-git-receive-pack-request",
            )
            .header(header::ACCEPT, "application/x-git-receive-pack-result")
            .header(header::CONTENT_LENGTH, head.len() as u64 + len)
            .body(body)
            .map_err(|e| PushFailure::Declined(format!("cannot make the request: {e}")))?;
        Ok((request, started))
    };
    let response = send(&client, push.credentials, make, None).await?;
    if response.status() != StatusCode::OK {
        return Err(PushFailure::Interrupted(format!(
            "the server answered the push with status code {}",
            response.status().as_u16()
        )));
    }
    if !content_type_is(&response, "application/x-git-receive-pack-result") {
        return Err(PushFailure::Interrupted(
            "the server's answer to the push is not a receive-pack result".into(),
        ));
    }

    // 3. The answer.
    let mut body = response.into_body();
    let mut demux = Demux::new(sideband);
    let interrupted = |e: &dyn std::fmt::Display| {
        PushFailure::Interrupted(format!("reading the server's answer to the push: {e}"))
    };
    loop {
        match next_data(&mut body, ANSWER_IDLE_TIMEOUT).await {
            Ok(Some(data)) => demux.feed(&data).map_err(|e| interrupted(&e))?,
            Ok(None) => break,
            Err(e) => return Err(interrupted(&error_chain(&*e))),
        }
    }
    let (report, messages) = demux.finish().map_err(|e| interrupted(&e))?;
    if let Err(e) = report.unpack {
        return Err(PushFailure::Interrupted(format!(
            "the server could not unpack the pack: {e}"
        )));
    }
    Ok(PushReport {
        refs: report.refs,
        messages,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkts(lines: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for l in lines {
            if l.is_empty() {
                out.extend_from_slice(FLUSH);
            } else {
                write_pkt(&mut out, l).unwrap();
            }
        }
        out
    }

    const CAPS: &str = "report-status report-status-v2 delete-refs side-band-64k quiet atomic \
                        ofs-delta object-format=sha1 agent=git/2.47.3";

    /// What git http-backend answers for an empty repository.
    fn empty_advertisement() -> Vec<u8> {
        let first = format!("{ZERO_ID} capabilities^{{}}\0{CAPS}\n");
        pkts(&[b"# service=git-receive-pack\n", b"", first.as_bytes(), b""])
    }

    #[test]
    fn pkt_lines_round_trip() {
        let mut out = Vec::new();
        write_pkt(&mut out, b"hello\n").unwrap();
        out.extend_from_slice(FLUSH);
        write_pkt(&mut out, b"").unwrap();
        assert_eq!(out, b"000ahello\n00000004");
        assert_eq!(
            read_all_pkts(&out).unwrap(),
            [Pkt::Data(b"hello\n"), Pkt::Flush, Pkt::Data(b"")]
        );
        assert_eq!(
            read_all_pkts(b"000100020000").unwrap(),
            [Pkt::Delim, Pkt::ResponseEnd, Pkt::Flush]
        );
        // Upper-case hex is hex too.
        assert_eq!(
            read_pkt(b"000Ahello\nrest").unwrap(),
            Some((Pkt::Data(b"hello\n"), 10))
        );
    }

    #[test]
    fn incomplete_pkt_lines_wait_for_more() {
        assert_eq!(read_pkt(b"").unwrap(), None);
        assert_eq!(read_pkt(b"00").unwrap(), None);
        assert_eq!(read_pkt(b"000ahel").unwrap(), None);
    }

    #[test]
    fn malformed_pkt_lines_are_errors() {
        for bad in [&b"zzzz"[..], b"0003", b"fff1", b"-001", b"+00a", b"00 a"] {
            let e = read_pkt(bad).expect_err(&String::from_utf8_lossy(bad));
            assert!(matches!(e, ProtocolError::Malformed { .. }), "{e}");
        }
        let e = read_all_pkts(b"0000000ahel").unwrap_err();
        assert!(e.to_string().contains("truncated"), "{e}");
        let mut out = Vec::new();
        let e = write_pkt(&mut out, &vec![b'x'; MAX_PKT_LEN - 3]).unwrap_err();
        assert!(matches!(e, ProtocolError::Request(_)), "{e}");
        write_pkt(&mut out, &vec![b'x'; MAX_PKT_LEN - 4]).unwrap();
        assert_eq!(&out[..4], b"fff0");
    }

    #[test]
    fn an_empty_repositorys_advertisement_has_no_refs_and_its_capabilities() {
        let a = Advertisement::parse(&empty_advertisement()).unwrap();
        assert!(a.refs.is_empty(), "{a:?}");
        for cap in [
            "report-status",
            "side-band-64k",
            "ofs-delta",
            "agent",
            "object-format",
        ] {
            assert!(a.offers(cap), "{cap}");
        }
        assert!(!a.offers("side-band"));
        assert!(!a.offers("report"));
        assert_eq!(a.value("object-format"), Some("sha1"));
        assert_eq!(a.value("agent"), Some("git/2.47.3"));
        assert_eq!(a.value("quiet"), None);

        // Without the smart HTTP preamble, and with `version 1`.
        let first = format!("{ZERO_ID} capabilities^{{}}\0report-status\n");
        let a = Advertisement::parse(&pkts(&[b"version 1\n", first.as_bytes(), b""])).unwrap();
        assert!(a.refs.is_empty());
        assert_eq!(a.capabilities, ["report-status"]);
    }

    #[test]
    fn a_repository_with_refs_advertises_them() {
        let id = "1".repeat(40);
        let first = format!("{id} refs/heads/main\0report-status ofs-delta\n");
        let second = format!("{id} refs/tags/v1\n");
        let have = format!("{} .have\n", "2".repeat(40));
        let body = pkts(&[
            b"# service=git-receive-pack\n",
            b"",
            first.as_bytes(),
            second.as_bytes(),
            have.as_bytes(),
            b"",
        ]);
        let a = Advertisement::parse(&body).unwrap();
        assert_eq!(
            a.refs,
            [
                (id.clone(), "refs/heads/main".to_owned()),
                (id.clone(), "refs/tags/v1".to_owned()),
                ("2".repeat(40), ".have".to_owned()),
            ]
        );
        assert_eq!(a.capabilities, ["report-status", "ofs-delta"]);
    }

    #[test]
    fn malformed_advertisements_are_errors() {
        let id = "1".repeat(40);
        let caps_twice = [
            format!("{id} refs/heads/a\0report-status\n"),
            format!("{id} refs/heads/b\0report-status\n"),
        ];
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"not pkt-lines at all".to_vec(), "pkt-line"),
            (
                pkts(&[b"# service=git-upload-pack\n", b"", b""]),
                "service line",
            ),
            (
                pkts(&[
                    b"# service=git-receive-pack\n",
                    format!("{id} refs/heads/a\n").as_bytes(),
                ]),
                "no flush after the service line",
            ),
            (
                pkts(&[format!("{id} refs/heads/a\n").as_bytes()]),
                "without a flush",
            ),
            (pkts(&[b"xyz refs/heads/a\n", b""]), "ref line"),
            (pkts(&[format!("{id}\n").as_bytes(), b""]), "ref line"),
            (pkts(&[format!("{id} \n").as_bytes(), b""]), "ref line"),
            (
                pkts(&[caps_twice[0].as_bytes(), caps_twice[1].as_bytes(), b""]),
                "capabilities after the first ref",
            ),
            (b"0001".to_vec(), "unexpected"),
            (Vec::new(), "without a flush"),
        ];
        for (body, want) in cases {
            let e = Advertisement::parse(&body).expect_err(want);
            assert!(e.to_string().contains(want), "{want}: {e}");
        }
        let e = Advertisement::parse(&pkts(&[b"ERR access denied\n"])).unwrap_err();
        assert_eq!(e, ProtocolError::Server("access denied".into()));
    }

    #[test]
    fn the_command_list_carries_the_capabilities_on_its_first_line() {
        let updates = [
            RefUpdate {
                old: ZERO_ID.into(),
                new: "a".repeat(40),
                name: "refs/heads/main".into(),
            },
            RefUpdate {
                old: ZERO_ID.into(),
                new: "b".repeat(40),
                name: "refs/tags/v1".into(),
            },
        ];
        let out = command_list(
            &updates,
            &["report-status", "side-band-64k", "agent=tozai/1"],
        )
        .unwrap();
        let first = format!(
            "{ZERO_ID} {} refs/heads/main\0report-status side-band-64k agent=tozai/1",
            "a".repeat(40)
        );
        let second = format!("{ZERO_ID} {} refs/tags/v1", "b".repeat(40));
        assert_eq!(out, pkts(&[first.as_bytes(), second.as_bytes(), b""]));
        assert!(
            out.starts_with(b"008f"),
            "{}",
            String::from_utf8_lossy(&out)
        );
    }

    #[test]
    fn bad_commands_are_refused() {
        let good = RefUpdate {
            old: ZERO_ID.into(),
            new: "a".repeat(40),
            name: "refs/heads/main".into(),
        };
        assert!(command_list(&[], &["report-status"]).is_err());
        for bad in [
            RefUpdate {
                new: "xyz".into(),
                ..good.clone()
            },
            RefUpdate {
                old: "A".repeat(40),
                ..good.clone()
            },
            RefUpdate {
                name: String::new(),
                ..good.clone()
            },
            RefUpdate {
                name: "refs/heads/a b".into(),
                ..good.clone()
            },
            RefUpdate {
                name: "refs/heads/a\nb".into(),
                ..good.clone()
            },
            RefUpdate {
                name: "refs/heads/a\0b".into(),
                ..good.clone()
            },
            RefUpdate {
                name: format!("refs/heads/{}", "x".repeat(70_000)),
                ..good.clone()
            },
        ] {
            let e =
                command_list(std::slice::from_ref(&bad), &["report-status"]).expect_err(&bad.name);
            assert!(matches!(e, ProtocolError::Request(_)), "{e}");
        }
    }

    #[test]
    fn pack_headers() {
        assert_eq!(
            pack_object_count(b"PACK\0\0\0\x02\0\x01\x7f\xc5rest").unwrap(),
            98_245
        );
        assert_eq!(pack_object_count(b"PACK\0\0\0\x03\0\0\0\0").unwrap(), 0);
        for bad in [
            &b""[..],
            b"PACK\0\0\0\x02\0\x01",
            b"KCAP\0\0\0\x02\0\0\0\x01",
            b"PACK\0\0\0\x04\0\0\0\x01",
        ] {
            assert!(pack_object_count(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn reports_parse() {
        let r = parse_report(&pkts(&[
            b"unpack ok\n",
            b"ok refs/heads/main\n",
            b"ng refs/heads/blocked hook declined\n",
            b"ng refs/tags/x\n",
            b"",
        ]))
        .unwrap();
        assert_eq!(r.unpack, Ok(()));
        assert_eq!(
            r.refs,
            BTreeMap::from([
                ("refs/heads/main".to_owned(), None),
                (
                    "refs/heads/blocked".to_owned(),
                    Some("hook declined".to_owned())
                ),
                ("refs/tags/x".to_owned(), Some("rejected".to_owned())),
            ])
        );
        let r = parse_report(&pkts(&[
            b"unpack index-pack abnormal exit\n",
            b"ng refs/heads/main unpacker error\n",
            b"",
        ]))
        .unwrap();
        assert_eq!(r.unpack, Err("index-pack abnormal exit".to_owned()));
    }

    #[test]
    fn malformed_reports_are_errors() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (Vec::new(), "empty"),
            (pkts(&[b""]), "unexpected"),
            (pkts(&[b"ok refs/heads/main\n", b""]), "no unpack status"),
            (
                pkts(&[b"unpack ok\n", b"ok refs/heads/main\n"]),
                "without a flush",
            ),
            (
                pkts(&[b"unpack ok\n", b"maybe refs/heads/main\n", b""]),
                "line",
            ),
            (
                pkts(&[b"unpack ok\n", b"", b"ok refs/heads/x\n"]),
                "after the final flush",
            ),
            (pkts(&[b"unpack ok\n", b"ok \xff\n", b""]), "line"),
            (b"000funpack ok".to_vec(), "truncated"),
        ];
        for (stream, want) in cases {
            let e = parse_report(&stream).expect_err(want);
            assert!(e.to_string().contains(want), "{want}: {e}");
        }
    }

    /// `data` on side-band `band`, cut into packets of at most `size` bytes.
    fn banded(band: u8, data: &[u8], size: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for chunk in data.chunks(size) {
            let mut p = vec![band];
            p.extend_from_slice(chunk);
            write_pkt(&mut out, &p).unwrap();
        }
        out
    }

    #[test]
    fn the_side_band_answer_splits_into_report_and_messages() {
        let report = pkts(&[
            b"unpack ok\n",
            b"ok refs/heads/a\n",
            b"ng refs/heads/b hook declined\n",
            b"",
        ]);
        let mut answer = Vec::new();
        answer.extend(banded(
            2,
            b"Resolving deltas:  50% (1/2)\rResolving deltas: 100% (2/2), done.\n",
            30,
        ));
        answer.extend(banded(2, b"blocked by ", 100));
        answer.extend(banded(
            2,
            b"policy\nerror: hook declined to update refs/heads/b\n",
            100,
        ));
        answer.extend(banded(1, &report, 7)); // the report split across many packets
        answer.extend(banded(1, b"", 1)); // a keep-alive
        answer.extend_from_slice(FLUSH);
        // Fed whole, and one byte at a time.
        for step in [answer.len(), 1] {
            let mut d = Demux::new(true);
            for chunk in answer.chunks(step) {
                d.feed(chunk).unwrap();
            }
            let (r, messages) = d.finish().unwrap();
            assert_eq!(r.unpack, Ok(()));
            assert_eq!(r.refs.get("refs/heads/a"), Some(&None));
            assert_eq!(
                r.refs.get("refs/heads/b"),
                Some(&Some("hook declined".to_owned()))
            );
            assert_eq!(
                messages,
                "blocked by policy\nerror: hook declined to update refs/heads/b\n"
            );
        }
    }

    #[test]
    fn an_answer_without_side_band_is_the_report() {
        let report = pkts(&[b"unpack ok\n", b"ok refs/heads/a\n", b""]);
        let mut d = Demux::new(false);
        d.feed(&report[..5]).unwrap();
        d.feed(&report[5..]).unwrap();
        let (r, messages) = d.finish().unwrap();
        assert_eq!(r.refs.len(), 1);
        assert_eq!(messages, "");
    }

    #[test]
    fn a_fatal_error_on_band_3_is_an_error() {
        let mut d = Demux::new(true);
        let e = d
            .feed(&banded(3, b"fatal: out of disk space\n", 100))
            .unwrap_err();
        assert_eq!(e, ProtocolError::Server("fatal: out of disk space".into()));
    }

    #[test]
    fn malformed_side_band_answers_are_errors() {
        let report = pkts(&[b"unpack ok\n", b""]);
        let mut unfinished = banded(1, &report, 100);
        unfinished.extend_from_slice(b"00");
        let mut after_flush = banded(1, &report, 100);
        after_flush.extend_from_slice(FLUSH);
        after_flush.extend(banded(2, b"late", 100));
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (banded(1, &report, 100), "without a flush"),
            (unfinished, "truncated"),
            (after_flush, "after the final flush"),
            (banded(4, b"x", 100), "packet"),
            (pkts(&[b"\x01"])[..4].to_vec(), "truncated"),
            (b"0004".to_vec(), "packet"),
            (b"0001".to_vec(), "unexpected"),
            (b"garbage!".to_vec(), "pkt-line"),
            (
                [banded(1, b"0009unpack", 100), FLUSH.to_vec()].concat(),
                "truncated",
            ),
        ];
        for (answer, want) in cases {
            let mut d = Demux::new(true);
            let e = d
                .feed(&answer)
                .and_then(|()| d.finish().map(|_| ()))
                .expect_err(want);
            assert!(e.to_string().contains(want), "{want}: {e}");
        }
    }

    #[test]
    fn messages_are_bounded() {
        let mut d = Demux::new(true);
        let line = format!("{}\n", "m".repeat(100));
        for _ in 0..1000 {
            d.feed(&banded(2, line.as_bytes(), 1000)).unwrap();
        }
        d.feed(&banded(2, &vec![b'x'; 60_000], 60_000)).unwrap();
        d.feed(&banded(1, &pkts(&[b"unpack ok\n", b""]), 100))
            .unwrap();
        d.feed(FLUSH).unwrap();
        let (_, messages) = d.finish().unwrap();
        assert!(messages.len() <= MAX_MESSAGES, "{}", messages.len());
        assert!(messages.starts_with("mmm"));
    }

    /// A push to a port where nothing listens: a network error, before anything was sent.
    fn push_to_a_closed_port() -> Result<PushReport, PushFailure> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let url = format!("http://127.0.0.1:{port}/v1/repos/x");
        let updates = [RefUpdate {
            old: ZERO_ID.into(),
            new: "a".repeat(40),
            name: "refs/heads/main".into(),
        }];
        let push = PackPush {
            url: &url,
            credentials: None,
            updates: &updates,
            pack: Path::new("/nonexistent.pack"),
        };
        push_pack(push, None)
    }

    #[test]
    fn it_runs_from_plain_code_a_runtime_and_a_blocking_task_alike() {
        let refused = |r: Result<PushReport, PushFailure>| match r {
            Err(PushFailure::Transient(e)) => error_chain(&*e),
            other => panic!("{other:?}"),
        };
        refused(push_to_a_closed_port());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        // Inside an async task (blocking it, as a careless caller would) and inside
        // `spawn_blocking` (as the Lambda calls the mirror): no runtime is started there.
        refused(rt.block_on(async { push_to_a_closed_port() }));
        let r = rt.block_on(async {
            tokio::task::spawn_blocking(push_to_a_closed_port)
                .await
                .unwrap()
        });
        refused(r);
    }

    #[test]
    fn base64_table() {
        for (input, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("AKID%tok/+=:pw", "QUtJRCV0b2svKz06cHc="),
        ] {
            assert_eq!(base64(input.as_bytes()), want, "{input}");
        }
    }
}
