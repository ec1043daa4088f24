//! The infrastructure in `infra/`, checked without an AWS account:
//!
//! - the templates, SAM ones translated offline by aws-sam-translator, lint clean with
//!   cfn-lint (informational checks on) and checkov (`--skip-download`), every checkov
//!   suppression carrying its reason and actually used;
//! - the EventBridge event patterns, taken from the templates themselves as CloudFormation
//!   would evaluate them with the parameters `infra/params.py` derives from
//!   `examples/tozai.toml`, put on moto's EventBridge (an independent pattern matcher) with
//!   SQS targets, then fed real-shaped events (the CodeCommit docs sample of
//!   `shared/FACTS.md`, adapted) and counter-examples: pushes to the configured branches and
//!   tags reach the functions; other branches, other repositories, pull requests, comments
//!   and other sources do not;
//! - every IAM policy names exactly the expected actions and resources, no `*` anywhere,
//!   and each judge's grants are exactly the AWS calls its adapters make (read from
//!   `shared/src/adapters/aws.rs`); the judges' timeouts stay under the start lease;
//! - every asynchronous path has a retry policy and a dead-letter destination, every function
//!   an alarm, a log group with retention and the settings `shared/src/lambda.rs` reads;
//! - a failover is a parameter change (both roots deploy the same stacks; `primary` moves
//!   the sync), and `aws cloudformation package` (the deploy command's first step) resolves
//!   every nested template and package (against moto's S3).
//!
//! The evaluation is `tests/support/infra_templates.py` (cfn-lint's YAML decoder, the SAM
//! transform, a small intrinsic-function evaluator); the expectations are here. Tools come
//! from the tests' virtualenv (`$TOZAI_TEST_VENV`, else `.venv`: `bash
//! scripts/setup-test-env.sh`); a missing tool is a failure saying what to install.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};
use tempfile::TempDir;
use tozai_tests::stand_ins::{MOTO_ACCOUNT_ID, Moto};
use tozai_tests::{venv, workspace_root};

const TOKYO: &str = "ap-northeast-1";
const OSAKA: &str = "ap-northeast-3";
const REPO: &str = "core-infra";

// ---------------------------------------------------------------- tools

/// A program of the tests' virtualenv; missing is a failure that says what to install.
fn tool(name: &str) -> PathBuf {
    let path = venv().join("bin").join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `bash scripts/setup-test-env.sh` in the workspace root (it installs \
         cfn-lint, aws-sam-translator, checkov, awscli and moto from \
         scripts/requirements-test.txt into .venv), or point TOZAI_TEST_VENV at a virtualenv \
         that has them",
        path.display()
    );
    path
}

fn run(mut cmd: Command) -> Output {
    let shown = format!("{cmd:?}");
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `infra_templates.py ARGS` in the workspace root; its standard output as JSON.
fn templates(args: &[&str]) -> Value {
    let mut cmd = Command::new(tool("python"));
    cmd.current_dir(workspace_root())
        .arg(workspace_root().join("tests/support/infra_templates.py"))
        .args(args);
    let out = run(cmd);
    assert!(
        out.status.success(),
        "infra_templates.py {args:?} failed:\n{}{}",
        text(&out.stderr),
        text(&out.stdout)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "infra_templates.py {args:?} printed no JSON ({e}):\n{}",
            text(&out.stdout)
        )
    })
}

/// Every template under `infra/`, SAM translated, in a temporary directory.
fn translated() -> TempDir {
    let out = TempDir::new().expect("cannot create a temporary directory");
    let written = templates(&["translate", "infra", out.path().to_str().unwrap()]);
    assert!(
        written.as_array().is_some_and(|w| w.len() >= 6),
        "expected the common, primary and secondary templates, got {written}"
    );
    out
}

/// What each region's roots deploy, for a config (see `infra_templates.py model`).
fn model(config: &Path) -> Value {
    model_with(config, &[])
}

/// [`model`] with root parameter overrides (`KEY=VALUE`), as `scripts/deploy.sh -- KEY=VALUE`
/// passes them to both roots.
fn model_with(config: &Path, overrides: &[&str]) -> Value {
    let mut args = vec!["model", "infra", config.to_str().unwrap()];
    args.extend_from_slice(overrides);
    templates(&args)
}

/// The model of `examples/tozai.toml`, evaluated once for every test that reads it.
fn example_model() -> &'static Value {
    static MODEL: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    MODEL.get_or_init(|| model(&workspace_root().join("examples/tozai.toml")))
}

/// The root each region deploys with `scripts/deploy.sh --home tokyo`.
fn deployed<'m>(model: &'m Value, region: &str) -> &'m Value {
    let root = if region == "tokyo" {
        "primary"
    } else {
        "secondary"
    };
    &model[region]["roots"][root]
}

fn stacks(root: &Value) -> BTreeSet<String> {
    root["stacks"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|s| {
            s.as_str()
                .unwrap_or_else(|| panic!("not a string: {s}"))
                .to_owned()
        })
        .collect()
}

// ---------------------------------------------------------------- linters

