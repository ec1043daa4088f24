//! Two local "regions" for the tests that run the `tozai` binary: a temporary directory
//! holding `tozai.toml`, the bare repositories `tokyo.git` (the primary) and `osaka.git`
//! (the standby), a work tree `work` whose `origin` is `../tokyo.git`, and a sandbox home.
//! Git runs through [`crate::mirror::git`], `tozai` through [`crate::tozai`] in the
//! directory's root, so the config's `./tokyo.git` and `./osaka.git` resolve.

use std::path::{Path, PathBuf};

use tempfile::TempDir;

use crate::mirror::{commit_file, git, rev, try_git};
use crate::{Run, Sandbox, tozai};

/// The two regions, the work tree pushing to tokyo, and the config, in one temporary
/// directory (removed when dropped).
#[derive(Debug)]
pub struct TwoRegions {
    tmp: TempDir,
    work: PathBuf,
    sandbox: Sandbox,
}

impl TwoRegions {
    /// `config` written as `tozai.toml`, both bare repositories empty (`main` unborn), and
    /// the work tree with nothing committed.
    pub fn unborn(config: &str) -> Self {
        let tmp = TempDir::new().expect("cannot create a temporary directory");
        let root = tmp.path();
        std::fs::write(root.join("tozai.toml"), config).expect("cannot write tozai.toml");
        for bare in ["tokyo.git", "osaka.git"] {
            git(root, &["init", "-q", "--bare", "-b", "main", bare]);
        }
        let work = root.join("work");
        std::fs::create_dir(&work).expect("cannot create the work tree");
        git(&work, &["init", "-q", "-b", "main"]);
        git(&work, &["remote", "add", "origin", "../tokyo.git"]);
        let sandbox = Sandbox::new(&root.join("home"));
        Self { tmp, work, sandbox }
    }

    /// [`TwoRegions::unborn`], then a first commit (`common/vpc.yaml`) pushed to tokyo's
    /// `main`; osaka is still empty.
    pub fn new(config: &str) -> Self {
        let w = Self::unborn(config);
        w.commit("common/vpc.yaml", "v1");
        w.push("main");
        w
    }

    /// The temporary directory: where `tozai.toml` and the bare repositories are.
    pub fn root(&self) -> &Path {
        self.tmp.path()
    }

    /// The work tree.
    pub fn work(&self) -> &Path {
        &self.work
    }

    /// The sandbox home `tozai` runs in.
    pub fn sandbox(&self) -> &Sandbox {
        &self.sandbox
    }

    /// Writes `text` to `file` in the work tree and commits it; returns the commit's id.
    pub fn commit(&self, file: &str, text: &str) -> String {
        commit_file(&self.work, file, text)
    }

    /// `git push -q origin REFSPEC` from the work tree (to tokyo).
    pub fn push(&self, refspec: &str) {
        git(&self.work, &["push", "-q", "origin", refspec]);
    }

    /// The commit `reference` names in the bare repository `bare` (a panic if none).
    pub fn head(&self, bare: &str, reference: &str) -> String {
        rev(&self.root().join(bare), reference)
    }

    /// The commit `reference` names in the bare repository `bare`, `None` when it has no
    /// such ref.
    pub fn try_head(&self, bare: &str, reference: &str) -> Option<String> {
        try_git(
            &self.root().join(bare),
            &["rev-parse", "--verify", "-q", reference],
        )
    }

    /// Runs `tozai` in the root with the sandbox; `--cache cache` is added unless the
    /// arguments name a cache.
    pub fn tozai(&self, args: &[&str]) -> Run {
        let mut all = args.to_vec();
        if !all.contains(&"--cache") {
            all.extend(["--cache", "cache"]);
        }
        tozai(self.root(), &self.sandbox, all)
    }
}
