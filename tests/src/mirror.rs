//! Helpers shared by the mirror tests (local paths and the signing HTTP server): git on bare
//! repositories with no user or system configuration, the branches and tags of a
//! repository as git sees them, commits and remotes for local repositories, and one ref's
//! status in an outcome.

use std::path::Path;
use std::process::Command;

use tozai::adapters::local::ledger::FileLedger;
use tozai::mirror::{MirrorOutcome, RefStatus};
use tozai::ports::GitRemote;

/// git in `dir` with no user or system configuration, not yet run.
fn git_command(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("git");
    cmd.arg("-C")
        .arg(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@tozai.invalid"])
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE");
    cmd
}

/// git in `dir` (a work tree or a bare repository), with no user or system configuration;
/// a failure panics with git's standard error.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = git_command(dir, args).output().expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?} in {} failed: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// [`git`], for a command that may fail: its standard output, trimmed, or `None` when git
/// exits unsuccessfully (as `merge-base --is-ancestor` or `rev-parse --verify -q` do).
pub fn try_git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = git_command(dir, args).output().expect("git runs");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The commit id `rev` names in `dir` (`git rev-parse --verify REV`).
pub fn rev(dir: &Path, rev: &str) -> String {
    git(dir, &["rev-parse", "--verify", rev]).trim().to_owned()
}

/// Writes `text` to `file` (creating its directories) in the work tree `work`, commits
/// everything as "change FILE" and returns the new commit's id.
pub fn commit_file(work: &Path, file: &str, text: &str) -> String {
    let path = work.join(file);
    std::fs::create_dir_all(path.parent().expect("a file has a parent directory"))
        .unwrap_or_else(|e| panic!("cannot create the directory of {}: {e}", path.display()));
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    git(work, &["add", "-A"]);
    git(work, &["commit", "-q", "-m", &format!("change {file}")]);
    rev(work, "HEAD")
}

/// A remote for the repository at the local path `path`, with no credentials.
pub fn local_remote(path: &Path) -> GitRemote {
    GitRemote {
        url: path.display().to_string(),
        shown: path.display().to_string(),
        credentials: None,
        default_branch: None,
    }
}

/// `%(objectname) %(refname)` of every branch and tag, one a line, as git lists them.
pub fn refs(dir: &Path) -> String {
    git(
        dir,
        &[
            "for-each-ref",
            "--format=%(objectname) %(refname)",
            "refs/heads",
            "refs/tags",
        ],
    )
}

/// The lines of [`refs`] whose ref is in `names`.
pub fn refs_named(dir: &Path, names: &[&str]) -> String {
    refs(dir)
        .lines()
        .filter(|l| names.iter().any(|n| l.ends_with(&format!(" {n}"))))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// The standby passes `git fsck --strict` and has exactly the source's branches and tags,
/// but for the backups a `--force` left there (`refs/heads/tozai-backup/...`: see
/// [`backups`]).
pub fn assert_in_step(source: &Path, standby: &Path) {
    git(standby, &["fsck", "--strict", "--no-progress"]);
    let mirrored: String = (refs(standby).lines())
        .filter(|l| !l.contains(" refs/heads/tozai-backup/"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(mirrored, refs(source), "standby vs source");
}

/// The lines of [`refs`] that are backups a `--force` left (`refs/heads/tozai-backup/...`).
pub fn backups(standby: &Path) -> Vec<String> {
    (refs(standby).lines())
        .filter(|l| l.contains(" refs/heads/tozai-backup/"))
        .map(str::to_owned)
        .collect()
}

/// The status of ref `name` (a full name) in an outcome.
pub fn status<'a>(o: &'a MirrorOutcome, name: &str) -> &'a RefStatus {
    &o.refs
        .iter()
        .find(|r| r.reference.full() == name)
        .unwrap_or_else(|| panic!("{name} not in {o:#?}"))
        .status
}

/// The `status` field of ref `name` in `tozai mirror --json` output.
pub fn json_status(v: &serde_json::Value, name: &str) -> String {
    v["refs"]
        .as_array()
        .unwrap_or_else(|| panic!("no refs in {v:#}"))
        .iter()
        .find(|r| r["ref"] == name)
        .unwrap_or_else(|| panic!("{name} not in {v:#}"))["status"]
        .as_str()
        .unwrap_or_else(|| panic!("no status for {name} in {v:#}"))
        .to_owned()
}

/// The mirror's ledger for the standby `repository`, in `dir` (`mirrored.json`), as the CLI
/// keeps it.
pub fn file_ledger(dir: &Path, repository: &str) -> std::sync::Arc<FileLedger> {
    let ledger = FileLedger::open(dir, repository)
        .unwrap_or_else(|e| panic!("cannot open a ledger in {}: {e}", dir.display()));
    std::sync::Arc::new(ledger)
}
