//! `tozai demo`, run as a newcomer runs it: it must pass its own checks (exit 0), tell each
//! step's outcome, and leave behind (with `--dir`) exactly the repositories and the starts
//! the Lambdas' code should have produced: checked here with the git CLI and by reading the
//! recorded starts, independently of the demo's own checks.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;
use tozai_tests::{Run, Sandbox, tozai, tozai_command};

/// The brief: the demo finishes in under 15 s (a debug build, on a small machine).
const LIMIT: Duration = Duration::from_secs(15);

struct Scratch {
    dir: TempDir,
    sandbox: Sandbox,
}

impl Scratch {
    fn new() -> Self {
        let dir = TempDir::new().unwrap();
        let sandbox = Sandbox::new(&dir.path().join("home"));
        Self { dir, sandbox }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn demo(&self, args: &[&str]) -> (Run, Duration) {
        let t = Instant::now();
        let mut all = vec!["demo"];
        all.extend_from_slice(args);
        let run = tozai(self.path(), &self.sandbox, &all);
        (run, t.elapsed())
    }

    /// git in `repo` (the sandbox's config), standard output trimmed; `None` on failure.
    fn git(&self, repo: &Path, args: &[&str]) -> Option<String> {
        let mut cmd = Command::new("git");
        cmd.arg("-C").arg(repo).args(args);
        self.sandbox.apply(&mut cmd);
        let out = cmd.output().expect("cannot run git");
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }
}

/// Each commit of `main` (and the hotfix's branch) by its subject.
fn commits_by_subject(s: &Scratch, repo: &Path) -> BTreeMap<String, String> {
    s.git(repo, &["log", "--format=%H %s", "main"])
        .unwrap()
        .lines()
        .map(|l| {
            let (id, subject) = l.split_once(' ').unwrap();
            (subject.to_owned(), id.to_owned())
        })
        .collect()
}

fn lines_of_step(stdout: &str, step: u32) -> Vec<&str> {
    let head = format!("{step}. ");
    let next = format!("{}. ", step + 1);
    stdout
        .lines()
        .skip_while(|l| !l.starts_with(&head))
        .take_while(|l| !l.starts_with(&next) && !l.starts_with("Summary"))
        .collect()
}

fn has(lines: &[&str], parts: &[&str]) -> bool {
    lines.iter().any(|l| parts.iter().all(|p| l.contains(p)))
}

#[test]
fn the_demo_passes_its_checks_and_leaves_the_repositories_and_starts_it_describes() {
    let s = Scratch::new();
    let dir = s.path().join("demo");
    let (run, took) = s.demo(&["--dir", dir.to_str().unwrap()]);
    run.expect_code(0).expect_no_panic();
    assert!(took < LIMIT, "the demo took {took:?}");
    let out = &run.stdout;
    assert_eq!(out.matches("=> as expected").count(), 7, "{out}");
    assert!(!out.contains("NOT AS EXPECTED"), "{out}");
    assert!(out.contains("Every step behaved as expected"), "{out}");

    let tokyo = dir.join("tokyo/core-infra.git");
    let osaka = dir.join("osaka/core-infra.git");
    let by = commits_by_subject(&s, &tokyo);
    let c = |subject: &str| -> String {
        by.get(subject)
            .unwrap_or_else(|| panic!("no commit {subject:?} in the primary: {by:?}"))
            .clone()
    };
    let (c1, c2, c3, c4, c5) = (
        c("vpc: enable DNS hostnames"),
        c("tokyo: scale the app to 6 tasks"),
        c("osaka: keep 3 tasks warm"),
        c("docs: release notes for 1.0.0"),
        c("queue: longer visibility timeout"),
    );
    let short = |id: &str| id[..12].to_owned();

    // The timeline: each step's outcome, from the judges' records.
    let step = |n| lines_of_step(out, n);
    let s1 = step(1);
    assert!(
        has(
            &s1,
            &[
                "tokyo ",
                "sync-judge: MIRROR to osaka",
                "common/templates/vpc.yaml"
            ]
        ),
        "{s1:#?}"
    );
    assert!(
        has(&s1, &["tokyo ", "tokyo-core STARTED", &short(&c1)]),
        "{s1:#?}"
    );
    assert!(
        has(&s1, &["mirror: refs/heads/main updated", &short(&c1)]),
        "{s1:#?}"
    );
    assert!(has(&s1, &["osaka ", "push:", "by tozai-mirror"]), "{s1:#?}");
    assert!(
        has(&s1, &["osaka ", "osaka-core STARTED", &short(&c1)]),
        "{s1:#?}"
    );
    let s2 = step(2);
    assert!(has(&s2, &["sync-judge: not mirrored"]), "{s2:#?}");
    assert!(has(&s2, &["tokyo-core STARTED", &short(&c2)]), "{s2:#?}");
    assert!(!has(&s2, &["osaka "]), "nothing happens in osaka: {s2:#?}");
    let s3 = step(3);
    assert!(
        has(
            &s3,
            &[
                "sync-judge: MIRROR to osaka",
                "secondary/templates/root.yaml"
            ]
        ),
        "{s3:#?}"
    );
    assert!(has(&s3, &["tokyo-core not started"]), "{s3:#?}");
    assert!(has(&s3, &["osaka-core STARTED", &short(&c3)]), "{s3:#?}");
    let s4 = step(4);
    assert!(has(&s4, &["push: tag v1.0.0 created"]), "{s4:#?}");
    assert!(
        has(&s4, &["sync-judge: MIRROR to osaka: tags are mirrored"]),
        "{s4:#?}"
    );
    assert!(
        has(&s4, &["no target of tokyo runs for tag v1.0.0"]),
        "{s4:#?}"
    );
    assert!(has(&s4, &["mirror: refs/tags/v1.0.0 created"]), "{s4:#?}");
    assert!(has(&s4, &["osaka-core STARTED", &short(&c4)]), "{s4:#?}");
    let s5 = step(5);
    assert!(has(&s5, &["osaka ", "by osaka-oncall"]), "{s5:#?}");
    assert!(has(&s5, &["tokyo-core STARTED", &short(&c5)]), "{s5:#?}");
    assert!(
        has(&s5, &["mirror: refs/heads/main DIVERGED", "left alone"]),
        "{s5:#?}"
    );
    assert!(has(&s5, &["event bus: Sync Failed"]), "{s5:#?}");
    let s6 = step(6);
    assert!(
        has(&s6, &["sync-judge: nothing to do: already handled"]),
        "{s6:#?}"
    );
    assert!(has(&s6, &["tokyo-core not started again"]), "{s6:#?}");
    assert!(has(&s6, &["osaka-core not started again"]), "{s6:#?}");
    assert!(!has(&s6, &["STARTED"]), "{s6:#?}");
    assert!(!has(&s6, &["Sync Requested"]), "{s6:#?}");

    // The repositories, as git sees them.
    let head = |repo: &Path, r: &str| s.git(repo, &["rev-parse", "--verify", "-q", r]);
    assert_eq!(head(&tokyo, "refs/heads/main").unwrap(), c5);
    let standby_main = head(&osaka, "refs/heads/main").unwrap();
    assert_ne!(standby_main, c5, "the diverged standby was not overwritten");
    assert_eq!(
        s.git(&osaka, &["log", "-1", "--format=%s", "main"])
            .unwrap(),
        "osaka: hotfix alarm (made in the standby)",
        "the standby's own commit is still there"
    );
    assert_eq!(
        head(&osaka, "main^").unwrap(),
        c3,
        "the hotfix sits on what was mirrored in step 3"
    );
    assert!(
        s.git(
            &tokyo,
            &["cat-file", "-e", &format!("{standby_main}^{{commit}}")]
        )
        .is_none(),
        "nothing is mirrored back to the primary"
    );
    for (earlier, why) in [
        (&c1, "step 1"),
        (&c2, "step 2, carried by step 3"),
        (&c3, "step 3"),
    ] {
        assert!(
            s.git(&osaka, &["merge-base", "--is-ancestor", earlier, "main"])
                .is_some(),
            "{why}'s commit reached the standby's main"
        );
    }
    // The tag: the very tag object, on the standby, at step 4's commit.
    assert_eq!(
        head(&osaka, "refs/tags/v1.0.0"),
        head(&tokyo, "refs/tags/v1.0.0")
    );
    assert_eq!(
        s.git(&osaka, &["cat-file", "-t", "refs/tags/v1.0.0"])
            .unwrap(),
        "tag"
    );
    assert_eq!(head(&osaka, "refs/tags/v1.0.0^{commit}").unwrap(), c4);
    // Step 4's docs commit is only reachable from the tag there: main was not mirrored.
    assert!(
        s.git(&osaka, &["merge-base", "--is-ancestor", &c4, "main"])
            .is_none()
    );

    // The recorded starts: which targets, at which commits, exactly once each.
    let starts: Vec<Value> = std::fs::read_to_string(dir.join("starts.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut got: Vec<(String, String, String)> = starts
        .iter()
        .map(|v| {
            (
                v["target"].as_str().unwrap().to_owned(),
                v["commit"].as_str().unwrap().to_owned(),
                v["ref"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    got.sort();
    let main = "refs/heads/main";
    let mut want: Vec<(String, String, String)> = [
        ("tokyo-core", &c1, main),
        ("osaka-core", &c1, main),
        ("tokyo-core", &c2, main),
        ("osaka-core", &c3, main),
        ("osaka-core", &c4, "refs/tags/v1.0.0"),
        ("osaka-core", &standby_main, main),
        ("tokyo-core", &c5, main),
    ]
    .iter()
    .map(|(t, c, r)| ((*t).to_owned(), (*c).clone(), (*r).to_owned()))
    .collect();
    want.sort();
    assert_eq!(got, want);
    let mut tokens: Vec<&str> = starts
        .iter()
        .map(|v| v["token"].as_str().unwrap())
        .collect();
    tokens.sort();
    tokens.dedup();
    assert_eq!(tokens.len(), starts.len(), "one token per (target, commit)");
    for v in &starts {
        assert_eq!(v["variables"]["TOZAI_COMMIT_ID"], v["commit"], "{v}");
        assert_eq!(v["variables"]["TOZAI_REF"], v["ref"], "{v}");
        assert_eq!(v["kind"], "codepipeline");
        assert_eq!(v["name"], "core-infra-deploy");
        assert!(v["run_id"].as_str().is_some_and(|r| !r.is_empty()), "{v}");
    }

    // The checkpoints: the sync is at the primary's main, Osaka's target at the hotfix.
    let store: Value =
        serde_json::from_slice(&std::fs::read(dir.join("state/store.json")).unwrap()).unwrap();
    let cp =
        |consumer: &str, r: &str| store["checkpoints"][consumer]["core-infra"][r]["commit"].clone();
    assert_eq!(cp("sync", main), c5.as_str());
    assert_eq!(cp("target:tokyo-core", main), c5.as_str());
    assert_eq!(cp("target:osaka-core", main), standby_main.as_str());
    assert_eq!(cp("target:osaka-core", "refs/tags/v1.0.0"), c4.as_str());
    for (target, commits) in store["starts"].as_object().unwrap() {
        for (commit, start) in commits.as_object().unwrap() {
            assert_eq!(start["state"], "started", "{target} at {commit}");
        }
    }

    // The config is the example's with local repositories, and `tozai check` passes it.
    let config = std::fs::read_to_string(dir.join("tozai.toml")).unwrap();
    assert!(
        config.contains("repository = \"./tokyo/core-infra.git\""),
        "{config}"
    );
    assert!(
        config.contains("repository = \"./osaka/core-infra.git\""),
        "{config}"
    );
    tozai(
        s.path(),
        &s.sandbox,
        ["check", "-c", dir.join("tozai.toml").to_str().unwrap()],
    )
    .expect_code(0);

    // A second run replaces the previous demo's directory and makes the same commits.
    let (again, _) = s.demo(&["--dir", dir.to_str().unwrap()]);
    again.expect_code(0);
    assert_eq!(head(&tokyo, "refs/heads/main").unwrap(), c5);
    assert_eq!(
        std::fs::read_to_string(dir.join("starts.jsonl"))
            .unwrap()
            .lines()
            .count(),
        7
    );
}

#[test]
fn json_prints_one_decision_record_a_line() {
    let s = Scratch::new();
    // Its own temporary directory, to see that nothing is left behind.
    let tmp = s.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let mut cmd = tozai_command(s.path(), &s.sandbox, &["demo", "--json"]);
    cmd.env("TMPDIR", &tmp);
    let t = Instant::now();
    let run = Run::of(cmd, "tozai demo --json".into());
    let took = t.elapsed();
    run.expect_code(0).expect_no_panic();
    assert!(took < LIMIT, "the demo took {took:?}");
    let records: Vec<Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(records.len() > 20, "{}", run.stdout);
    let functions: Vec<&str> = records
        .iter()
        .map(|r| r["decision"]["function"].as_str().unwrap())
        .collect();
    for f in ["sync-judge", "pipeline-judge", "mirror"] {
        assert!(functions.contains(&f), "{functions:?}");
    }
    let results = |step: u64| -> Vec<String> {
        records
            .iter()
            .filter(|r| r["step"] == step)
            .flat_map(|r| {
                r["decision"]["targets"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .map(|t| {
                format!(
                    "{} {}",
                    t["target"].as_str().unwrap(),
                    t["result"].as_str().unwrap()
                )
            })
            .collect()
    };
    assert_eq!(results(1), ["tokyo-core started", "osaka-core started"]);
    assert_eq!(results(2), ["tokyo-core started"]);
    assert_eq!(results(3), ["tokyo-core not_started", "osaka-core started"]);
    assert_eq!(
        results(6),
        [
            "tokyo-core already_handled",
            "tokyo-core already_handled",
            "osaka-core already_handled"
        ]
    );
    let started = records
        .iter()
        .flat_map(|r| {
            r["decision"]["targets"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter(|t| t["result"] == "started")
        .count();
    assert_eq!(started, 7);
    // The mirror's diverged main, in step 5's record.
    assert!(records.iter().any(|r| {
        r["step"] == 5
            && r["decision"]["function"] == "mirror"
            && r["decision"]["mirror"]["refs"][0]["status"] == "diverged"
    }));
    // Without --dir, nothing is left behind.
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);
}

#[test]
fn a_directory_that_is_not_a_previous_demo_is_refused() {
    let s = Scratch::new();
    let dir = s.path().join("mine");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("notes.txt"), "mine").unwrap();
    let (run, _) = s.demo(&["--dir", dir.to_str().unwrap()]);
    run.expect_code(2).expect_no_panic();
    assert!(run.stderr.contains("not empty"), "{}", run.stderr);
    assert_eq!(
        std::fs::read_to_string(dir.join("notes.txt")).unwrap(),
        "mine"
    );
}
