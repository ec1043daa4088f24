//! tozai's AWS adapters with real AWS SDK clients over loopback: CodeCommit's API answered
//! from real repositories by the git CLI (checked against git here), DynamoDB, CodePipeline,
//! CodeBuild and EventBridge answered by moto. Only `endpoint_url` differs from AWS.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};
use tempfile::TempDir;
use tozai::adapters::aws::{AwsStarter, CodeCommitRepo, DynamoStore, EventBridgeSink};
use tozai::git_auth::Credentials;
use tozai::ports::{
    Ancestry, ChangeError, ChangeSource, CheckpointStore, Claim, EventSink, PushLedger,
    StartRequest, Starter,
};
use tozai::refs::{CommitId, RefName};
use tozai_tests::mirror::git;
use tozai_tests::stand_ins::{CodeCommitApi, Moto, source_and_build_stages};
use tozai_tests::{GitRepo, git_name_status};

const REGION: &str = "ap-northeast-3";
const REPO: &str = "core-infra";

fn key() -> Credentials {
    Credentials {
        access_key_id: "AKIDADAPTERS".into(),
        secret_access_key: "adapters/SECRET+key".into(),
        session_token: Some("session/TOKEN=".into()),
    }
}

/// The SDK configuration a Lambda gets, pointed at a stand-in.
async fn sdk(endpoint: &str, credentials: &Credentials) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(REGION))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            &credentials.access_key_id,
            &credentials.secret_access_key,
            credentials.session_token.clone(),
            None,
            "tozai-tests",
        ))
        .endpoint_url(endpoint)
        .load()
        .await
}

fn commit(id: &str) -> CommitId {
    id.parse().unwrap()
}

/// A working repository served (as a bare clone) by the CodeCommit API stand-in.
struct Served {
    api: CodeCommitApi,
    work: GitRepo,
    repos: TempDir,
}

impl Served {
    fn new(work: GitRepo) -> Self {
        let repos = TempDir::new().unwrap();
        let api = CodeCommitApi::start(repos.path(), &[key()]);
        let served = Self { api, work, repos };
        served.publish();
        served
    }

    /// Pushes every branch of the working repository to the served one.
    fn publish(&self) {
        let bare = self.repos.path().join(REPO);
        if !bare.exists() {
            git(
                self.repos.path(),
                &["init", "-q", "--bare", bare.to_str().unwrap()],
            );
        }
        self.work.git(&[
            "push",
            "-q",
            "--force",
            bare.to_str().unwrap(),
            "refs/heads/*:refs/heads/*",
        ]);
    }

    async fn repo(&self) -> CodeCommitRepo {
        let sdk = sdk(&self.api.endpoint_url(), &key()).await;
        CodeCommitRepo::new(aws_sdk_codecommit::Client::new(&sdk), REPO)
    }
}

#[tokio::test]
async fn codecommit_changes_match_git_over_many_pages() {
    let work = GitRepo::new();
    for i in 0..40 {
        work.write(format!("keep/{i}.txt"), format!("same {i}\n"));
    }
    work.write(
        "primary/move-me.yaml",
        "a long enough body to be a rename\n".repeat(5),
    );
    work.write("secondary/gone.yaml", "bye\n");
    let c1 = work.commit("one");
    for i in 0..230 {
        work.write(format!("common/f{i:03}.yaml"), format!("new {i}\n"));
    }
    work.write("keep/0.txt", "changed\n");
    work.mv("primary/move-me.yaml", "common/moved.yaml");
    work.rm("secondary/gone.yaml");
    let c2 = work.commit("two");
    let served = Served::new(work);

    let repo = served.repo().await;
    let changes = repo
        .changes(Some(&commit(&c1)), &commit(&c2))
        .await
        .unwrap();

    let pages = served.api.requests_of("GetDifferences").len();
    assert!(
        pages >= 3,
        "230+ differences at 100 a page take 3 pages, not {pages}"
    );
    // Every path git reports (both sides of its renames) and nothing else.
    let ours: BTreeSet<String> = changes
        .iter()
        .flat_map(|c| c.judged_paths())
        .map(|p| p.to_string())
        .collect();
    let git: BTreeSet<String> = git_name_status(&served.work, &c1, &c2)
        .iter()
        .flat_map(|(_, path, old)| [Some(path.clone()), old.clone()])
        .flatten()
        .map(|p| String::from_utf8_lossy(&p).into_owned())
        .collect();
    assert_eq!(ours, git);
    assert_eq!(
        changes.len(),
        233,
        "230 added, 1 modified, 1 renamed, 1 deleted"
    );
    let rename = changes
        .iter()
        .find(|c| c.path.to_string() == "common/moved.yaml")
        .unwrap();
    assert_eq!(
        rename.old_path.as_ref().map(|p| p.to_string()).as_deref(),
        Some("primary/move-me.yaml"),
        "a rename carries both paths"
    );

    // Without a base, every file of the commit is added.
    let all = repo.changes(None, &commit(&c2)).await.unwrap();
    let files = served.work.git(&["ls-tree", "-r", "--name-only", &c2]);
    assert_eq!(all.len(), files.lines().count());
}