#[test]
fn the_translated_templates_are_clean_for_cfn_lint_with_informational_checks() {
    let dir = translated();
    let mut cmd = Command::new(tool("cfn-lint"));
    cmd.current_dir(dir.path())
        .args(["--include-checks", "I", "--format", "parseable", "--"])
        .args([
            "common/table.yaml",
            "common/alarms.yaml",
            "common/pipeline-judge.yaml",
            "common/sync.yaml",
            "primary/root.yaml",
            "secondary/root.yaml",
        ]);
    let out = run(cmd);
    assert!(
        out.status.success() && out.stdout.is_empty(),
        "cfn-lint found problems (exit {:?}); suppress one only in the template's Metadata, \
         with a comment saying why:\n{}{}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[test]
fn checkov_fails_nothing_and_every_suppression_says_why_and_is_used() {
    let dir = translated();
    let mut cmd = Command::new(tool("checkov"));
    cmd.current_dir(dir.path())
        .args([
            "--skip-download",
            "--framework",
            "cloudformation",
            "--compact",
        ])
        .args(["-o", "json", "-d", "."])
        .env("BC_SKIP_MAPPING", "TRUE")
        .env("CHECKOV_RUN_SCA_PACKAGE_SCAN_V2", "false");
    let out = run(cmd);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "checkov printed no JSON report ({e}):\n{}{}",
            text(&out.stdout),
            text(&out.stderr)
        )
    });
    let results = &report["results"];
    let failed: Vec<String> = results["failed_checks"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| format!("{} {} {}", c["check_id"], c["resource"], c["file_path"]))
        .collect();
    assert!(
        failed.is_empty()
            && results["parsing_errors"]
                .as_array()
                .is_none_or(Vec::is_empty),
        "checkov failed checks (fix them, or suppress one in the resource's Metadata with a \
         comment saying why):\n{}\nparsing errors: {}",
        failed.join("\n"),
        results["parsing_errors"]
    );
    assert!(
        report["summary"]["passed"].as_u64().unwrap_or(0) >= 30,
        "checkov checked suspiciously little: {}",
        report["summary"]
    );
    let skipped: BTreeSet<(String, String, String)> = results["skipped_checks"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            let file = c["file_path"].as_str().unwrap().trim_start_matches('/');
            let resource = c["resource"].as_str().unwrap();
            let logical = resource.rsplit('.').next().unwrap();
            (
                file.to_owned(),
                logical.to_owned(),
                c["check_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let declared = templates(&["suppressions", "infra"]);
    let declared = declared.as_array().unwrap();
    assert!(!declared.is_empty(), "no suppression found at all");
    for s in declared {
        let key = (
            s["file"].as_str().unwrap().to_owned(),
            s["resource"].as_str().unwrap().to_owned(),
            s["id"].as_str().unwrap().to_owned(),
        );
        assert!(
            s["comment"].as_str().is_some_and(|c| c.len() >= 40),
            "suppression {key:?} needs a comment saying why"
        );
        assert!(
            skipped.contains(&key),
            "suppression {key:?} is not used by checkov: remove it\nskipped: {skipped:#?}"
        );
    }
}

// ---------------------------------------------------------------- event patterns

/// A "CodeCommit Repository State Change" entry for PutEvents: the docs sample of
/// shared/FACTS.md with its repository, region, account, event and ref replaced.
fn state_change(
    region: &str,
    account: &str,
    repository: &str,
    event: &str,
    kind: &str,
    name: &str,
    commit: &str,
) -> Value {
    let full = match kind {
        "branch" => format!("refs/heads/{name}"),
        _ => format!("refs/tags/{name}"),
    };
    let mut detail = json!({
        "callerUserArn": format!("arn:aws:iam::{account}:user/admin"),
        "event": event,
        "referenceFullName": full,
        "referenceName": name,
        "referenceType": kind,
        "repositoryId": "280e6f04-7a9c-4c72-8d8f-947d83e21a96",
        "repositoryName": repository,
    });
    match event {
        "referenceCreated" => detail["commitId"] = json!(commit),
        "referenceUpdated" => {
            detail["commitId"] = json!(commit);
            detail["oldCommitId"] = json!("a399698fbd740af9c78fb2dd7f667656b70646b6");
        }
        _ => detail["oldCommitId"] = json!(commit),
    }
    json!({
        "Source": "aws.codecommit",
        "DetailType": "CodeCommit Repository State Change",
        "Resources": [format!("arn:aws:codecommit:{region}:{account}:{repository}")],
        "Detail": detail.to_string(),
        "EventBusName": "default",
    })
}

fn push(region: &str, repository: &str, kind: &str, name: &str, commit: &str) -> Value {
    let event = if kind == "tag" {
        "referenceCreated"
    } else {
        "referenceUpdated"
    };
    state_change(
        region,
        MOTO_ACCOUNT_ID,
        repository,
        event,
        kind,
        name,
        commit,
    )
}

fn tozai_event(source: &str, detail_type: &str, repository: &str, commit: &str) -> Value {
    json!({
        "Source": source,
        "DetailType": detail_type,
        "Detail": json!({
            "repository": repository, "ref": "refs/heads/main", "commit": commit,
            "reason": "paths_matched",
        })
        .to_string(),
        "EventBusName": "tozai",
    })
}

/// Runs `tests/support/infra_events.py` against moto: each rule wired to an SQS queue of
/// its own, the events put, what each rule's queue received (by rule id).
fn moto_events(moto: &Moto, spec: &Value) -> Value {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = Command::new(tool("python"))
        .arg(workspace_root().join("tests/support/infra_events.py"))
        .arg(moto.endpoint_url())
        .env("AWS_DEFAULT_REGION", TOKYO)
        // boto3 trusts moto's certificate (the run's CA) through AWS_CA_BUNDLE.
        .env("AWS_CA_BUNDLE", tozai_tests::tls::ca_file())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run infra_events.py");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(spec.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "infra_events.py failed:\n{}\n--- moto log\n{}",
        text(&out.stderr),
        moto.log()
    );
    serde_json::from_slice(&out.stdout).expect("infra_events.py printed no JSON")
}

/// The commit an event carries (each case has its own), whatever its shape.
fn commit_of(event: &Value) -> String {
    let d = &event["detail"];
    ["commitId", "commit", "oldCommitId", "afterCommitId"]
        .iter()
        .find_map(|k| d[*k].as_str())
        .unwrap_or_else(|| panic!("no commit in {event}"))
        .to_owned()
}

#[test]
fn the_templates_event_patterns_match_pushes_to_the_configured_refs_only() {
    let model = example_model();
    // Every rule with an event pattern that the two regions deploy, as moto will get it.
    let mut rules = Vec::new();
    for (region, aws) in [("tokyo", TOKYO), ("osaka", OSAKA)] {
        let root = deployed(model, region);
        for (stack, s) in root["stacks"].as_object().unwrap() {
            for rule in s["rules"].as_array().unwrap() {
                if rule["pattern"].is_null() {
                    continue;
                }
                rules.push(json!({
                    "id": format!("{region}/{stack}/{}", rule["logical"].as_str().unwrap()),
                    "region": aws,
                    "bus": rule["bus"],
                    "pattern": rule["pattern"],
                }));
            }
        }
    }
    let names: BTreeSet<&str> = rules.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        BTreeSet::from([
            "tokyo/PipelineJudge/BranchRule",
            "tokyo/Sync/SyncJudgeBranchRule",
            "tokyo/Sync/SyncJudgeTagRule",
            "tokyo/Sync/MirrorDeletedBranchRule",
            "tokyo/Sync/MirrorDeletedTagRule",
            "tokyo/Sync/MirrorSyncRequestedRule",
            "tokyo/Sync/SyncFailedRule",
            "osaka/PipelineJudge/BranchRule",
            "osaka/PipelineJudge/TagRule",
        ]),
        "the rules with event patterns the example deploys"
    );

    const PJ_T: &str = "tokyo/PipelineJudge/BranchRule";
    const SJ_B: &str = "tokyo/Sync/SyncJudgeBranchRule";
    const SJ_T: &str = "tokyo/Sync/SyncJudgeTagRule";
    const DEL_B: &str = "tokyo/Sync/MirrorDeletedBranchRule";
    const DEL_T: &str = "tokyo/Sync/MirrorDeletedTagRule";
    const REQ: &str = "tokyo/Sync/MirrorSyncRequestedRule";
    const FAILED: &str = "tokyo/Sync/SyncFailedRule";
    const PJ_O_B: &str = "osaka/PipelineJudge/BranchRule";
    const PJ_O_T: &str = "osaka/PipelineJudge/TagRule";

    type Case = (
        &'static str,
        &'static str,
        Box<dyn Fn(&str) -> Value>,
        Vec<&'static str>,
    );
    let cases: Vec<Case> = vec![
        // Tokyo (the primary), default bus: what CodeCommit sends.
        (
            "push to main",
            TOKYO,
            Box::new(|c| push(TOKYO, REPO, "branch", "main", c)),
            vec![PJ_T, SJ_B],
        ),
        (
            "new release branch",
            TOKYO,
            Box::new(|c| {
                state_change(
                    TOKYO,
                    MOTO_ACCOUNT_ID,
                    REPO,
                    "referenceCreated",
                    "branch",
                    "release/2024-04",
                    c,
                )
            }),
            vec![SJ_B],
        ),
        // EventBridge's `*` crosses `/` where tozai's does not: a superset the sync-judge
        // then acknowledges (branch_not_selected), documented in infra/params.py.
        (
            "push to release/a/b (wildcard superset)",
            TOKYO,
            Box::new(|c| push(TOKYO, REPO, "branch", "release/2024-04/hotfix", c)),
            vec![SJ_B],
        ),
        (
            "push to a feature branch",
            TOKYO,
            Box::new(|c| push(TOKYO, REPO, "branch", "feature/new-queue", c)),
            vec![],
        ),
        (
            "push to mainline (not main)",
            TOKYO,
            Box::new(|c| push(TOKYO, REPO, "branch", "mainline", c)),
            vec![],
        ),
        (
            "release tag",
            TOKYO,
            Box::new(|c| push(TOKYO, REPO, "tag", "v1.4.0", c)),
            vec![SJ_T],
        ),
        (
            "other tag",
            TOKYO,
            Box::new(|c| push(TOKYO, REPO, "tag", "nightly-2024", c)),
            vec![],
        ),
        (
            "tag named like a branch",
            TOKYO,
            Box::new(|c| push(TOKYO, REPO, "tag", "main", c)),
            vec![],
        ),
        (
            "main deleted",
            TOKYO,
            Box::new(|c| {
                state_change(
                    TOKYO,
                    MOTO_ACCOUNT_ID,
                    REPO,
                    "referenceDeleted",
                    "branch",
                    "main",
                    c,
                )
            }),
            vec![DEL_B],
        ),
        (
            "release tag deleted",
            TOKYO,
            Box::new(|c| {
                state_change(
                    TOKYO,
                    MOTO_ACCOUNT_ID,
                    REPO,
                    "referenceDeleted",
                    "tag",
                    "v1.0.0",
                    c,
                )
            }),
            vec![DEL_T],
        ),
        (
            "feature branch deleted",
            TOKYO,
            Box::new(|c| {
                state_change(
                    TOKYO,
                    MOTO_ACCOUNT_ID,
                    REPO,
                    "referenceDeleted",
                    "branch",
                    "feature/x",
                    c,
                )
            }),
            vec![],
        ),
        (
            "push to main of another repository",
            TOKYO,
            Box::new(|c| push(TOKYO, "core-app", "branch", "main", c)),
            vec![],
        ),
        (
            "same name, another account's repository",
            TOKYO,
            Box::new(|c| {
                state_change(
                    TOKYO,
                    "999999999999",
                    REPO,
                    "referenceUpdated",
                    "branch",
                    "main",
                    c,
                )
            }),
            vec![],
        ),
        (
            "pull request to main",
            TOKYO,
            Box::new(|c| {
                json!({
                    "Source": "aws.codecommit",
                    "DetailType": "CodeCommit Pull Request State Change",
                    "Resources": [format!("arn:aws:codecommit:{TOKYO}:{MOTO_ACCOUNT_ID}:{REPO}")],
                    "Detail": json!({
                        "event": "pullRequestCreated", "repositoryNames": [REPO],
                        "destinationReference": "refs/heads/main", "sourceReference": "refs/heads/feature/x",
                        "sourceCommit": c, "destinationCommit": "a399698fbd740af9c78fb2dd7f667656b70646b6",
                        "afterCommitId": c, "pullRequestStatus": "Open", "isMerged": "False",
                    }).to_string(),
                    "EventBusName": "default",
                })
            }),
            vec![],
        ),
        (
            "comment on a commit of main",
            TOKYO,
            Box::new(|c| {
                json!({
                    "Source": "aws.codecommit",
                    "DetailType": "CodeCommit Comment on Commit",
                    "Resources": [format!("arn:aws:codecommit:{TOKYO}:{MOTO_ACCOUNT_ID}:{REPO}")],
                    "Detail": json!({
                        "event": "commentOnCommitCreated", "repositoryName": REPO,
                        "afterCommitId": c, "commentId": "ff30b348EXAMPLE",
                    }).to_string(),
                    "EventBusName": "default",
                })
            }),
            vec![],
        ),
        (
            "merge commit without a reference",
            TOKYO,
            Box::new(|c| {
                json!({
                    "Source": "aws.codecommit",
                    "DetailType": "CodeCommit Repository State Change",
                    "Resources": [format!("arn:aws:codecommit:{TOKYO}:{MOTO_ACCOUNT_ID}:{REPO}")],
                    "Detail": json!({
                        "event": "unreferencedMergeCommitCreated", "repositoryName": REPO,
                        "commitId": c, "mergeOption": "FAST_FORWARD_MERGE",
                    }).to_string(),
                    "EventBusName": "default",
                })
            }),
            vec![],
        ),
        // Tokyo, tozai's bus.
        (
            "Sync Requested",
            TOKYO,
            Box::new(|c| tozai_event("tozai", "Sync Requested", REPO, c)),
            vec![REQ],
        ),
        (
            "Sync Requested for another repository",
            TOKYO,
            Box::new(|c| tozai_event("tozai", "Sync Requested", "core-app", c)),
            vec![],
        ),
        (
            "Sync Requested from another source",
            TOKYO,
            Box::new(|c| tozai_event("someone.else", "Sync Requested", REPO, c)),
            vec![],
        ),
        (
            "Sync Completed",
            TOKYO,
            Box::new(|c| tozai_event("tozai", "Sync Completed", REPO, c)),
            vec![],
        ),
        (
            "Sync Failed",
            TOKYO,
            Box::new(|c| tozai_event("tozai", "Sync Failed", REPO, c)),
            vec![FAILED],
        ),
        // Osaka (the standby): what the mirror's pushes make CodeCommit send there.
        (
            "mirrored push to main",
            OSAKA,
            Box::new(|c| push(OSAKA, REPO, "branch", "main", c)),
            vec![PJ_O_B],
        ),
        (
            "mirrored release tag",
            OSAKA,
            Box::new(|c| push(OSAKA, REPO, "tag", "v1.4.0", c)),
            vec![PJ_O_T],
        ),
        (
            "mirrored release branch",
            OSAKA,
            Box::new(|c| push(OSAKA, REPO, "branch", "release/2024-04", c)),
            vec![],
        ),
        (
            "mirrored branch deleted",
            OSAKA,
            Box::new(|c| {
                state_change(
                    OSAKA,
                    MOTO_ACCOUNT_ID,
                    REPO,
                    "referenceDeleted",
                    "branch",
                    "main",
                    c,
                )
            }),
            vec![],
        ),
    ];

    // Each case carries its own commit id, which tells them apart in the queues.
    let mut by_commit = BTreeMap::new();
    let events: Vec<Value> = cases
        .iter()
        .enumerate()
        .map(|(i, (name, region, make, _))| {
            let commit = format!("{:040x}", 0xf485_fcc9_0000_u64 + i as u64);
            by_commit.insert(commit.clone(), *name);
            json!({"region": region, "entry": make(&commit)})
        })
        .collect();
    let moto = Moto::start();
    let received = moto_events(&moto, &json!({"rules": rules, "events": events}));
    let mut got: BTreeMap<&str, BTreeSet<&str>> =
        cases.iter().map(|c| (c.0, BTreeSet::new())).collect();
    for (rule, events) in received.as_object().unwrap() {
        let rule = names
            .get(rule.as_str())
            .unwrap_or_else(|| panic!("an unknown rule {rule}"));
        for event in events.as_array().unwrap() {
            let commit = commit_of(event);
            let case = by_commit
                .get(&commit)
                .unwrap_or_else(|| panic!("{rule} received an unknown event {event}"));
            got.get_mut(case).unwrap().insert(rule);
        }
    }
    let mut wrong = Vec::new();
    for (name, _, _, expected) in &cases {
        let expected: BTreeSet<&str> = expected.iter().copied().collect();
        if got[name] != expected {
            wrong.push(format!(
                "{name}: expected {expected:?}, matched {:?}",
                got[name]
            ));
        }
    }
    assert!(wrong.is_empty(), "event patterns:\n{}", wrong.join("\n"));
}

