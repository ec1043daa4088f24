//! HTTPS as CodeCommit serves it: the mirror trusts the run's CA only through
//! `SSL_CERT_FILE` (installed before `main`, see `tozai_tests::tls`), refuses a certificate
//! from another CA or for another host name without retrying and without writing anything,
//! and goes through a proxy when `HTTPS_PROXY` says so (and around it for `NO_PROXY`).
//!
//! The whole of `mirror_http.rs` runs over HTTPS too: full, incremental and first-mirror
//! (pack as it is) pushes, checked with `git fsck` and `for-each-ref`.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tempfile::TempDir;
use tozai::adapters::git_mirror::Git2Mirror;
use tozai::git_auth::Credentials;
use tozai::location::Location;
use tozai::mirror::RefSelection;
use tozai::ports::{Mirror, MirrorError, MirrorRequest};
use tozai_tests::mirror::{git, refs};
use tozai_tests::server::{GitServer, ServerTls};
use tozai_tests::tls::Authority;
use tozai_tests::{GitRepo, Run, Sandbox, tozai_command};

const REGION: &str = "us-east-1";

fn key() -> Credentials {
    Credentials {
        access_key_id: "AKIDTLSTEST".into(),
        secret_access_key: "tls/test+SECRET=key".into(),
        session_token: None,
    }
}

fn location(name: &str) -> Location {
    Location::CodeCommit {
        region: REGION.into(),
        name: name.into(),
    }
}

/// A server holding repository `name` with one commit on `main` (pushed with the git CLI
/// over the file system), presenting the certificate `tls` makes.
struct Served {
    server: GitServer,
    repo: PathBuf,
    _repos: TempDir,
}

impl Served {
    fn new(name: &str, tls: impl FnOnce(&Path) -> ServerTls) -> Self {
        let repos = TempDir::new().unwrap();
        let server = GitServer::start_with_tls(repos.path(), &[key()], tls);
        let repo = server.create_repo(name);
        Self {
            server,
            repo,
            _repos: repos,
        }
    }

    fn trusted(name: &str) -> Self {
        Self::new(name, ServerTls::from_run_ca)
    }

    fn with_content(self) -> Self {
        let work = GitRepo::new();
        work.write("common/a.yaml", "a: 1\n");
        work.commit("one");
        work.git(&[
            "push",
            "-q",
            self.repo.to_str().unwrap(),
            "HEAD:refs/heads/main",
        ]);
        self
    }

    /// Repository `name` on this server, reached as `https://HOST:PORT`.
    fn remote(&self, name: &str, host: &str) -> tozai::ports::GitRemote {
        let prefix = format!("https://{host}:{}", self.server.port());
        tozai::remote::codecommit(&location(name), key(), Some(&prefix)).unwrap()
    }
}

fn mirror(source: &Served, target: &Served, cache: &Path) -> Result<(), MirrorError> {
    mirror_by_host(source, "127.0.0.1", target, cache)
}

/// Mirrors `src` on `source`, reached by the host name `source_host`, to `dst` on `target`.
fn mirror_by_host(
    source: &Served,
    source_host: &str,
    target: &Served,
    cache: &Path,
) -> Result<(), MirrorError> {
    let request = MirrorRequest {
        source: source.remote("src", source_host),
        target: target.remote("dst", "127.0.0.1"),
        selection: RefSelection::all(),
        force: false,
        dry_run: false,
        ledger: None,
    };
    Git2Mirror::new(cache).mirror(&request, None).map(|_| ())
}

/// Asserts a certificate refusal naming `host` and `why`, not transient.
fn assert_refused(result: Result<(), MirrorError>, host: &str, why: &str, server: &GitServer) {
    match result {
        Err(e @ MirrorError::Certificate { .. }) => {
            let text = e.to_string();
            assert!(text.contains(&format!("certificate of {host} ")), "{text}");
            assert!(text.contains(why), "{text}");
            assert!(!e.is_transient(), "{text}");
        }
        Err(other) => panic!("not a certificate error: {other:?}\n{}", server.log()),
        Ok(()) => panic!("the certificate was accepted"),
    }
}