#[tokio::test]
async fn codecommit_ancestry_matches_git() {
    let work = GitRepo::new();
    work.write("a", "1");
    let root = work.commit("root");
    work.write("a", "2");
    let main1 = work.commit("main 1");
    work.branch("feature");
    work.write("b", "feature");
    let feature = work.commit("feature");
    work.switch("main");
    work.write("a", "3");
    let main2 = work.commit("main 2");
    work.git(&["checkout", "-q", "--orphan", "unrelated"]);
    work.write("c", "alone");
    let alone = work.commit("unrelated root");
    work.switch("main");
    let served = Served::new(work);
    let repo = served.repo().await;

    let base = |a: &str, b: &str| {
        let repo = &repo;
        let (a, b) = (commit(a), commit(b));
        async move { repo.merge_base(&a, &b).await.unwrap() }
    };
    assert_eq!(
        base(&root, &main2).await,
        Some(commit(&root)),
        "an ancestor"
    );
    assert_eq!(
        base(&main2, &root).await,
        Some(commit(&root)),
        "either order"
    );
    assert_eq!(
        base(&feature, &main2).await,
        Some(commit(&main1)),
        "diverged"
    );
    assert_eq!(base(&main2, &alone).await, None, "unrelated histories");
    assert_eq!(base(&main2, &main2).await, Some(commit(&main2)));

    assert_eq!(
        repo.branch_head("main").await.unwrap(),
        Some(commit(&main2))
    );
    assert_eq!(repo.branch_head("no-such-branch").await.unwrap(), None);
    let missing = commit("0123456789abcdef0123456789abcdef01234567");
    let err = repo
        .changes(Some(&missing), &commit(&main2))
        .await
        .unwrap_err();
    assert!(matches!(err, ChangeError::UnknownRevision { .. }), "{err}");
}

async fn moto_sdk(moto: &Moto) -> aws_config::SdkConfig {
    sdk(&moto.endpoint_url(), &Moto::credentials()).await
}

#[tokio::test]
async fn checkpoints_and_claims_in_dynamodb_are_conditional() {
    let moto = Moto::start();
    moto.create_checkpoint_table(REGION, "tozai-checkpoints");
    let store = DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&moto_sdk(&moto).await),
        "tozai-checkpoints",
    );
    let main = RefName::branch("main").unwrap();
    let (c1, c2, c3) = (
        commit(&"1".repeat(40)),
        commit(&"2".repeat(40)),
        commit(&"3".repeat(40)),
    );

    assert_eq!(store.load("sync", REPO, &main).await.unwrap(), None);
    assert!(store.save("sync", REPO, &main, &c1, None).await.unwrap());
    assert!(
        !store.save("sync", REPO, &main, &c2, None).await.unwrap(),
        "a second first write loses"
    );
    let v1 = store.load("sync", REPO, &main).await.unwrap().unwrap();
    assert_eq!((v1.commit.clone(), v1.version), (c1.clone(), 1));
    assert!(
        store
            .save("sync", REPO, &main, &c2, Some(&v1))
            .await
            .unwrap()
    );
    assert!(
        !store
            .save("sync", REPO, &main, &c3, Some(&v1))
            .await
            .unwrap(),
        "a write from a stale read loses"
    );
    let v2 = store.load("sync", REPO, &main).await.unwrap().unwrap();
    assert_eq!((v2.commit.clone(), v2.version), (c2.clone(), 2));
    // Where the handled history starts is kept with the checkpoint.
    assert!(
        store
            .save_covering("sync", REPO, &main, &c3, Some(&c1), Some(&v2))
            .await
            .unwrap()
    );
    let v3 = store.load("sync", REPO, &main).await.unwrap().unwrap();
    assert_eq!(
        (v3.commit, v3.version, v3.covered_from),
        (c3.clone(), 3, Some(c1.clone()))
    );
    // Consumers and refs are separate.
    assert_eq!(store.load("target:x", REPO, &main).await.unwrap(), None);
    let tag = RefName::tag("main").unwrap();
    assert_eq!(store.load("sync", REPO, &tag).await.unwrap(), None);

    let lease = Duration::from_secs(120);
    assert_eq!(
        store.claim_start("t", &c1, lease).await.unwrap(),
        Claim::Won
    );
    assert_eq!(
        store.claim_start("t", &c1, lease).await.unwrap(),
        Claim::InProgress
    );
    store.record_start("t", &c1, "exec-1").await.unwrap();
    assert_eq!(
        store.claim_start("t", &c1, lease).await.unwrap(),
        Claim::Started("exec-1".into())
    );
    store.release_start("t", &c1).await.unwrap();
    assert_eq!(
        store.claim_start("t", &c1, lease).await.unwrap(),
        Claim::Started("exec-1".into()),
        "a recorded start is never released"
    );
    assert_eq!(
        store.claim_start("t", &c2, lease).await.unwrap(),
        Claim::Won
    );
    store.release_start("t", &c2).await.unwrap();
    assert_eq!(
        store.claim_start("t", &c2, lease).await.unwrap(),
        Claim::Won
    );
    // A claim whose lease ran out is taken over.
    assert_eq!(
        store.claim_start("u", &c3, Duration::ZERO).await.unwrap(),
        Claim::Won
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        store.claim_start("u", &c3, lease).await.unwrap(),
        Claim::Won
    );
}