// ---------------------------------------------------------------- IAM

type Grants = BTreeSet<(Vec<String>, Vec<String>)>;

fn grants(role: &Value) -> Grants {
    role["statements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            assert_eq!(s["effect"], "Allow", "{s}");
            assert!(
                s["not_actions"].as_array().unwrap().is_empty()
                    && s["not_resources"].as_array().unwrap().is_empty(),
                "NotAction/NotResource grant too much: {s}"
            );
            let mut actions = strings(&s["actions"]);
            let mut resources = strings(&s["resources"]);
            actions.sort();
            resources.sort();
            (actions, resources)
        })
        .collect()
}

fn grant(actions: &[&str], resources: &[&str]) -> (Vec<String>, Vec<String>) {
    let mut a: Vec<String> = actions.iter().map(|s| s.to_string()).collect();
    let mut r: Vec<String> = resources.iter().map(|s| s.to_string()).collect();
    a.sort();
    r.sort();
    (a, r)
}

fn arn(service: &str, region: &str, rest: &str) -> String {
    format!("arn:aws:{service}:{region}:{MOTO_ACCOUNT_ID}:{rest}")
}

/// Every role of every stack a root deploys, by "Stack/Role".
fn roles(root: &Value) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    let mut all = vec![("root".to_owned(), root)];
    for (name, s) in root["stacks"].as_object().unwrap() {
        all.push((name.clone(), s));
    }
    for (stack, s) in all {
        assert!(
            s["policies"].as_array().unwrap().is_empty(),
            "{stack}: a stand-alone IAM policy appeared (the SAM transform?): {}",
            s["policies"]
        );
        for role in s["roles"].as_array().unwrap() {
            out.insert(
                format!("{stack}/{}", role["logical"].as_str().unwrap()),
                role.clone(),
            );
        }
    }
    out
}

/// The pipeline-judge's grants in `region`, for its targets' pipelines and projects (no
/// statement for a kind it has none of).
fn expected_pipeline_judge(region: &str, pipelines: &[&str], projects: &[&str]) -> Grants {
    let mut expected = BTreeSet::from([
        grant(
            &["logs:CreateLogStream", "logs:PutLogEvents"],
            &["GetAtt(LogGroup.Arn)"],
        ),
        grant(
            &[
                "codecommit:GetDifferences",
                "codecommit:GetMergeOptions",
                "codecommit:GetBranch",
                "codecommit:GetCommit",
                "codecommit:ListBranches",
            ],
            &[&arn("codecommit", region, REPO)],
        ),
        grant(
            &["dynamodb:GetItem", "dynamodb:PutItem"],
            &[&arn("dynamodb", region, "table/tozai-checkpoints")],
        ),
        grant(&["sqs:SendMessage"], &["GetAtt(DeadLetterQueue.Arn)"]),
    ]);
    if !pipelines.is_empty() {
        let arns: Vec<String> = pipelines
            .iter()
            .map(|p| arn("codepipeline", region, p))
            .collect();
        expected.insert(grant(
            &[
                "codepipeline:StartPipelineExecution",
                "codepipeline:ListPipelineExecutions",
                "codepipeline:GetPipelineExecution",
            ],
            &arns.iter().map(String::as_str).collect::<Vec<_>>(),
        ));
    }
    if !projects.is_empty() {
        let arns: Vec<String> = projects
            .iter()
            .map(|p| arn("codebuild", region, &format!("project/{p}")))
            .collect();
        expected.insert(grant(
            &[
                "codebuild:StartBuild",
                "codebuild:ListBuildsForProject",
                "codebuild:BatchGetBuilds",
            ],
            &arns.iter().map(String::as_str).collect::<Vec<_>>(),
        ));
    }
    expected
}

fn expected_sync_judge(primary: &str) -> Grants {
    BTreeSet::from([
        grant(
            &["logs:CreateLogStream", "logs:PutLogEvents"],
            &["GetAtt(SyncJudgeLogGroup.Arn)"],
        ),
        grant(
            &[
                "codecommit:GetDifferences",
                "codecommit:GetMergeOptions",
                "codecommit:GetBranch",
                "codecommit:GetCommit",
            ],
            &[&arn("codecommit", primary, REPO)],
        ),
        grant(
            &["dynamodb:GetItem", "dynamodb:PutItem"],
            &[&arn("dynamodb", primary, "table/tozai-checkpoints")],
        ),
        grant(&["events:PutEvents"], &["GetAtt(Bus.Arn)"]),
        grant(&["sqs:SendMessage"], &["GetAtt(DeadLetterQueue.Arn)"]),
    ])
}

fn expected_mirror(primary: &str, standby: &str) -> Grants {
    BTreeSet::from([
        grant(
            &["logs:CreateLogStream", "logs:PutLogEvents"],
            &["GetAtt(MirrorLogGroup.Arn)"],
        ),
        grant(
            &["codecommit:GitPull"],
            &[&arn("codecommit", primary, REPO)],
        ),
        // GitPull: the commits of a diverged standby ref, to tell which side moved.
        grant(
            &["codecommit:GitPush", "codecommit:GitPull"],
            &[&arn("codecommit", standby, REPO)],
        ),
        // The standby's default branch, which the mirror never deletes.
        grant(
            &["codecommit:GetRepository"],
            &[&arn("codecommit", standby, REPO)],
        ),
        // Its ledger: what it pushed to each standby ref (only its own items: see
        // `the_mirror_reads_and_writes_only_its_own_items`).
        grant(
            &["dynamodb:BatchGetItem", "dynamodb:BatchWriteItem"],
            &[&arn("dynamodb", primary, "table/tozai-checkpoints")],
        ),
        grant(&["events:PutEvents"], &["GetAtt(Bus.Arn)"]),
        grant(&["sqs:SendMessage"], &["GetAtt(DeadLetterQueue.Arn)"]),
    ])
}

/// The generic rules: Lambda's trust only, no managed policy, no wildcard.
fn check_role(name: &str, role: &Value) {
    assert!(
        role["managed"].as_array().unwrap().is_empty(),
        "{name} has managed policies (they grant * resources): {}",
        role["managed"]
    );
    let trust = role["trust"].as_array().unwrap();
    assert_eq!(trust.len(), 1, "{name}: {trust:?}");
    assert_eq!(
        trust[0]["principal"],
        json!({"Service": "lambda.amazonaws.com"}),
        "{name}"
    );
    assert_eq!(strings(&trust[0]["actions"]), ["sts:AssumeRole"], "{name}");
    assert_eq!(
        trust[0]["condition"]["StringEquals"]["aws:SourceAccount"], MOTO_ACCOUNT_ID,
        "{name}: the trust is limited to the account"
    );
    for (actions, resources) in grants(role) {
        for a in &actions {
            assert!(!a.contains('*'), "{name}: wildcard action {a}");
        }
        // No `*` resource anywhere: AWS requires none for what the functions call
        // (GetAtt(LogGroup.Arn) is the group's own ARN, `...:log-group:NAME:*`).
        for r in &resources {
            assert!(!r.contains('*'), "{name}: wildcard resource {r}");
        }
    }
}