#[test]
fn the_mirror_speaks_https_with_the_run_ca_trusted_through_ssl_cert_file() {
    assert!(
        git2::Version::get().https(),
        "libgit2 is built without TLS: every https:// remote fails"
    );
    let ca = std::env::var("SSL_CERT_FILE").expect("SSL_CERT_FILE names the run's CA");
    assert_eq!(Path::new(&ca), tozai_tests::tls::ca_file());
    let source = Served::trusted("src").with_content();
    let standby = Served::trusted("dst");
    let cache = TempDir::new().unwrap();
    mirror(&source, &standby, cache.path()).expect("mirror over HTTPS");
    assert_eq!(refs(&standby.repo), refs(&source.repo));
    git(&standby.repo, &["fsck", "--strict", "--no-progress"]);
}

#[test]
fn a_standby_certificate_from_another_ca_is_refused_and_nothing_is_written() {
    let source = Served::trusted("src").with_content();
    let other = Authority::new("a CA nobody trusts");
    let standby = Served::new("dst", |dir| {
        ServerTls::issued_by(&other, &["127.0.0.1", "localhost"], dir)
    });
    let cache = TempDir::new().unwrap();
    assert_refused(
        mirror(&source, &standby, cache.path()),
        "127.0.0.1",
        "not signed by a trusted CA",
        &standby.server,
    );
    assert!(
        refs(&standby.repo).is_empty(),
        "nothing reached the standby"
    );
    let requests = standby.server.requests();
    assert!(
        !requests.iter().any(|r| r.path.starts_with("/v1/repos/")),
        "no git request got past the handshake: {requests:?}"
    );
}

/// CodeCommit's hosts are names, so the source is reached as `localhost` here: libgit2
/// 1.9 compares a DNS name with the certificate's DNS names, and reports a mismatch as such.
/// (Reached by an IP address, a certificate that names no address is misreported by libgit2
/// as "received early EOF": see tests/PARITY.md.)
#[test]
fn a_source_certificate_for_another_host_name_is_refused() {
    let source = Served::new("src", |dir| {
        ServerTls::issued_by(
            tozai_tests::tls::run_ca(),
            &["git-codecommit.us-east-1.amazonaws.com"],
            dir,
        )
    })
    .with_content();
    let standby = Served::trusted("dst");
    let cache = TempDir::new().unwrap();
    assert_refused(
        mirror_by_host(&source, "localhost", &standby, cache.path()),
        "localhost",
        "issued for another host name",
        &source.server,
    );
    assert!(
        refs(&standby.repo).is_empty(),
        "nothing reached the standby"
    );
}

/// The first mirror into an empty standby sends the cache's pack over rustls, which is
/// stricter than libgit2's OpenSSL: a certificate that names its host in the common name
/// only passes libgit2's check (the refs are listed) and fails rustls'. That refusal is a
/// certificate error too, never retried, and nothing is written.
#[test]
fn a_certificate_refused_while_sending_the_first_pack_is_a_certificate_error() {
    let source = Served::trusted("src").with_content();
    let standby = Served::new("dst", |dir| {
        ServerTls::common_name_only(tozai_tests::tls::run_ca(), "127.0.0.1", dir)
    });
    let cache = TempDir::new().unwrap();
    assert_refused(
        mirror(&source, &standby, cache.path()),
        "127.0.0.1",
        "NotValidForName",
        &standby.server,
    );
    let requests = standby.server.requests();
    assert!(
        requests.iter().any(|r| r.path == "/v1/repos/dst/info/refs"),
        "libgit2 listed the standby's refs: {requests:?}"
    );
    assert!(
        refs(&standby.repo).is_empty(),
        "nothing reached the standby"
    );
}

