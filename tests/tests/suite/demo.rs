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
    assert_eq!(out.matches("=> as expected").count(), 9, "{out}");
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
    // Step 7's bad commit is on no branch after the rewind: the developer's clone
    // remembers it in its reflog.
    let bad = s
        .git(&dir.join("work"), &["log", "-g", "--format=%H %s", "main"])
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_suffix(" tokyo: scale the app to 0 tasks")
                .map(str::to_owned)
        })
        .expect("step 7's bad commit in the developer's reflog");
    assert_eq!(
        s.git(&tokyo, &["rev-parse", &format!("{bad}^")]).unwrap(),
        c5
    );
    assert!(
        s.git(&tokyo, &["merge-base", "--is-ancestor", &bad, "main"])
            .is_none(),
        "the rewind left the bad commit off main"
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
    assert!(
        has(&s4, &["push: tag v1.0.0-rc.1 created at", &short(&c3)]),
        "{s4:#?}"
    );
    assert!(
        has(&s4, &["sync-judge: MIRROR to osaka: tags are mirrored"]),
        "{s4:#?}"
    );
    assert!(
        has(&s4, &["mirror: refs/tags/v1.0.0-rc.1 created"]),
        "{s4:#?}"
    );
    assert!(
        has(
            &s4,
            &["osaka ", "osaka-core STARTED", &short(&c3), "whole tree"]
        ),
        "step 3's commit, deployed by main, starts again for the tag: {s4:#?}"
    );
    assert!(!has(&s4, &["tokyo-core STARTED"]), "{s4:#?}");
    let s5 = step(5);
    assert!(has(&s5, &["push: tag v1.0.0 created"]), "{s5:#?}");
    assert!(
        has(&s5, &["sync-judge: MIRROR to osaka: tags are mirrored"]),
        "{s5:#?}"
    );
    assert!(
        has(&s5, &["no target of tokyo runs for tag v1.0.0"]),
        "{s5:#?}"
    );
    assert!(has(&s5, &["mirror: refs/tags/v1.0.0 created"]), "{s5:#?}");
    assert!(has(&s5, &["osaka-core STARTED", &short(&c4)]), "{s5:#?}");
    let s6 = step(6);
    assert!(has(&s6, &["osaka ", "by osaka-oncall"]), "{s6:#?}");
    assert!(has(&s6, &["tokyo-core STARTED", &short(&c5)]), "{s6:#?}");
    assert!(
        has(&s6, &["mirror: refs/heads/main DIVERGED", "left alone"]),
        "{s6:#?}"
    );
    assert!(has(&s6, &["event bus: Sync Failed"]), "{s6:#?}");
    let s7 = step(7);
    let rewind = format!("{}..{}", short(&bad), short(&c5));
    assert!(
        has(&s7, &["tokyo ", "push: branch main", &rewind]),
        "{s7:#?}"
    );
    assert!(
        has(
            &s7,
            &[
                "tokyo-core STARTED",
                &format!("at {}", short(&c5)),
                &format!("since its checkpoint {}", short(&bad))
            ]
        ),
        "the rewind is deployed: {s7:#?}"
    );
    assert!(!has(&s7, &["MIRROR to osaka"]), "{s7:#?}");
    assert!(!has(&s7, &["osaka "]), "nothing happens in osaka: {s7:#?}");
    let s8 = step(8);
    assert!(
        has(&s8, &["sync-judge: nothing to do: already handled"]),
        "{s8:#?}"
    );
    assert!(
        has(&s8, &["push: branch main", &format!("..{}", short(&bad))]),
        "the abandoned push is delivered late: {s8:#?}"
    );
    assert!(has(&s8, &["tokyo-core not started again"]), "{s8:#?}");
    assert!(has(&s8, &["osaka-core not started again"]), "{s8:#?}");
    assert!(!has(&s8, &["STARTED"]), "{s8:#?}");
    assert!(!has(&s8, &["Sync Requested"]), "{s8:#?}");
    assert!(
        out.lines()
            .any(|l| l.contains("main: tokyo at") && l.contains("NOT in step")),
        "the summary does not claim the standby is in step: {out}"
    );

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
    // The tags: the very tag objects, on the standby, at steps 3's and 5's commits.
    for (tag, commit) in [("refs/tags/v1.0.0-rc.1", &c3), ("refs/tags/v1.0.0", &c4)] {
        assert_eq!(head(&osaka, tag), head(&tokyo, tag), "{tag}");
        assert_eq!(s.git(&osaka, &["cat-file", "-t", tag]).unwrap(), "tag");
        assert_eq!(
            head(&osaka, &format!("{tag}^{{commit}}")).as_ref(),
            Some(commit),
            "{tag}"
        );
    }
    // Step 5's docs commit is only reachable from the tag there: main was not mirrored.
    assert!(
        s.git(&osaka, &["merge-base", "--is-ancestor", &c4, "main"])
            .is_none()
    );

    // The recorded starts: which targets, at which commits and refs, in which order.
    let starts: Vec<Value> = std::fs::read_to_string(dir.join("starts.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let got: Vec<(String, String, String)> = starts
        .iter()
        .map(|v| {
            (
                v["target"].as_str().unwrap().to_owned(),
                v["commit"].as_str().unwrap().to_owned(),
                v["ref"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let main = "refs/heads/main";
    let (rc, release) = ("refs/tags/v1.0.0-rc.1", "refs/tags/v1.0.0");
    let want: Vec<(String, String, String)> = [
        ("tokyo-core", &c1, main),
        ("osaka-core", &c1, main),
        ("tokyo-core", &c2, main),
        ("osaka-core", &c3, main),
        // Step 4: the tag is a ref of its own, so the commit main deployed starts again.
        ("osaka-core", &c3, rc),
        ("osaka-core", &c4, release),
        ("osaka-core", &standby_main, main),
        ("tokyo-core", &c5, main),
        // Step 7: the bad commit, then the rewind to step 6's commit, deployed.
        ("tokyo-core", &bad, main),
        ("tokyo-core", &c5, main),
    ]
    .iter()
    .map(|(t, c, r)| ((*t).to_owned(), (*c).clone(), (*r).to_owned()))
    .collect();
    assert_eq!(got, want);
    let mut tokens: Vec<&str> = starts
        .iter()
        .map(|v| v["token"].as_str().unwrap())
        .collect();
    tokens.sort();
    tokens.dedup();
    assert_eq!(
        tokens.len(),
        starts.len(),
        "one token per transition: the rewind to a commit started before is a new one"
    );
    for v in &starts {
        assert_eq!(v["variables"]["TOZAI_COMMIT_ID"], v["commit"], "{v}");
        assert_eq!(v["variables"]["TOZAI_REF"], v["ref"], "{v}");
        assert_eq!(v["kind"], "codepipeline");
        assert_eq!(v["name"], "core-infra-deploy");
        assert!(v["run_id"].as_str().is_some_and(|r| !r.is_empty()), "{v}");
    }

    // The checkpoints: the sync and Tokyo's target at the primary's main (the rewind's
    // commit), Osaka's at the hotfix and at each tag; each target's holds the run of its
    // last start on that ref, and no claim is left pending.
    let store: Value =
        serde_json::from_slice(&std::fs::read(dir.join("state/store.json")).unwrap()).unwrap();
    let cp = |consumer: &str, r: &str| store["checkpoints"][consumer]["core-infra"][r].clone();
    assert_eq!(cp("sync", main)["commit"], c5.as_str());
    assert_eq!(cp("sync", rc)["commit"], c3.as_str());
    assert_eq!(cp("sync", release)["commit"], c4.as_str());
    for (target, r, commit) in [
        ("tokyo-core", main, &c5),
        ("osaka-core", main, &standby_main),
        ("osaka-core", rc, &c3),
        ("osaka-core", release, &c4),
    ] {
        let checkpoint = cp(&format!("target:{target}"), r);
        assert_eq!(checkpoint["commit"], commit.as_str(), "{target} {r}");
        let last_run = starts
            .iter()
            .rev()
            .find(|v| v["target"] == target && v["ref"] == r)
            .map(|v| v["run_id"].clone());
        assert_eq!(Some(checkpoint["run_id"].clone()), last_run, "{target} {r}");
    }
    for (consumer, repositories) in store["checkpoints"].as_object().unwrap() {
        for (r, checkpoint) in repositories["core-infra"].as_object().unwrap() {
            assert!(
                checkpoint["pending"].is_null(),
                "{consumer} {r}: a claim left pending: {checkpoint}"
            );
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
        10
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
    assert_eq!(results(4), ["osaka-core started"]);
    assert_eq!(results(7), ["tokyo-core started", "tokyo-core started"]);
    assert_eq!(
        results(8),
        [
            "tokyo-core already_handled",
            "tokyo-core already_handled",
            "tokyo-core already_handled",
            "osaka-core already_handled"
        ]
    );
    // Step 4's start is for the tag, at step 3's commit; step 7's second start is the
    // rewind, at step 6's commit.
    let started = |step: u64| -> Vec<(String, String)> {
        records
            .iter()
            .filter(|r| r["step"] == step && r["decision"]["function"] == "pipeline-judge")
            .flat_map(|r| {
                let reference = r["decision"]["ref"].as_str().unwrap_or("").to_owned();
                r["decision"]["targets"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|t| t["result"] == "started")
                    .map(move |t| (t["commit"].as_str().unwrap().to_owned(), reference.clone()))
            })
            .collect()
    };
    let c3 = started(3)[0].0.clone();
    assert_eq!(started(4), [(c3, "refs/tags/v1.0.0-rc.1".to_owned())]);
    let c5 = started(6)[1].0.clone();
    let rewind = started(7);
    assert_eq!(rewind.len(), 2);
    assert_ne!(rewind[0].0, c5);
    assert_eq!(rewind[1], (c5, "refs/heads/main".to_owned()));
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
    assert_eq!(started, 10);
    // The mirror's diverged main, in step 6's record.
    assert!(records.iter().any(|r| {
        r["step"] == 6
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