#[test]
fn every_iam_policy_names_only_the_expected_actions_and_resources() {
    let model = example_model();

    let tokyo = roles(deployed(model, "tokyo"));
    assert_eq!(
        tokyo.keys().map(String::as_str).collect::<Vec<_>>(),
        [
            "PipelineJudge/Role",
            "Sync/MirrorRole",
            "Sync/SyncJudgeRole"
        ]
    );
    for (name, role) in &tokyo {
        check_role(&format!("tokyo {name}"), role);
    }
    assert_eq!(
        grants(&tokyo["PipelineJudge/Role"]),
        expected_pipeline_judge(TOKYO, &["core-infra-deploy"], &[])
    );
    assert_eq!(
        grants(&tokyo["Sync/SyncJudgeRole"]),
        expected_sync_judge(TOKYO)
    );
    assert_eq!(
        grants(&tokyo["Sync/MirrorRole"]),
        expected_mirror(TOKYO, OSAKA)
    );
    assert_eq!(
        tokyo["Sync/MirrorRole"]["name"],
        "tozai-mirror-ap-northeast-1"
    );

    let osaka = roles(deployed(model, "osaka"));
    assert_eq!(
        osaka.keys().map(String::as_str).collect::<Vec<_>>(),
        ["PipelineJudge/Role"],
        "the standby runs the pipeline-judge only"
    );
    check_role("osaka PipelineJudge/Role", &osaka["PipelineJudge/Role"]);
    assert_eq!(
        grants(&osaka["PipelineJudge/Role"]),
        expected_pipeline_judge(OSAKA, &["core-infra-deploy"], &[])
    );

    // Resource policies: only EventBridge (each rule of the stack) and CloudWatch, each
    // limited by a condition.
    for (region, root) in [
        ("tokyo", deployed(model, "tokyo")),
        ("osaka", deployed(model, "osaka")),
    ] {
        for (stack, s) in root["stacks"].as_object().unwrap() {
            let rules: BTreeSet<String> = s["rules"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| format!("GetAtt({}.Arn)", r["logical"].as_str().unwrap()))
                .collect();
            for policy in s["queue_policies"].as_array().unwrap() {
                for st in policy["statements"].as_array().unwrap() {
                    assert_eq!(st["principal"], json!({"Service": "events.amazonaws.com"}));
                    assert_eq!(strings(&st["actions"]), ["sqs:SendMessage"]);
                    assert_eq!(strings(&st["resources"]), ["GetAtt(DeadLetterQueue.Arn)"]);
                    let sources: BTreeSet<String> =
                        strings(&st["condition"]["ArnEquals"]["aws:SourceArn"])
                            .into_iter()
                            .collect();
                    assert_eq!(
                        sources, rules,
                        "{region}/{stack}: the DLQ takes dead letters of its own rules only"
                    );
                }
            }
            for p in s["permissions"].as_array().unwrap() {
                let p = &p["properties"];
                assert_eq!(p["Action"], "lambda:InvokeFunction");
                assert_eq!(p["Principal"], "events.amazonaws.com");
                assert_eq!(p["SourceAccount"], MOTO_ACCOUNT_ID);
                assert!(
                    rules.contains(p["SourceArn"].as_str().unwrap()),
                    "{region}/{stack}: a permission for something else than its rules: {p}"
                );
            }
            for policy in s["topic_policies"].as_array().unwrap() {
                for st in policy["statements"].as_array().unwrap() {
                    assert_eq!(strings(&st["actions"]), ["sns:Publish"]);
                    assert_eq!(strings(&st["resources"]), ["Ref(Topic)"]);
                    assert!(
                        st["condition"].is_object(),
                        "{region}/{stack}: unconditioned {st}"
                    );
                }
            }
        }
    }
}

