//! tozai's AWS adapters with real AWS SDK clients over loopback: CodeCommit's API answered
//! from real repositories by the git CLI (checked against git here), DynamoDB, CodePipeline,
//! CodeBuild and EventBridge answered by moto. Only `endpoint_url` differs from AWS.

use std::collections::BTreeSet;

use serde_json::{Value, json};
use tempfile::TempDir;
use tozai::adapters::aws::{AwsStarter, CodeCommitRepo, DynamoStore, EventBridgeSink};
use tozai::git_auth::Credentials;
use tozai::ports::{
    Ancestry, ChangeError, ChangeSource, Checkpoint, CheckpointStore, EventSink, PendingStart,
    PushLedger, RunKind, StartRequest, Starter,
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
    work.branch("merged");
    let merge = work.merge_no_ff("feature", "merge feature");
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

    // GetCommit's first parent is git's `C^1`: a merge's is the branch merged into.
    for c in [&main1, &feature, &main2, &merge] {
        let expected = served.work.rev_parse(&format!("{c}^1"));
        assert_eq!(
            repo.first_parent(&commit(c)).await.unwrap(),
            Some(commit(&expected)),
            "{c}"
        );
    }
    assert_eq!(
        repo.first_parent(&commit(&merge)).await.unwrap(),
        Some(commit(&main2))
    );
    assert_eq!(repo.first_parent(&commit(&root)).await.unwrap(), None);
    assert_eq!(repo.first_parent(&commit(&alone)).await.unwrap(), None);
    let err = repo.first_parent(&missing).await.unwrap_err();
    assert!(matches!(err, ChangeError::UnknownRevision { .. }), "{err}");
    assert!(err.to_string().contains(missing.as_str()), "{err}");
    assert_eq!(served.api.requests_of("GetCommit").len(), 8);
}

async fn moto_sdk(moto: &Moto) -> aws_config::SdkConfig {
    sdk(&moto.endpoint_url(), &Moto::credentials()).await
}

/// A checkpoint store on a fresh table of a fresh moto.
async fn checkpoint_store(moto: &Moto) -> DynamoStore {
    moto.create_checkpoint_table(REGION, "tozai-checkpoints");
    DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&moto_sdk(moto).await),
        "tozai-checkpoints",
    )
}

fn at(c: &CommitId) -> Checkpoint {
    Checkpoint::at(c.clone())
}

fn stored(checkpoint: Checkpoint, version: u64) -> Checkpoint {
    Checkpoint {
        version,
        ..checkpoint
    }
}

#[tokio::test]
async fn a_checkpoint_save_in_dynamodb_is_a_compare_and_swap() {
    let moto = Moto::start();
    let store = checkpoint_store(&moto).await;
    let main = RefName::branch("main").unwrap();
    let (c1, c2, c3) = (
        commit(&"1".repeat(40)),
        commit(&"2".repeat(40)),
        commit(&"3".repeat(40)),
    );

    assert_eq!(store.load("sync", REPO, &main).await.unwrap(), None);
    assert!(
        store
            .save("sync", REPO, &main, &at(&c1), None)
            .await
            .unwrap()
    );
    assert!(
        !store
            .save("sync", REPO, &main, &at(&c2), None)
            .await
            .unwrap(),
        "a second first write loses"
    );
    let v1 = store.load("sync", REPO, &main).await.unwrap().unwrap();
    assert_eq!(v1, stored(at(&c1), 1));
    assert!(
        store
            .save("sync", REPO, &main, &at(&c2), Some(&v1))
            .await
            .unwrap()
    );
    assert!(
        !store
            .save("sync", REPO, &main, &at(&c3), Some(&v1))
            .await
            .unwrap(),
        "a write from a stale read loses"
    );
    let v2 = store.load("sync", REPO, &main).await.unwrap().unwrap();
    assert_eq!(v2, stored(at(&c2), 2), "and wrote nothing");
    // A version of a checkpoint that does not exist loses too.
    assert!(
        !store
            .save("target:x", REPO, &main, &at(&c3), Some(&v2))
            .await
            .unwrap()
    );
    // Consumers, repositories and refs are separate items.
    assert_eq!(store.load("target:x", REPO, &main).await.unwrap(), None);
    let tag = RefName::tag("main").unwrap();
    assert_eq!(store.load("sync", REPO, &tag).await.unwrap(), None);
    assert_eq!(store.load("sync", "other", &main).await.unwrap(), None);
}

