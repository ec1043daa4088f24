//! A CodeCommit git stand-in for tests: git's smart HTTP over loopback, behind CodeCommit's
//! IAM password check.
//!
//! [`GitServer`] runs `lighttpd` (Debian packages `lighttpd` and `lighttpd-mod-openssl`) on
//! `127.0.0.1`, serving HTTPS only (TLS 1.2 and up, as CodeCommit) with a certificate for
//! `127.0.0.1` and `localhost` from the run's CA ([`crate::tls`]; tests of refusals choose
//! another with [`GitServer::start_with_tls`]). lighttpd hands every
//! `/v1/repos/NAME/...` request to `tests/support/codecommit_cgi.py`. That CGI verifies the
//! HTTP Basic login the way CodeCommit does (access key id plus an optional `%SESSION_TOKEN`,
//! a SigV4 password at most 15 minutes old, recomputed in Python with the standard library
//! after awscli's credential helper, sharing no code with tozai's signer), then `exec`s
//! `git http-backend` on the bare repository `<repos_root>/NAME` (no `.git` suffix). Pushes
//! are enabled (`http.receivepack`); lighttpd accepts chunked request bodies, as libgit2 and
//! the git CLI send them for large pushes.
//!
//! | request | answer |
//! |---|---|
//! | no `Authorization`, or not readable Basic | 401 with `WWW-Authenticate: Basic realm="tozai-test"` |
//! | unknown key id, wrong or missing session token, wrong signature | 403 |
//! | password timestamp more than 15 minutes before or after now | 403 |
//! | a path that is not `/v1/repos/NAME/...` | 404 |
//! | a valid login | whatever `git http-backend` answers (404 for a missing repository) |
//!
//! A test hook, opt-in per repository ([`GitServer::after_next_push_advertisement`]): a script
//! that runs once, just after the server has computed its answer to a pusher's
//! `GET .../info/refs?service=git-receive-pack` and before it sends it, so the client plans
//! against refs that have already moved.
//!
//! A signature is accepted for any region in the server's list ([`DEFAULT_REGIONS`] unless
//! given): the password does not carry the region, so the server tries each. The signed host
//! is the request's `Host` without the port, so sign for host `127.0.0.1`.
//!
//! Missing tools are failures, never skips: the panic says what to install (`lighttpd`,
//! `git` with `git-http-backend`, `python3`, coreutils' `timeout`). Each lighttpd runs under
//! `timeout -s KILL 600`, so a test that dies without dropping its server cannot leave it
//! running for more than ten minutes. Set `TOZAI_TEST_PYTHON` to choose the interpreter.
//!
//! ```no_run
//! use tozai::git_auth::{Credentials, GitEndpoint};
//! use tozai_tests::server::GitServer;
//!
//! let repos = tempfile::TempDir::new().unwrap();
//! let credentials = Credentials {
//!     access_key_id: "AKIDTEST".into(),
//!     secret_access_key: "secret".into(),
//!     session_token: None,
//! };
//! let server = GitServer::start(repos.path(), &[credentials.clone()]);
//! server.create_repo("core-infra");
//! let endpoint =
//!     GitEndpoint::codecommit("eu-west-1", "core-infra", Some(&server.url_prefix())).unwrap();
//! assert_eq!(endpoint.url, server.repo_url("core-infra"));
//! let login = endpoint.sign(&credentials, std::time::SystemTime::now());
//! // ... hand `login` to git ...
//! ```

use std::fs::{self, OpenOptions};
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tempfile::TempDir;
use tozai::git_auth::Credentials;

use crate::tls::{self, Authority, Expected, ServerCert, https_exchange};

/// Regions whose signatures a server started with [`GitServer::start`] accepts.
pub const DEFAULT_REGIONS: &[&str] = &[
    "ap-northeast-1",
    "ap-northeast-3",
    "eu-west-1",
    "us-east-1",
    "us-west-2",
];