/// `tozai -v mirror --from FROM --to TO --cache CACHE` in `dir`, with `env` added.
fn tozai_mirror(dir: &Path, from: &str, to: &str, env: &[(&str, &str)]) -> Run {
    let sandbox = Sandbox::new(&dir.join("home"));
    let cache = dir.join("cache");
    let mut cmd = tozai_command(
        dir,
        &sandbox,
        &[
            "-v",
            "mirror",
            "--from",
            from,
            "--to",
            to,
            "--cache",
            cache.to_str().unwrap(),
        ],
    );
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy().into_owned();
        if name.starts_with("AWS_") || name.to_ascii_lowercase().ends_with("_proxy") {
            cmd.env_remove(name);
        }
    }
    cmd.env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_ACCESS_KEY_ID", &key().access_key_id)
        .env("AWS_SECRET_ACCESS_KEY", &key().secret_access_key);
    cmd.envs(env.iter().copied());
    Run::of(cmd, format!("tozai mirror --from {from} --to {to}"))
}

#[test]
fn the_cli_refuses_an_untrusted_standby_at_once_with_exit_3() {
    let dir = TempDir::new().unwrap();
    let work = GitRepo::new();
    work.write("a", "a");
    work.commit("one");
    let other = Authority::new("another CA");
    let standby = Served::new("dst", |d| ServerTls::issued_by(&other, &["127.0.0.1"], d));
    let run = tozai_mirror(
        dir.path(),
        work.path().to_str().unwrap(),
        &standby.server.repo_url("dst"),
        &[],
    );
    run.expect_code(3).expect_no_panic();
    assert!(
        run.stderr.contains(
            "the TLS certificate of 127.0.0.1 was refused while listing the target's refs"
        ),
        "{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("retrying"),
        "a refused certificate is not retried:\n{}",
        run.stderr
    );
    assert!(refs(&standby.repo).is_empty());
}

