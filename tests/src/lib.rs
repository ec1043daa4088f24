//! Test support: real git repositories driven by the git CLI, git's own account of a diff
//! to check tozai against, and the built `tozai` binary.
//!
//! Every git command runs with a private, empty configuration (no system config, a fixed
//! `HOME` and `XDG_CONFIG_HOME` in a temporary directory, fixed author and committer dates),
//! so results do not depend on the machine. A git command that fails is a panic showing the
//! command and its standard error.

pub mod generate;
pub mod lambda_api;
pub mod mirror;
pub mod server;
pub mod stand_ins;
pub mod timing;
pub mod tls;
pub mod two_regions;

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tempfile::TempDir;

/// git's empty tree: what a root commit is compared with.
pub const EMPTY_TREE: &str = "4b825dc642cb6eb9a060e54bf8d69288fbee4904";

/// Environment variables that would point git (or libgit2) somewhere other than the
/// repository under test, or change its output.
const GIT_ENV_CLEARED: &[&str] = &[
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_CEILING_DIRECTORIES",
    "GIT_CONFIG",
    "GIT_CONFIG_GLOBAL",
    "GIT_CONFIG_SYSTEM",
    "GIT_CONFIG_COUNT",
    "GIT_CONFIG_PARAMETERS",
    "GIT_EXTERNAL_DIFF",
    "GIT_DIFF_OPTS",
];

/// A private home directory: no user or system git configuration reaches the commands run
/// with [`Sandbox::apply`].
#[derive(Debug)]
pub struct Sandbox {
    home: PathBuf,
}

impl Sandbox {
    /// A sandbox whose home is `dir` (created if needed).
    pub fn new(dir: &Path) -> Self {
        let home = dir.to_owned();
        std::fs::create_dir_all(home.join(".config"))
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", home.display()));
        Self { home }
    }

    /// Points `cmd` at the sandbox: its HOME, no system config, fixed identities and dates.
    pub fn apply<'c>(&self, cmd: &'c mut Command) -> &'c mut Command {
        for var in GIT_ENV_CLEARED {
            cmd.env_remove(var);
        }
        cmd.env("HOME", &self.home)
            .env("XDG_CONFIG_HOME", self.home.join(".config"))
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_AUTHOR_NAME", "Tozai Test")
            .env("GIT_AUTHOR_EMAIL", "test@tozai.invalid")
            .env("GIT_COMMITTER_NAME", "Tozai Test")
            .env("GIT_COMMITTER_EMAIL", "test@tozai.invalid")
            .env("GIT_AUTHOR_DATE", "2024-04-01T09:00:00+09:00")
            .env("GIT_COMMITTER_DATE", "2024-04-01T09:00:00+09:00")
            .env("LC_ALL", "C")
    }
}