/// The mirror's ledger shares the checkpoint table: its grant is limited to its own items
/// (`pk = ["mirrored", ...]`), so it can neither read nor overwrite a judge's checkpoint or
/// start record.
#[test]
fn the_mirror_reads_and_writes_only_its_own_items() {
    let model = example_model();
    let roles = roles(deployed(model, "tokyo"));
    let statements = roles["Sync/MirrorRole"]["statements"].as_array().unwrap();
    let dynamodb: Vec<&Value> = statements
        .iter()
        .filter(|s| {
            strings(&s["actions"])
                .iter()
                .any(|a| a.starts_with("dynamodb:"))
        })
        .collect();
    assert_eq!(dynamodb.len(), 1, "{dynamodb:?}");
    let condition = &dynamodb[0]["condition"];
    assert_eq!(
        condition.as_object().map(|c| c.len()),
        Some(1),
        "{condition}"
    );
    let patterns = strings(&condition["ForAllValues:StringLike"]["dynamodb:LeadingKeys"]);
    assert_eq!(patterns, [r#"["mirrored",*"#], "{condition}");
    // IAM's `*` matches any characters: the pattern is a prefix.
    let prefix = patterns[0].strip_suffix('*').unwrap();
    let key = |parts: serde_json::Value| parts.to_string();
    assert!(
        key(json!([
            "mirrored",
            "codecommit::ap-northeast-3://core-infra",
            "refs/heads/main"
        ]))
        .starts_with(prefix)
    );
    for other in [
        key(json!([
            "checkpoint",
            "sync",
            "core-infra",
            "refs/heads/main"
        ])),
        key(json!(["start", "osaka-core", "8b58"])),
    ] {
        assert!(!other.starts_with(prefix), "{other}");
    }
}

// ---------------------------------------------------------------- grants against calls

/// A config whose regions both have a CodePipeline and a CodeBuild target, so that the
/// pipeline-judge's role has every statement.
const BOTH_KINDS: &str = r#"
primary = "tokyo"
[regions.tokyo]
aws_region = "ap-northeast-1"
repository = "core-infra"
[regions.osaka]
aws_region = "ap-northeast-3"
repository = "core-infra"
[sync]
branches = ["main"]
[sync.to.osaka]
paths = ["common/**", "secondary/**"]
[sync.to.tokyo]
paths = ["common/**", "primary/**"]
[[pipeline]]
name = "tokyo-core"
region = "tokyo"
codepipeline = "core-infra-deploy"
branches = ["main"]
paths = ["common/**", "primary/**"]
[[pipeline]]
name = "tokyo-lint"
region = "tokyo"
codebuild = "core-infra-lint"
branches = ["main"]
paths = ["**/*.yaml"]
[[pipeline]]
name = "osaka-core"
region = "osaka"
codepipeline = "core-infra-deploy"
branches = ["main"]
paths = ["common/**", "secondary/**"]
[[pipeline]]
name = "osaka-lint"
region = "osaka"
codebuild = "core-infra-lint"
branches = ["main"]
paths = ["**/*.yaml"]
"#;

/// The `tozai::lambda` constructors of the AWS adapters, and the section of
/// `shared/src/adapters/aws.rs` (its `// ---- NAME` line) that holds the adapter's code.
const ADAPTERS: &[(&str, &str)] = &[
    ("repo", "CodeCommit"),
    ("store", "DynamoDB"),
    ("starter", "CodePipeline, CodeBuild"),
    ("events", "EventBridge"),
];

/// The `tozai::lambda` functions a Lambda's `main` may call that build no AWS adapter.
const NOT_ADAPTERS: &[&str] = &[
    "config_from_env",
    "fatal",
    "ignored_from_env",
    "inbound",
    "init_logging",
    "logged",
    "served_region",
];

/// Granted to every function for the Lambda service, not for tozai's code: writing its
/// logs, and sending a failed event to its on-failure destination.
const RUNTIME_ACTIONS: &[&str] = &[
    "logs:CreateLogStream",
    "logs:PutLogEvents",
    "sqs:SendMessage",
];

/// `list_builds_for_project` as an API name: `ListBuildsForProject`.
fn pascal(snake: &str) -> String {
    snake
        .split('_')
        .map(|word| {
            let mut chars = word.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// The sections of `shared/src/adapters/aws.rs`, by name.
fn adapter_sections() -> BTreeMap<String, String> {
    const MARK: &str = "// ----------------------------------------------------------------";
    let path = workspace_root().join("shared/src/adapters/aws.rs");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut sections = BTreeMap::new();
    let mut current: Option<(String, String)> = None;
    for line in text.lines() {
        if let Some(name) = line.strip_prefix(MARK) {
            sections.extend(current.take());
            current = Some((name.trim().to_owned(), String::new()));
        } else if let Some((_, body)) = &mut current {
            body.push_str(line);
            body.push('\n');
        }
    }
    sections.extend(current);
    sections
}

/// The AWS API calls in one section of the adapters, as IAM actions: every SDK call
/// `self.FIELD.operation()` (whitespace ignored, so a call split over lines counts),
/// `client` being the section's own service's client.
fn calls_in(section: &str, code: &str) -> BTreeSet<String> {
    let own = match section {
        "CodeCommit" => "codecommit",
        "DynamoDB" => "dynamodb",
        "EventBridge" => "events",
        _ => "(no client field)",
    };
    let compact: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    let mut calls = BTreeSet::new();
    for (field, service) in [
        ("client", own),
        ("codepipeline", "codepipeline"),
        ("codebuild", "codebuild"),
    ] {
        let needle = format!("self.{field}.");
        for (at, _) in compact.match_indices(&needle) {
            let rest = &compact[at + needle.len()..];
            let operation: String = rest
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            if !operation.is_empty() && rest[operation.len()..].starts_with("()") {
                calls.insert(format!("{service}:{}", pascal(&operation)));
            }
        }
    }
    calls
}

/// Every AWS API call the function `functions/NAME` can make through the adapters its
/// `main` builds (`tozai::lambda::repo`, `store`, `starter`, `events`), as IAM actions.
fn called_actions(function: &str) -> BTreeSet<String> {
    let main = workspace_root().join(format!("functions/{function}/src/main.rs"));
    let text = std::fs::read_to_string(&main).unwrap();
    let sections = adapter_sections();
    let mut calls = BTreeSet::new();
    for (at, _) in text.match_indices("lambda::") {
        let name: String = text[at + "lambda::".len()..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if NOT_ADAPTERS.contains(&name.as_str()) {
            continue;
        }
        let Some((_, section)) = ADAPTERS.iter().find(|(f, _)| *f == name) else {
            panic!(
                "{}: lambda::{name} is neither a known adapter constructor nor in NOT_ADAPTERS: \
                 say which (the grants must follow what it calls)",
                main.display()
            );
        };
        let code = sections.get(*section).unwrap_or_else(|| {
            panic!(
                "no section {section:?} in shared/src/adapters/aws.rs: {:?}",
                sections.keys()
            )
        });
        let found = calls_in(section, code);
        assert!(
            !found.is_empty(),
            "no SDK call found in the {section} section: has the code's shape changed?"
        );
        calls.extend(found);
    }
    calls
}

/// Least privilege both ways, against the code: each action a judge's role grants is one
/// its adapters call, and each call its adapters can make is granted (the scan reads the
/// SDK calls of `shared/src/adapters/aws.rs` for the adapters each `main` builds).
#[test]
fn each_judges_grants_are_exactly_the_aws_calls_its_code_makes() {
    let pipeline_judge = called_actions("pipeline-judge");
    let mut sync_judge = called_actions("sync-judge");
    // The one CodeCommit call the sync-judge's adapter has but never makes: listing the
    // branches is the pipeline-judge's sweep; the sync-judge leaves schedules to the
    // mirror (`judge::tests::a_schedule_reconciles_every_configured_ref`).
    assert!(
        sync_judge.remove("codecommit:ListBranches"),
        "{sync_judge:?}"
    );
    // What the judges are known to call, so a scan that finds too little fails here.
    for action in [
        "codecommit:GetBranch",
        "codecommit:GetCommit",
        "codecommit:ListBranches",
        "codecommit:GetDifferences",
        "codecommit:GetMergeOptions",
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "codepipeline:StartPipelineExecution",
        "codepipeline:ListPipelineExecutions",
        "codepipeline:GetPipelineExecution",
        "codebuild:StartBuild",
        "codebuild:ListBuildsForProject",
        "codebuild:BatchGetBuilds",
    ] {
        assert!(
            pipeline_judge.contains(action),
            "{action}: {pipeline_judge:?}"
        );
    }
    assert!(sync_judge.contains("events:PutEvents"), "{sync_judge:?}");
    assert!(
        !sync_judge
            .iter()
            .any(|a| a.starts_with("codepipeline:") || a.starts_with("codebuild:")),
        "the sync-judge starts nothing: {sync_judge:?}"
    );

    let dir = TempDir::new().unwrap();
    let config = dir.path().join("tozai.toml");
    std::fs::write(&config, BOTH_KINDS).unwrap();
    let model = model(&config);
    let cases = [
        ("tokyo", "PipelineJudge/Role", &pipeline_judge),
        ("osaka", "PipelineJudge/Role", &pipeline_judge),
        ("tokyo", "Sync/SyncJudgeRole", &sync_judge),
    ];
    for (region, role, called) in cases {
        let roles = roles(deployed(&model, region));
        let granted: BTreeSet<String> = grants(&roles[role])
            .into_iter()
            .flat_map(|(actions, _)| actions)
            .filter(|a| !RUNTIME_ACTIONS.contains(&a.as_str()))
            .collect();
        let unused: Vec<&String> = granted.difference(called).collect();
        let missing: Vec<&String> = called.difference(&granted).collect();
        assert!(
            unused.is_empty() && missing.is_empty(),
            "{region} {role}: granted but never called {unused:?}; called but not granted {missing:?}"
        );
    }
    // And on what: the listed pipelines and projects only.
    for (region, aws_region) in [("tokyo", TOKYO), ("osaka", OSAKA)] {
        assert_eq!(
            grants(&roles(deployed(&model, region))["PipelineJudge/Role"]),
            expected_pipeline_judge(aws_region, &["core-infra-deploy"], &["core-infra-lint"]),
            "{region}"
        );
    }
}

/// Each template's parameters and its functions' `Timeout` and `CodeUri` as written
/// (`Ref`s unevaluated), by path under `infra/`.
fn template_sources() -> Value {
    const SCRIPT: &str = r#"
import json, sys
from pathlib import Path
sys.path.insert(0, "tests/support")
import infra_templates
out = {}
for path in sorted(Path("infra").rglob("*.yaml")):
    t = infra_templates.load(path)
    functions = {
        name: {k: r.get("Properties", {}).get(k) for k in ("Timeout", "CodeUri")}
        for name, r in t.get("Resources", {}).items()
        if r.get("Type") in ("AWS::Serverless::Function", "AWS::Lambda::Function")
    }
    out[str(path.relative_to("infra"))] = {"parameters": t.get("Parameters", {}), "functions": functions}
print(json.dumps(out))
"#;
    let mut cmd = Command::new(tool("python"));
    cmd.current_dir(workspace_root()).args(["-c", SCRIPT]);
    let out = run(cmd);
    assert!(
        out.status.success(),
        "reading the templates failed:\n{}",
        text(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn number(v: &Value) -> Option<u64> {
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

/// A judge's Lambda timeout stays below the lease of a claimed start
/// (`tozai::judge::START_LEASE`), so an invocation holding a claim is gone before another
/// may take the claim over: each judge's `Timeout` is a parameter whose `MaxValue` (and
/// default) is under the lease, in its template and in every root that passes it on.
#[test]
fn the_judges_timeouts_stay_below_the_start_lease() {
    let lease = tozai::judge::START_LEASE.as_secs();
    let templates = template_sources();
    let templates = templates.as_object().unwrap();
    let mut judges = BTreeSet::new();
    let mut parameters = BTreeSet::new();
    for (path, t) in templates {
        for (logical, f) in t["functions"].as_object().unwrap() {
            let package = f["CodeUri"].as_str().unwrap_or_default();
            if !package.ends_with("-judge.zip") {
                continue;
            }
            judges.insert(package.rsplit('/').next().unwrap().to_owned());
            let parameter = f["Timeout"]["Ref"].as_str().unwrap_or_else(|| {
                panic!(
                    "{path} {logical}: Timeout is not a parameter: {}",
                    f["Timeout"]
                )
            });
            parameters.insert(parameter.to_owned());
            let spec = &t["parameters"][parameter];
            let max = number(&spec["MaxValue"])
                .unwrap_or_else(|| panic!("{path} {parameter}: no MaxValue: {spec}"));
            assert!(
                max < lease,
                "{path} {parameter}: MaxValue {max} is not under the {lease} s lease"
            );
            let default = number(&spec["Default"]).unwrap();
            assert!(default <= max, "{path} {parameter}: {spec}");
        }
    }
    assert_eq!(
        judges,
        BTreeSet::from(["pipeline-judge.zip".to_owned(), "sync-judge.zip".to_owned()])
    );
    // A root that takes the parameter to pass it on caps it as well: a value over the lease
    // is refused at the root, before any nested stack is touched.
    let mut checked = 0;
    for (path, t) in templates {
        for parameter in &parameters {
            let spec = &t["parameters"][parameter];
            if spec.is_null() {
                continue;
            }
            let max = number(&spec["MaxValue"])
                .unwrap_or_else(|| panic!("{path} {parameter}: no MaxValue: {spec}"));
            assert!(
                max < lease,
                "{path} {parameter}: MaxValue {max} is not under the {lease} s lease"
            );
            checked += 1;
        }
    }
    assert!(
        checked >= 4,
        "the nested templates and both roots: {checked}"
    );
}

// ---------------------------------------------------------------- the rest of the wiring

fn function<'s>(stack: &'s Value, logical: &str) -> &'s Value {
    stack["functions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["logical"] == logical)
        .map(|f| &f["properties"])
        .unwrap_or_else(|| panic!("no function {logical} in {}", stack["template"]))
}

#[test]
fn every_function_is_wired_with_its_settings_failure_destination_alarm_and_logs() {
    let model = example_model();
    for region in ["tokyo", "osaka"] {
        let root = deployed(model, region);
        for (stack_name, s) in root["stacks"].as_object().unwrap() {
            let created = s["resources"].as_object().unwrap();
            for f in s["functions"].as_array().unwrap() {
                let logical = f["logical"].as_str().unwrap();
                let p = &f["properties"];
                let at = format!("{region}/{stack_name}/{logical}");
                assert_eq!(p["Runtime"], "provided.al2023", "{at}");
                assert_eq!(p["Handler"], "bootstrap", "{at}");
                assert_eq!(
                    p["Architectures"],
                    json!(["arm64"]),
                    "{at}: arm64 by default"
                );
                // Asynchronous invocations: retried, then to the dead-letter queue.
                let invoke = s["event_invoke_configs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| &c["properties"])
                    .find(|c| c["FunctionName"] == format!("Ref({logical})"))
                    .unwrap_or_else(|| panic!("{at}: no EventInvokeConfig"));
                assert_eq!(
                    invoke["DestinationConfig"]["OnFailure"]["Destination"],
                    "GetAtt(DeadLetterQueue.Arn)",
                    "{at}"
                );
                // Its own log group, with retention.
                let group = p["LoggingConfig"]["LogGroup"].as_str().unwrap();
                let group = group.trim_start_matches("Ref(").trim_end_matches(')');
                assert_eq!(created[group], "AWS::Logs::LogGroup", "{at}");
                // An alarm on its errors, notifying the topic.
                assert!(
                    s["alarms"].as_array().unwrap().iter().any(|a| {
                        let a = &a["properties"];
                        a["MetricName"] == "Errors"
                            && a["Dimensions"][0]["Value"] == format!("Ref({logical})")
                            && a["AlarmActions"] == json!(["GetAtt(Alarms.Outputs.TopicArn)"])
                    }),
                    "{at}: no Errors alarm"
                );
            }
            // Every rule target: retried, and dead letters kept.
            for rule in s["rules"].as_array().unwrap() {
                for t in rule["targets"].as_array().unwrap() {
                    assert!(
                        t["RetryPolicy"].is_object()
                            && t["DeadLetterConfig"]["Arn"] == "GetAtt(DeadLetterQueue.Arn)",
                        "{region}/{stack_name}/{}: {t}",
                        rule["logical"]
                    );
                }
            }
            if created.contains_key("DeadLetterQueue") {
                assert!(
                    s["alarms"].as_array().unwrap().iter().any(|a| {
                        a["properties"]["MetricName"] == "ApproximateNumberOfMessagesVisible"
                            && a["properties"]["Dimensions"][0]["Value"]
                                == "GetAtt(DeadLetterQueue.QueueName)"
                    }),
                    "{region}/{stack_name}: no alarm on the dead-letter queue's depth"
                );
            }
        }
        // The settings shared/src/lambda.rs reads.
        let judge = function(&root["stacks"]["PipelineJudge"], "Function");
        assert_eq!(
            judge["Environment"]["Variables"],
            json!({"TOZAI_TABLE": "tozai-checkpoints", "TOZAI_REGION": region, "RUST_LOG": "info"})
        );
        let table = &root["stacks"]["Table"];
        assert_eq!(table["parameters"]["TableName"], "tozai-checkpoints");
        // The sweep: a push whose every event was lost is judged within 5 minutes.
        let sweep = root["stacks"]["PipelineJudge"]["rules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["logical"] == "SweepRule")
            .unwrap_or_else(|| panic!("{region}: the pipeline-judge's sweep"));
        assert_eq!(sweep["schedule"], "rate(5 minutes)");
        assert_eq!(sweep["targets"][0]["Arn"], "GetAtt(Function.Arn)");
    }

    let sync = &deployed(model, "tokyo")["stacks"]["Sync"];
    let sync_judge = function(sync, "SyncJudge");
    assert_eq!(
        sync_judge["Environment"]["Variables"],
        json!({
            "TOZAI_TABLE": "tozai-checkpoints",
            "TOZAI_EVENT_BUS": "tozai",
            "TOZAI_PRIMARY": "tokyo",
            "TOZAI_IGNORE_ROLES": "tozai-mirror-ap-northeast-1,tozai-mirror-ap-northeast-3",
            "RUST_LOG": "info",
        })
    );
    let mirror = function(sync, "Mirror");
    assert_eq!(
        mirror["Environment"]["Variables"],
        json!({"TOZAI_TABLE": "tozai-checkpoints", "TOZAI_EVENT_BUS": "tozai", "TOZAI_PRIMARY": "tokyo", "TOZAI_CACHE": "/tmp/tozai-cache", "RUST_LOG": "info"})
    );
    assert_eq!(
        mirror["ReservedConcurrentExecutions"], "1",
        "the mirror runs one at a time"
    );
    assert_eq!(mirror["EphemeralStorage"], json!({"Size": "2048"}));
    assert_eq!(mirror["Timeout"], "900");
    assert_eq!(
        sync_judge["Timeout"], "60",
        "the sync-judge's default timeout (SyncJudgeTimeout)"
    );
    let schedule = sync["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["logical"] == "MirrorScheduleRule")
        .expect("the reconciliation schedule");
    assert_eq!(
        schedule["schedule"], "cron(0 * * * ? *)",
        "on the hour, as tozai status expects of `[sync] reconcile = \"1h\"`"
    );
    assert_eq!(schedule["targets"][0]["Arn"], "GetAtt(Mirror.Arn)");
    let failed = sync["alarms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| &a["properties"])
        .find(|a| a["MetricName"] == "TriggeredRules")
        .expect("an alarm on Sync Failed events");
    assert_eq!(
        failed["Dimensions"],
        json!([{"Name": "EventBusName", "Value": "tozai"},
               {"Name": "RuleName", "Value": "Ref(SyncFailedRule)"}])
    );

    // The checkpoint table, as the judges need it.
    let dir = translated();
    let table: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("common/table.yaml")).unwrap(),
    )
    .unwrap();
    let t = &table["Resources"]["Table"]["Properties"];
    assert_eq!(
        t["KeySchema"],
        json!([{"AttributeName": "pk", "KeyType": "HASH"}])
    );
    assert_eq!(
        t["AttributeDefinitions"],
        json!([{"AttributeName": "pk", "AttributeType": "S"}])
    );
    assert_eq!(t["BillingMode"], "PAY_PER_REQUEST");
    assert_eq!(
        t["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"],
        true
    );
    assert_eq!(
        t["TimeToLiveSpecification"],
        json!({"AttributeName": "expires_at", "Enabled": true})
    );
}

#[test]
fn a_failover_is_a_parameter_change_and_both_roots_deploy_the_same_stacks() {
    let before = example_model().clone();
    let example = std::fs::read_to_string(workspace_root().join("examples/tozai.toml")).unwrap();
    let edited = example.replacen("primary = \"tokyo\"", "primary = \"osaka\"", 1);
    assert_ne!(edited, example, "the example's primary line moved");
    let dir = TempDir::new().unwrap();
    let config = dir.path().join("tozai.toml");
    std::fs::write(&config, edited).unwrap();
    let after = model(&config);

    for m in [&before, &after] {
        for region in ["tokyo", "osaka"] {
            // Which root a region deploys changes nothing but its file name.
            let mut primary = m[region]["roots"]["primary"].clone();
            let mut secondary = m[region]["roots"]["secondary"].clone();
            primary["template"] = Value::Null;
            secondary["template"] = Value::Null;
            assert_eq!(primary, secondary, "{region}: the two roots differ");
        }
    }
    let all = BTreeSet::from(["Alarms", "PipelineJudge", "Sync", "Table"].map(String::from));
    let standby = BTreeSet::from(["Alarms", "PipelineJudge", "Table"].map(String::from));
    assert_eq!(stacks(deployed(&before, "tokyo")), all);
    assert_eq!(stacks(deployed(&before, "osaka")), standby);
    assert_eq!(
        stacks(deployed(&after, "tokyo")),
        standby,
        "the old primary stops syncing"
    );
    assert_eq!(
        stacks(deployed(&after, "osaka")),
        all,
        "the new primary syncs"
    );
    let mirror = roles(deployed(&after, "osaka"));
    assert_eq!(
        grants(&mirror["Sync/MirrorRole"]),
        expected_mirror(OSAKA, TOKYO)
    );
    assert_eq!(
        grants(&mirror["Sync/SyncJudgeRole"]),
        expected_sync_judge(OSAKA)
    );
    // Only the Primary parameter differs.
    for region in ["tokyo", "osaka"] {
        let mut a = before[region]["parameters"].clone();
        let b = &after[region]["parameters"];
        assert_eq!(a["Primary"], "tokyo");
        assert_eq!(b["Primary"], "osaka");
        a["Primary"] = json!("osaka");
        assert_eq!(&a, b, "{region}: a failover changes only Primary");
    }
}

#[test]
fn the_deploy_commands_package_every_nested_template_and_function() {
    // `aws cloudformation package` (scripts/deploy.sh's first AWS step) against moto's S3,
    // on a copy of infra/ with stand-in packages where scripts/package-lambdas.sh puts them.
    let work = TempDir::new().unwrap();
    let root = work.path();
    for dir in [
        "infra/common",
        "infra/primary",
        "infra/secondary",
        "target/lambda",
    ] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    for file in [
        "common/table.yaml",
        "common/alarms.yaml",
        "common/pipeline-judge.yaml",
        "common/sync.yaml",
        "primary/root.yaml",
        "secondary/root.yaml",
    ] {
        std::fs::copy(
            workspace_root().join("infra").join(file),
            root.join("infra").join(file),
        )
        .unwrap();
    }
    for f in ["sync-judge", "pipeline-judge", "mirror"] {
        std::fs::write(
            root.join(format!("target/lambda/{f}.zip")),
            format!("PK\x05\x06stand-in for {f}"),
        )
        .unwrap();
    }
    let moto = Moto::start();
    moto.aws(
        TOKYO,
        &[
            "s3api",
            "create-bucket",
            "--bucket",
            "artifacts",
            "--create-bucket-configuration",
            "LocationConstraint=ap-northeast-1",
        ],
    );
    for which in ["primary", "secondary"] {
        let mut cmd = moto.aws_command(TOKYO);
        // `package` uploads with an S3 client of its own, which --endpoint-url misses.
        cmd.env("AWS_ENDPOINT_URL_S3", moto.endpoint_url());
        cmd.current_dir(root).args([
            "cloudformation",
            "package",
            "--template-file",
            &format!("infra/{which}/root.yaml"),
            "--s3-bucket",
            "artifacts",
            "--output-template-file",
            &format!("{which}.json"),
            "--use-json",
        ]);
        let out = run(cmd);
        assert!(
            out.status.success(),
            "cloudformation package {which}: {}{}",
            text(&out.stderr),
            text(&out.stdout)
        );
        let packaged: Value = serde_json::from_str(
            &std::fs::read_to_string(root.join(format!("{which}.json"))).unwrap(),
        )
        .unwrap();
        for (name, res) in packaged["Resources"].as_object().unwrap() {
            let url = res["Properties"]["TemplateURL"]
                .as_str()
                .unwrap_or_default();
            assert!(
                url.starts_with(&format!("{}/artifacts/", moto.endpoint_url())),
                "{which}: {name}'s template was not uploaded: {url:?}"
            );
            // The nested template as uploaded: its packages uploaded too, no local path left.
            let key = url.rsplit('/').next().unwrap();
            let mut get = moto.aws_command(TOKYO);
            get.env("AWS_ENDPOINT_URL_S3", moto.endpoint_url()).args([
                "s3",
                "cp",
                &format!("s3://artifacts/{key}"),
                "-",
            ]);
            let nested = text(&run(get).stdout);
            assert!(
                nested.contains("Resources") && !nested.contains("target/lambda"),
                "{which}: {name}'s uploaded template still names a local package:\n{nested}"
            );
            if name == "Sync" || name == "PipelineJudge" {
                assert!(
                    nested.contains("s3://artifacts/"),
                    "{which}: {name}'s packages were not uploaded:\n{nested}"
                );
            }
        }
    }
    let objects = moto.aws(
        TOKYO,
        &["s3api", "list-objects-v2", "--bucket", "artifacts"],
    );
    let uploaded = objects["Contents"].as_array().map_or(0, Vec::len);
    // 4 nested templates (both roots upload the same ones: the same keys) + 3 packages.
    assert!(
        uploaded == 7,
        "expected the nested templates and the 3 packages in S3: {objects}"
    );

    // The deploy script's plan for both regions, primary first, with derived parameters.
    let out = run({
        let mut cmd = Command::new("bash");
        cmd.current_dir(workspace_root()).args([
            "scripts/deploy.sh",
            "-c",
            "examples/tozai.toml",
            "--home",
            "tokyo",
            "--bucket-prefix",
            "artifacts",
            "--dry-run",
        ]);
        cmd
    });
    let plan = text(&out.stdout);
    assert!(
        out.status.success(),
        "deploy.sh --dry-run: {}{plan}",
        text(&out.stderr)
    );
    let deploys: Vec<&str> = plan
        .lines()
        .filter(|l| l.starts_with("aws cloudformation deploy"))
        .collect();
    assert_eq!(deploys.len(), 2, "{plan}");
    assert!(deploys[0].contains("--region ap-northeast-1") && deploys[0].contains("Primary=tokyo"));
    assert!(
        deploys[1].contains("--region ap-northeast-3") && deploys[1].contains("ThisRegion=osaka")
    );
    for d in &deploys {
        assert!(
            d.contains("CAPABILITY_NAMED_IAM") && d.contains("CAPABILITY_AUTO_EXPAND"),
            "{d}"
        );
    }
    for script in ["scripts/deploy.sh", "scripts/package-lambdas.sh"] {
        let out = run({
            let mut cmd = Command::new("bash");
            cmd.current_dir(workspace_root()).args(["-n", script]);
            cmd
        });
        assert!(
            out.status.success(),
            "bash -n {script}: {}",
            text(&out.stderr)
        );
    }
}

#[test]
fn the_sync_judges_timeout_is_a_root_stack_parameter_that_reaches_the_function() {
    // A push of many files takes the sync-judge a GetDifferences page per 100 paths: an
    // operator raises its timeout with `scripts/deploy.sh ... -- SyncJudgeTimeout=100`.
    let config = workspace_root().join("examples/tozai.toml");
    let raised = model_with(&config, &["SyncJudgeTimeout=100"]);
    for (region, root) in [("tokyo", "primary"), ("tokyo", "secondary")] {
        let sync = &raised[region]["roots"][root]["stacks"]["Sync"];
        assert_eq!(sync["parameters"]["SyncJudgeTimeout"], "100", "{root}");
        assert_eq!(
            function(sync, "SyncJudge")["Timeout"],
            "100",
            "{region}'s {root} root: the parameter reaches the function"
        );
        assert_eq!(
            function(sync, "Mirror")["Timeout"],
            "900",
            "the mirror keeps its own"
        );
    }
    // Under the lease of a claimed start (see the_judges_timeouts_stay_below_the_start_lease):
    // a longer timeout is refused when the stack is evaluated, not at deploy time.
    let mut cmd = Command::new(tool("python"));
    cmd.current_dir(workspace_root())
        .arg(workspace_root().join("tests/support/infra_templates.py"))
        .args([
            "model",
            "infra",
            config.to_str().unwrap(),
            "SyncJudgeTimeout=101",
        ]);
    let out = run(cmd);
    let err = text(&out.stderr);
    assert!(
        !out.status.success() && err.contains("SyncJudgeTimeout=101") && err.contains("MaxValue"),
        "a timeout over 100 s must be refused: {err}"
    );
}

// ---------------------------------------------------------------- scripts/deploy.sh

/// A copy of what `scripts/deploy.sh` reads (scripts, infra/), with stand-in packages built
/// for `config` (`--no-build`), in a temporary directory.
fn deploy_workspace(config: &str) -> TempDir {
    let work = TempDir::new().unwrap();
    let root = work.path();
    for dir in [
        "scripts",
        "infra/common",
        "infra/primary",
        "infra/secondary",
        "target/lambda",
    ] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    for file in [
        "scripts/deploy.sh",
        "scripts/package-lambdas.sh",
        "infra/params.py",
        "infra/common/table.yaml",
        "infra/common/alarms.yaml",
        "infra/common/pipeline-judge.yaml",
        "infra/common/sync.yaml",
        "infra/primary/root.yaml",
        "infra/secondary/root.yaml",
    ] {
        std::fs::copy(workspace_root().join(file), root.join(file)).unwrap();
    }
    std::fs::write(root.join("tozai.toml"), config).unwrap();
    for f in ["sync-judge", "pipeline-judge", "mirror"] {
        std::fs::create_dir_all(root.join(format!("target/lambda/{f}"))).unwrap();
        std::fs::write(root.join(format!("target/lambda/{f}/tozai.toml")), config).unwrap();
        std::fs::write(
            root.join(format!("target/lambda/{f}.zip")),
            format!("PK\x05\x06stand-in for {f}"),
        )
        .unwrap();
    }
    std::fs::write(root.join("target/lambda/ARCH"), "arm64\n").unwrap();
    work
}

/// `bash scripts/deploy.sh ARGS` in `dir`, its AWS CLI (the tests' virtualenv's) talking to
/// moto only: moto's credentials, every service's endpoint moto's.
fn deploy_sh(moto: &Moto, dir: &Path, args: &[&str]) -> Output {
    let aws = moto.aws_command(TOKYO);
    let mut cmd = Command::new("bash");
    cmd.env_clear();
    for (key, value) in aws.get_envs() {
        if let Some(value) = value {
            cmd.env(key, value);
        }
    }
    let path = std::env::join_paths(std::iter::once(venv().join("bin")).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .unwrap();
    cmd.env("PATH", path)
        .env("AWS_ENDPOINT_URL", moto.endpoint_url())
        .current_dir(dir)
        .arg("scripts/deploy.sh")
        .args(args);
    run(cmd)
}

#[test]
fn the_deploy_script_creates_private_artifact_buckets_in_us_east_1_and_in_other_regions() {
    // S3 refuses `LocationConstraint=us-east-1` (InvalidLocationConstraint, as moto does):
    // a primary in N. Virginia must still get its bucket.
    let example = std::fs::read_to_string(workspace_root().join("examples/tozai.toml")).unwrap();
    let config = example.replacen(
        "aws_region = \"ap-northeast-1\"",
        "aws_region = \"us-east-1\"",
        1,
    );
    assert_ne!(
        config, example,
        "the example's tokyo region moved to us-east-1"
    );
    let work = deploy_workspace(&config);
    let args = [
        "-c",
        "tozai.toml",
        "--home",
        "tokyo",
        "--bucket-prefix",
        "tozai-artifacts",
        "--account",
        MOTO_ACCOUNT_ID,
        "--no-build",
    ];

    // What --dry-run shows: no location constraint in us-east-1, the region's elsewhere.
    let moto = Moto::start();
    let out = deploy_sh(&moto, work.path(), &[&args[..], &["--dry-run"]].concat());
    let plan = text(&out.stdout);
    assert!(
        out.status.success(),
        "deploy.sh --dry-run: {}{plan}",
        text(&out.stderr)
    );
    let creates: Vec<&str> = plan
        .lines()
        .filter(|l| l.starts_with("aws s3api create-bucket"))
        .collect();
    assert_eq!(creates.len(), 2, "{plan}");
    assert!(
        creates[0].contains("--bucket tozai-artifacts-us-east-1 --region us-east-1")
            && !creates[0].contains("LocationConstraint"),
        "{}",
        creates[0]
    );
    assert!(
        creates[1].contains("--bucket tozai-artifacts-ap-northeast-3")
            && creates[1].contains("LocationConstraint=ap-northeast-3"),
        "{}",
        creates[1]
    );

    // Against moto's S3: both buckets made, in their regions, private, packages uploaded.
    for attempt in ["first", "second (the buckets exist)"] {
        let out = deploy_sh(
            &moto,
            work.path(),
            &[&args[..], &["--package-only"]].concat(),
        );
        assert!(
            out.status.success(),
            "deploy.sh --package-only, {attempt} run: {}{}\n--- moto log\n{}",
            text(&out.stderr),
            text(&out.stdout),
            moto.log()
        );
    }
    for (bucket, aws_region, location) in [
        ("tozai-artifacts-us-east-1", "us-east-1", Value::Null),
        (
            "tozai-artifacts-ap-northeast-3",
            "ap-northeast-3",
            json!("ap-northeast-3"),
        ),
    ] {
        let got = moto.aws(
            aws_region,
            &["s3api", "get-bucket-location", "--bucket", bucket],
        );
        assert_eq!(got["LocationConstraint"], location, "{bucket}: {got}");
        let block = moto.aws(
            aws_region,
            &["s3api", "get-public-access-block", "--bucket", bucket],
        );
        assert_eq!(
            block["PublicAccessBlockConfiguration"],
            json!({"BlockPublicAcls": true, "IgnorePublicAcls": true,
                   "BlockPublicPolicy": true, "RestrictPublicBuckets": true}),
            "{bucket} is private"
        );
        let objects = moto.aws(
            aws_region,
            &["s3api", "list-objects-v2", "--bucket", bucket],
        );
        let keys: Vec<&str> = objects["Contents"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|o| o["Key"].as_str())
            .collect();
        assert!(
            keys.len() >= 4 && keys.iter().all(|k| k.starts_with("tozai/")),
            "{bucket}: the nested templates and packages, under the stack's prefix: {keys:?}"
        );
    }
    for region in ["tokyo", "osaka"] {
        let packaged =
            std::fs::read_to_string(work.path().join(format!("target/infra/{region}.yaml")))
                .unwrap_or_else(|e| panic!("target/infra/{region}.yaml: {e}"));
        assert!(
            packaged.contains("tozai-artifacts-") && !packaged.contains("../common/"),
            "{region}'s packaged root still names local templates:\n{packaged}"
        );
    }
    for aws_region in ["us-east-1", "ap-northeast-3"] {
        let stacks = moto.aws(aws_region, &["cloudformation", "list-stacks"]);
        assert_eq!(
            stacks["StackSummaries"],
            json!([]),
            "--package-only deploys nothing ({aws_region})"
        );
    }
}

// ---------------------------------------------------------------- scripts/package-lambdas.sh

/// A C compiler for the tests' small ELF binaries; missing is a failure saying what to install.
fn c_compiler(name: &str) -> PathBuf {
    let found = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|dir| dir.join(name))
        .find(|p| p.is_file());
    found.unwrap_or_else(|| {
        panic!(
            "{name} is missing: run `bash scripts/setup-test-env.sh` (it installs the Debian \\
             packages gcc-aarch64-linux-gnu and libc6-dev-arm64-cross, which compile the \\
             aarch64 binaries the Lambda package check is tried on)"
        )
    })
}

/// Compiles `source` (C) with `compiler` and `flags` into `dir/name`; returns its path.
fn compile(compiler: &Path, dir: &Path, name: &str, source: &str, flags: &[&str]) -> PathBuf {
    let src = dir.join(format!("{name}.c"));
    std::fs::write(&src, source).unwrap();
    let out = dir.join(name);
    let mut cmd = Command::new(compiler);
    cmd.current_dir(dir)
        .args(["-O2", "-o"])
        .arg(&out)
        .arg(&src)
        .args(flags);
    let done = run(cmd);
    assert!(
        done.status.success(),
        "{} {name}.c: {}",
        compiler.display(),
        text(&done.stderr)
    );
    out
}

/// The binaries the check is tried on, for one architecture: a clean one, and one each that
/// needs what provided.al2023 lacks.
struct Binaries {
    clean: PathBuf,
    newer_glibc: PathBuf,
    extra_library: PathBuf,
}

fn binaries(compiler: &Path, dir: &Path) -> Binaries {
    std::fs::create_dir_all(dir).unwrap();
    let clean = compile(
        compiler,
        dir,
        "clean",
        "#include <stdio.h>\nint main(void) { puts(\"hi\"); return 0; }\n",
        &[],
    );
    // arc4random is glibc 2.36's (Debian 12's glibc; provided.al2023 has 2.34).
    let newer_glibc = compile(
        compiler,
        dir,
        "newer-glibc",
        "#include <stdio.h>\n#include <stdlib.h>\n\
         int main(void) { printf(\"%u\\n\", arc4random()); return 0; }\n",
        &[],
    );
    let lib = dir.join("libextra.so");
    let mut cmd = Command::new(compiler);
    std::fs::write(dir.join("extra.c"), "int extra(void) { return 0; }\n").unwrap();
    cmd.current_dir(dir)
        .args(["-shared", "-fPIC", "-o"])
        .arg(&lib)
        .arg("extra.c");
    assert!(run(cmd).status.success(), "cannot build libextra.so");
    let extra_library = compile(
        compiler,
        dir,
        "extra-library",
        "int extra(void);\nint main(void) { return extra(); }\n",
        &["-L.", "-lextra"],
    );
    Binaries {
        clean,
        newer_glibc,
        extra_library,
    }
}

/// Runs `scripts/package-lambdas.sh --arch ARCH` in a copy of the workspace where a stand-in
/// `cargo` "builds" every function as `binary` (where plain cargo, or cargo-lambda for arm64,
/// would put it): what the script's check then makes of the binary.
fn package_lambdas(arch: &str, binary: &Path) -> (Output, TempDir) {
    let work = TempDir::new().unwrap();
    let root = work.path();
    std::fs::create_dir_all(root.join("scripts")).unwrap();
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::copy(
        workspace_root().join("scripts/package-lambdas.sh"),
        root.join("scripts/package-lambdas.sh"),
    )
    .unwrap();
    std::fs::copy(
        workspace_root().join("examples/tozai.toml"),
        root.join("tozai.toml"),
    )
    .unwrap();
    let cargo = root.join("bin/cargo");
    std::fs::write(
        &cargo,
        r#"#!/usr/bin/env bash
# A stand-in for cargo and cargo-lambda: copies $STAND_IN_BINARY where they put each -p.
set -euo pipefail
if [ "$1" = lambda ] && [ "${2:-}" = --version ]; then echo "cargo-lambda (stand-in)"; exit 0; fi
lambda=0 out=target/release packages=()
[ "$1" = lambda ] && lambda=1
while [ $# -gt 0 ]; do
  case "$1" in
    -p) packages+=("$2"); shift 2 ;;
    --target) out="target/$2/release"; shift 2 ;;
    *) shift ;;
  esac
done
for p in "${packages[@]}"; do
  if [ "$lambda" = 1 ]; then dest="target/lambda/$p/bootstrap"; else dest="$out/$p"; fi
  mkdir -p "$(dirname "$dest")"
  cp "$STAND_IN_BINARY" "$dest"
done
"#,
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&cargo, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = std::env::join_paths(std::iter::once(root.join("bin")).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .unwrap();
    let mut cmd = Command::new("bash");
    cmd.current_dir(root)
        .env("PATH", path)
        .env("STAND_IN_BINARY", binary)
        .args([
            "scripts/package-lambdas.sh",
            "-c",
            "tozai.toml",
            "--arch",
            arch,
        ]);
    (run(cmd), work)
}

#[test]
fn the_lambda_package_check_refuses_what_provided_al2023_cannot_start_on_both_architectures() {
    let dir = TempDir::new().unwrap();
    let x86 = binaries(&c_compiler("cc"), &dir.path().join("x86_64"));
    let arm = binaries(
        &c_compiler("aarch64-linux-gnu-gcc"),
        &dir.path().join("arm64"),
    );
    // Linked with -z pack-relative-relocs, a binary needs GLIBC_ABI_DT_RELR (glibc 2.36).
    let relr = compile(
        &c_compiler("cc"),
        &dir.path().join("x86_64"),
        "relr",
        "#include <stdio.h>\nint main(void) { puts(\"hi\"); return 0; }\n",
        &["-Wl,-z,pack-relative-relocs"],
    );

    for (arch, b) in [("x86_64", &x86), ("arm64", &arm)] {
        let (out, work) = package_lambdas(arch, &b.clean);
        assert!(
            out.status.success(),
            "{arch}: a clean binary is packaged: {}{}",
            text(&out.stderr),
            text(&out.stdout)
        );
        for f in ["sync-judge", "pipeline-judge", "mirror"] {
            assert!(
                work.path().join(format!("target/lambda/{f}.zip")).is_file(),
                "{arch}: {f}.zip"
            );
        }
        assert_eq!(
            std::fs::read_to_string(work.path().join("target/lambda/ARCH")).unwrap(),
            format!("{arch}\n")
        );

        let refused: [(&str, &Path, &str); 3] = [
            ("a newer glibc", &b.newer_glibc, "needs glibc 2.36"),
            ("another library", &b.extra_library, "needs libextra.so"),
            (
                "the other architecture",
                if arch == "x86_64" {
                    &arm.clean
                } else {
                    &x86.clean
                },
                &format!("not {arch}"),
            ),
        ];
        for (what, binary, says) in refused {
            let (out, work) = package_lambdas(arch, binary);
            let err = text(&out.stderr);
            assert_eq!(
                out.status.code(),
                Some(1),
                "{arch}: a binary that needs {what} must be refused: {err}{}",
                text(&out.stdout)
            );
            assert!(err.contains(says), "{arch}, {what}: {err}");
            assert!(
                !work.path().join("target/lambda/sync-judge.zip").exists(),
                "{arch}, {what}: nothing is packaged"
            );
        }
    }
    let (out, _work) = package_lambdas("x86_64", &relr);
    let err = text(&out.stderr);
    assert!(
        out.status.code() == Some(1) && err.contains("GLIBC_ABI_DT_RELR"),
        "a binary that needs GLIBC_ABI_DT_RELR must be refused: {err}"
    );
}

/// The judges' packages link neither libgit2 nor OpenSSL (they read changes from
/// CodeCommit's API, and start fast), while the mirror's links both, statically: each
/// function's dependency graph as `scripts/package-lambdas.sh` builds it (one package at a
/// time, so features are not unified with the mirror's).
#[test]
fn the_judges_link_neither_libgit2_nor_openssl_and_the_mirror_links_both() {
    let graph = |package: &str| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let out = Command::new(cargo)
            .current_dir(workspace_root())
            .args(["tree", "--locked", "--offline", "-p", package])
            .args(["-e", "normal,build", "--prefix", "none", "--format", "{p}"])
            .output()
            .expect("cargo tree runs");
        assert!(
            out.status.success(),
            "cargo tree -p {package}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let native = ["libgit2-sys ", "openssl-sys ", "openssl-src "];
    for judge in ["tozai-sync-judge", "tozai-pipeline-judge"] {
        let tree = graph(judge);
        assert!(tree.contains("tozai "), "{judge}: {tree}");
        for crate_name in native {
            assert!(
                !tree.contains(crate_name),
                "{judge} links {crate_name}:\n{tree}"
            );
        }
    }
    let mirror = graph("tozai-mirror");
    for crate_name in native {
        assert!(
            mirror.contains(crate_name),
            "the mirror lacks {crate_name}:\n{mirror}"
        );
    }
}
