//! Helpers shared by the mirror tests (local paths and the signing HTTP server): git on bare
//! repositories with no user or system configuration, the branches and tags of a
//! repository as git sees them, and one ref's status in an outcome.

use std::path::Path;
use std::process::Command;

use tozai::mirror::{MirrorOutcome, RefStatus};

/// git in `dir` (a work tree or a bare repository), with no user or system configuration;
/// a failure panics with git's standard error.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@tozai.invalid"])
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?} in {} failed: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
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

/// The standby passes `git fsck --strict` and has exactly the source's branches and tags.
pub fn assert_in_step(source: &Path, standby: &Path) {
    git(standby, &["fsck", "--strict", "--no-progress"]);
    assert_eq!(refs(standby), refs(source), "standby vs source");
}

/// The status of ref `name` (a full name) in an outcome.
pub fn status<'a>(o: &'a MirrorOutcome, name: &str) -> &'a RefStatus {
    &o.refs
        .iter()
        .find(|r| r.reference.full() == name)
        .unwrap_or_else(|| panic!("{name} not in {o:#?}"))
        .status
}