/// Runs a prepared command; panics with the command line and its standard error unless
/// it succeeds.
fn run_checked(cmd: &mut Command) -> Output {
    let shown = format!("{cmd:?}");
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"));
    if !out.status.success() {
        panic!(
            "command failed ({}): {shown}\nstderr:\n{}\nstdout:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
    }
    out
}

fn os(bytes: &[u8]) -> &OsStr {
    OsStr::from_bytes(bytes)
}

/// A git repository in a temporary directory, on branch `main`, built with the real git CLI.
///
/// Paths are bytes (`&str`, `b"..."`), so names that are not UTF-8 can be written.
#[derive(Debug)]
pub struct GitRepo {
    tmp: TempDir,
    dir: PathBuf,
    sandbox: Sandbox,
}

impl Default for GitRepo {
    fn default() -> Self {
        Self::new()
    }
}

impl GitRepo {
    /// `git init -b main` in a new temporary directory, with a local user name and email.
    pub fn new() -> Self {
        let tmp = TempDir::new().expect("cannot create a temporary directory");
        let dir = tmp.path().join("repo");
        std::fs::create_dir(&dir).expect("cannot create the repository directory");
        let sandbox = Sandbox::new(&tmp.path().join("home"));
        let repo = Self { tmp, dir, sandbox };
        repo.git(&["init", "-q", "-b", "main"]);
        repo.git(&["config", "user.name", "Tozai Test"]);
        repo.git(&["config", "user.email", "test@tozai.invalid"]);
        repo
    }

    /// The work tree.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// A scratch directory next to the repository (not inside it), for configs and such.
    pub fn scratch(&self) -> &Path {
        self.tmp.path()
    }

    /// The sandbox the repository's git commands run in.
    pub fn sandbox(&self) -> &Sandbox {
        &self.sandbox
    }

    /// Runs git in the work tree with raw arguments; returns its standard output.
    pub fn git_bytes<I, A>(&self, args: I) -> Vec<u8>
    where
        I: IntoIterator<Item = A>,
        A: AsRef<OsStr>,
    {
        let mut cmd = Command::new("git");
        cmd.arg("-C").arg(&self.dir).args(args);
        self.sandbox.apply(&mut cmd);
        run_checked(&mut cmd).stdout
    }

    /// Runs git in the work tree; returns its standard output as text.
    pub fn git(&self, args: &[&str]) -> String {
        String::from_utf8(self.git_bytes(args)).expect("git printed text that is not UTF-8")
    }

    fn file(&self, path: &[u8]) -> PathBuf {
        self.dir.join(os(path))
    }

    /// Writes a file (creating its directories) without staging it.
    pub fn write(&self, path: impl AsRef<[u8]>, contents: impl AsRef<[u8]>) -> &Self {
        let file = self.file(path.as_ref());
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)
                .unwrap_or_else(|e| panic!("cannot create {}: {e}", parent.display()));
        }
        std::fs::write(&file, contents)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", file.display()));
        self
    }

    /// `git mv FROM TO` (creating TO's directory).
    pub fn mv(&self, from: impl AsRef<[u8]>, to: impl AsRef<[u8]>) -> &Self {
        let to = to.as_ref();
        if let Some(parent) = self.file(to).parent() {
            std::fs::create_dir_all(parent)
                .unwrap_or_else(|e| panic!("cannot create {}: {e}", parent.display()));
        }
        self.git_bytes([
            OsStr::new("mv"),
            OsStr::new("--"),
            os(from.as_ref()),
            os(to),
        ]);
        self
    }

    /// `git rm PATH`.
    pub fn rm(&self, path: impl AsRef<[u8]>) -> &Self {
        self.git_bytes([
            OsStr::new("rm"),
            OsStr::new("-q"),
            OsStr::new("--"),
            os(path.as_ref()),
        ]);
        self
    }

    /// Makes a file executable, on disk and in the index (`git update-index --chmod=+x`).
    pub fn chmod_x(&self, path: impl AsRef<[u8]>) -> &Self {
        let path = path.as_ref();
        let file = self.file(path);
        let mut perms = std::fs::metadata(&file)
            .unwrap_or_else(|e| panic!("cannot stat {}: {e}", file.display()))
            .permissions();
        perms.set_mode(perms.mode() | 0o111);
        std::fs::set_permissions(&file, perms)
            .unwrap_or_else(|e| panic!("cannot chmod {}: {e}", file.display()));
        self.git_bytes([
            OsStr::new("update-index"),
            OsStr::new("--chmod=+x"),
            OsStr::new("--"),
            os(path),
        ]);
        self
    }

    /// Records a submodule (gitlink, mode 160000) at `path` pointing at commit `sha`
    /// (`git update-index --add --cacheinfo`). The directory is created empty, as for a
    /// submodule that is not checked out, so `git add -A` leaves the entry alone.
    pub fn gitlink(&self, path: &str, sha: &str) -> &Self {
        std::fs::create_dir_all(self.file(path.as_bytes()))
            .unwrap_or_else(|e| panic!("cannot create {path}: {e}"));
        self.git(&[
            "update-index",
            "--add",
            "--cacheinfo",
            &format!("160000,{sha},{path}"),
        ]);
        self
    }

    /// `git add -A` and `git commit`; returns the new commit's id.
    pub fn commit(&self, message: &str) -> String {
        self.git(&["add", "-A"]);
        self.commit_staged(message)
    }

    /// `git commit` of what is staged (no `git add`); returns the new commit's id.
    pub fn commit_staged(&self, message: &str) -> String {
        self.git(&["commit", "-q", "-m", message]);
        self.rev_parse("HEAD")
    }

    /// `git rev-parse --verify REV^{commit}` (or a tree, for `REV^{tree}`): the full id.
    pub fn rev_parse(&self, rev: &str) -> String {
        let spec = if rev.contains("^{") {
            rev.to_owned()
        } else {
            format!("{rev}^{{commit}}")
        };
        self.git(&["rev-parse", "--verify", "-q", &spec])
            .trim()
            .to_owned()
    }

    /// `git switch -c BRANCH` from the current commit.
    pub fn branch(&self, name: &str) -> &Self {
        self.git(&["switch", "-q", "-c", name]);
        self
    }

    /// `git switch BRANCH`.
    pub fn switch(&self, name: &str) -> &Self {
        self.git(&["switch", "-q", name]);
        self
    }

    /// `git merge --no-ff BRANCH` into the current branch; returns the merge commit's id.
    pub fn merge_no_ff(&self, branch: &str, message: &str) -> String {
        self.git(&["merge", "-q", "--no-ff", "-m", message, branch]);
        self.rev_parse("HEAD")
    }
}

/// One line of `git diff --name-status`: the status letter (`R`, not `R100`), the path,
/// and for a rename or copy the old path. Paths are git's exact bytes.
pub type NameStatus = (char, Vec<u8>, Option<Vec<u8>>);