/// The mirror's ledger in the checkpoint table, called as the mirror calls it (from a
/// blocking thread of the runtime): more refs than one BatchGetItem or BatchWriteItem
/// takes, a deletion that forgets, items of its own beside the checkpoints.
#[tokio::test]
async fn the_mirrors_ledger_in_dynamodb_keeps_what_it_pushed_per_repository() {
    let moto = Moto::start();
    moto.create_checkpoint_table(REGION, "tozai-checkpoints");
    let store = DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&moto_sdk(&moto).await),
        "tozai-checkpoints",
    );
    let main = RefName::branch("main").unwrap();
    assert!(
        store
            .save("sync", REPO, &main, &commit(&"1".repeat(40)), None)
            .await
            .unwrap()
    );
    let handle = tokio::runtime::Handle::current();
    let osaka = store.ledger("codecommit::ap-northeast-3://core-infra", handle.clone());
    let other = store.ledger("codecommit::ap-northeast-3://other", handle);
    let refs: Vec<RefName> = (0..230)
        .map(|n| RefName::branch(&format!("b/{n:03}")).unwrap())
        .chain([RefName::tag("v1").unwrap()])
        .collect();
    let value = |n: usize| commit(&format!("{:040x}", n + 1));
    let blocking =
        async |f: Box<dyn FnOnce() + Send>| tokio::task::spawn_blocking(f).await.unwrap();

    let (l, r) = (osaka.clone(), refs.clone());
    blocking(Box::new(move || {
        assert!(l.recorded(&r).unwrap().is_empty(), "nothing yet");
        let changes: Vec<_> = r
            .iter()
            .enumerate()
            .map(|(n, x)| (x.clone(), Some(value(n))))
            .collect();
        l.record(&changes).unwrap();
        let got = l.recorded(&r).unwrap();
        assert_eq!(got.len(), 231);
        assert_eq!(got[&r[229]], value(229));
        // Deleted refs are forgotten; a later change of one ref wins.
        l.record(&[
            (r[0].clone(), None),
            (r[1].clone(), None),
            (r[1].clone(), Some(value(7))),
        ])
        .unwrap();
        let got = l.recorded(&r[..3]).unwrap();
        assert_eq!(got.keys().collect::<Vec<_>>(), [&r[1], &r[2]]);
        assert_eq!(got[&r[1]], value(7));
    }))
    .await;
    let r = refs.clone();
    blocking(Box::new(move || {
        assert!(
            other.recorded(&r).unwrap().is_empty(),
            "another repository's refs are its own"
        );
    }))
    .await;

    // The items, as the mirror's IAM grant expects them (leading key `["mirrored",`), and
    // the checkpoint untouched.
    let items = moto.aws(
        REGION,
        &["dynamodb", "scan", "--table-name", "tozai-checkpoints"],
    )["Items"]
        .as_array()
        .cloned()
        .unwrap();
    let keys: Vec<&str> = items
        .iter()
        .map(|i| i["pk"]["S"].as_str().unwrap())
        .collect();
    assert_eq!(keys.len(), 231, "230 refs and the checkpoint");
    assert!(
        keys.contains(&r#"["mirrored","codecommit::ap-northeast-3://core-infra","refs/tags/v1"]"#),
        "{keys:?}"
    );
    assert_eq!(
        keys.iter()
            .filter(|k| k.starts_with(r#"["mirrored","#))
            .count(),
        230
    );
    assert_eq!(
        store
            .load("sync", REPO, &main)
            .await
            .unwrap()
            .unwrap()
            .version,
        1
    );
}

fn start_request(kind: &'static str, name: &str, c: &CommitId) -> StartRequest {
    StartRequest::new(
        &format!("{name}-target"),
        kind,
        name,
        (kind == "codepipeline").then(|| "Source".to_owned()),
        c.clone(),
        RefName::branch("main").unwrap(),
        vec![("TOZAI_COMMIT_ID".into(), c.to_string())],
    )
}

#[tokio::test]
async fn pipelines_and_builds_start_pinned_and_missing_ones_are_errors() {
    let moto = Moto::start();
    moto.create_codebuild_project(REGION, "core-infra-build");
    moto.create_pipeline(
        REGION,
        "core-infra-deploy",
        &source_and_build_stages(REPO, "main", "core-infra-build"),
    );
    moto.reset_recording();
    let sdk = moto_sdk(&moto).await;
    let starter = AwsStarter::new(
        aws_sdk_codepipeline::Client::new(&sdk),
        aws_sdk_codebuild::Client::new(&sdk),
    );
    let c = commit(&"ab".repeat(20));

    let pipeline = start_request("codepipeline", "core-infra-deploy", &c);
    let execution = starter.start(&pipeline).await.unwrap();
    let executions = moto.aws(
        REGION,
        &[
            "codepipeline",
            "list-pipeline-executions",
            "--pipeline-name",
            "core-infra-deploy",
        ],
    );
    assert_eq!(
        executions["pipelineExecutionSummaries"][0]["pipelineExecutionId"],
        execution.as_str()
    );
    let sent = moto.recorded("StartPipelineExecution");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["clientRequestToken"], pipeline.token.as_str());
    assert_eq!(
        sent[0]["sourceRevisions"],
        json!([{"actionName": "Source", "revisionType": "COMMIT_ID", "revisionValue": c.as_str()}])
    );
    assert_eq!(
        sent[0]["variables"],
        json!([{"name": "TOZAI_COMMIT_ID", "value": c.as_str()}])
    );

    let build = start_request("codebuild", "core-infra-build", &c);
    let id = starter.start(&build).await.unwrap();
    assert!(id.starts_with("core-infra-build:"), "{id}");
    let sent = moto.recorded("StartBuild");
    assert_eq!(sent[0]["sourceVersion"], c.as_str());
    assert_eq!(sent[0]["idempotencyToken"], build.token.as_str());

    for missing in [
        start_request("codepipeline", "no-such-pipeline", &c),
        start_request("codebuild", "no-such-project", &c),
    ] {
        let err = starter.start(&missing).await.unwrap_err();
        assert!(!err.transient, "{err}");
        let text = err.to_string();
        assert!(
            text.contains(&missing.name) && text.contains("does not exist"),
            "{text}"
        );
    }
}

#[tokio::test]
async fn tozai_events_reach_eventbridge_rules() {
    let moto = Moto::start();
    let queue = moto.sqs_queue_receiving(
        REGION,
        "tozai-bus",
        &json!({"source": ["tozai"], "detail-type": ["Sync Requested"]}),
    );
    let sink = EventBridgeSink::new(
        aws_sdk_eventbridge::Client::new(&moto_sdk(&moto).await),
        "tozai-bus",
    );
    let detail = json!({"repository": REPO, "ref": "refs/heads/main", "commit": "ab".repeat(20),
                        "reason": "changed paths match its rule"});
    sink.publish("Sync Requested", &detail).await.unwrap();
    sink.publish("Sync Completed", &json!({"status": "in_sync"}))
        .await
        .unwrap();
    let received: Vec<Value> = moto.received(&queue);
    assert_eq!(
        received.len(),
        1,
        "only the rule's detail-type: {received:?}"
    );
    assert_eq!(received[0]["source"], "tozai");
    assert_eq!(received[0]["detail-type"], "Sync Requested");
    assert_eq!(received[0]["detail"], detail);
    // The event parses back as the mirror's input.
    let parsed = tozai::event::from_value(received[0].clone()).unwrap();
    assert!(matches!(
        parsed,
        tozai::event::Inbound::SyncRequested { .. }
    ));
}
