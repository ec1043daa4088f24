//! The three Lambda binaries, end to end: each runs as its own process against a local
//! Lambda Runtime API ([`LambdaApi`]), with the AWS SDK pointed at the stand-ins by the
//! SDK's standard service-specific variables (`AWS_ENDPOINT_URL_CODECOMMIT`,
//! `AWS_ENDPOINT_URL_DYNAMODB`, `AWS_ENDPOINT_URL_EVENTBRIDGE`,
//! `AWS_ENDPOINT_URL_CODEPIPELINE`, `AWS_ENDPOINT_URL_CODEBUILD`) and git at the lighttpd
//! stand-in by `TOZAI_CODECOMMIT_ENDPOINT`:
//!
//! - CodeCommit's API: [`CodeCommitApi`] (answers computed by the git CLI, SigV4 checked);
//! - CodeCommit's git: [`GitServer`] (git http-backend behind the IAM password check), over
//!   the same bare repositories;
//! - DynamoDB, EventBridge (captured into SQS), CodePipeline, CodeBuild: [`Moto`], set up
//!   with awscli. moto ignores `clientRequestToken` and `idempotencyToken`, so a single start
//!   per (target, commit) here is tozai's own doing: its checkpoints and its DynamoDB claim.
//!
//! Events are shaped like AWS's sample (see FACTS.md) and built here; pushes are real
//! commits made with the git CLI. Each repository has its own CodeCommit name
//! (`core-infra` in Tokyo, `core-infra-dr` in Osaka) because one git stand-in serves both
//! regions under `/v1/repos/NAME`.
//!
//! Needs the binaries built (`cargo build --workspace --bins`), and what
//! `scripts/setup-test-env.sh` installs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tempfile::TempDir;
use tozai_tests::GitRepo;
use tozai_tests::lambda_api::{Function, LambdaApi, credentials};
use tozai_tests::mirror::{git, rev, try_git};
use tozai_tests::server::GitServer;
use tozai_tests::stand_ins::{CodeCommitApi, MOTO_ACCOUNT_ID, Moto, Queue, RecordedRequest};

const TOKYO: &str = "ap-northeast-1";
const OSAKA: &str = "ap-northeast-3";
const PRIMARY_REPO: &str = "core-infra";
const STANDBY_REPO: &str = "core-infra-dr";
const PIPELINE: &str = "core-infra-deploy";
const PROJECT: &str = "core-infra-build";
const TABLE: &str = "tozai-checkpoints";
const MIRROR_ROLE: &str = "tozai-mirror";

const SYNC_JUDGE: &str = "tozai-sync-judge";
const MIRROR: &str = "tozai-mirror";
const PIPELINE_JUDGE: &str = "tozai-pipeline-judge";

/// The seed-layout config of [`seed_config`](tozai_tests::lambda_api::seed_config), plus a
/// CodeBuild target in Osaka.
fn config_text() -> String {
    format!(
        r#"{}
[[pipeline]]
name = "osaka-build"
region = "osaka"
codebuild = "{PROJECT}"
branches = ["main"]
paths = ["secondary/**"]
"#,
        tozai_tests::lambda_api::seed_config()
    )
}

/// A function process and the Runtime API it polls (dropped in this order: the process is
/// killed before its API stops).
struct Lambda {
    function: Function,
    _api: LambdaApi,
}

impl std::ops::Deref for Lambda {
    type Target = Function;
    fn deref(&self) -> &Function {
        &self.function
    }
}

impl Lambda {
    /// Invokes the function; it must succeed. Returns its response (the decision record).
    fn ok(&self, event: &Value, what: &str) -> Value {
        match self.invoke(event.clone()) {
            Ok(response) => response,
            Err(error) => panic!(
                "{what}: {} answered an error: {error}\nevent: {event}\n{}",
                self.name(),
                self.log()
            ),
        }
    }

    /// Invokes the function; it must fail. Returns the error body.
    fn err(&self, event: &Value, what: &str) -> Value {
        match self.invoke(event.clone()) {
            Err(error) => error,
            Ok(response) => panic!(
                "{what}: {} succeeded but should have failed: {response}\nevent: {event}\n{}",
                self.name(),
                self.log()
            ),
        }
    }
}

/// Both repositories (bare, served by both stand-ins), moto with the tables, pipelines and
/// project, a work tree that pushes into the repositories, and the config.
struct World {
    moto: Moto,
    codecommit: CodeCommitApi,
    git_server: GitServer,
    work: GitRepo,
    primary: PathBuf,
    standby: PathBuf,
    config: PathBuf,
    scratch: TempDir,
    _repos: TempDir,
}

/// What the standby's and the primary's repositories hold at the start.
const SEED_FILES: &[(&str, &str)] = &[
    ("common/templates/vpc.yaml", "vpc: 1\n"),
    ("primary/templates/root.yaml", "root: tokyo\n"),
    ("secondary/templates/root.yaml", "root: osaka\n"),
    ("docs/runbook.md", "# runbook\n"),
];