/// A claim (no head judged yet), its record, the next claim: each read back as written,
/// and each item as DynamoDB holds it (no null attributes, nothing left of the claim).
#[tokio::test]
async fn a_claimed_start_and_its_run_round_trip_through_dynamodb() {
    let moto = Moto::start();
    let store = checkpoint_store(&moto).await;
    let tag = RefName::tag("v1.4.0").unwrap();
    let t = "target:osaka-core";
    let (c1, c2) = (commit(&"1".repeat(40)), commit(&"2".repeat(40)));
    let claim = |last: Option<&CommitId>, pending: &CommitId, run: Option<&str>| Checkpoint {
        commit: last.cloned(),
        version: 0,
        pending: Some(PendingStart {
            commit: pending.clone(),
            claimed_at: 1_700_000_000,
            lease_until: 1_700_000_120,
        }),
        run_id: run.map(str::to_owned),
    };
    let item = || {
        let got = moto.aws(
            REGION,
            &[
                "dynamodb",
                "get-item",
                "--table-name",
                "tozai-checkpoints",
                "--consistent-read",
                "--key",
                &json!({"pk": {"S": format!(r#"["checkpoint","{t}","{REPO}","refs/tags/v1.4.0"]"#)}})
                    .to_string(),
            ],
        );
        let mut item = got["Item"].clone();
        item.as_object_mut().unwrap().remove("updated_at");
        item
    };

    let first = claim(None, &c1, None);
    assert!(store.save(t, REPO, &tag, &first, None).await.unwrap());
    let v1 = store.load(t, REPO, &tag).await.unwrap().unwrap();
    assert_eq!(v1, stored(first, 1));
    assert_eq!(
        item(),
        json!({
            "pk": {"S": r#"["checkpoint","target:osaka-core","core-infra","refs/tags/v1.4.0"]"#},
            "version": {"N": "1"},
            "pending_commit": {"S": c1.as_str()},
            "pending_claimed_at": {"N": "1700000000"},
            "pending_lease_until": {"N": "1700000120"},
        })
    );

    let recorded = Checkpoint {
        run_id: Some("exec-1".into()),
        ..at(&c1)
    };
    assert!(
        store
            .save(t, REPO, &tag, &recorded, Some(&v1))
            .await
            .unwrap()
    );
    let v2 = store.load(t, REPO, &tag).await.unwrap().unwrap();
    assert_eq!(v2, stored(recorded, 2));
    assert_eq!(
        item(),
        json!({
            "pk": {"S": r#"["checkpoint","target:osaka-core","core-infra","refs/tags/v1.4.0"]"#},
            "version": {"N": "2"},
            "commit": {"S": c1.as_str()},
            "run_id": {"S": "exec-1"},
        }),
        "the claim's attributes are gone"
    );

    let next = claim(Some(&c1), &c2, Some("exec-1"));
    assert!(store.save(t, REPO, &tag, &next, Some(&v2)).await.unwrap());
    assert_eq!(
        store.load(t, REPO, &tag).await.unwrap().unwrap(),
        stored(next, 3)
    );
}

/// N invocations save from the same version at once (N requests in flight together): DynamoDB
/// lets exactly one through each round, and the item holds the winner's write.
#[tokio::test]
async fn concurrent_saves_to_dynamodb_have_exactly_one_winner_per_version() {
    const TASKS: usize = 8;
    let moto = Moto::start();
    let store = std::sync::Arc::new(checkpoint_store(&moto).await);
    let main = RefName::branch("main").unwrap();
    let mut expected: Option<Checkpoint> = None;
    for round in 1..=3u64 {
        let tasks: Vec<_> = (0..TASKS)
            .map(|n| {
                let (store, main, expected) = (store.clone(), main.clone(), expected.clone());
                let next = Checkpoint {
                    run_id: Some(format!("run-{round}-{n}")),
                    ..at(&commit(&format!("{round}{n}").repeat(20)))
                };
                tokio::spawn(async move {
                    let won = store
                        .save("target:t", REPO, &main, &next, expected.as_ref())
                        .await
                        .unwrap();
                    won.then_some(next)
                })
            })
            .collect();
        let mut winners = Vec::new();
        for task in tasks {
            winners.extend(task.await.unwrap());
        }
        assert_eq!(winners.len(), 1, "round {round}: {winners:?}");
        let now = store.load("target:t", REPO, &main).await.unwrap().unwrap();
        assert_eq!(
            now,
            stored(winners.remove(0), round),
            "round {round}: the winner's write, and only it"
        );
        expected = Some(now);
    }
}

fn start_request(kind: RunKind, name: &str, c: &CommitId) -> StartRequest {
    StartRequest::new(
        &format!("{name}-target"),
        kind,
        name,
        (kind == RunKind::CodePipeline).then(|| "Source".to_owned()),
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

    let pipeline = start_request(RunKind::CodePipeline, "core-infra-deploy", &c);
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

    let build = start_request(RunKind::CodeBuild, "core-infra-build", &c);
    let id = starter.start(&build).await.unwrap();
    assert!(id.starts_with("core-infra-build:"), "{id}");
    let sent = moto.recorded("StartBuild");
    assert_eq!(sent[0]["sourceVersion"], c.as_str());
    assert_eq!(sent[0]["idempotencyToken"], build.token.as_str());

    for missing in [
        start_request(RunKind::CodePipeline, "no-such-pipeline", &c),
        start_request(RunKind::CodeBuild, "no-such-project", &c),
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

/// find_run against moto: the real SDK's requests are accepted and moto's answers parse.
/// moto cannot show a match (tests/PARITY.md): its builds keep no
/// `environmentVariablesOverride` (so no `TOZAI_REF`) and its execution summaries no
/// `sourceRevisions`, so nothing is ever the claim's run here; the matching itself is
/// covered with aws-smithy-mocks (`shared/src/adapters/aws/tests.rs`, `find_run_*`).
#[tokio::test]
async fn find_run_against_moto_sends_well_formed_requests_and_takes_no_run_without_tozai_ref() {
    let moto = Moto::start();
    moto.create_codebuild_project(REGION, "core-infra-build");
    moto.create_pipeline(
        REGION,
        "core-infra-deploy",
        &source_and_build_stages(REPO, "main", "core-infra-build"),
    );
    let sdk = moto_sdk(&moto).await;
    let starter = AwsStarter::new(
        aws_sdk_codepipeline::Client::new(&sdk),
        aws_sdk_codebuild::Client::new(&sdk),
    );
    let c = commit(&"ab".repeat(20));
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let build = StartRequest {
        variables: vec![
            ("TOZAI_COMMIT_ID".into(), c.to_string()),
            ("TOZAI_REF".into(), "refs/heads/main".into()),
        ],
        ..start_request(RunKind::CodeBuild, "core-infra-build", &c)
    };
    let pipeline = StartRequest {
        variables: build.variables.clone(),
        ..start_request(RunKind::CodePipeline, "core-infra-deploy", &c)
    };
    let id = starter.start(&build).await.unwrap();
    starter.start(&pipeline).await.unwrap();
    moto.reset_recording();

    assert_eq!(starter.find_run(&build, since).await.unwrap(), None);
    let listed = moto.recorded("ListBuildsForProject");
    assert_eq!(
        listed,
        [json!({"projectName": "core-infra-build", "sortOrder": "DESCENDING"})]
    );
    let described = moto.recorded("BatchGetBuilds");
    assert_eq!(described, [json!({"ids": [id.as_str()]})]);
    // Why nothing matched: the build is at the commit, but moto dropped its variables.
    let builds = moto.aws(REGION, &["codebuild", "batch-get-builds", "--ids", &id]);
    let found = &builds["builds"][0];
    assert_eq!(found["sourceVersion"], c.as_str());
    assert_eq!(
        found["environment"]["environmentVariables"],
        json!([]),
        "moto now keeps environmentVariablesOverride: make this test find the build"
    );

    assert_eq!(starter.find_run(&pipeline, since).await.unwrap(), None);
    assert_eq!(
        moto.recorded("ListPipelineExecutions"),
        [json!({"pipelineName": "core-infra-deploy", "maxResults": 100})]
    );
    let summaries = moto.aws(
        REGION,
        &[
            "codepipeline",
            "list-pipeline-executions",
            "--pipeline-name",
            "core-infra-deploy",
        ],
    );
    assert_eq!(
        summaries["pipelineExecutionSummaries"][0]["sourceRevisions"],
        json!([]),
        "moto now keeps sourceRevisions: make this test find the execution"
    );
    assert!(
        moto.recorded("GetPipelineExecution").is_empty(),
        "no execution at the commit, none read"
    );

    // A project or pipeline that does not exist is an error naming the call.
    let missing = start_request(RunKind::CodeBuild, "no-such-project", &c);
    let err = starter.find_run(&missing, since).await.unwrap_err();
    assert!(
        err.to_string().contains("ListBuildsForProject failed") && !err.transient,
        "{err}"
    );
    let missing = start_request(RunKind::CodePipeline, "no-such-pipeline", &c);
    let err = starter.find_run(&missing, since).await.unwrap_err();
    assert!(
        err.to_string().contains("ListPipelineExecutions failed") && !err.transient,
        "{err}"
    );
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

/// The mirror's ledger in the checkpoint table, called as the mirror calls it (from a
/// blocking thread of the runtime): more refs than one BatchGetItem or BatchWriteItem
/// takes, a deletion that forgets, a push in flight (two values) and an item written before
/// records held two, items of its own beside the checkpoints.
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
            .save("sync", REPO, &main, &at(&commit(&"1".repeat(40))), None)
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
            .map(|(n, x)| (x.clone(), vec![value(n)]))
            .collect();
        l.record(&changes).unwrap();
        let got = l.recorded(&r).unwrap();
        assert_eq!(got.len(), 231);
        assert_eq!(got[&r[229]], [value(229)]);
        // Deleted refs are forgotten; a later change of one ref wins; a push in flight
        // keeps both values, in order.
        l.record(&[
            (r[0].clone(), vec![]),
            (r[1].clone(), vec![]),
            (r[1].clone(), vec![value(7)]),
            (r[2].clone(), vec![value(2), value(8)]),
        ])
        .unwrap();
        let got = l.recorded(&r[..3]).unwrap();
        assert_eq!(got.keys().collect::<Vec<_>>(), [&r[1], &r[2]]);
        assert_eq!(got[&r[1]], [value(7)]);
        assert_eq!(got[&r[2]], [value(2), value(8)]);
    }))
    .await;
    // An item as written before records held two values: `commit` only.
    let old_key = json!([
        "mirrored",
        "codecommit::ap-northeast-3://core-infra",
        "refs/heads/old"
    ]);
    let old_item = json!({
        "pk": {"S": old_key.to_string()},
        "commit": {"S": value(9).to_string()},
        "updated_at": {"N": "1"},
    });
    moto.aws(
        REGION,
        &[
            "dynamodb",
            "put-item",
            "--table-name",
            "tozai-checkpoints",
            "--item",
            &old_item.to_string(),
        ],
    );
    let (l, old) = (osaka.clone(), RefName::branch("old").unwrap());
    blocking(Box::new(move || {
        assert_eq!(
            l.recorded(std::slice::from_ref(&old)).unwrap()[&old],
            [value(9)]
        );
        l.record(&[(old, vec![])]).unwrap();
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
    let in_flight = (items.iter())
        .find(|i| {
            i["pk"]["S"]
                .as_str()
                .is_some_and(|k| k.ends_with(r#"refs/heads/b/002"]"#))
        })
        .unwrap();
    assert_eq!(in_flight["commit"]["S"], json!(value(8).to_string()));
    assert_eq!(in_flight["also"]["L"], json!([{"S": value(2).to_string()}]));
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