/// An HTTP CONNECT proxy on 127.0.0.1 that tunnels to 127.0.0.1 only and counts the
/// tunnels it opened. Stops accepting when dropped; each tunnel ends with its connection.
struct ConnectProxy {
    port: u16,
    tunnels: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl ConnectProxy {
    fn start() -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let tunnels = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, stopping) = (tunnels.clone(), stop.clone());
        let deadline = Instant::now() + Duration::from_secs(120);
        let accept = std::thread::spawn(move || {
            while !stopping.load(Ordering::SeqCst) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((client, _)) => {
                        let count = count.clone();
                        std::thread::spawn(move || tunnel(client, &count));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Self {
            port,
            tunnels,
            stop,
            accept: Some(accept),
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn tunnels(&self) -> usize {
        self.tunnels.load(Ordering::SeqCst)
    }
}

impl Drop for ConnectProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

/// Answers one `CONNECT 127.0.0.1:PORT` and copies bytes both ways until either side closes.
fn tunnel(mut client: TcpStream, count: &AtomicUsize) {
    let _ = client.set_nonblocking(false);
    let _ = client.set_read_timeout(Some(Duration::from_secs(60)));
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
        match client.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&head);
    let target = head
        .strip_prefix("CONNECT ")
        .and_then(|rest| rest.split(' ').next())
        .filter(|t| t.starts_with("127.0.0.1:"));
    let Some(Ok(server)) = target.map(TcpStream::connect) else {
        let _ = client.write_all(b"HTTP/1.1 403 Forbidden\r\n\r\n");
        return;
    };
    count.fetch_add(1, Ordering::SeqCst);
    let _ = client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n");
    let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    let up = std::thread::spawn(move || {
        let _ = std::io::copy(&mut c2, &mut s2);
        let _ = s2.shutdown(Shutdown::Write);
    });
    let (mut s1, mut c1) = (server, client);
    let _ = std::io::copy(&mut s1, &mut c1);
    let _ = c1.shutdown(Shutdown::Write);
    let _ = up.join();
}

#[test]
fn https_proxy_is_honoured_and_no_proxy_goes_around_it() {
    let dir = TempDir::new().unwrap();
    let source = Served::trusted("src").with_content();
    let standby = Served::trusted("dst");
    let from = location("src").to_string();
    let to = location("dst").to_string();
    let endpoint = source.server.url_prefix();
    // Both repositories on one server for the CLI's single endpoint.
    std::fs::rename(&standby.repo, source.server.repos_root().join("dst")).unwrap();
    let dst = source.server.repos_root().join("dst");

    let proxy = ConnectProxy::start();
    let through = tozai_mirror(
        dir.path(),
        &from,
        &to,
        &[
            ("TOZAI_CODECOMMIT_ENDPOINT", &endpoint),
            ("HTTPS_PROXY", &proxy.url()),
        ],
    );
    through.expect_code(0).expect_no_panic();
    assert!(
        proxy.tunnels() >= 2,
        "the fetch and the push went through the proxy: {} tunnels\n{}",
        proxy.tunnels(),
        through.stderr
    );
    assert_eq!(refs(&dst), refs(&source.repo));

    let work = GitRepo::new();
    work.git(&["fetch", "-q", source.repo.to_str().unwrap(), "main"]);
    work.git(&["checkout", "-q", "FETCH_HEAD"]);
    work.write("common/b.yaml", "b: 1\n");
    work.commit("two");
    work.git(&[
        "push",
        "-q",
        source.repo.to_str().unwrap(),
        "HEAD:refs/heads/main",
    ]);
    let before = proxy.tunnels();
    let around = tozai_mirror(
        dir.path(),
        &from,
        &to,
        &[
            ("TOZAI_CODECOMMIT_ENDPOINT", &endpoint),
            ("HTTPS_PROXY", &proxy.url()),
            ("NO_PROXY", "127.0.0.1"),
        ],
    );
    around.expect_code(0).expect_no_panic();
    assert_eq!(proxy.tunnels(), before, "NO_PROXY: no tunnel");
    assert_eq!(refs(&dst), refs(&source.repo));
}

/// git's `http.proxy` (here in the user's `~/.gitconfig`) sends libgit2 through the proxy,
/// and keeps the first mirror off the pack-as-is push, which would connect directly: the
/// same first mirror without it sends the cache's pack as it is.
#[test]
fn git_configs_http_proxy_is_honoured_and_keeps_the_first_mirror_on_libgit2() {
    let source = Served::trusted("src").with_content();
    let endpoint = source.server.url_prefix();
    let from = location("src").to_string();
    let sent_as_is = "sent the cache's pack as it is";

    let direct = TempDir::new().unwrap();
    source.server.create_repo("direct");
    let run = tozai_mirror(
        direct.path(),
        &from,
        &location("direct").to_string(),
        &[("TOZAI_CODECOMMIT_ENDPOINT", &endpoint)],
    );
    run.expect_code(0).expect_no_panic();
    assert!(run.stderr.contains(sent_as_is), "{}", run.stderr);

    let proxied = TempDir::new().unwrap();
    let proxy = ConnectProxy::start();
    std::fs::create_dir_all(proxied.path().join("home")).unwrap();
    std::fs::write(
        proxied.path().join("home/.gitconfig"),
        format!("[http]\n\tproxy = {}\n", proxy.url()),
    )
    .unwrap();
    let dst = source.server.create_repo("proxied");
    let run = tozai_mirror(
        proxied.path(),
        &from,
        &location("proxied").to_string(),
        &[("TOZAI_CODECOMMIT_ENDPOINT", &endpoint)],
    );
    run.expect_code(0).expect_no_panic();
    assert!(!run.stderr.contains(sent_as_is), "{}", run.stderr);
    assert!(
        proxy.tunnels() >= 2,
        "the fetch and the push went through http.proxy: {} tunnels\n{}",
        proxy.tunnels(),
        run.stderr
    );
    assert_eq!(refs(&dst), refs(&source.repo));
}
