//! The CodeCommit git stand-in ([`GitServer`]) with the real git CLI, libgit2 (through
//! tozai's mirror) and awscli: it serves clone, fetch and chunked pushes to a valid SigV4
//! git password, and refuses what CodeCommit refuses (401 without a login, 403 for a wrong
//! secret, token, region, host or a stale timestamp).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

use tempfile::TempDir;
use tozai::adapters::git_mirror::Git2Mirror;
use tozai::git_auth::{Credentials, GitEndpoint, GitLogin};
use tozai::location::Location;
use tozai::mirror::{RefSelection, RefStatus};
use tozai::ports::{GitRemote, Mirror, MirrorRequest};
use tozai_tests::server::{AwsCli, GitServer, REALM};

const REGION: &str = "eu-west-1";

fn key() -> Credentials {
    Credentials {
        access_key_id: "AKIDSTANDIN".into(),
        secret_access_key: "stand-in/secret+KEY".into(),
        session_token: None,
    }
}

fn temporary_key() -> Credentials {
    Credentials {
        access_key_id: "ASIASTANDIN".into(),
        secret_access_key: "temporary/secret".into(),
        session_token: Some("IQoJb3JpZ2luX2VjEXAMPLE/TOKEN+with=specials".into()),
    }
}

/// A server over a fresh repository root, and a scratch directory for clients.
struct World {
    server: GitServer,
    scratch: TempDir,
    _repos: TempDir,
}