/// The watchdog: lighttpd is killed after this many seconds whatever happens to the test.
const LIFETIME_SECS: u32 = 600;
/// How long a start may take before it is a failure.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Ports tried when another process takes the chosen one first.
const PORT_ATTEMPTS: u32 = 5;
/// The file name of the after-advertisement test hook in a served repository.
pub const AFTER_ADVERTISE_HOOK: &str = "tozai-after-advertise";
/// The realm of the 401 answer.
pub const REALM: &str = "tozai-test";

/// A running stand-in; see the [module documentation](self). Dropping it kills lighttpd.
#[derive(Debug)]
pub struct GitServer {
    dir: TempDir,
    repos_root: PathBuf,
    tools: Tools,
    port: u16,
    child: Option<Child>,
    starts: u32,
    tls: ServerTls,
    /// The certificate served for [`READINESS_HOST`], and what checks it.
    readiness: (ServerCert, Expected),
}

/// The certificate the server presents to tozai (to any client that sends no SNI name, or
/// another than [`READINESS_HOST`]).
#[derive(Debug, Clone)]
pub struct ServerTls {
    pub cert: ServerCert,
}

impl ServerTls {
    /// A certificate for `127.0.0.1` and `localhost` from this run's CA, written under `dir`:
    /// what tozai trusts through `SSL_CERT_FILE`.
    pub fn from_run_ca(dir: &Path) -> Self {
        Self::issued_by(tls::run_ca(), &["127.0.0.1", "localhost"], dir)
    }

    /// A certificate for `names` from `authority`, written under `dir`.
    pub fn issued_by(authority: &Authority, names: &[&str], dir: &Path) -> Self {
        Self {
            cert: authority.issue(names, dir, "server"),
        }
    }

    /// A certificate from `authority` that names its host in the subject's common name
    /// only, with no subject alternative name: OpenSSL's checks (libgit2's) accept it for
    /// that host, rustls' refuse it.
    pub fn common_name_only(authority: &Authority, host: &str, dir: &Path) -> Self {
        Self {
            cert: authority.issue_common_name_only(host, dir, "server"),
        }
    }
}

/// The SNI name the stand-in's own readiness checks and raw requests ([`GitServer::get`])
/// use: lighttpd answers it with a certificate of its own from the run's CA, so that
/// those checks work whatever certificate a test makes the server present to tozai.
pub const READINESS_HOST: &str = "readiness.tozai.test";

#[derive(Debug, Clone)]
struct Tools {
    lighttpd: PathBuf,
    git: PathBuf,
    python: PathBuf,
    timeout: PathBuf,
}

enum LaunchError {
    PortTaken,
    Failed(String),
}

impl GitServer {
    /// Serves the bare repositories under `repos_root` to anyone signing with one of
    /// `credentials`, for any of [`DEFAULT_REGIONS`].
    pub fn start(repos_root: &Path, credentials: &[Credentials]) -> Self {
        Self::start_for_regions(repos_root, credentials, DEFAULT_REGIONS)
    }

    /// Like [`start`](Self::start), accepting signatures for `regions` only.
    pub fn start_for_regions(
        repos_root: &Path,
        credentials: &[Credentials],
        regions: &[&str],
    ) -> Self {
        Self::start_with(repos_root, credentials, regions, ServerTls::from_run_ca)
    }

    /// Like [`start`](Self::start), presenting the certificate `tls` makes (in the server's
    /// own directory): one tozai must refuse, for the tests of refusals.
    pub fn start_with_tls(
        repos_root: &Path,
        credentials: &[Credentials],
        tls: impl FnOnce(&Path) -> ServerTls,
    ) -> Self {
        Self::start_with(repos_root, credentials, DEFAULT_REGIONS, tls)
    }