impl World {
    /// Everything, with Tokyo's pipeline created when `tokyo_pipeline`.
    fn new(tokyo_pipeline: bool) -> Self {
        let repos = TempDir::new().unwrap();
        let git_server = GitServer::start(repos.path(), &[credentials()]);
        let codecommit = CodeCommitApi::start(repos.path(), &[credentials()]);
        let primary = git_server.create_repo(PRIMARY_REPO);
        let standby = git_server.create_repo(STANDBY_REPO);
        let work = GitRepo::new();
        for (path, contents) in SEED_FILES {
            work.write(path, contents);
        }
        work.commit("seed");
        for bare in [&primary, &standby] {
            work.git(&["push", "-q", &bare.display().to_string(), "main"]);
        }
        let scratch = TempDir::new().unwrap();
        let config = scratch.path().join("tozai.toml");
        std::fs::write(&config, config_text()).unwrap();

        let moto = Moto::start();
        for region in [TOKYO, OSAKA] {
            moto.create_checkpoint_table(region, TABLE);
        }
        let world = Self {
            moto,
            codecommit,
            git_server,
            work,
            primary,
            standby,
            config,
            scratch,
            _repos: repos,
        };
        if tokyo_pipeline {
            world.create_pipeline(TOKYO, PRIMARY_REPO);
        }
        world.create_pipeline(OSAKA, STANDBY_REPO);
        world.moto.create_codebuild_project(OSAKA, PROJECT);
        world
    }

    fn create_pipeline(&self, region: &str, repository: &str) {
        self.moto.create_pipeline(
            region,
            PIPELINE,
            &tozai_tests::stand_ins::source_and_build_stages(repository, "main", PROJECT),
        );
    }

    /// Starts `binary` as the function of `region` (`tokyo` or `osaka`), pointed at the
    /// stand-ins, with `extra` settings.
    fn lambda(&self, binary: &str, region: &str, extra: &[(&str, &str)]) -> Lambda {
        let api = LambdaApi::start();
        let aws_region = if region == "tokyo" { TOKYO } else { OSAKA };
        let moto = self.moto.endpoint_url();
        let codecommit = self.codecommit.endpoint_url();
        let git = self.git_server.url_prefix();
        let config = self.config.display().to_string();
        let cache = self
            .scratch
            .path()
            .join("mirror-cache")
            .display()
            .to_string();
        let mut env: Vec<(&str, &str)> = vec![
            ("AWS_REGION", aws_region),
            ("AWS_LAMBDA_FUNCTION_NAME", binary),
            ("TOZAI_CONFIG", &config),
            ("TOZAI_TABLE", TABLE),
            ("TOZAI_REGION", region),
            ("TOZAI_IGNORE_ROLES", MIRROR_ROLE),
            ("TOZAI_CACHE", &cache),
            ("TOZAI_CODECOMMIT_ENDPOINT", &git),
            ("AWS_ENDPOINT_URL_CODECOMMIT", &codecommit),
            ("AWS_ENDPOINT_URL_DYNAMODB", &moto),
            ("AWS_ENDPOINT_URL_EVENTBRIDGE", &moto),
            ("AWS_ENDPOINT_URL_CODEPIPELINE", &moto),
            ("AWS_ENDPOINT_URL_CODEBUILD", &moto),
            ("RUST_LOG", "info"),
        ];
        env.extend_from_slice(extra);
        let function = Function::spawn(binary, &api, &env);
        Lambda {
            function,
            _api: api,
        }
    }

    /// Commits `files` in the work tree and pushes `main` to `bare`: (old, new) commit ids.
    fn push(&self, bare: &Path, files: &[(&str, &str)]) -> (String, String) {
        let old = rev(bare, "refs/heads/main");
        for (path, contents) in files {
            self.work.write(path, contents);
        }
        let new = self.work.commit(&format!("change {}", files[0].0));
        self.work
            .git(&["push", "-q", &bare.display().to_string(), "main"]);
        (old, new)
    }

    fn head(bare: &Path) -> String {
        rev(bare, "refs/heads/main")
    }

    /// The bodies of the `operation` requests moto received for `region`.
    fn recorded(&self, operation: &str, region: &str) -> Vec<Value> {
        self.moto
            .recorded_requests()
            .iter()
            .filter(|r| r.operation() == Some(operation) && signed_region(r) == Some(region))
            .map(RecordedRequest::json)
            .collect()
    }

    /// StartPipelineExecution requests in `region`.
    fn pipeline_starts(&self, region: &str) -> Vec<Value> {
        self.recorded("StartPipelineExecution", region)
    }

    /// StartBuild requests in `region`.
    fn build_starts(&self, region: &str) -> Vec<Value> {
        self.recorded("StartBuild", region)
    }

    /// A queue receiving tozai's own events from `region`'s default bus.
    fn tozai_events(&self, region: &str) -> Queue {
        self.moto
            .sqs_queue_receiving(region, "default", &json!({"source": ["tozai"]}))
    }

