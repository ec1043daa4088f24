//! `tozai status`, the readiness check: "can we fail over now without losing anything that
//! matters?". The real binary on two local "regions" (bare repositories) with the example's
//! sync rule (`sync.to.osaka.paths = ["common/**", "secondary/**"]`), checked with the git
//! CLI. Commit dates are set with `GIT_COMMITTER_DATE` (the binary reads the real clock).

use std::ops::Deref;
use std::process::Command;

use chrono::{DateTime, Duration, DurationRound, Utc};
use serde_json::Value;
use tozai_tests::Run;
use tozai_tests::mirror::{git, rev};
use tozai_tests::two_regions::TwoRegions;

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

/// Both regions in step at one `common/` commit: [`TwoRegions`], mirrored once.
struct World(TwoRegions);

impl World {
    fn new() -> Self {
        Self::with_config(CONFIG)
    }

    fn with_config(config: &str) -> Self {
        let w = Self(TwoRegions::new(config));
        w.tozai(&["mirror", "-c", "tozai.toml"]).expect_code(0);
        w
    }

    /// A commit whose committer date is `date` (RFC 3339).
    fn commit_dated(&self, file: &str, text: &str, date: &str) -> String {
        let path = self.work().join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        git(self.work(), &["add", "-A"]);
        let out = Command::new("git")
            .arg("-C")
            .arg(self.work())
            .args(["-c", "user.name=t", "-c", "user.email=t@tozai.invalid"])
            .args(["commit", "-q", "-m", &format!("change {file}")])
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_COMMITTER_DATE", date)
            .env("GIT_AUTHOR_DATE", date)
            .output()
            .unwrap();
        assert!(out.status.success(), "git commit: {out:?}");
        rev(self.work(), "HEAD")
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

impl Deref for World {
    type Target = TwoRegions;

    fn deref(&self) -> &TwoRegions {
        &self.0
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

/// A `common/` change the mirror has not brought yet: the standby would deploy an older
/// `common/`. Drift, exit 1, naming what selects it.
#[test]
fn a_common_change_not_yet_mirrored_is_drift() {
    let w = World::new();
    let standby = w.head("osaka.git", "main");
    w.commit("primary/a.yaml", "tokyo only");
    let common = w.commit("common/vpc.yaml", "v2");
    w.push("main");

    let (run, _) = w.status(&[]);
    run.expect_code(1);
    assert_eq!(
        line(&run, "refs/heads/main"),
        format!(
            "refs/heads/main  BEHIND  standby {} lacks 2 commits of {}, changing paths that \
             sync.to.osaka, osaka-core select",
            short(&standby),
            short(&common)
        )
    );
    assert_eq!(
        last_line(&run),
        "DRIFT: 1 of 1 refs: the standby is not ready to fail over (`tozai mirror -c \
         tozai.toml` fast-forwards what is behind or missing)"
    );
    let json = w.status(&["--json"]).0;
    json.expect_code(1);
    let main = json_ref(&json.json(), "refs/heads/main").clone();
    assert_eq!(
        (&main["matters"], &main["policy"], &main["drift"]),
        (&Value::Bool(true), &Value::Bool(false), &Value::Bool(true))
    );
    assert_eq!(
        main["selected_by"],
        serde_json::json!(["sync.to.osaka", "osaka-core"])
    );

    // Mirrored: in sync, exit 0.
    w.tozai(&["mirror", "-c", "tozai.toml"]).expect_code(0);
    let (after, _) = w.status(&[]);
    after.expect_code(0);
    assert_eq!(last_line(&after), "the standby is current: 1 ref in sync");
}

/// A path only a standby target deploys (osaka-core's `osaka-only/**`, which the sync rule
/// does not select) matters too: the plan does not mirror it, yet Osaka's deployment lacks it.
#[test]
fn a_path_only_a_standby_target_deploys_matters() {
    let w = World::new();
    let standby = w.head("osaka.git", "main");
    let change = w.commit("osaka-only/queue.yaml", "q");
    w.push("main");
    let (run, _) = w.status(&[]);
    run.expect_code(1);
    assert_eq!(
        line(&run, "refs/heads/main"),
        format!(
            "refs/heads/main  BEHIND  standby {} lacks 1 commit of {}, changing paths that \
             osaka-core select",
            short(&standby),
            short(&change)
        )
    );
}

/// A lag by policy that a scheduled reconciliation should already have brought (the second
/// after the lag began: the first may have run before the push): the reconciliation is
/// overdue, which is drift.
#[test]
fn an_overdue_reconciliation_is_drift() {
    let w = World::new();
    let standby = w.head("osaka.git", "main");
    let dated = (Utc::now() - Duration::hours(3))
        .duration_trunc(Duration::minutes(1))
        .unwrap();
    let change = w.commit_dated(
        "primary/a.yaml",
        "tokyo only",
        &dated.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    );
    w.push("main");

    let (run, _) = w.status(&[]);
    run.expect_code(1);
    assert_eq!(
        line(&run, "refs/heads/main"),
        format!(
            "refs/heads/main  BEHIND BY POLICY  standby {} lacks 1 commit of {}, which does not \
             change what osaka deploys or the sync rule selects: OVERDUE, the reconciliation at \
             {} should have brought it (the lag began by {}, the committer time of the first \
             commit missing)",
            short(&standby),
            short(&change),
            shown(&next_hour(next_hour(dated))),
            shown(&dated)
        )
    );
    assert!(
        last_line(&run).starts_with("DRIFT: 1 of 1 refs"),
        "{}",
        run.stdout
    );
    let json = w.status(&["--json"]).0.json();
    let main = json_ref(&json, "refs/heads/main");
    assert_eq!(main["overdue"], true);
    assert_eq!(main["policy"], true);
    assert_eq!(
        main["missed_reconciliation"],
        next_hour(next_hour(dated)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    assert_eq!(
        main["lag_since"],
        dated.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    assert_eq!(json["drift"], true);
}

/// `--strict` counts a lag by policy as drift.
#[test]
fn strict_counts_a_lag_by_policy_as_drift() {
    let w = World::new();
    let standby = w.head("osaka.git", "main");
    let change = w.commit("primary/a.yaml", "tokyo only");
    w.push("main");
    let (run, next) = w.status(&["--strict"]);
    run.expect_code(1);
    assert_one_of(line(&run, "refs/heads/main"), &next, |t| {
        format!(
            "refs/heads/main  BEHIND BY POLICY  standby {} lacks 1 commit of {}, which does not \
             change what osaka deploys or the sync rule selects: the reconciliation at {t} \
             brings it",
            short(&standby),
            short(&change)
        )
    });
    assert!(
        last_line(&run).starts_with("DRIFT: 1 of 1 refs"),
        "{}",
        run.stdout
    );
    let json = w.status(&["--strict", "--json"]).0;
    json.expect_code(1);
    assert_eq!(json.json()["strict"], true);
    // Without --strict, the same standby is ready.
    w.status(&[]).0.expect_code(0);
}

/// A new branch is missing on the standby by policy when what it changed since it left the
/// base branch does not matter; a tag missing is always drift.
#[test]
fn a_missing_branch_that_changes_nothing_the_standby_needs_is_missing_by_policy() {
    let w = World::new();
    git(w.work(), &["switch", "-q", "-c", "release/tokyo"]);
    let tokyo = w.commit("primary/a.yaml", "tokyo only");
    w.push("release/tokyo");
    let (run, next) = w.status(&[]);
    run.expect_code(0);
    assert_one_of(line(&run, "refs/heads/release/tokyo"), &next, |t| {
        format!(
            "refs/heads/release/tokyo  missing by policy  not on the standby (source at {}, 1 \
             commit of its own), which does not change what osaka deploys or the sync rule \
             selects: the reconciliation at {t} creates it",
            short(&tokyo)
        )
    });
    assert_one_of(last_line(&run), &next, |t| {
        format!(
            "the standby is ready to fail over: nothing it needs is missing (1 ref missing by \
             policy until the reconciliation at {t})"
        )
    });

    git(w.work(), &["switch", "-q", "main"]);
    git(w.work(), &["tag", "v1.0"]);
    w.push("v1.0");
    let (run, _) = w.status(&[]);
    run.expect_code(1);
    assert!(
        run.stdout.contains(&format!(
            "refs/tags/v1.0            MISSING            not on the standby (source at {})\n",
            short(&w.head("tokyo.git", "main"))
        )),
        "{}",
        run.stdout
    );
}

/// `--json`: regions' names and locations apart, each ref's state with both sides'
/// commits (an annotated tag's peeled), ahead/behind counts, what matters, the policy, the
/// next reconciliation; `in_sync`, `drift` and `backups` at the top.
#[test]
fn json_has_structured_fields_and_peels_annotated_tags() {
    let w = World::with_config(
        &CONFIG.replace("tags = [\"v*\"]", "tags = [\"v*\"]\nreconcile = \"15m\""),
    );
    let standby = w.head("osaka.git", "main");
    w.commit("primary/a.yaml", "tokyo only");
    let head = w.commit("primary/b.yaml", "tokyo only");
    git(w.work(), &["tag", "-a", "v2.0", "-m", "release 2.0"]);
    w.push("main");
    w.push("v2.0");
    let tag_object = w.head("tokyo.git", "refs/tags/v2.0");
    assert_ne!(tag_object, head, "an annotated tag is an object of its own");

    let before = Utc::now();
    let run = w.tozai(&["status", "-c", "tozai.toml", "--json"]);
    let after = Utc::now();
    run.expect_code(1);
    let json = run.json();
    assert_eq!(json["primary"]["name"], "tokyo");
    assert_eq!(json["standby"]["name"], "osaka");
    assert!(
        json["primary"]["location"]
            .as_str()
            .unwrap()
            .ends_with("tokyo.git"),
        "{json:#}"
    );
    assert!(
        json["standby"]["location"]
            .as_str()
            .unwrap()
            .ends_with("osaka.git"),
        "{json:#}"
    );
    assert_eq!(json["reconcile"], "15m");
    let next: DateTime<Utc> = json["next_reconciliation"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let quarter =
        |t: DateTime<Utc>| t.duration_trunc(Duration::minutes(15)).unwrap() + Duration::minutes(15);
    assert!(next == quarter(before) || next == quarter(after), "{next}");
    assert_eq!(json["in_sync"], false);
    assert_eq!(json["drift"], true, "the tag is missing");
    assert_eq!(json["backups"], serde_json::json!([]));

    let main = json_ref(&json, "refs/heads/main");
    assert_eq!(main["state"], "behind");
    assert_eq!(main["source"], head.as_str());
    assert_eq!(main["standby"], standby.as_str());
    assert_eq!((&main["ahead"], &main["behind"]), (&0.into(), &2.into()));
    assert_eq!(
        (&main["matters"], &main["policy"]),
        (&false.into(), &true.into())
    );
    assert_eq!(
        (&main["overdue"], &main["drift"]),
        (&false.into(), &false.into())
    );
    assert_eq!(main["next_reconciliation"], json["next_reconciliation"]);
    assert_eq!(main["commits"][0]["commit"], head.as_str());
    assert_eq!(main["commits"][0]["subject"], "change primary/b.yaml");

    let tag = json_ref(&json, "refs/tags/v2.0");
    assert_eq!(tag["state"], "missing");
    assert_eq!(tag["source"], head.as_str(), "peeled, not the tag object");
    assert_eq!(tag["standby"], Value::Null);
    assert_eq!(
        (&tag["matters"], &tag["drift"]),
        (&true.into(), &true.into())
    );

    w.tozai(&["mirror", "-c", "tozai.toml"]).expect_code(0);
    let synced = w.tozai(&["status", "-c", "tozai.toml", "--json"]);
    synced.expect_code(0);
    let json = synced.json();
    assert_eq!(
        (&json["in_sync"], &json["drift"]),
        (&true.into(), &false.into())
    );
    let tag = json_ref(&json, "refs/tags/v2.0");
    assert_eq!(tag["state"], "in_sync");
    assert_eq!(tag["source"], head.as_str());
    assert_eq!(tag["standby"], head.as_str());
    assert_eq!((&tag["ahead"], &tag["behind"]), (&0.into(), &0.into()));
    assert_eq!(
        rev(&w.root().join("osaka.git"), "refs/tags/v2.0"),
        tag_object,
        "the standby holds the tag object itself"
    );
}

#[test]
fn a_reconcile_that_does_not_divide_a_day_is_a_config_error() {
    let w = World::new();
    std::fs::write(
        w.root().join("tozai.toml"),
        CONFIG.replace("tags = [\"v*\"]", "tags = [\"v*\"]\nreconcile = \"7h\""),
    )
    .unwrap();
    let run = w.tozai(&["status", "-c", "tozai.toml"]);
    run.expect_code(2);
    assert!(
        run.stderr
            .contains("tozai.toml:12:13: sync.reconcile = \"7h\"")
            && run.stderr.contains("divides 24 hours"),
        "{}",
        run.stderr
    );
}

/// A commit whose subject is 5 MB on one line: status lists it cut to 200 bytes (with `…`),
/// in text and in JSON, so the whole output stays small.
#[test]
fn a_huge_commit_subject_is_cut() {
    let w = World::new();
    std::fs::create_dir_all(w.work().join("primary")).unwrap();
    std::fs::write(w.work().join("primary/a.yaml"), "tokyo only").unwrap();
    git(w.work(), &["add", "-A"]);
    let message = w.root().join("message.txt");
    std::fs::write(&message, "x".repeat(5 << 20)).unwrap();
    git(w.work(), &["commit", "-q", "-F", message.to_str().unwrap()]);
    let change = rev(w.work(), "HEAD");
    w.push("main");

    let (run, _) = w.status(&[]);
    run.expect_code(0);
    assert_eq!(
        line(&run, short(&change)),
        format!("{} {}…", short(&change), "x".repeat(197))
    );
    assert!(run.stdout.len() < 2048, "{} bytes", run.stdout.len());
    assert!(run.stderr.len() < 1024, "{}", run.stderr);
    let json = w.status(&["--json"]).0;
    assert!(json.stdout.len() < 4096, "{} bytes", json.stdout.len());
    let main = json_ref(&json.json(), "refs/heads/main").clone();
    assert_eq!(
        main["commits"][0]["subject"],
        format!("{}…", "x".repeat(197))
    );
}