    fn start_with(
        repos_root: &Path,
        credentials: &[Credentials],
        regions: &[&str],
        tls: impl FnOnce(&Path) -> ServerTls,
    ) -> Self {
        let tools = Tools::find();
        let dir = tempfile::Builder::new()
            .prefix("tozai-git-server-")
            .tempdir()
            .expect("cannot create the git server's temporary directory");
        let tls = tls(dir.path());
        let readiness = (
            tls::run_ca().issue(&[READINESS_HOST], dir.path(), "readiness"),
            Expected {
                ca_pem: tls::run_ca().pem().to_owned(),
                name: READINESS_HOST.to_owned(),
            },
        );
        for sub in ["htdocs", "uploads"] {
            fs::create_dir(dir.path().join(sub)).expect("cannot create the server's directories");
        }
        let repos_root = fs::canonicalize(repos_root)
            .unwrap_or_else(|e| panic!("repos root {} is not usable: {e}", repos_root.display()));
        let keys: Vec<serde_json::Value> = credentials
            .iter()
            .map(|c| {
                serde_json::json!({
                    "access_key_id": c.access_key_id,
                    "secret_access_key": c.secret_access_key,
                    "session_token": c.session_token,
                })
            })
            .collect();
        let standin = serde_json::json!({
            "repos_root": repos_root,
            "git": tools.git,
            "regions": regions,
            "max_skew_seconds": 900,
            "credentials": keys,
        });
        fs::write(
            dir.path().join("standin.json"),
            serde_json::to_vec_pretty(&standin).expect("JSON"),
        )
        .expect("cannot write the stand-in's configuration");

        let mut server = Self {
            dir,
            repos_root,
            tools,
            port: 0,
            child: None,
            starts: 0,
            tls,
            readiness,
        };
        for _ in 0..PORT_ATTEMPTS {
            server.port = free_port();
            match server.launch() {
                Ok(()) => return server,
                Err(LaunchError::PortTaken) => continue,
                Err(LaunchError::Failed(why)) => panic!("the git server did not start: {why}"),
            }
        }
        panic!("the git server found no free port in {PORT_ATTEMPTS} attempts")
    }