/// What git itself says changed from `a` to `b`:
/// `git -c core.quotepath=false diff --name-status -z -M A B`, parsed.
pub fn git_name_status(repo: &GitRepo, a: &str, b: &str) -> Vec<NameStatus> {
    let out = repo.git_bytes([
        "-c",
        "core.quotepath=false",
        "diff",
        "--no-ext-diff",
        "--name-status",
        "-z",
        "-M",
        a,
        b,
        "--",
    ]);
    parse_name_status_z(&out)
}

/// Parses `--name-status -z` output: `STATUS\0PATH\0`, or `RNNN\0OLD\0NEW\0`.
pub fn parse_name_status_z(out: &[u8]) -> Vec<NameStatus> {
    let mut fields = out.split(|&b| b == 0);
    let mut rows = Vec::new();
    while let Some(status) = fields.next() {
        if status.is_empty() {
            // the terminator after the last field
            assert!(fields.next().is_none(), "empty status in {out:?}");
            break;
        }
        let letter = char::from(status[0]);
        let mut field = || -> Vec<u8> {
            fields
                .next()
                .unwrap_or_else(|| panic!("truncated --name-status -z output: {out:?}"))
                .to_vec()
        };
        let row = match letter {
            'R' | 'C' => {
                let old = field();
                let new = field();
                (letter, new, Some(old))
            }
            _ => (letter, field(), None),
        };
        rows.push(row);
    }
    rows
}

/// The built `tozai` binary, next to the test executable (`target/debug/tozai`).
///
/// Tests in this package cannot use `CARGO_BIN_EXE_tozai` (the binary is in the `tozai-cli`
/// package), so the binary must be built first; a missing one is a failure, never a skip.
pub fn tozai_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("cannot find the test executable");
    let profile_dir = exe
        .parent() // deps/
        .and_then(Path::parent) // target/debug/
        .unwrap_or_else(|| panic!("unexpected test executable location {}", exe.display()));
    let bin = profile_dir.join(format!("tozai{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.is_file(),
        "{} does not exist: build it first: cargo build -p tozai-cli",
        bin.display()
    );
    bin
}

/// How a run of the `tozai` binary ended.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// The command, for failure messages.
    pub shown: String,
}

impl Run {
    /// Runs `cmd` to completion, named `shown` in failure messages.
    pub fn of(mut cmd: Command, shown: String) -> Self {
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"));
        Self {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            shown,
        }
    }
}

impl Run {
    /// Asserts the exit code, showing everything the run printed otherwise.
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code,
            Some(code),
            "{}\n--- stdout\n{}\n--- stderr\n{}",
            self.shown,
            self.stdout,
            self.stderr
        );
        self
    }

    /// Asserts that the run did not panic (no panic message, no backtrace hint).
    pub fn expect_no_panic(&self) -> &Self {
        for bad in ["panicked", "RUST_BACKTRACE"] {
            assert!(
                !self.stderr.contains(bad) && !self.stdout.contains(bad),
                "{}: output mentions {bad:?}\n--- stdout\n{}\n--- stderr\n{}",
                self.shown,
                self.stdout,
                self.stderr
            );
        }
        self
    }

    /// Standard output parsed as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "{}: stdout is not JSON ({e}):\n{}\n--- stderr\n{}",
                self.shown, self.stdout, self.stderr
            )
        })
    }
}

/// Runs the `tozai` binary in `cwd` with `args`, in a sandbox home (so neither git
/// configuration nor `RUST_BACKTRACE`/`TOZAI_LOG` from the caller changes its output).
pub fn tozai<I, A>(cwd: &Path, sandbox: &Sandbox, args: I) -> Run
where
    I: IntoIterator<Item = A>,
    A: AsRef<OsStr>,
{
    let args: Vec<OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    let cmd = tozai_command(cwd, sandbox, &args);
    Run::of(cmd, format!("tozai {args:?} (in {})", cwd.display()))
}

/// The `tozai` command [`tozai`] runs, for a test that wires its streams itself.
pub fn tozai_command<A: AsRef<OsStr>>(cwd: &Path, sandbox: &Sandbox, args: &[A]) -> Command {
    let mut cmd = Command::new(tozai_bin());
    cmd.current_dir(cwd).args(args);
    sandbox.apply(&mut cmd);
    cmd.env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .env_remove("TOZAI_LOG")
        .env("NO_COLOR", "1");
    cmd
}

/// The workspace root (where `examples/` is).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the workspace")
        .to_owned()
}

/// The tests' virtualenv (awscli, moto, cfn-lint, checkov): `$TOZAI_TEST_VENV`, else
/// `<workspace>/.venv` (`bash scripts/setup-test-env.sh` builds it).
pub fn venv() -> PathBuf {
    std::env::var_os("TOZAI_TEST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv"))
}

/// A file under `tests/fixtures/`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}