    /// The items of `region`'s checkpoint table.
    fn table_items(&self, region: &str) -> Vec<Value> {
        self.moto
            .aws(region, &["dynamodb", "scan", "--table-name", TABLE])["Items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The logs of the stand-ins, for failure messages.
    fn logs(&self) -> String {
        format!(
            "--- CodeCommit API stand-in\n{}\n--- git stand-in\n{}",
            self.codecommit.log(),
            self.git_server.log()
        )
    }
}

/// The region in a recorded request's SigV4 credential scope.
fn signed_region(r: &RecordedRequest) -> Option<&str> {
    let auth = r.header("Authorization")?;
    let scope = auth.split("Credential=").nth(1)?.split(',').next()?;
    scope.split('/').nth(2)
}

static EVENT_IDS: AtomicU32 = AtomicU32::new(1);

/// A "CodeCommit Repository State Change" event for `reference` of `repository` in
/// `aws_region`, shaped like the docs' sample: `referenceCreated` (no old), `referenceUpdated`
/// or `referenceDeleted` (no new), pushed by `caller`.
fn ref_event(
    repository: &str,
    aws_region: &str,
    reference: &str,
    old: Option<&str>,
    new: Option<&str>,
    caller: &str,
) -> Value {
    let (kind, short) = match reference.strip_prefix("refs/heads/") {
        Some(branch) => ("branch", branch),
        None => ("tag", reference.trim_start_matches("refs/tags/")),
    };
    let event = match (old, new) {
        (None, Some(_)) => "referenceCreated",
        (Some(_), Some(_)) => "referenceUpdated",
        _ => "referenceDeleted",
    };
    let mut detail = json!({
        "callerUserArn": caller,
        "event": event,
        "referenceFullName": reference,
        "referenceName": short,
        "referenceType": kind,
        "repositoryId": "280e6f04-7a9c-4c72-8d8f-947d83e21a96",
        "repositoryName": repository,
    });
    if let Some(new) = new {
        detail["commitId"] = json!(new);
    }
    if let Some(old) = old {
        detail["oldCommitId"] = json!(old);
    }
    let n = EVENT_IDS.fetch_add(1, Ordering::Relaxed);
    json!({
        "version": "0",
        "id": format!("3f7101d2-f1c4-d0a4-6d89-{:012x}", n),
        "detail-type": "CodeCommit Repository State Change",
        "source": "aws.codecommit",
        "account": MOTO_ACCOUNT_ID,
        "time": "2024-04-01T00:00:00Z",
        "region": aws_region,
        "resources": [format!("arn:aws:codecommit:{aws_region}:{MOTO_ACCOUNT_ID}:{repository}")],
        "detail": detail,
    })
}

const ENGINEER: &str = "arn:aws:iam::123456789012:user/engineer";

fn mirror_caller() -> String {
    format!("arn:aws:sts::{MOTO_ACCOUNT_ID}:assumed-role/{MIRROR_ROLE}/{MIRROR_ROLE}")
}

/// A push of `main` to the primary (Tokyo), by an engineer.
fn primary_push(old: &str, new: &str) -> Value {
    ref_event(
        PRIMARY_REPO,
        TOKYO,
        "refs/heads/main",
        Some(old),
        Some(new),
        ENGINEER,
    )
}

/// The mirror's push of `main` to the standby (Osaka).
fn standby_push(old: &str, new: &str) -> Value {
    ref_event(
        STANDBY_REPO,
        OSAKA,
        "refs/heads/main",
        Some(old),
        Some(new),
        &mirror_caller(),
    )
}

/// CodePipeline's and CodeBuild's start token tozai must send for (target, commit):
/// `tozai-` + the first 8 bytes of SHA-256(target) in hex + `-` + the commit, computed here
/// with coreutils' sha256sum.
/// The token tozai derives for a start, recomputed from what the start sent: `tozai-COMMIT-`
/// and the first 16 bytes of SHA-256 (sha256sum, not tozai's code) over the target, every
/// parameter and the claim's sequence as a JSON array, so a retry of one start gives the
/// same token and other parameters, or another transition, another.
fn expected_token(target: &str, start: &Value, commit: &str, sequence: u64) -> String {
    let (kind, name, action, vars) = match start.get("projectName") {
        Some(project) => (
            "codebuild",
            project,
            Value::Null,
            "environmentVariablesOverride",
        ),
        None => ("codepipeline", &start["name"], json!("Source"), "variables"),
    };
    let variables: Vec<Value> = start[vars]
        .as_array()
        .expect("the start sends variables")
        .iter()
        .map(|v| json!([v["name"], v["value"]]))
        .collect();
    let parameters = json!([
        target,
        kind,
        name,
        action,
        commit,
        "refs/heads/main",
        variables,
        sequence
    ])
    .to_string();
    let out = Command::new("sh")
        .args(["-c", "printf %s \"$1\" | sha256sum", "sh", &parameters])
        .output()
        .expect("sha256sum runs");
    let hex = String::from_utf8_lossy(&out.stdout);
    format!("tozai-{commit}-{}", &hex[..32])
}

/// The sequence a target's last start was claimed with: its checkpoint's version before
/// the start was recorded (the record is the swap after the claim).
fn claim_sequence(items: &[Value], target: &str) -> u64 {
    let consumer = format!("\"target:{target}\"");
    let item = items
        .iter()
        .find(|i| {
            i["pk"]["S"]
                .as_str()
                .is_some_and(|k| k.contains(&consumer) && k.contains("refs/heads/main"))
        })
        .unwrap_or_else(|| panic!("no checkpoint of {target}: {items:?}"));
    let version: u64 = item["version"]["N"].as_str().unwrap().parse().unwrap();
    version - 1
}

/// The variable `name` of a StartPipelineExecution body.
fn variable<'a>(start: &'a Value, name: &str) -> Option<&'a str> {
    start["variables"]
        .as_array()?
        .iter()
        .find(|v| v["name"] == name)?["value"]
        .as_str()
}

/// The record of `target` in a pipeline-judge's response.
fn target<'a>(response: &'a Value, name: &str) -> &'a Value {
    response["targets"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["target"] == name))
        .unwrap_or_else(|| panic!("no target {name} in the response {response}"))
}