    /// `https://127.0.0.1:PORT`: the value for `TOZAI_CODECOMMIT_ENDPOINT`.
    pub fn url_prefix(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// `https://127.0.0.1:PORT/v1/repos/NAME`.
    pub fn repo_url(&self, name: &str) -> String {
        format!("{}/v1/repos/{name}", self.url_prefix())
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Where the served bare repositories are.
    pub fn repos_root(&self) -> &Path {
        &self.repos_root
    }

    /// Creates the empty bare repository `<repos_root>/NAME` (default branch `main`) and
    /// returns its path.
    pub fn create_repo(&self, name: &str) -> PathBuf {
        let path = self.repos_root.join(name);
        let out = Command::new(&self.tools.git)
            .args(["init", "--quiet", "--bare", "--initial-branch=main"])
            .arg(&path)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .output()
            .expect("cannot run git init");
        assert!(
            out.status.success(),
            "git init --bare {} failed: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        path
    }

    /// Installs `script` (a shell script body, run by `/bin/sh` in the bare repository with
    /// `GIT_DIR` set and the git executable in `$TOZAI_GIT`) to run once, the next time a
    /// pusher reads repository `name`'s refs: after the server computed the advertisement,
    /// before sending it. Returns the path the hook is renamed to when it has run
    /// (`<repo>/tozai-after-advertise.ran`), which exists only once it ran.
    pub fn after_next_push_advertisement(&self, name: &str, script: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let repo = self.repos_root.join(name);
        assert!(repo.is_dir(), "no repository {}", repo.display());
        let hook = repo.join(AFTER_ADVERTISE_HOOK);
        let ran = repo.join(format!("{AFTER_ADVERTISE_HOOK}.ran"));
        let _ = fs::remove_file(&ran);
        fs::write(&hook, format!("#!/bin/sh\nset -e\n{script}\n"))
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", hook.display()));
        fs::set_permissions(&hook, fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|e| panic!("cannot chmod {}: {e}", hook.display()));
        ran
    }

    /// The process id of lighttpd, while it runs (its parent is the `timeout` watchdog).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref()?;
        fs::read_to_string(self.dir.path().join("lighttpd.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// True while the server process runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(None)))
    }

    /// Kills lighttpd and any request it is serving with SIGKILL, as a crash would: a push
    /// in flight is cut off. The port stays reserved for [`restart`](Self::restart).
    pub fn kill(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let watchdog = child.id();
        // `timeout` runs in a process group of its own holding lighttpd and its CGIs: kill
        // the whole group, but only after checking that it really is that group.
        if process_group(watchdog) == Some(watchdog) {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{watchdog}")])
                .stderr(Stdio::null())
                .status();
        } else if let Some(pid) = self
            .lighttpd_pid_file()
            .filter(|&pid| parent_process(pid) == Some(watchdog))
        {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Starts lighttpd again on the same port, after a [`kill`](Self::kill) or not.
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            match self.launch() {
                Ok(()) => return,
                Err(LaunchError::PortTaken) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(LaunchError::PortTaken) => {
                    panic!("the git server cannot restart: port {} is taken", self.port)
                }
                Err(LaunchError::Failed(why)) => panic!("the git server did not restart: {why}"),
            }
        }
    }

    /// The server's logs: lighttpd's error log, then the stand-in's decisions (one line
    /// per refused request, no secrets) and git http-backend's messages. For failure messages.
    pub fn log(&self) -> String {
        let read = |name: &str| fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        format!(
            "--- lighttpd error log\n{}--- stand-in and CGI output\n{}",
            read("error.log"),
            read("lighttpd.out")
        )
    }

    /// The requests answered so far, in order (from lighttpd's access log: no query strings,
    /// no credentials). lighttpd logs a request just after answering it, so this first waits
    /// until the log has been still for 60 ms (at most 2 s).
    pub fn requests(&self) -> Vec<Request> {
        let log = self.dir.path().join("access.log");
        let deadline = Instant::now() + Duration::from_secs(2);
        let (mut last, mut still) = (file_len(&log), 0);
        while still < 3 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            let now = file_len(&log);
            still = if now == last { still + 1 } else { 0 };
            last = now;
        }
        fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter_map(Request::parse)
            .collect()
    }

    /// One HTTP/1.0 GET over TLS of `path_and_query` with an optional Basic login, for tests
    /// of the server's answers without git in between.
    pub fn get(&self, path_and_query: &str, login: Option<(&str, &str)>) -> HttpResponse {
        let mut request = format!(
            "GET {path_and_query} HTTP/1.0\r\nHost: 127.0.0.1:{}\r\n",
            self.port
        );
        if let Some((user, password)) = login {
            let basic = base64(format!("{user}:{password}").as_bytes());
            request.push_str(&format!("Authorization: Basic {basic}\r\n"));
        }
        request.push_str("\r\n");
        let raw = https_exchange(
            self.port,
            &self.readiness.1,
            request.as_bytes(),
            Duration::from_secs(30),
        )
        .unwrap_or_else(|e| panic!("GET {path_and_query}: {e}\n{}", self.log()));
        HttpResponse::parse(&raw)
            .unwrap_or_else(|| panic!("GET {path_and_query}: unreadable answer\n{}", self.log()))
    }

    fn lighttpd_pid_file(&self) -> Option<u32> {
        fs::read_to_string(self.dir.path().join("lighttpd.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Writes the lighttpd configuration for the current port and starts lighttpd, then
    /// waits until it answers with this start's token.
    fn launch(&mut self) -> Result<(), LaunchError> {
        let dir = self.dir.path().to_owned();
        self.starts += 1;
        let token = format!(
            "tozai-git-server {} {} {}",
            std::process::id(),
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
            self.starts
        );
        fs::write(dir.join("htdocs/ready.txt"), &token).expect("cannot write the ready token");
        let _ = fs::remove_file(dir.join("lighttpd.pid"));
        let conf = dir.join("lighttpd.conf");
        fs::write(&conf, self.config()).expect("cannot write lighttpd.conf");
        let out_before = file_len(&dir.join("lighttpd.out"));

        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("lighttpd.out"))
            .expect("cannot open the server's output log");
        let err = out.try_clone().expect("cannot share the output log");
        let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
        let mut child = Command::new(&self.tools.timeout)
            .args(["-s", "KILL", &LIFETIME_SECS.to_string()])
            .arg(&self.tools.lighttpd)
            .arg("-D")
            .arg("-f")
            .arg(&conf)
            .env_clear()
            .env("PATH", path)
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.tools.timeout.display()));

        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                // Bind errors come before the error log is open: on stderr.
                let out = fs::read(dir.join("lighttpd.out")).unwrap_or_default();
                let new = out.get(out_before..).unwrap_or(&out);
                if String::from_utf8_lossy(new).contains("Address already in use") {
                    return Err(LaunchError::PortTaken);
                }
                return Err(LaunchError::Failed(format!(
                    "lighttpd exited ({status}) on port {}\n{}",
                    self.port,
                    self.log()
                )));
            }
            let request = "GET /ready.txt HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
            if let Ok(answer) = https_exchange(
                self.port,
                &self.readiness.1,
                request.as_bytes(),
                Duration::from_secs(1),
            ) && String::from_utf8_lossy(&answer).ends_with(&token)
            {
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() > deadline {
                self.child = Some(child);
                self.kill();
                return Err(LaunchError::Failed(format!(
                    "lighttpd did not answer on port {} within {READY_TIMEOUT:?}\n{}",
                    self.port,
                    self.log()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn config(&self) -> String {
        let dir = self.dir.path();
        let q = |p: &Path| quote(&p.display().to_string());
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("support/codecommit_cgi.py");
        assert!(script.is_file(), "{} is missing", script.display());
        format!(
            r#"# Written by tozai-tests' GitServer for one test.
server.modules = ("mod_openssl", "mod_alias", "mod_cgi", "mod_setenv", "mod_accesslog")
server.bind = "127.0.0.1"
server.port = {port}
# HTTPS only, as CodeCommit: TLS 1.2 and up, HTTP/1.1 (libgit2 speaks nothing else; see
# tests/PARITY.md).
server.feature-flags = ("server.h2proto" => "disable")
ssl.engine = "enable"
ssl.pemfile = {cert}
ssl.privkey = {key}
ssl.openssl.ssl-conf-cmd = ("MinProtocol" => "TLSv1.2")
# The stand-in's own checks ask for this name (SNI) and get a certificate of their own.
$HTTP["host"] == "{readiness_host}" {{
    ssl.pemfile = {readiness_cert}
    ssl.privkey = {readiness_key}
}}
server.document-root = {htdocs}
server.errorlog = {errorlog}
server.pid-file = {pidfile}
server.upload-dirs = ({uploads})
server.tag = "tozai-test"
# A piped logger: lighttpd buffers writes to a plain access log file for a while.
accesslog.filename = {accesslog}
accesslog.format = "%>s %m %U"
# CodeCommit's paths: /v1/repos/NAME/... runs the stand-in with PATH_INFO=/NAME/...
alias.url = ("/v1/repos" => {script})
# After the PATH_INFO split the URL is /v1/repos itself, hence a prefix match, not "/v1/repos/".
$HTTP["url"] =^ "/v1/repos" {{
    cgi.assign = ("" => {python})
}}
setenv.add-environment = ("TOZAI_CODECOMMIT_STANDIN" => {standin})
"#,
            port = self.port,
            cert = q(&self.tls.cert.chain),
            key = q(&self.tls.cert.key),
            readiness_host = READINESS_HOST,
            readiness_cert = q(&self.readiness.0.chain),
            readiness_key = q(&self.readiness.0.key),
            htdocs = q(&dir.join("htdocs")),
            errorlog = q(&dir.join("error.log")),
            pidfile = q(&dir.join("lighttpd.pid")),
            uploads = q(&dir.join("uploads")),
            accesslog = quote(&format!(
                "|exec cat >> {}",
                shell_quote(&dir.join("access.log").display().to_string())
            )),
            script = q(&script),
            python = q(&self.tools.python),
            standin = q(&dir.join("standin.json")),
        )
    }
}

impl Drop for GitServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// awscli from the tests' virtualenv, as an independent oracle for CodeCommit passwords
/// (`aws codecommit credential-helper get`) and as git's credential helper.
///
/// The virtualenv is `$TOZAI_TEST_VENV`, else `<workspace>/.venv` (the test script creates
/// it: `python3 -m venv .venv && .venv/bin/pip install awscli`). A missing awscli is a
/// failure, never a skip. Every run gets a private `HOME` and empty AWS config and
/// credentials files, so nothing but the credentials passed in is used.
#[derive(Debug)]
pub struct AwsCli {
    aws: PathBuf,
    home: TempDir,
}

impl AwsCli {
    pub fn find() -> Self {
        let aws = crate::venv().join("bin").join("aws");
        assert!(
            aws.is_file(),
            "awscli is not installed at {}: create the test virtualenv \
             (python3 -m venv .venv && .venv/bin/pip install awscli, in the workspace root) \
             or set TOZAI_TEST_VENV to a virtualenv that has it",
            aws.display()
        );
        let home = tempfile::Builder::new()
            .prefix("tozai-awscli-")
            .tempdir()
            .expect("cannot create awscli's home");
        for file in ["config", "credentials"] {
            fs::write(home.path().join(file), "").expect("cannot write awscli's config");
        }
        Self { aws, home }
    }

    /// The `aws` executable.
    pub fn path(&self) -> &Path {
        &self.aws
    }

    /// The environment that makes awscli use exactly `credentials` and `region`, trusting
    /// this run's CA (botocore reads `AWS_CA_BUNDLE`, not `SSL_CERT_FILE`).
    pub fn env(&self, credentials: &Credentials, region: &str) -> Vec<(&'static str, String)> {
        let home = self.home.path();
        let mut env = vec![
            ("HOME", home.display().to_string()),
            ("AWS_CA_BUNDLE", tls::ca_file().display().to_string()),
            ("AWS_CONFIG_FILE", home.join("config").display().to_string()),
            (
                "AWS_SHARED_CREDENTIALS_FILE",
                home.join("credentials").display().to_string(),
            ),
            ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
            ("AWS_DEFAULT_REGION", region.to_owned()),
            ("AWS_ACCESS_KEY_ID", credentials.access_key_id.clone()),
            (
                "AWS_SECRET_ACCESS_KEY",
                credentials.secret_access_key.clone(),
            ),
        ];
        if let Some(token) = &credentials.session_token {
            env.push(("AWS_SESSION_TOKEN", token.clone()));
        }
        env
    }

    /// `aws ARGS...` with [`env`](Self::env) and nothing else from the caller's environment
    /// but `PATH`.
    pub fn command(&self, credentials: &Credentials, region: &str) -> Command {
        let mut cmd = Command::new(&self.aws);
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(self.env(credentials, region));
        cmd
    }
}

/// One request the server answered: `401 GET /v1/repos/r/info/refs`.
///
/// Whether a request body came chunked is not recorded: lighttpd de-chunks bodies and drops
/// `Transfer-Encoding` before logging (and before the CGI sees the request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub status: u16,
    pub method: String,
    pub path: String,
}

impl Request {
    /// A line of the access log: `STATUS METHOD PATH`.
    fn parse(line: &str) -> Option<Self> {
        let mut fields = line.split(' ');
        let status = fields.next()?.parse().ok()?;
        let method = fields.next()?.to_owned();
        let path = fields.next()?.to_owned();
        Some(Self {
            status,
            method,
            path,
        })
    }

    /// True for a request with this status, method and path.
    pub fn is(&self, status: u16, method: &str, path: &str) -> bool {
        self.status == status && self.method == method && self.path == path
    }
}

impl std::fmt::Display for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {}", self.status, self.method, self.path)
    }
}

/// An answer to [`GitServer::get`].
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names in lower case, values trimmed, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    fn parse(raw: &[u8]) -> Option<Self> {
        let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = std::str::from_utf8(&raw[..end]).ok()?;
        let mut lines = head.split("\r\n");
        let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        Some(Self {
            status,
            headers,
            body: raw[end + 4..].to_vec(),
        })
    }

    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl Tools {
    fn find() -> Self {
        let lighttpd = find_program("lighttpd", &["/usr/sbin", "/usr/local/sbin", "/sbin"])
            .unwrap_or_else(|| {
                panic!(
                    "lighttpd is not installed (looked on PATH and in /usr/sbin, /usr/local/sbin, /sbin): \
                     install it (Debian/Ubuntu: apt-get install -y lighttpd); tozai's git server tests need it"
                )
            });
        let modules = Path::new("/usr/lib/lighttpd");
        assert!(
            !modules.is_dir() || modules.join("mod_openssl.so").is_file(),
            "lighttpd's TLS module is not installed ({}): install it (Debian/Ubuntu: \
             apt-get install -y lighttpd-mod-openssl); the git server serves HTTPS only",
            modules.join("mod_openssl.so").display()
        );
        let git = find_program("git", &[]).unwrap_or_else(|| {
            panic!("git is not installed: install it (Debian/Ubuntu: apt-get install -y git)")
        });
        let exec_path = Command::new(&git)
            .arg("--exec-path")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
            .unwrap_or_else(|| panic!("`{} --exec-path` failed", git.display()));
        let backend = exec_path.join("git-http-backend");
        assert!(
            backend.is_file(),
            "git-http-backend is missing from {} (`git --exec-path`): install a git that ships it \
             (Debian/Ubuntu: apt-get install -y git)",
            exec_path.display()
        );
        let python = find_python();
        let timeout = find_program("timeout", &[]).unwrap_or_else(|| {
            panic!("`timeout` is not installed: install coreutils (apt-get install -y coreutils)")
        });
        Self {
            lighttpd,
            git,
            python,
            timeout,
        }
    }
}

/// The first executable `name` on PATH, then in `extra` directories.
pub(crate) fn find_program(name: &str, extra: &[&str]) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(extra.iter().map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// The Python interpreter for the stand-ins' scripts: `$TOZAI_TEST_PYTHON`, else `python3`,
/// as an absolute path (`sys.executable`); a missing one is a failure that says what to
/// install.
pub(crate) fn find_python() -> PathBuf {
    let python = std::env::var_os("TOZAI_TEST_PYTHON").unwrap_or_else(|| "python3".into());
    Command::new(&python)
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .filter(|p| p.is_absolute())
        .unwrap_or_else(|| {
            panic!(
                "{} does not run: install python3 (Debian/Ubuntu: apt-get install -y python3) \
                 or point TOZAI_TEST_PYTHON at an interpreter",
                Path::new(&python).display()
            )
        })
}

/// A port that was free a moment ago.
pub(crate) fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("cannot bind a loopback port")
}

/// The process group of `pid`, from /proc.
pub(crate) fn process_group(pid: u32) -> Option<u32> {
    proc_stat_field(pid, 2).and_then(|g| u32::try_from(g).ok())
}

/// The parent of `pid`, from /proc.
pub(crate) fn parent_process(pid: u32) -> Option<u32> {
    proc_stat_field(pid, 1).and_then(|p| u32::try_from(p).ok())
}

/// Field `index` after the command name of /proc/PID/stat (`pid (comm) state ppid pgrp
/// ...`: 0 is the state, 1 the parent, 2 the group, 11 utime, 12 stime). The name may hold
/// spaces, so fields are counted after the last `)`.
pub(crate) fn proc_stat_field(pid: u32, index: usize) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(index)?
        .parse()
        .ok()
}

fn file_len(path: &Path) -> usize {
    fs::metadata(path).map_or(0, |m| usize::try_from(m.len()).unwrap_or(usize::MAX))
}

/// A lighttpd string literal.
fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A POSIX shell word.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Standard base64 with padding.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_table() {
        let rows = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("AKID%tok/+=:pw", "QUtJRCV0b2svKz06cHc="),
        ];
        for (input, want) in rows {
            assert_eq!(base64(input.as_bytes()), want, "{input}");
        }
    }

    #[test]
    fn access_log_lines_parse() {
        let r = Request::parse("200 POST /v1/repos/r/git-receive-pack").unwrap();
        assert!(r.is(200, "POST", "/v1/repos/r/git-receive-pack"));
        assert_eq!(r.to_string(), "200 POST /v1/repos/r/git-receive-pack");
        assert_eq!(Request::parse("garbage"), None);
    }

    #[test]
    fn http_answers_parse() {
        let raw = b"HTTP/1.0 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"x\"\r\n\r\nbody";
        let r = HttpResponse::parse(raw).unwrap();
        assert_eq!(r.status, 401);
        assert_eq!(r.header("www-authenticate"), Some("Basic realm=\"x\""));
        assert_eq!(r.body, b"body");
    }
}
