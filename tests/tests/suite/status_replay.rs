//! `tozai status` and `tozai replay`, the operator's commands, run as the real binary on two
//! local "regions" (bare repositories), checked with the git CLI; `replay --publish` against
//! moto's EventBridge.

use serde_json::{Value, json};
use tozai_tests::mirror::git;
use tozai_tests::stand_ins::Moto;
use tozai_tests::two_regions::TwoRegions;
use tozai_tests::{Run, tozai_command};

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
[sync.to.tokyo]
paths = ["common/**", "primary/**"]
[[pipeline]]
name = "tokyo-core"
region = "tokyo"
codepipeline = "core-deploy"
branches = ["main"]
paths = ["common/**", "primary/**"]
[[pipeline]]
name = "osaka-core"
region = "osaka"
codepipeline = "core-deploy"
branches = ["main"]
paths = ["common/**", "secondary/**"]
"#;

/// Both regions, the work tree, and the first commit pushed to tokyo.
fn world() -> TwoRegions {
    TwoRegions::new(CONFIG)
}

fn states(run: &Run) -> Vec<(String, String)> {
    run.json()["refs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["ref"].as_str().unwrap().to_owned(),
                r["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn status_reports_behind_missing_and_diverged_and_exits_1_on_drift() {
    let w = world();
    w.tozai(&["mirror", "-c", "tozai.toml"]).expect_code(0);
    let quiet = w.tozai(&["status", "-c", "tozai.toml"]);
    quiet.expect_code(0);
    assert!(
        quiet.stdout.contains("the standby is current"),
        "{}",
        quiet.stdout
    );

    for i in 0..3 {
        w.commit("common/vpc.yaml", &format!("v{}", i + 2));
    }
    w.push("main");
    git(w.work(), &["tag", "v1.0"]);
    w.push("v1.0");
    // Someone pushes a release branch, with a commit of their own, straight to the standby.
    git(w.work(), &["switch", "-q", "-c", "hotfix"]);
    w.commit("common/hotfix.yaml", "made on the standby");
    git(
        w.work(),
        &[
            "push",
            "-q",
            "../osaka.git",
            "HEAD:refs/heads/release/direct",
        ],
    );
    git(w.work(), &["switch", "-q", "main"]);
    // And a tag the sync does not select never counts.
    git(w.work(), &["tag", "nightly"]);
    w.push("nightly");

    let drift = w.tozai(&["status", "-c", "tozai.toml", "--json"]);
    drift.expect_code(1);
    let mut got = states(&drift);
    got.sort();
    assert_eq!(
        got,
        [
            ("refs/heads/main".to_owned(), "behind".to_owned()),
            (
                "refs/heads/release/direct".to_owned(),
                "diverged".to_owned()
            ),
            ("refs/tags/v1.0".to_owned(), "missing".to_owned()),
        ]
    );
    let json = drift.json();
    let main = json["refs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["ref"] == "refs/heads/main")
        .unwrap();
    assert_eq!(main["behind"], 3, "git rev-list --count says 3");
    assert_eq!(
        main["standby"].as_str().unwrap(),
        w.head("osaka.git", "main")
    );

    let table = w.tozai(&["status", "-c", "tozai.toml"]);
    table.expect_code(1);
    assert!(table.stdout.contains("3 commits"), "{}", table.stdout);
    assert!(table.stdout.contains("DRIFT: 3 of 3"), "{}", table.stdout);
    // status changes nothing.
    assert_ne!(w.head("osaka.git", "main"), w.head("tokyo.git", "main"));

    w.tozai(&["mirror", "-c", "tozai.toml"]).expect_code(1);
    let after = w.tozai(&["status", "-c", "tozai.toml", "--json"]);
    after.expect_code(1);
    let mut got = states(&after);
    got.sort();
    assert_eq!(got[0], ("refs/heads/main".into(), "in_sync".into()));
    assert_eq!(
        got[1],
        ("refs/heads/release/direct".into(), "diverged".into())
    );
    assert_eq!(got[2], ("refs/tags/v1.0".into(), "in_sync".into()));
}

#[test]
fn replay_is_a_dry_run_until_executed_and_follows_the_sync_rule() {
    let w = world();
    w.tozai(&["mirror", "-c", "tozai.toml"]).expect_code(0);
    let standby_before = w.head("osaka.git", "main");
    let osaka_change = w.commit("secondary/root.yaml", "dr");
    w.push("main");

    let dry = w.tozai(&["replay", "-c", "tozai.toml", "--commit", &osaka_change]);
    dry.expect_code(0);
    assert!(dry.stdout.contains("would mirror"), "{}", dry.stdout);
    assert!(
        dry.stdout.contains(&format!(
            "would move osaka's refs/heads/main to {}: then osaka's judge would start: osaka-core",
            &osaka_change[..12]
        )),
        "{}",
        dry.stdout
    );
    assert_eq!(
        w.head("osaka.git", "main"),
        standby_before,
        "a dry run pushes nothing"
    );

    let json = w.tozai(&[
        "replay",
        "-c",
        "tozai.toml",
        "--commit",
        &osaka_change,
        "--json",
    ]);
    json.expect_code(0);
    let j = json.json();
    assert_eq!(j["plan"]["sync"]["mirror"], true);
    assert_eq!(j["plan"]["after"], osaka_change.as_str());
    assert_eq!(j["mirror"]["dry_run"], true);
    assert_eq!(j["mirror"]["refs"][0]["status"], "updated");

    let run = w.tozai(&[
        "replay",
        "-c",
        "tozai.toml",
        "--commit",
        &osaka_change,
        "--execute",
    ]);
    run.expect_code(0);
    assert_eq!(w.head("osaka.git", "main"), osaka_change);

    // A Tokyo-only change: the sync rule does not mirror it, so --execute does not either.
    let tokyo_change = w.commit("primary/root.yaml", "tokyo only");
    w.push("main");
    let skipped = w.tozai(&[
        "replay",
        "-c",
        "tozai.toml",
        "--commit",
        &tokyo_change,
        "--execute",
    ]);
    skipped.expect_code(0);
    assert!(
        skipped.stdout.contains("not mirrored"),
        "{}",
        skipped.stdout
    );
    assert_eq!(w.head("osaka.git", "main"), osaka_change);

    // A standby pushed to directly is never rewound without --force.
    let common = w.commit("common/vpc.yaml", "v9");
    w.push("main");
    git(
        w.work(),
        &[
            "push",
            "-q",
            "--force",
            "../osaka.git",
            &format!("{tokyo_change}~1:refs/heads/main"),
        ],
    );
    let other = w.commit("secondary/other.yaml", "x");
    git(
        w.work(),
        &[
            "push",
            "-q",
            "--force",
            "../osaka.git",
            "HEAD:refs/heads/main",
        ],
    );
    git(w.work(), &["reset", "-q", "--hard", &common]);
    let diverged = w.tozai(&[
        "replay",
        "-c",
        "tozai.toml",
        "--commit",
        &common,
        "--execute",
    ]);
    diverged.expect_code(1);
    assert!(diverged.stdout.contains("DIVERGED"), "{}", diverged.stdout);
    assert_eq!(w.head("osaka.git", "main"), other, "left alone");
    w.tozai(&[
        "replay",
        "-c",
        "tozai.toml",
        "--commit",
        &common,
        "--execute",
        "--force",
    ])
    .expect_code(0);
    assert_eq!(w.head("osaka.git", "main"), common);

    // Usage errors name what is wrong.
    let bad = w.tozai(&["replay", "-c", "tozai.toml", "--commit", "nope"]);
    bad.expect_code(2);
    assert!(bad.stderr.contains("nope"), "{}", bad.stderr);
    w.tozai(&["replay", "-c", "tozai.toml", "--commit", &common, "--force"])
        .expect_code(2);
}

#[test]
fn replay_can_publish_the_sync_judges_event() {
    let w = world();
    let change = w.commit("common/vpc.yaml", "v2");
    w.push("main");
    let moto = Moto::start();
    let queue = moto.sqs_queue_receiving(
        "ap-northeast-1",
        "tozai",
        &json!({"source": ["tozai"], "detail-type": ["Sync Requested"]}),
    );
    let credentials = Moto::credentials();
    let mut cmd = tozai_command(
        w.root(),
        w.sandbox(),
        &[
            "replay",
            "-c",
            "tozai.toml",
            "--commit",
            &change,
            "--publish",
            "--event-bus",
            "tozai",
        ],
    );
    cmd.env("AWS_ACCESS_KEY_ID", &credentials.access_key_id)
        .env("AWS_SECRET_ACCESS_KEY", &credentials.secret_access_key)
        .env("AWS_ENDPOINT_URL_EVENTBRIDGE", moto.endpoint_url())
        .env("AWS_EC2_METADATA_DISABLED", "true");
    let run = Run::of(cmd, "tozai replay --publish".into());
    run.expect_code(0);
    let last: Vec<&str> = run.stdout.lines().rev().take(2).collect();
    assert_eq!(
        last,
        [
            "once it has mirrored, osaka's judge starts: osaka-core",
            &format!(
                "published Sync Requested for refs/heads/main at {} on bus tozai in ap-northeast-1: the mirror Lambda takes it from here",
                &change[..12]
            ),
        ],
        "{}",
        run.stdout
    );
    let events: Vec<Value> = moto.received(&queue);
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0]["detail"],
        json!({"repository": "tokyo", "ref": "refs/heads/main", "commit": change,
               "reason": "replay: changed paths match its rule"})
    );
    let parsed = tozai::event::from_value(events[0].clone()).unwrap();
    assert!(matches!(
        parsed,
        tozai::event::Inbound::SyncRequested { .. }
    ));
}
