//! `tozai status`, the readiness check: "can we fail over now without losing anything that
//! matters?". The real binary on two local "regions" (bare repositories) with the example's
//! sync rule (`sync.to.osaka.paths = ["common/**", "secondary/**"]`), checked with the git
//! CLI. Commit dates are set with `GIT_COMMITTER_DATE` (the binary reads the real clock).

use std::path::{Path, PathBuf};
use std::process::Command;

use chrono::{DateTime, Duration, DurationRound, Utc};
use serde_json::Value;
use tempfile::TempDir;
use tozai_tests::mirror::{commit_file, git, rev};
use tozai_tests::{Run, Sandbox, tozai};

const CONFIG: &str = r#"
primary = "tokyo"
[regions.tokyo]
aws_region = "ap-northeast-1"
repository = "./tokyo.git"
[regions.osaka]
aws_region = "ap-northeast-3"
repository = "./osaka.git"
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
codepipeline = "core-deploy"
branches = ["main"]
paths = ["common/**", "primary/**"]
exclude = ["**/*.md", "docs/**"]
[[pipeline]]
name = "osaka-core"
region = "osaka"
codepipeline = "core-deploy"
branches = ["main"]
paths = ["common/**", "secondary/**", "osaka-only/**"]
exclude = ["**/*.md", "docs/**"]
"#;

struct World {
    tmp: TempDir,
    work: PathBuf,
    sandbox: Sandbox,
}

impl World {
    /// Both regions in step at one `common/` commit.
    fn new() -> Self {
        Self::with_config(CONFIG)
    }

    fn with_config(config: &str) -> Self {
        let tmp = TempDir::new().unwrap();
        let root = tmp.path();
        std::fs::write(root.join("tozai.toml"), config).unwrap();
        for bare in ["tokyo.git", "osaka.git"] {
            git(root, &["init", "-q", "--bare", "-b", "main", bare]);
        }
        let work = root.join("work");
        std::fs::create_dir(&work).unwrap();
        git(&work, &["init", "-q", "-b", "main"]);
        git(&work, &["remote", "add", "origin", "../tokyo.git"]);
        let sandbox = Sandbox::new(&root.join("home"));
        let w = Self { tmp, work, sandbox };
        w.commit("common/vpc.yaml", "v1");
        w.push("main");
        w.tozai(&["mirror", "-c", "tozai.toml"]).expect_code(0);
        w
    }

    fn root(&self) -> &Path {
        self.tmp.path()
    }

    /// A commit dated now.
    fn commit(&self, file: &str, text: &str) -> String {
        commit_file(&self.work, file, text)
    }

    /// A commit whose committer date is `date` (RFC 3339).
    fn commit_dated(&self, file: &str, text: &str, date: &str) -> String {
        let path = self.work.join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        git(&self.work, &["add", "-A"]);
        let out = Command::new("git")
            .arg("-C")
            .arg(&self.work)
            .args(["-c", "user.name=t", "-c", "user.email=t@tozai.invalid"])
            .args(["commit", "-q", "-m", &format!("change {file}")])
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_COMMITTER_DATE", date)
            .env("GIT_AUTHOR_DATE", date)
            .output()
            .unwrap();
        assert!(out.status.success(), "git commit: {out:?}");
        rev(&self.work, "HEAD")
    }

    fn push(&self, refspec: &str) {
        git(&self.work, &["push", "-q", "origin", refspec]);
    }

    fn head(&self, bare: &str, reference: &str) -> String {
        rev(&self.root().join(bare), reference)
    }

    fn tozai(&self, args: &[&str]) -> Run {
        let mut all = args.to_vec();
        all.extend(["--cache", "cache"]);
        tozai(self.root(), &self.sandbox, all)
    }

    /// `tozai status`, with the next hourly reconciliations the run could have seen (the
    /// hour may turn while it runs).
    fn status(&self, args: &[&str]) -> (Run, Vec<DateTime<Utc>>) {
        let before = next_hour(Utc::now());
        let mut all = vec!["status", "-c", "tozai.toml"];
        all.extend(args);
        let run = self.tozai(&all);
        let after = next_hour(Utc::now());
        (run, vec![before, after])
    }
}

fn next_hour(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(Duration::hours(1)).unwrap() + Duration::hours(1)
}

/// How the table shows a time.
fn shown(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

fn short(id: &str) -> &str {
    &id[..12]
}

/// The line of `run`'s standard output that starts with `start` (after indentation).
fn line<'a>(run: &'a Run, start: &str) -> &'a str {
    run.stdout
        .lines()
        .map(str::trim_start)
        .find(|l| l.starts_with(start))
        .unwrap_or_else(|| panic!("no line starting {start:?}:\n{}", run.stdout))
}

fn last_line(run: &Run) -> &str {
    run.stdout.lines().last().unwrap_or("")
}

/// Asserts that `got` is `want(t)` for one of the times `ts`.
fn assert_one_of(got: &str, ts: &[DateTime<Utc>], want: impl Fn(&str) -> String) {
    assert!(
        ts.iter().any(|t| got == want(&shown(t))),
        "got:  {got}\nwant: {}",
        want(&shown(&ts[0]))
    );
}

fn json_ref<'a>(json: &'a Value, name: &str) -> &'a Value {
    json["refs"]
        .as_array()
        .unwrap_or_else(|| panic!("no refs in {json:#}"))
        .iter()
        .find(|r| r["ref"] == name)
        .unwrap_or_else(|| panic!("{name} not in {json:#}"))
}

/// The false alarm of issue 12: a `primary/`-only push is, by design, not mirrored until
/// the reconciliation. The standby lacks nothing it deploys: behind by policy, exit 0.
#[test]
fn a_primary_only_push_is_behind_by_policy_not_drift() {
    let w = World::new();
    let standby = w.head("osaka.git", "main");
    let first = w.commit("primary/a.yaml", "tokyo only");
    let second = w.commit("primary/b.yaml", "tokyo only");
    w.push("main");

    let (run, next) = w.status(&[]);
    run.expect_code(0);
    assert_one_of(line(&run, "refs/heads/main"), &next, |t| {
        format!(
            "refs/heads/main  behind by policy  standby {} lacks 2 commits of {}, none of which \
             changes what osaka deploys or the sync rule selects: the reconciliation at {t} \
             brings them",
            short(&standby),
            short(&second)
        )
    });
    assert_eq!(
        line(&run, short(&second)),
        format!("{} change primary/b.yaml", short(&second))
    );
    assert_eq!(
        line(&run, short(&first)),
        format!("{} change primary/a.yaml", short(&first))
    );
    assert_one_of(last_line(&run), &next, |t| {
        format!(
            "the standby is ready to fail over: nothing it needs is missing (1 ref behind by \
             policy until the reconciliation at {t})"
        )
    });
    assert!(!run.stdout.contains("DRIFT"), "{}", run.stdout);
    assert_eq!(
        w.head("osaka.git", "main"),
        standby,
        "status changes nothing"
    );
}