/// The commits StartPipelineExecution requests pinned, in order.
fn pinned(starts: &[Value]) -> Vec<String> {
    starts
        .iter()
        .map(|s| {
            s["sourceRevisions"][0]["revisionValue"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

fn error_message(error: &Value) -> String {
    error["errorMessage"]
        .as_str()
        .map_or_else(|| error.to_string(), str::to_owned)
}

// ---------------------------------------------------------------- 1. the whole chain

/// A push to the primary that changes `common/` goes all the way: the sync-judge asks for
/// a mirror on the bus, the mirror puts the commit in the standby's repository and says so
/// on the bus, and the standby's pipeline-judge starts the standby's pipeline once, pinned
/// to that commit with a deterministic token (and not the build, whose paths did not
/// change). A later change to `primary/` only is not mirrored.
#[test]
fn a_push_to_the_primary_is_mirrored_and_deploys_the_standby_once() {
    let w = World::new(true);
    let bus = w.tozai_events(TOKYO);
    let standby_before = World::head(&w.standby);
    let (old, new) = w.push(&w.primary, &[("common/templates/vpc.yaml", "vpc: 2\n")]);

    // The primary's own judges.
    let sync = w.lambda(SYNC_JUDGE, "tokyo", &[]);
    let decision = sync.ok(
        &primary_push(&old, &new),
        "the sync-judge on a common/ push",
    );
    assert_eq!(
        decision["sync"]["requested"],
        true,
        "a common/ change must be mirrored: {decision}\n{}",
        sync.log()
    );
    assert_eq!(decision["diffs"][0]["changed"], 1, "{decision}");
    let tokyo_judge = w.lambda(PIPELINE_JUDGE, "tokyo", &[]);
    let tokyo = tokyo_judge.ok(&primary_push(&old, &new), "Tokyo's pipeline-judge");
    assert_eq!(target(&tokyo, "tokyo-core")["result"], "started", "{tokyo}");

    // Sync Requested, as the mirror will receive it from EventBridge.
    let events = w.moto.received(&bus);
    assert_eq!(
        events.len(),
        1,
        "exactly one event on Tokyo's bus after the sync-judge: {events:?}\n{}",
        sync.log()
    );
    let request = &events[0];
    assert_eq!(request["source"], "tozai", "{request}");
    assert_eq!(request["detail-type"], "Sync Requested", "{request}");
    assert_eq!(request["detail"]["repository"], PRIMARY_REPO, "{request}");
    assert_eq!(request["detail"]["ref"], "refs/heads/main", "{request}");
    assert_eq!(request["detail"]["commit"], new.as_str(), "{request}");

    // The mirror.
    let mirror = w.lambda(MIRROR, "tokyo", &[]);
    let mirrored = mirror.ok(request, "the mirror on Sync Requested");
    assert_eq!(
        World::head(&w.standby),
        new,
        "the standby's main after the mirror (response {mirrored})\n{}\n{}",
        mirror.log(),
        w.logs()
    );
    let events = w.moto.received(&bus);
    let completed: Vec<&Value> = events
        .iter()
        .filter(|e| e["detail-type"] == "Sync Completed")
        .collect();
    assert_eq!(
        completed.len(),
        1,
        "one Sync Completed on the bus: {events:?}\n{}",
        mirror.log()
    );
    assert_eq!(completed[0]["detail"]["status"], "in_sync", "{events:?}");
    assert_eq!(completed[0]["detail"]["commit"], new.as_str(), "{events:?}");
    assert_eq!(completed[0]["detail"]["to"], "osaka", "{events:?}");

    // The standby's pipeline-judge, on the push the mirror made.
    let osaka_judge = w.lambda(PIPELINE_JUDGE, "osaka", &[]);
    let osaka = osaka_judge.ok(
        &standby_push(&standby_before, &new),
        "Osaka's pipeline-judge on the mirrored push",
    );
    assert_eq!(target(&osaka, "osaka-core")["result"], "started", "{osaka}");
    assert_eq!(
        target(&osaka, "osaka-build")["result"],
        "not_started",
        "osaka-build's paths (secondary/**) did not change: {osaka}"
    );
    let starts = w.pipeline_starts(OSAKA);
    assert_eq!(
        starts.len(),
        1,
        "exactly one StartPipelineExecution in Osaka: {starts:?}\n{}",
        osaka_judge.log()
    );
    let start = &starts[0];
    assert_eq!(start["name"], PIPELINE, "{start}");
    assert_eq!(
        start["sourceRevisions"],
        json!([{"actionName": "Source", "revisionType": "COMMIT_ID", "revisionValue": new}]),
        "the start must pin the mirrored commit: {start}"
    );
    assert_eq!(
        start["clientRequestToken"],
        expected_token(
            "osaka-core",
            start,
            &new,
            claim_sequence(&w.table_items(OSAKA), "osaka-core")
        ),
        "{start}"
    );
    assert_eq!(
        variable(start, "TOZAI_COMMIT_ID"),
        Some(new.as_str()),
        "{start}"
    );
    assert_eq!(
        variable(start, "TOZAI_MATCHED_PATHS"),
        Some("common/templates/vpc.yaml"),
        "{start}"
    );
    assert!(w.build_starts(OSAKA).is_empty(), "no build in Osaka");
    let tokyo_starts = w.pipeline_starts(TOKYO);
    assert_eq!(pinned(&tokyo_starts), [new.as_str()], "{tokyo_starts:?}");

    // A change for the primary only: Tokyo deploys it, nothing is mirrored.
    let (old2, new2) = w.push(&w.primary, &[("primary/templates/root.yaml", "root: 2\n")]);
    let decision = sync.ok(
        &primary_push(&old2, &new2),
        "the sync-judge on a primary/ push",
    );
    assert_eq!(decision["sync"]["requested"], false, "{decision}");
    assert_eq!(decision["sync"]["mirror"], false, "{decision}");
    assert_eq!(decision["sync"]["reason"], "no_path_matched", "{decision}");
    let events = w.moto.received(&bus);
    assert!(
        events.is_empty(),
        "a primary/ change must not produce Sync Requested: {events:?}"
    );
    let tokyo = tokyo_judge.ok(&primary_push(&old2, &new2), "Tokyo's judge on primary/");
    assert_eq!(target(&tokyo, "tokyo-core")["result"], "started", "{tokyo}");
    assert_eq!(
        pinned(&w.pipeline_starts(TOKYO)),
        [new.as_str(), new2.as_str()]
    );
    assert_eq!(w.pipeline_starts(OSAKA).len(), 1, "Osaka is not redeployed");
}

/// The mirror's scheduled reconciliation, as EventBridge Scheduler delivers it.
fn schedule() -> Value {
    json!({
        "version": "0", "id": "5a3e7c52-9b1d-4a0e-8f6c-2d4b1e9a7c30",
        "detail-type": "Scheduled Event", "source": "aws.events",
        "account": MOTO_ACCOUNT_ID, "time": "2024-04-01T00:00:00Z", "region": TOKYO,
        "resources": [format!("arn:aws:events:{TOKYO}:{MOTO_ACCOUNT_ID}:rule/tozai-reconcile")],
        "detail": {},
    })
}

/// The mirror Lambda keeps what it pushed in the table (its ledger): a release branch it
/// pushed, squash-merged and deleted at the primary, is deleted at the standby by a new
/// instance whose empty cache never fetched the branch's tip; a branch made on the standby
/// at a mirrored commit is kept and reported.
#[test]
fn the_mirror_deletes_what_it_pushed_and_keeps_what_was_made_on_the_standby() {
    let w = World::new(false);
    let primary = w.primary.display().to_string();
    w.work.branch("release/1.1");
    w.work.write("common/templates/vpc.yaml", "vpc: 11\n");
    let tip = w.work.commit("release 1.1");
    w.work.git(&["push", "-q", &primary, "release/1.1"]);
    let first = w.lambda(MIRROR, "tokyo", &[]);
    first.ok(&schedule(), "the scheduled reconciliation");
    assert_eq!(
        rev(&w.standby, "refs/heads/release/1.1"),
        tip,
        "{}",
        first.log()
    );
    let key = json!([
        "mirrored",
        format!("codecommit::{OSAKA}://{STANDBY_REPO}"),
        "refs/heads/release/1.1"
    ]);
    let recorded = |key: &Value| {
        w.table_items(TOKYO)
            .into_iter()
            .find(|i| i["pk"]["S"].as_str() == Some(key.to_string().as_str()))
            .map(|i| i["commit"]["S"].clone())
    };
    assert_eq!(
        recorded(&key),
        Some(json!(tip)),
        "{:?}",
        w.table_items(TOKYO)
    );
    let main = json!([
        "mirrored",
        format!("codecommit::{OSAKA}://{STANDBY_REPO}"),
        "refs/heads/main"
    ]);
    assert!(recorded(&main).is_some(), "main, in step, is adopted");

    // Squash-merged into main and deleted at the primary; made on the standby.
    w.work.switch("main");
    w.work.git(&["merge", "-q", "--squash", "release/1.1"]);
    let squashed = w.work.commit("release 1.1, squashed");
    w.work
        .git(&["push", "-q", &primary, "main", ":refs/heads/release/1.1"]);
    let mirrored = rev(&w.standby, "refs/heads/main");
    git(&w.standby, &["branch", "release/osaka-fix", &mirrored]);
    let cold = w
        .scratch
        .path()
        .join("another-instance")
        .display()
        .to_string();
    let second = w.lambda(MIRROR, "tokyo", &[("TOZAI_CACHE", &cold)]);
    let deleted = ref_event(
        PRIMARY_REPO,
        TOKYO,
        "refs/heads/release/1.1",
        Some(&tip),
        None,
        ENGINEER,
    );
    let record = second.ok(&deleted, "the mirror on the branch's deletion");
    assert_eq!(
        try_git(
            &w.standby,
            &["rev-parse", "--verify", "-q", "refs/heads/release/1.1"]
        ),
        None,
        "{record}\n{}",
        second.log()
    );
    assert_eq!(recorded(&key), None, "the record is forgotten");
    let reconciled = second.ok(&schedule(), "the next reconciliation");
    let diverged = &reconciled["mirror"]["refs"];
    assert!(
        diverged
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["ref"] == "refs/heads/release/osaka-fix" && r["status"] == "diverged"),
        "{reconciled}"
    );
    git(
        &w.standby,
        &["rev-parse", "--verify", "refs/heads/release/osaka-fix"],
    );
    assert_eq!(
        rev(&w.standby, "refs/heads/main"),
        squashed,
        "main moved on"
    );
}

// ---------------------------------------------------------------- 2. at least once

/// EventBridge and Lambda deliver at least once. The same push delivered five times, one
/// after another and then to five instances at once, starts each target exactly once; a
/// delivery that lost the race is retried and then succeeds without a second start.
#[test]
fn a_push_delivered_five_times_starts_each_target_once() {
    let w = World::new(true);
    let judge = w.lambda(PIPELINE_JUDGE, "osaka", &[]);
    let (old, new) = w.push(
        &w.standby,
        &[
            ("common/templates/vpc.yaml", "vpc: 3\n"),
            ("secondary/templates/root.yaml", "root: osaka 2\n"),
        ],
    );
    let event = standby_push(&old, &new);
    let mut results = Vec::new();
    for i in 0..5 {
        let response = judge.ok(&event, &format!("delivery {}", i + 1));
        results.push((
            target(&response, "osaka-core")["result"].clone(),
            target(&response, "osaka-build")["result"].clone(),
            response["ignored"].clone(),
        ));
    }
    assert_eq!(
        (results[0].0.clone(), results[0].1.clone()),
        (json!("started"), json!("started")),
        "the first delivery starts both targets: {results:?}"
    );
    for later in &results[1..] {
        assert_ne!(later.0, "started", "{results:?}");
        assert_ne!(later.1, "started", "{results:?}");
    }
    assert_eq!(
        pinned(&w.pipeline_starts(OSAKA)),
        [new.as_str()],
        "one StartPipelineExecution for five deliveries\n{}",
        judge.log()
    );
    let builds = w.build_starts(OSAKA);
    assert_eq!(builds.len(), 1, "one StartBuild: {builds:?}");
    assert_eq!(builds[0]["sourceVersion"], new.as_str(), "{builds:?}");
    assert_eq!(
        builds[0]["idempotencyToken"],
        expected_token(
            "osaka-build",
            &builds[0],
            &new,
            claim_sequence(&w.table_items(OSAKA), "osaka-build")
        ),
        "{builds:?}"
    );

    // Five instances at once (Lambda scales out: duplicates can run concurrently).
    let (old, new) = w.push(
        &w.standby,
        &[("secondary/templates/root.yaml", "root: 3\n")],
    );
    let event = standby_push(&old, &new);
    let judges: Vec<Lambda> = (0..5)
        .map(|_| w.lambda(PIPELINE_JUDGE, "osaka", &[]))
        .collect();
    for j in &judges {
        j.wait_ready(Duration::from_secs(60))
            .unwrap_or_else(|status| panic!("init failed ({status:?})\n{}", j.log()));
    }
    let ids: Vec<String> = judges.iter().map(|j| j.submit(event.clone())).collect();
    let mut retried = 0;
    for (j, id) in judges.iter().zip(&ids) {
        let mut outcome = j.outcome(id, Duration::from_secs(120));
        // A loser of the claim answers an error while the winner is starting: the event is
        // retried, as Lambda would, until it succeeds.
        for _ in 0..10 {
            let Err(error) = &outcome else { break };
            assert!(
                error_message(error).contains("another invocation is starting it"),
                "only a lost race may fail: {error}\n{}",
                j.log()
            );
            retried += 1;
            std::thread::sleep(Duration::from_millis(300));
            outcome = j.invoke(event.clone());
        }
        let response = outcome.unwrap_or_else(|e| panic!("still failing: {e}\n{}", j.log()));
        assert!(
            response["targets"].is_array() || response["ignored"].is_string(),
            "{response}"
        );
    }
    let osaka_pipelines = pinned(&w.pipeline_starts(OSAKA));
    assert_eq!(
        osaka_pipelines.iter().filter(|c| **c == new).count(),
        1,
        "one StartPipelineExecution for {new} from five concurrent instances ({retried} \
         retried): {osaka_pipelines:?}\n{}",
        judges.iter().map(|j| j.log()).collect::<String>()
    );
    let builds: Vec<Value> = w
        .build_starts(OSAKA)
        .into_iter()
        .filter(|b| b["sourceVersion"] == new.as_str())
        .collect();
    assert_eq!(builds.len(), 1, "one StartBuild for {new}: {builds:?}");
    // Each target's checkpoint is at the head, with its run and no claim left behind.
    let recorded: Vec<Value> = w
        .table_items(OSAKA)
        .into_iter()
        .filter(|i| {
            i["pk"]["S"]
                .as_str()
                .is_some_and(|k| k.contains("\"target:"))
        })
        .collect();
    assert_eq!(recorded.len(), 2, "two targets: {recorded:?}");
    for item in &recorded {
        assert_eq!(item["commit"]["S"], new.as_str(), "{item}");
        assert!(item["run_id"]["S"].is_string(), "{item}");
        assert!(item.get("pending_commit").is_none(), "{item}");
    }
    println!(
        "at least once: 5 deliveries in a row and 5 concurrent deliveries started each of \
         2 targets once per commit ({retried} lost the claim and were retried)"
    );
}

// ---------------------------------------------------------------- 3. order and loss

/// Events arrive out of order, or not at all. With a checkpoint in DynamoDB and the diffs
/// from the CodeCommit stand-in: the newer event, handled first, starts everything the
/// older one's changes call for, pinned to the newer commit, and the older one then starts
/// nothing (never a rollback); after a lost event, the next push still starts what the lost
/// one should have, and is still mirrored.
#[test]
fn events_out_of_order_or_lost_still_start_what_changed() {
    let w = World::new(true);
    let bus = w.tozai_events(TOKYO);
    let judge = w.lambda(PIPELINE_JUDGE, "tokyo", &[]);
    let sync = w.lambda(SYNC_JUDGE, "tokyo", &[]);

    // A first push sets the checkpoints (documentation only: nothing starts).
    let (a, c0) = w.push(&w.primary, &[("docs/runbook.md", "# runbook v2\n")]);
    let first = judge.ok(&primary_push(&a, &c0), "the first push");
    assert_eq!(
        target(&first, "tokyo-core")["result"],
        "not_started",
        "{first}"
    );
    sync.ok(&primary_push(&a, &c0), "the first push (sync)");

    // Reverse order: C1 changes primary/, C2 only docs; C2's event comes first.
    let (_, c1) = w.push(&w.primary, &[("primary/templates/app.yaml", "app: 1\n")]);
    let (_, c2) = w.push(&w.primary, &[("docs/changes.md", "c2\n")]);
    let e1 = primary_push(&c0, &c1);
    let e2 = primary_push(&c1, &c2);
    let newer = judge.ok(&e2, "the newer event first");
    let record = target(&newer, "tokyo-core");
    assert_eq!(record["result"], "started", "{newer}\n{}", judge.log());
    assert_eq!(
        newer["diffs"][0]["base"], c0,
        "the diff starts at the checkpoint, not at the event's old commit: {newer}"
    );
    assert_eq!(newer["diffs"][0]["why"], "checkpoint", "{newer}");
    let older = judge.ok(&e1, "the older event second");
    assert_ne!(
        older
            .get("targets")
            .map(|_| target(&older, "tokyo-core")["result"].clone()),
        Some(json!("started")),
        "the older event must not start anything: {older}"
    );
    let starts = w.pipeline_starts(TOKYO);
    assert_eq!(
        pinned(&starts),
        [c2.as_str()],
        "{starts:?}\n{}",
        judge.log()
    );
    assert!(
        variable(&starts[0], "TOZAI_MATCHED_PATHS")
            .is_some_and(|p| p.contains("primary/templates/app.yaml")),
        "C1's change is what started it: {}",
        starts[0]
    );
    for event in [&e2, &e1] {
        let decision = sync.ok(event, "the sync-judge, reverse order");
        assert_ne!(decision["sync"]["requested"], true, "{decision}");
    }
    assert!(w.moto.received(&bus).is_empty(), "nothing to mirror yet");

    // A lost event: C3 changes common/, its event never comes; C4 changes docs only.
    let (_, c3) = w.push(&w.primary, &[("common/templates/net.yaml", "net: 1\n")]);
    let (_, c4) = w.push(&w.primary, &[("docs/changes.md", "c4\n")]);
    let after_loss = judge.ok(&primary_push(&c3, &c4), "the event after a lost one");
    assert_eq!(
        target(&after_loss, "tokyo-core")["result"],
        "started",
        "{after_loss}"
    );
    let starts = w.pipeline_starts(TOKYO);
    assert_eq!(pinned(&starts), [c2.as_str(), c4.as_str()], "{starts:?}");
    assert!(
        variable(&starts[1], "TOZAI_MATCHED_PATHS")
            .is_some_and(|p| p.contains("common/templates/net.yaml")),
        "the lost push's change is what started it: {}",
        starts[1]
    );
    let decision = sync.ok(&primary_push(&c3, &c4), "the sync-judge after a lost event");
    assert_eq!(decision["sync"]["requested"], true, "{decision}");
    let events = w.moto.received(&bus);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["detail-type"], "Sync Requested", "{events:?}");
    assert_eq!(events[0]["detail"]["commit"], c4.as_str(), "{events:?}");
    // GetDifferences went from the checkpoints, not from the events' old commits.
    let diffs = w.codecommit.requests_of("GetDifferences");
    assert!(
        diffs
            .iter()
            .any(|d| d["beforeCommitSpecifier"] == c2.as_str()
                && d["afterCommitSpecifier"] == c4.as_str()),
        "a diff from the checkpoint C2 to C4: {diffs:?}"
    );
    // Every event of a push lost: the scheduled sweep judges the branch and starts it.
    let (_, c5) = w.push(&w.primary, &[("primary/templates/app.yaml", "app: 5\n")]);
    let schedule = json!({
        "version": "0", "id": "sweep-1", "detail-type": "Scheduled Event",
        "source": "aws.events", "account": MOTO_ACCOUNT_ID, "time": "2024-01-01T00:00:00Z",
        "region": TOKYO, "resources": [], "detail": {},
    });
    let swept = judge.ok(&schedule, "the scheduled sweep");
    assert_eq!(
        swept["swept"][0]["targets"][0]["result"],
        "started",
        "{swept}\n{}",
        judge.log()
    );
    assert_eq!(
        pinned(&w.pipeline_starts(TOKYO)),
        [c2.as_str(), c4.as_str(), c5.as_str()]
    );
    assert!(
        !w.codecommit.requests_of("ListBranches").is_empty(),
        "the sweep lists the branches"
    );
    let idle = judge.ok(&schedule, "the sweep again");
    assert!(idle["ignored"].is_string(), "{idle}");
    assert_eq!(w.pipeline_starts(TOKYO).len(), 3, "nothing started twice");
    println!(
        "order and loss: reversed events, a lost event and a push whose events were all lost, {} GetDifferences calls, every change started once, none rolled back",
        diffs.len()
    );
}

// ---------------------------------------------------------------- 4. errors and ignores

/// What an operator sees when something is wrong: a missing pipeline fails the invocation
/// with an error naming it, records no start and is retried successfully once the pipeline
/// exists; a malformed event fails naming the field; events that are not tozai's business
/// (another repository, a pull request, the mirror's own push) succeed and are ignored.
#[test]
fn errors_name_what_is_wrong_and_other_events_are_ignored() {
    let w = World::new(false);
    let judge = w.lambda(PIPELINE_JUDGE, "tokyo", &[]);
    let (old, new) = w.push(&w.primary, &[("primary/templates/root.yaml", "root: x\n")]);
    let push = primary_push(&old, &new);

    for attempt in 1..=2 {
        let error = judge.err(&push, &format!("a missing pipeline (attempt {attempt})"));
        let message = error_message(&error);
        assert!(
            message.contains(PIPELINE) && message.contains("does not exist"),
            "the error must name the missing pipeline: {error}\n{}",
            judge.log()
        );
        assert_eq!(
            error["errorType"], "Permanent",
            "a missing pipeline is not retried usefully: {error}"
        );
        let items = w.table_items(TOKYO);
        assert!(
            !items
                .iter()
                .any(|i| i.get("pending_commit").is_some() || i.get("run_id").is_some()),
            "no start may be recorded, nor a claim left behind: {items:?}"
        );
        assert!(
            !items.iter().any(|i| i["commit"]["S"] == new.as_str()),
            "the checkpoint must not move past a failed start: {items:?}"
        );
    }
    w.create_pipeline(TOKYO, PRIMARY_REPO);
    let retried = judge.ok(&push, "the retry once the pipeline exists");
    assert_eq!(
        target(&retried, "tokyo-core")["result"],
        "started",
        "{retried}"
    );
    assert_eq!(
        pinned(&w.pipeline_starts(TOKYO)).last(),
        Some(&new),
        "the retry starts the pipeline"
    );
    let attempts = w.pipeline_starts(TOKYO).len();

    // Malformed events.
    let mut no_commit = primary_push(&old, &new);
    no_commit["detail"]
        .as_object_mut()
        .unwrap()
        .remove("commitId");
    let error = judge.err(&no_commit, "referenceUpdated without commitId");
    assert!(
        error_message(&error).contains("detail.commitId"),
        "the error must name the field: {error}"
    );
    assert_eq!(error["errorType"], "Permanent", "{error}");
    let mut bad_commit = primary_push(&old, &new);
    bad_commit["detail"]["oldCommitId"] = json!("not-a-commit");
    let error = judge.err(&bad_commit, "an invalid oldCommitId");
    assert!(
        error_message(&error).contains("detail.oldCommitId"),
        "the error must name the field: {error}"
    );
    let mut no_type = primary_push(&old, &new);
    no_type.as_object_mut().unwrap().remove("detail-type");
    let error = judge.err(&no_type, "an event without detail-type");
    assert!(
        error_message(&error).contains("detail-type"),
        "the error must name the field: {error}"
    );

    // Not tozai's business: Ok, ignored, nothing started.
    let other = ref_event(
        "some-other-repo",
        TOKYO,
        "refs/heads/main",
        Some(&old),
        Some(&new),
        ENGINEER,
    );
    let ignored = judge.ok(&other, "another repository");
    assert!(
        ignored["ignored"]
            .as_str()
            .is_some_and(|why| why.contains("not in the config")),
        "{ignored}"
    );
    let mut pull_request = primary_push(&old, &new);
    pull_request["detail-type"] = json!("CodeCommit Pull Request State Change");
    let ignored = judge.ok(&pull_request, "a pull request event");
    assert!(ignored["ignored"].is_string(), "{ignored}");
    let sync = w.lambda(SYNC_JUDGE, "tokyo", &[]);
    let by_mirror = ref_event(
        PRIMARY_REPO,
        TOKYO,
        "refs/heads/main",
        Some(&old),
        Some(&new),
        &mirror_caller(),
    );
    let ignored = sync.ok(&by_mirror, "a push by the mirror's role");
    assert!(
        ignored["ignored"]
            .as_str()
            .is_some_and(|why| why.contains("mirror's own role")),
        "{ignored}"
    );
    let ignored = sync.ok(&other, "another repository (sync-judge)");
    assert!(ignored["ignored"].is_string(), "{ignored}");
    assert_eq!(
        w.pipeline_starts(TOKYO).len(),
        attempts,
        "no start after the retry"
    );
}

// ---------------------------------------------------------------- 5. a bad config

/// A config with an unknown key stops each function at init, before it asks for an event,
/// with a message naming the file and the line; so does a missing setting.
#[test]
fn a_bad_config_fails_the_init_naming_the_file_and_line() {
    let scratch = TempDir::new().unwrap();
    let config = scratch.path().join("tozai.toml");
    let text = config_text().replacen(
        "base_branch = \"main\"\n",
        "base_branch = \"main\"\nbranch_filter = \"main\"\n",
        1,
    );
    std::fs::write(&config, &text).unwrap();
    let line = text
        .lines()
        .position(|l| l.starts_with("branch_filter"))
        .unwrap()
        + 1;
    let config_path = config.display().to_string();
    for binary in [SYNC_JUDGE, MIRROR, PIPELINE_JUDGE] {
        let api = LambdaApi::start();
        let function = Function::spawn(
            binary,
            &api,
            &[
                ("AWS_REGION", TOKYO),
                ("TOZAI_CONFIG", &config_path),
                ("TOZAI_TABLE", TABLE),
            ],
        );
        let status = function
            .wait_ready(Duration::from_secs(60))
            .expect_err("the function must not ask for events with a bad config");
        assert!(
            status.is_some_and(|s| !s.success()),
            "{binary} must fail its init: {status:?}\n{}",
            function.log()
        );
        // The function's own log line (stdout) carries the error as it reads; its exit
        // error (stderr) is Rust's debug form of it.
        let reported = format!(
            "{}{}{}",
            function.stdout(),
            function.stderr(),
            api.init_errors()
                .iter()
                .map(|e| e.body.to_string())
                .collect::<String>()
        );
        assert!(
            reported.contains(&format!("{config_path}:{line}:"))
                && reported.contains("branch_filter"),
            "{binary}'s init error must name {config_path}:{line}: and the key:\n{}",
            function.log()
        );
        assert!(api.next_requests().is_empty(), "{}", function.log());
    }

    // A good config but no table (the mirror keeps its ledger there).
    std::fs::write(&config, config_text()).unwrap();
    for (binary, region) in [(PIPELINE_JUDGE, OSAKA), (MIRROR, TOKYO)] {
        let api = LambdaApi::start();
        let function = Function::spawn(
            binary,
            &api,
            &[("AWS_REGION", region), ("TOZAI_CONFIG", &config_path)],
        );
        let status = function
            .wait_ready(Duration::from_secs(60))
            .expect_err("no TOZAI_TABLE");
        assert!(status.is_some_and(|s| !s.success()), "{}", function.log());
        assert!(
            function.stderr().contains("TOZAI_TABLE"),
            "{binary}: {}",
            function.log()
        );
    }
}