impl World {
    fn new(credentials: &[Credentials]) -> Self {
        let repos = TempDir::new().unwrap();
        Self {
            server: GitServer::start(repos.path(), credentials),
            scratch: TempDir::new().unwrap(),
            _repos: repos,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.scratch.path().join(name)
    }

    /// tozai's login for repository `name` on this server, signed at `at`.
    fn login_at(&self, creds: &Credentials, name: &str, at: SystemTime) -> GitLogin {
        GitEndpoint::codecommit(REGION, name, Some(&self.server.url_prefix()))
            .unwrap()
            .sign(creds, at)
    }

    fn login(&self, creds: &Credentials, name: &str) -> GitLogin {
        self.login_at(creds, name, SystemTime::now())
    }

    /// A work tree with a few commits and a tag; the last commit adds `big_file_bytes` of
    /// incompressible data (0 for none).
    fn work_tree(&self, name: &str, big_file_bytes: usize) -> PathBuf {
        let dir = self.path(name);
        std::fs::create_dir(&dir).unwrap();
        git_ok(&dir, &["init", "-q", "-b", "main"], None);
        for (file, text) in [("README.md", "hello\n"), ("common/a.yaml", "a: 1\n")] {
            std::fs::create_dir_all(dir.join(file).parent().unwrap()).unwrap();
            std::fs::write(dir.join(file), text).unwrap();
            git_ok(&dir, &["add", "-A"], None);
            git_ok(&dir, &["commit", "-q", "-m", &format!("add {file}")], None);
        }
        git_ok(&dir, &["tag", "-a", "-m", "first", "v1"], None);
        if big_file_bytes > 0 {
            std::fs::write(dir.join("big.bin"), noise(big_file_bytes)).unwrap();
            git_ok(&dir, &["add", "-A"], None);
            git_ok(&dir, &["commit", "-q", "-m", "add big.bin"], None);
        }
        dir
    }
}

/// Deterministic incompressible bytes (xorshift64*).
fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The credential helper git runs: it answers `get` with the login from the environment,
/// so the password is neither in git's arguments nor in any failure message.
const HELPER: &str = "!f() { test \"$1\" = get || return 0; \
                      echo \"username=$TOZAI_TEST_GIT_USERNAME\"; \
                      echo \"password=$TOZAI_TEST_GIT_PASSWORD\"; }; f";

/// git in `dir` with a private configuration, never prompting; with `login`, through a
/// one-off credential helper.
fn git_command(dir: &Path, args: &[&str], login: Option<&GitLogin>) -> Command {
    let mut cmd = Command::new("git");
    cmd.arg("-C").arg(dir);
    for var in [
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_CONFIG",
        "GIT_CONFIG_COUNT",
        "GIT_CONFIG_PARAMETERS",
        "GIT_TRACE",
        "GIT_TRACE_CURL",
        "SSH_ASKPASS",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "/bin/false")
        .args(["-c", "user.name=t", "-c", "user.email=t@tozai.invalid"])
        .args(["-c", "credential.helper="]);
    if let Some(login) = login {
        cmd.args(["-c", &format!("credential.helper={HELPER}")])
            .env("TOZAI_TEST_GIT_USERNAME", &login.username)
            .env("TOZAI_TEST_GIT_PASSWORD", &login.password);
    }
    cmd.args(args);
    cmd
}

fn git(dir: &Path, args: &[&str], login: Option<&GitLogin>) -> Output {
    git_command(dir, args, login)
        .output()
        .unwrap_or_else(|e| panic!("cannot run git {args:?}: {e}"))
}

fn git_ok(dir: &Path, args: &[&str], login: Option<&GitLogin>) -> String {
    let out = git(dir, args, login);
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs git expecting failure; returns its standard error.
fn git_fails(dir: &Path, args: &[&str], login: Option<&GitLogin>) -> String {
    let out = git(dir, args, login);
    assert!(!out.status.success(), "git {args:?} should have failed");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn refs(git_dir: &Path) -> String {
    git_ok(
        git_dir,
        &[
            "for-each-ref",
            "--format=%(objectname) %(refname)",
            "refs/heads",
            "refs/tags",
        ],
        None,
    )
}

#[test]
fn push_clone_and_fetch_with_a_signed_password_and_a_chunked_push() {
    let w = World::new(&[key()]);
    let bare = w.server.create_repo("core-infra");
    let url = w.server.repo_url("core-infra");
    let src = w.work_tree("src", 5 * 1024 * 1024);

    // More than http.postBuffer (1 MiB): git sends the pack with chunked encoding.
    let login = w.login(&key(), "core-infra");
    let out = git_command(
        &src,
        &["push", "--quiet", &url, "refs/heads/main", "refs/tags/v1"],
        Some(&login),
    )
    .env("GIT_TRACE_CURL", "1")
    .env("GIT_TRACE_CURL_NO_DATA", "1")
    .output()
    .unwrap();
    let trace = String::from_utf8_lossy(&out.stderr);
    let trace: Vec<&str> = trace
        .lines()
        .filter(|l| !l.contains("Authorization"))
        .collect();
    assert!(
        out.status.success(),
        "push failed:\n{}\n{}",
        trace.join("\n"),
        w.server.log()
    );
    assert!(
        trace
            .iter()
            .any(|l| l.contains("Transfer-Encoding: chunked")),
        "the push was not chunked"
    );
    let requests = w.server.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.is(200, "POST", "/v1/repos/core-infra/git-receive-pack")),
        "{requests:?}"
    );
    git_ok(&bare, &["fsck", "--strict", "--no-progress"], None);
    assert_eq!(refs(&bare), refs(&src));

    let clone = w.path("clone");
    let login = w.login(&key(), "core-infra");
    git_ok(
        w.scratch.path(),
        &["clone", "--quiet", &url, "clone"],
        Some(&login),
    );
    git_ok(&clone, &["fsck", "--strict", "--no-progress"], None);
    assert_eq!(
        git_ok(&clone, &["rev-parse", "HEAD"], None),
        git_ok(&src, &["rev-parse", "HEAD"], None)
    );
    assert!(std::fs::read(clone.join("big.bin")).unwrap() == noise(5 * 1024 * 1024));

    // An incremental push and a fetch of it.
    std::fs::write(src.join("README.md"), "hello again\n").unwrap();
    git_ok(&src, &["commit", "-q", "-am", "again"], None);
    let login = w.login(&key(), "core-infra");
    git_ok(&src, &["push", "--quiet", &url, "main"], Some(&login));
    git_ok(&clone, &["fetch", "--quiet", "origin"], Some(&login));
    assert_eq!(
        git_ok(&clone, &["rev-parse", "origin/main"], None),
        git_ok(&src, &["rev-parse", "main"], None)
    );
}

#[test]
fn no_login_is_401_with_a_basic_challenge() {
    let w = World::new(&[key()]);
    w.server.create_repo("r");
    let answer = w
        .server
        .get("/v1/repos/r/info/refs?service=git-upload-pack", None);
    assert_eq!(answer.status, 401);
    assert_eq!(
        answer.header("WWW-Authenticate"),
        Some(format!("Basic realm=\"{REALM}\"").as_str())
    );

    let err = git_fails(
        w.scratch.path(),
        &["ls-remote", &w.server.repo_url("r")],
        None,
    );
    assert!(err.contains("could not read Username"), "{err}");
    assert_eq!(
        w.server
            .requests()
            .last()
            .map(ToString::to_string)
            .as_deref(),
        Some("401 GET /v1/repos/r/info/refs")
    );
}

#[test]
fn a_wrong_secret_is_403() {
    let w = World::new(&[key()]);
    w.server.create_repo("r");
    let mut wrong = key();
    wrong.secret_access_key.push('x');
    let login = w.login(&wrong, "r");
    let err = git_fails(
        w.scratch.path(),
        &["ls-remote", &w.server.repo_url("r")],
        Some(&login),
    );
    assert!(err.contains("403"), "{err}");
    let answer = w.server.get(
        "/v1/repos/r/info/refs?service=git-upload-pack",
        Some((&login.username, &login.password)),
    );
    assert_eq!(answer.status, 403);

    let mut unknown = key();
    unknown.access_key_id = "AKIDUNKNOWN".into();
    let login = w.login(&unknown, "r");
    let err = git_fails(
        w.scratch.path(),
        &["ls-remote", &w.server.repo_url("r")],
        Some(&login),
    );
    assert!(err.contains("403"), "{err}");
    assert!(!w.server.log().contains(&key().secret_access_key));
}

#[test]
fn passwords_older_or_newer_than_15_minutes_are_403() {
    let w = World::new(&[key()]);
    w.server.create_repo("r");
    let url = w.server.repo_url("r");
    let now = SystemTime::now();
    let minutes = |m: u64| Duration::from_secs(60 * m);
    for at in [now - minutes(16), now + minutes(16)] {
        let login = w.login_at(&key(), "r", at);
        let err = git_fails(w.scratch.path(), &["ls-remote", &url], Some(&login));
        assert!(err.contains("403"), "{err}");
    }
    for at in [now - minutes(14), now + minutes(14)] {
        let login = w.login_at(&key(), "r", at);
        git_ok(w.scratch.path(), &["ls-remote", &url], Some(&login));
    }
}

#[test]
fn the_signature_covers_region_host_and_repository() {
    let repos = TempDir::new().unwrap();
    let server = GitServer::start_for_regions(repos.path(), &[key()], &["eu-west-1"]);
    server.create_repo("r");
    server.create_repo("other");
    let scratch = TempDir::new().unwrap();
    let url = server.repo_url("r");
    let now = SystemTime::now();
    let sign = |region: &str, host: &str, path: &str| {
        tozai::git_auth::sign(&key(), region, host, path, now)
    };
    let good = sign("eu-west-1", "127.0.0.1", "/v1/repos/r");
    git_ok(scratch.path(), &["ls-remote", &url], Some(&good));
    for bad in [
        sign("us-east-1", "127.0.0.1", "/v1/repos/r"),
        sign("eu-west-1", "localhost", "/v1/repos/r"),
        sign("eu-west-1", "127.0.0.1:80", "/v1/repos/r"),
        sign("eu-west-1", "127.0.0.1", "/v1/repos/other"),
    ] {
        let err = git_fails(scratch.path(), &["ls-remote", &url], Some(&bad));
        assert!(err.contains("403"), "{err}");
    }
}

#[test]
fn a_session_token_goes_in_the_username() {
    let w = World::new(&[key(), temporary_key()]);
    w.server.create_repo("r");
    let url = w.server.repo_url("r");
    let login = w.login(&temporary_key(), "r");
    assert!(login.username.starts_with("ASIASTANDIN%"));
    git_ok(w.scratch.path(), &["ls-remote", &url], Some(&login));

    let mut wrong_token = temporary_key();
    wrong_token.session_token = Some("another-token".into());
    let mut no_token = temporary_key();
    no_token.session_token = None;
    let mut token_for_a_permanent_key = key();
    token_for_a_permanent_key.session_token = Some("unexpected".into());
    for creds in [wrong_token, no_token, token_for_a_permanent_key] {
        let login = w.login(&creds, "r");
        let err = git_fails(w.scratch.path(), &["ls-remote", &url], Some(&login));
        assert!(err.contains("403"), "{creds:?}: {err}");
    }
}

#[test]
fn unknown_repositories_and_paths_are_404() {
    let w = World::new(&[key()]);
    let login = w.login(&key(), "missing");
    let err = git_fails(
        w.scratch.path(),
        &["ls-remote", &w.server.repo_url("missing")],
        Some(&login),
    );
    assert!(err.contains("not found"), "{err}");
    let basic = Some((login.username.as_str(), login.password.as_str()));
    for path in [
        "/v1/repos/missing/info/refs?service=git-upload-pack",
        "/v1/repos/",
        "/v1/repos/../x/info/refs",
        "/v1/repos/x.git/info/refs",
    ] {
        assert_eq!(w.server.get(path, basic).status, 404, "{path}");
    }
}

#[test]
fn awscli_as_git_credential_helper_is_accepted() {
    let aws = AwsCli::find();
    for creds in [key(), temporary_key()] {
        let w = World::new(std::slice::from_ref(&creds));
        let bare = w.server.create_repo("r");
        let src = w.work_tree("src", 0);
        let helper = format!(
            "!f() {{ test \"$1\" = get || return 0; '{}' --region {REGION} codecommit \
             credential-helper get --ignore-host-check; }}; f",
            aws.path().display()
        );
        let mut cmd = git_command(
            &src,
            &[
                "-c",
                &format!("credential.helper={helper}"),
                "-c",
                "credential.useHttpPath=true",
                "push",
                "--quiet",
                &w.server.repo_url("r"),
                "main",
            ],
            None,
        );
        let out = cmd.envs(aws.env(&creds, REGION)).output().unwrap();
        assert!(
            out.status.success(),
            "push with awscli's helper failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            w.server.log()
        );
        assert_eq!(refs(&bare).lines().count(), 1);
    }
}

#[test]
fn kill_cuts_the_server_and_restart_brings_it_back_on_the_same_url() {
    let mut w = World::new(&[key()]);
    w.server.create_repo("r");
    let prefix = w.server.url_prefix();
    let url = w.server.repo_url("r");
    let pid = w.server.pid().expect("lighttpd's pid");
    assert!(w.server.is_running());

    w.server.kill();
    assert!(!w.server.is_running());
    assert_eq!(w.server.pid(), None);
    // Dead, or a zombie where PID 1 does not reap orphans (as in some containers). SIGKILL
    // is delivered asynchronously: on a busy machine the process may still show as running
    // for a moment after kill(2) returned, so allow it up to 5 s to go.
    let gone = || {
        let state = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        (state.is_empty() || state.contains("State:\tZ"), state)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !gone().0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let (dead, state) = gone();
    assert!(dead, "lighttpd {pid} survived: {state}");
    let login = w.login(&key(), "r");
    let err = git_fails(w.scratch.path(), &["ls-remote", &url], Some(&login));
    assert!(
        err.contains("Failed to connect") || err.contains("Connection refused"),
        "{err}"
    );

    w.server.restart();
    assert_eq!(w.server.url_prefix(), prefix);
    assert_ne!(w.server.pid(), Some(pid));
    git_ok(w.scratch.path(), &["ls-remote", &url], Some(&login));
}

#[test]
fn libgit2_pushes_through_tozai_mirror_with_signed_passwords() {
    let w = World::new(&[temporary_key()]);
    let bare = w.server.create_repo("standby");
    let src = w.work_tree("src", 3 * 1024 * 1024);
    // The standby as the CLI and the Lambdas reach it: a CodeCommit location, the endpoint
    // override, a password signed afresh for every request.
    let standby = Location::CodeCommit {
        region: REGION.into(),
        name: "standby".into(),
    };
    let target =
        tozai::remote::codecommit(&standby, temporary_key(), Some(&w.server.url_prefix())).unwrap();
    assert_eq!(target.url, w.server.repo_url("standby"));
    let request = MirrorRequest {
        source: GitRemote {
            url: src.display().to_string(),
            shown: "src".into(),
            credentials: None,
            default_branch: None,
        },
        target,
        selection: RefSelection::all(),
        force: false,
        dry_run: false,
        ledger: None,
    };
    let outcome = Git2Mirror::new(w.path("cache"))
        .mirror(&request, None)
        .unwrap_or_else(|e| panic!("{e:#}\n{}", w.server.log()));
    for r in &outcome.refs {
        assert!(
            matches!(r.status, RefStatus::Created { .. }),
            "{r:?}\n{}",
            w.server.log()
        );
    }
    git_ok(&bare, &["fsck", "--strict", "--no-progress"], None);
    assert_eq!(refs(&bare), refs(&src));
    // libgit2 (1.9) always streams the pack with `Transfer-Encoding: chunked` (seen in
    // lighttpd's request-header debug log); lighttpd's access log does not keep that header.
    let requests = w.server.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.is(200, "POST", "/v1/repos/standby/git-receive-pack")),
        "{requests:?}"
    );
}
