//! The AWS adapters against aws-smithy-mocks: the exact requests they send, pagination to
//! the last page, retries with the same token, and how errors are mapped.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use aws_sdk_codecommit::types::{BlobMetadata, ChangeTypeEnum, Difference};
use aws_smithy_mocks::{MockResponse, RuleMode, mock, mock_client};

use super::*;
use crate::ports::{ChangeSource, StartRequest};

fn commit(n: u8) -> CommitId {
    format!("{n:02x}").repeat(20).parse().unwrap()
}

fn blob(path: &str) -> BlobMetadata {
    BlobMetadata::builder()
        .path(path)
        .blob_id("b")
        .mode("100644")
        .build()
}

fn diff(kind: &str, before: Option<&str>, after: Option<&str>) -> Difference {
    Difference::builder()
        .set_before_blob(before.map(blob))
        .set_after_blob(after.map(blob))
        .change_type(ChangeTypeEnum::from(kind))
        .build()
}

/// Records every input a rule saw.
fn recorder<T>() -> Arc<Mutex<Vec<T>>> {
    Arc::new(Mutex::new(Vec::new()))
}

fn codecommit_meta(code: &str) -> aws_sdk_codecommit::error::ErrorMetadata {
    aws_sdk_codecommit::error::ErrorMetadata::builder()
        .code(code)
        .message(format!("{code} (mocked)"))
        .build()
}

#[tokio::test]
async fn get_differences_reads_every_page_and_both_paths() {
    use aws_sdk_codecommit::operation::get_differences::GetDifferencesOutput;
    let seen = recorder();
    let log = seen.clone();
    let rule = mock!(aws_sdk_codecommit::Client::get_differences).then_compute_output(move |req| {
        log.lock().unwrap().push(req.clone());
        let (differences, next) = match req.next_token() {
            None => (
                vec![
                    diff("A", None, Some("common/a.yaml")),
                    diff("M", Some("common/b.yaml"), Some("common/b.yaml")),
                ],
                Some("page-2"),
            ),
            Some("page-2") => (
                vec![diff("M", Some("primary/old.yaml"), Some("common/new.yaml"))],
                Some("page-3"),
            ),
            Some(_) => (vec![diff("D", Some("secondary/gone.yaml"), None)], None),
        };
        GetDifferencesOutput::builder()
            .set_differences(Some(differences))
            .set_next_token(next.map(str::to_owned))
            .build()
    });
    let client = mock_client!(aws_sdk_codecommit, RuleMode::MatchAny, [&rule]);
    let repo = CodeCommitRepo::new(client, "core-infra");
    let changes = repo.changes(Some(&commit(1)), &commit(2)).await.unwrap();
    let shown: Vec<String> = changes.iter().map(|c| c.to_string()).collect();
    assert_eq!(
        shown,
        [
            "A common/a.yaml",
            "M common/b.yaml",
            "R primary/old.yaml -> common/new.yaml",
            "D secondary/gone.yaml"
        ]
    );
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 3);
    assert_eq!(
        seen.iter().map(|r| r.next_token()).collect::<Vec<_>>(),
        [None, Some("page-2"), Some("page-3")]
    );
    for r in seen.iter() {
        assert_eq!(r.repository_name(), Some("core-infra"));
        assert_eq!(r.before_commit_specifier(), Some(commit(1).as_str()));
        assert_eq!(r.after_commit_specifier(), Some(commit(2).as_str()));
    }
}

#[tokio::test]
async fn without_a_base_no_before_specifier_is_sent() {
    use aws_sdk_codecommit::operation::get_differences::GetDifferencesOutput;
    let rule = mock!(aws_sdk_codecommit::Client::get_differences)
        .match_requests(|r| r.before_commit_specifier().is_none())
        .then_output(|| {
            GetDifferencesOutput::builder()
                .differences(diff("A", None, Some("x")))
                .build()
        });
    let client = mock_client!(aws_sdk_codecommit, RuleMode::MatchAny, [&rule]);
    let changes = CodeCommitRepo::new(client, "r")
        .changes(None, &commit(2))
        .await
        .unwrap();
    assert_eq!(changes.len(), 1);
    assert_eq!(rule.num_calls(), 1);
}

#[tokio::test]
async fn codecommit_errors_are_mapped() {
    use aws_sdk_codecommit::operation::get_differences::GetDifferencesError;
    let unknown = mock!(aws_sdk_codecommit::Client::get_differences).then_error(|| {
        GetDifferencesError::CommitDoesNotExistException(
            aws_sdk_codecommit::types::error::CommitDoesNotExistException::builder()
                .message("no such commit")
                .build(),
        )
    });
    let throttled = mock!(aws_sdk_codecommit::Client::get_differences)
        .then_error(|| GetDifferencesError::generic(codecommit_meta("ThrottlingException")));
    let client = mock_client!(
        aws_sdk_codecommit,
        RuleMode::Sequential,
        [&unknown, &throttled]
    );
    let repo = CodeCommitRepo::new(client, "core-infra");
    let e = repo.changes(None, &commit(9)).await.unwrap_err();
    assert!(matches!(e, ChangeError::UnknownRevision { .. }), "{e}");
    assert!(e.to_string().contains(commit(9).as_str()), "{e}");
    let e = repo.changes(None, &commit(9)).await.unwrap_err();
    assert!(e.is_transient(), "{e}");
    assert!(e.to_string().contains("ThrottlingException"), "{e}");
}

#[tokio::test]
async fn merge_base_tries_both_orders_and_a_missing_branch_is_none() {
    use aws_sdk_codecommit::operation::get_branch::GetBranchError;
    use aws_sdk_codecommit::operation::get_merge_options::{
        GetMergeOptionsError, GetMergeOptionsOutput,
    };
    let refused = mock!(aws_sdk_codecommit::Client::get_merge_options).then_error(|| {
        GetMergeOptionsError::generic(codecommit_meta("ManualMergeRequiredException"))
    });
    let answered = mock!(aws_sdk_codecommit::Client::get_merge_options)
        .match_requests(|r| r.source_commit_specifier() == Some(commit(1).as_str()))
        .then_output(|| {
            GetMergeOptionsOutput::builder()
                .source_commit_id(commit(1).as_str())
                .destination_commit_id(commit(2).as_str())
                .base_commit_id(commit(1).as_str())
                .set_merge_options(Some(vec![]))
                .build()
                .unwrap()
        });
    let no_branch = mock!(aws_sdk_codecommit::Client::get_branch)
        .then_error(|| GetBranchError::generic(codecommit_meta("BranchDoesNotExistException")));
    let client = mock_client!(
        aws_sdk_codecommit,
        RuleMode::Sequential,
        [&refused, &answered, &no_branch]
    );
    let repo = CodeCommitRepo::new(client, "core-infra");
    assert_eq!(
        repo.merge_base(&commit(1), &commit(2)).await.unwrap(),
        Some(commit(1))
    );
    assert_eq!(repo.branch_head("main").await.unwrap(), None);
}

fn request(kind: RunKind, commit: CommitId) -> StartRequest {
    StartRequest::new(
        "tokyo-core",
        kind,
        "core-deploy",
        (kind == RunKind::CodePipeline).then(|| "Source".to_owned()),
        commit,
        RefName::branch("main").unwrap(),
        vec![("TOZAI_COMMIT_ID".into(), "c".into())],
    )
}

fn token_is_valid(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= 128
        && token.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

#[tokio::test]
async fn a_pipeline_start_is_pinned_and_retried_with_the_same_token() {
    use aws_sdk_codepipeline::operation::start_pipeline_execution::{
        StartPipelineExecutionError, StartPipelineExecutionOutput,
    };
    use aws_sdk_codepipeline::types::SourceRevisionType;
    use aws_sdk_codepipeline::types::error::ConflictException;
    let seen = recorder();
    let log = seen.clone();
    let rule = mock!(aws_sdk_codepipeline::Client::start_pipeline_execution).then_compute_response(
        move |req| {
            let mut log = log.lock().unwrap();
            log.push(req.clone());
            if log.len() < 3 {
                MockResponse::Error(StartPipelineExecutionError::ConflictException(
                    ConflictException::builder().message("busy").build(),
                ))
            } else {
                MockResponse::Output(
                    StartPipelineExecutionOutput::builder()
                        .pipeline_execution_id("exec-1")
                        .build(),
                )
            }
        },
    );
    let pipelines = mock_client!(aws_sdk_codepipeline, RuleMode::MatchAny, [&rule]);
    let builds = mock_client!(
        aws_sdk_codebuild,
        RuleMode::MatchAny,
        [] as [&aws_smithy_mocks::Rule; 0]
    );
    let starter = AwsStarter::new(pipelines, builds).with_conflict_backoff(vec![Duration::ZERO; 3]);
    let r = request(RunKind::CodePipeline, commit(7));
    assert_eq!(starter.start(&r).await.unwrap(), "exec-1");

    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 3, "two ConflictExceptions, then the start");
    let token = seen[0].client_request_token().unwrap();
    assert!(token_is_valid(token), "{token}");
    assert!(seen.iter().all(|s| s.client_request_token() == Some(token)));
    let first = &seen[0];
    assert_eq!(first.name(), Some("core-deploy"));
    let revisions = first.source_revisions();
    assert_eq!(revisions.len(), 1);
    assert_eq!(revisions[0].action_name(), "Source");
    assert_eq!(revisions[0].revision_type(), &SourceRevisionType::CommitId);
    assert_eq!(revisions[0].revision_value(), commit(7).as_str());
    let vars = first.variables();
    assert_eq!((vars[0].name(), vars[0].value()), ("TOZAI_COMMIT_ID", "c"));
}

#[tokio::test]
async fn pipeline_errors_say_what_to_fix_and_whether_to_retry() {
    use aws_sdk_codepipeline::operation::start_pipeline_execution::StartPipelineExecutionError;
    use aws_sdk_codepipeline::types::error::{ConflictException, PipelineNotFoundException};
    let missing = mock!(aws_sdk_codepipeline::Client::start_pipeline_execution).then_error(|| {
        StartPipelineExecutionError::PipelineNotFoundException(
            PipelineNotFoundException::builder().message("nope").build(),
        )
    });
    let busy = mock!(aws_sdk_codepipeline::Client::start_pipeline_execution)
        .sequence()
        .error(|| {
            StartPipelineExecutionError::ConflictException(
                ConflictException::builder().message("busy").build(),
            )
        })
        .times(2)
        .build();
    let pipelines = mock_client!(
        aws_sdk_codepipeline,
        RuleMode::Sequential,
        [&missing, &busy]
    );
    let builds = mock_client!(
        aws_sdk_codebuild,
        RuleMode::MatchAny,
        [] as [&aws_smithy_mocks::Rule; 0]
    );
    let starter = AwsStarter::new(pipelines, builds).with_conflict_backoff(vec![Duration::ZERO]);
    let r = request(RunKind::CodePipeline, commit(7));
    let e = starter.start(&r).await.unwrap_err();
    assert!(!e.transient);
    let text = e.to_string();
    assert!(
        text.contains("core-deploy") && text.contains("does not exist"),
        "{text}"
    );
    assert!(text.contains("PipelineNotFoundException"), "{text}");
    let e = starter.start(&r).await.unwrap_err();
    assert!(
        e.transient,
        "a pipeline that stays busy is retried later: {e}"
    );
    assert_eq!(busy.num_calls(), 2);
}

#[tokio::test]
async fn a_build_start_is_pinned_with_an_idempotency_token() {
    use aws_sdk_codebuild::operation::start_build::{StartBuildError, StartBuildOutput};
    use aws_sdk_codebuild::types::Build;
    use aws_sdk_codebuild::types::error::ResourceNotFoundException;
    let seen = recorder();
    let log = seen.clone();
    let ok = mock!(aws_sdk_codebuild::Client::start_build).then_compute_output(move |req| {
        log.lock().unwrap().push(req.clone());
        StartBuildOutput::builder()
            .build_value(Build::builder().id("core-lint:1").build())
            .build()
    });
    let missing = mock!(aws_sdk_codebuild::Client::start_build).then_error(|| {
        StartBuildError::ResourceNotFoundException(ResourceNotFoundException::builder().build())
    });
    let pipelines = mock_client!(
        aws_sdk_codepipeline,
        RuleMode::MatchAny,
        [] as [&aws_smithy_mocks::Rule; 0]
    );
    let builds = mock_client!(aws_sdk_codebuild, RuleMode::Sequential, [&ok, &missing]);
    let starter = AwsStarter::new(pipelines, builds);
    let r = request(RunKind::CodeBuild, commit(5));
    assert_eq!(starter.start(&r).await.unwrap(), "core-lint:1");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen[0].project_name(), Some("core-deploy"));
    assert_eq!(seen[0].source_version(), Some(commit(5).as_str()));
    assert!(token_is_valid(seen[0].idempotency_token().unwrap()));
    assert_eq!(
        seen[0].environment_variables_override()[0].name(),
        "TOZAI_COMMIT_ID"
    );
    let e = starter.start(&r).await.unwrap_err();
    assert!(
        !e.transient && e.to_string().contains("does not exist"),
        "{e}"
    );
}

const CHECKPOINTS: &str = "tozai-checkpoints";

fn main_ref() -> RefName {
    RefName::branch("main").unwrap()
}

/// A start of `pending` claimed at 1,000 s with a 120 s lease, the last head `last`.
fn claimed(last: Option<u8>, pending: u8, run_id: Option<&str>) -> Checkpoint {
    Checkpoint {
        commit: last.map(commit),
        version: 0,
        pending: Some(PendingStart {
            commit: commit(pending),
            claimed_at: 1_000,
            lease_until: 1_120,
        }),
        run_id: run_id.map(str::to_owned),
    }
}

/// The names of an item's attributes, sorted.
fn attributes(item: &std::collections::HashMap<String, AttributeValue>) -> Vec<&str> {
    let mut names: Vec<&str> = item.keys().map(String::as_str).collect();
    names.sort();
    names
}

fn n(value: &AttributeValue) -> u64 {
    value.as_n().unwrap().parse().unwrap()
}

/// The exact PutItem of each save: the whole item (unset fields left out, never null), and
/// the condition: absent for a first save, the version read for the others.
#[tokio::test]
async fn a_checkpoint_save_is_one_put_conditional_on_the_version_read() {
    use aws_sdk_dynamodb::operation::put_item::PutItemOutput;
    let seen = recorder();
    let log = seen.clone();
    let rule = mock!(aws_sdk_dynamodb::Client::put_item).then_compute_output(move |req| {
        log.lock().unwrap().push(req.clone());
        PutItemOutput::builder().build()
    });
    let client = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&rule]);
    let store = DynamoStore::new(client, CHECKPOINTS);
    let consumer = "target:tokyo-core";

    // A first claim on the ref: nothing judged yet, a start pending.
    let first = claimed(None, 3, None);
    assert!(
        store
            .save(consumer, "core-infra", &main_ref(), &first, None)
            .await
            .unwrap()
    );
    // The start recorded, from version 4: the head moves, the claim goes, the run stays.
    let read = Checkpoint {
        version: 4,
        ..first.clone()
    };
    let recorded = Checkpoint {
        run_id: Some("exec-1".into()),
        // Ignored: the store sets the version from the one read.
        version: 99,
        ..Checkpoint::at(commit(3))
    };
    assert!(
        store
            .save(consumer, "core-infra", &main_ref(), &recorded, Some(&read))
            .await
            .unwrap()
    );

    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2, "one PutItem a save, nothing else");
    let now = now_secs();
    let key = r#"["checkpoint","target:tokyo-core","core-infra","refs/heads/main"]"#;

    let put = &seen[0];
    assert_eq!(put.table_name(), Some(CHECKPOINTS));
    assert_eq!(put.condition_expression(), Some("attribute_not_exists(pk)"));
    assert_eq!(put.expression_attribute_names(), None);
    assert_eq!(put.expression_attribute_values(), None);
    let item = put.item().unwrap();
    assert_eq!(
        attributes(item),
        [
            "pending_claimed_at",
            "pending_commit",
            "pending_lease_until",
            "pk",
            "updated_at",
            "version"
        ]
    );
    assert_eq!(item["pk"].as_s().unwrap(), key);
    assert_eq!(n(&item["version"]), 1);
    assert_eq!(item["pending_commit"].as_s().unwrap(), commit(3).as_str());
    assert_eq!(n(&item["pending_claimed_at"]), 1_000);
    assert_eq!(n(&item["pending_lease_until"]), 1_120);
    assert!(now.abs_diff(n(&item["updated_at"])) < 60);

    let put = &seen[1];
    assert_eq!(put.table_name(), Some(CHECKPOINTS));
    assert_eq!(put.condition_expression(), Some("#v = :v"));
    assert_eq!(
        put.expression_attribute_names().unwrap(),
        &std::collections::HashMap::from([("#v".to_owned(), "version".to_owned())])
    );
    assert_eq!(
        put.expression_attribute_values().unwrap(),
        &std::collections::HashMap::from([(":v".to_owned(), AttributeValue::N("4".into()))])
    );
    let item = put.item().unwrap();
    assert_eq!(
        attributes(item),
        ["commit", "pk", "run_id", "updated_at", "version"]
    );
    assert_eq!(item["pk"].as_s().unwrap(), key);
    assert_eq!(n(&item["version"]), 5);
    assert_eq!(item["commit"].as_s().unwrap(), commit(3).as_str());
    assert_eq!(item["run_id"].as_s().unwrap(), "exec-1");
}

#[tokio::test]
async fn a_save_that_lost_the_swap_is_false_and_other_failures_are_errors_naming_put_item() {
    use aws_sdk_dynamodb::operation::put_item::PutItemError;
    use aws_sdk_dynamodb::types::error::{
        ConditionalCheckFailedException, ProvisionedThroughputExceededException,
        ResourceNotFoundException,
    };
    let store = |error: fn() -> PutItemError| {
        let rule = mock!(aws_sdk_dynamodb::Client::put_item).then_error(error);
        (
            DynamoStore::new(
                mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&rule]),
                CHECKPOINTS,
            ),
            rule,
        )
    };
    let read = Checkpoint {
        version: 2,
        ..Checkpoint::at(commit(1))
    };
    let (lost, _rule) = store(|| {
        PutItemError::ConditionalCheckFailedException(
            ConditionalCheckFailedException::builder().build(),
        )
    });
    assert!(
        !lost
            .save(
                "sync",
                "core-infra",
                &main_ref(),
                &Checkpoint::at(commit(2)),
                Some(&read)
            )
            .await
            .unwrap(),
        "a save that lost the race writes nothing and says so"
    );

    let (throttled, _rule) = store(|| {
        PutItemError::ProvisionedThroughputExceededException(
            ProvisionedThroughputExceededException::builder()
                .message("slow down")
                .build(),
        )
    });
    let e = throttled
        .save(
            "sync",
            "core-infra",
            &main_ref(),
            &Checkpoint::at(commit(2)),
            Some(&read),
        )
        .await
        .unwrap_err();
    assert!(e.transient, "{e}");
    let text = e.to_string();
    for part in [
        "DynamoDB table tozai-checkpoints",
        "PutItem",
        r#"["checkpoint","sync","core-infra","refs/heads/main"]"#,
        "ProvisionedThroughputExceededException",
    ] {
        assert!(text.contains(part), "{part} in {text}");
    }

    let (missing, _rule) = store(|| {
        PutItemError::ResourceNotFoundException(
            ResourceNotFoundException::builder()
                .message("no such table")
                .build(),
        )
    });
    let e = missing
        .save(
            "sync",
            "core-infra",
            &main_ref(),
            &Checkpoint::at(commit(2)),
            None,
        )
        .await
        .unwrap_err();
    assert!(!e.transient, "a missing table is a setting to fix: {e}");
    assert!(e.to_string().contains("ResourceNotFoundException"), "{e}");
}

/// An item as GetItem answers it.
fn item(
    attributes: &[(&str, AttributeValue)],
) -> std::collections::HashMap<String, AttributeValue> {
    attributes
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

fn s(text: &str) -> AttributeValue {
    AttributeValue::S(text.to_owned())
}

fn num(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// A store whose GetItem answers `answer` (an item, or none), recording the requests.
fn loading(
    answer: Option<std::collections::HashMap<String, AttributeValue>>,
) -> (
    DynamoStore,
    Arc<Mutex<Vec<aws_sdk_dynamodb::operation::get_item::GetItemInput>>>,
    aws_smithy_mocks::Rule,
) {
    use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
    let seen = recorder();
    let log = seen.clone();
    let rule = mock!(aws_sdk_dynamodb::Client::get_item).then_compute_output(move |req| {
        log.lock().unwrap().push(req.clone());
        GetItemOutput::builder().set_item(answer.clone()).build()
    });
    let client = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&rule]);
    (DynamoStore::new(client, CHECKPOINTS), seen, rule)
}

#[tokio::test]
async fn a_checkpoint_is_read_consistently_with_its_pending_start_and_run_id() {
    let key = r#"["checkpoint","target:osaka-core","core-infra","refs/tags/v1.4.0"]"#;
    let tag = RefName::tag("v1.4.0").unwrap();
    let rows: Vec<(&str, Option<_>, Option<Checkpoint>)> = vec![
        ("no item", None, None),
        (
            "a claim on a ref never judged",
            Some(item(&[
                ("pk", s(key)),
                ("version", num(1)),
                ("updated_at", num(1_000)),
                ("pending_commit", s(commit(3).as_str())),
                ("pending_claimed_at", num(1_000)),
                ("pending_lease_until", num(1_120)),
            ])),
            Some(Checkpoint {
                version: 1,
                ..claimed(None, 3, None)
            }),
        ),
        (
            "a recorded start",
            Some(item(&[
                ("pk", s(key)),
                ("version", num(7)),
                ("updated_at", num(1_000)),
                ("commit", s(commit(3).as_str())),
                ("run_id", s("exec-1")),
            ])),
            Some(Checkpoint {
                version: 7,
                run_id: Some("exec-1".into()),
                ..Checkpoint::at(commit(3))
            }),
        ),
        (
            "the next claim, keeping the last head and run",
            Some(item(&[
                ("pk", s(key)),
                ("version", num(8)),
                ("commit", s(commit(3).as_str())),
                ("run_id", s("exec-1")),
                ("pending_commit", s(commit(4).as_str())),
                ("pending_claimed_at", num(1_000)),
                ("pending_lease_until", num(1_120)),
            ])),
            Some(Checkpoint {
                version: 8,
                ..claimed(Some(3), 4, Some("exec-1"))
            }),
        ),
        (
            // Written before checkpoints carried their claims: `covered_from` is ignored.
            "an item of the previous format",
            Some(item(&[
                ("pk", s(key)),
                ("version", num(2)),
                ("updated_at", num(1_000)),
                ("commit", s(commit(5).as_str())),
                ("covered_from", s(commit(1).as_str())),
            ])),
            Some(Checkpoint {
                version: 2,
                ..Checkpoint::at(commit(5))
            }),
        ),
    ];
    for (what, answer, expected) in rows {
        let (store, seen, _rule) = loading(answer);
        let loaded = store
            .load("target:osaka-core", "core-infra", &tag)
            .await
            .unwrap();
        assert_eq!(loaded, expected, "{what}");
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1, "{what}");
        assert_eq!(seen[0].table_name(), Some(CHECKPOINTS), "{what}");
        assert_eq!(
            seen[0].consistent_read(),
            Some(true),
            "{what}: a strong read"
        );
        assert_eq!(seen[0].key().unwrap(), &item(&[("pk", s(key))]), "{what}");
    }
}

/// An item that is not a checkpoint is an error naming the item, the attribute and what
/// is wrong with it: never read as "nothing judged", which would judge the ref again.
#[tokio::test]
async fn an_item_that_is_not_a_checkpoint_is_an_error_naming_it() {
    let key = r#"["checkpoint","sync","core-infra","refs/heads/main"]"#;
    let good = || {
        vec![
            ("pk", s(key)),
            ("version", num(3)),
            ("commit", s(commit(1).as_str())),
        ]
    };
    let with = |name: &'static str, value: Option<AttributeValue>| {
        let mut attributes: Vec<(&str, AttributeValue)> =
            good().into_iter().filter(|(n, _)| *n != name).collect();
        attributes.extend(value.map(|v| (name, v)));
        item(&attributes)
    };
    let pending = |claimed_at: Option<AttributeValue>| {
        let mut attributes = good();
        attributes.push(("pending_commit", s(commit(2).as_str())));
        attributes.push(("pending_lease_until", num(1_120)));
        attributes.extend(claimed_at.map(|v| ("pending_claimed_at", v)));
        item(&attributes)
    };
    let rows = [
        (with("version", None), "no version"),
        (with("version", Some(s("3"))), "version is not a number"),
        (
            with("version", Some(AttributeValue::N("-1".into()))),
            r#"version "-1" is not a whole number"#,
        ),
        (
            with("commit", Some(s("main"))),
            r#"commit "main" is not a commit id"#,
        ),
        (with("commit", Some(num(1))), "commit is not a string"),
        (
            with("run_id", Some(AttributeValue::Bool(true))),
            "run_id is not a string",
        ),
        (pending(None), "no pending_claimed_at"),
        (
            pending(Some(s("soon"))),
            "pending_claimed_at is not a number",
        ),
    ];
    for (answer, problem) in rows {
        let (store, _seen, _rule) = loading(Some(answer));
        let e = store
            .load("sync", "core-infra", &main_ref())
            .await
            .unwrap_err();
        assert!(!e.transient, "{problem}: {e}");
        let text = e.to_string();
        for part in ["DynamoDB table tozai-checkpoints", key, problem] {
            assert!(text.contains(part), "{part} in {text}");
        }
    }
}

#[tokio::test]
async fn a_failed_read_is_an_error_naming_get_item() {
    use aws_sdk_dynamodb::operation::get_item::GetItemError;
    use aws_sdk_dynamodb::types::error::ProvisionedThroughputExceededException;
    let rule = mock!(aws_sdk_dynamodb::Client::get_item).then_error(|| {
        GetItemError::ProvisionedThroughputExceededException(
            ProvisionedThroughputExceededException::builder()
                .message("slow down")
                .build(),
        )
    });
    let store = DynamoStore::new(
        mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&rule]),
        CHECKPOINTS,
    );
    let e = store
        .load("sync", "core-infra", &main_ref())
        .await
        .unwrap_err();
    assert!(e.transient, "{e}");
    let text = e.to_string();
    assert!(
        text.contains("DynamoDB table tozai-checkpoints")
            && text.contains("GetItem")
            && text.contains("refs/heads/main"),
        "{text}"
    );
}

// ---------------------------------------------------------------- finding a run

/// When the claim that `find_run` looks for was made (Unix seconds).
const CLAIMED_AT: i64 = 1_700_000_000;

fn env(name: &str, value: &str) -> aws_sdk_codebuild::types::EnvironmentVariable {
    aws_sdk_codebuild::types::EnvironmentVariable::builder()
        .name(name)
        .value(value)
        .build()
        .unwrap()
}

/// A build of `core-deploy` as BatchGetBuilds describes it.
fn build(id: &str, at: CommitId, reference: &str, started: i64) -> aws_sdk_codebuild::types::Build {
    use aws_sdk_codebuild::primitives::DateTime;
    use aws_sdk_codebuild::types::{Build, ComputeType, EnvironmentType, ProjectEnvironment};
    let environment = ProjectEnvironment::builder()
        .r#type(EnvironmentType::LinuxContainer)
        .image("aws/codebuild/standard:7.0")
        .compute_type(ComputeType::BuildGeneral1Small)
        .environment_variables(env("TOZAI_COMMIT_ID", at.as_str()))
        .environment_variables(env("TOZAI_REF", reference))
        .build()
        .unwrap();
    Build::builder()
        .id(id)
        .project_name("core-deploy")
        .source_version(at.as_str())
        .start_time(DateTime::from_secs(started))
        .environment(environment)
        .build()
}

fn no_pipelines() -> aws_sdk_codepipeline::Client {
    mock_client!(
        aws_sdk_codepipeline,
        RuleMode::MatchAny,
        [] as [&aws_smithy_mocks::Rule; 0]
    )
}

fn no_builds() -> aws_sdk_codebuild::Client {
    mock_client!(
        aws_sdk_codebuild,
        RuleMode::MatchAny,
        [] as [&aws_smithy_mocks::Rule; 0]
    )
}

/// find_run for a CodeBuild target: the project's newest builds (one ListBuildsForProject
/// page, newest first), described by one BatchGetBuilds; a build is the claim's only when
/// it is at the commit, carries the ref in `TOZAI_REF`, and began at the claim or later
/// (5 s of clock skew allowed).
#[tokio::test]
async fn find_run_finds_the_build_at_the_commit_for_the_ref_begun_since_the_claim() {
    use aws_sdk_codebuild::operation::batch_get_builds::BatchGetBuildsOutput;
    use aws_sdk_codebuild::operation::list_builds_for_project::ListBuildsForProjectOutput;
    use aws_sdk_codebuild::types::SortOrderType;
    let listed = recorder();
    let log = listed.clone();
    let list =
        mock!(aws_sdk_codebuild::Client::list_builds_for_project).then_compute_output(move |req| {
            log.lock().unwrap().push(req.clone());
            // More than BatchGetBuilds takes at once: only the first 100 are described.
            let ids = [
                "core-deploy:other-ref",
                "core-deploy:before",
                "core-deploy:other-commit",
                "core-deploy:ours",
                "core-deploy:older-ours",
            ]
            .into_iter()
            .map(str::to_owned)
            .chain((0..150).map(|i| format!("core-deploy:ancient-{i}")));
            ListBuildsForProjectOutput::builder()
                .set_ids(Some(ids.collect()))
                .next_token("page-2")
                .build()
        });
    let described = recorder();
    let log = described.clone();
    let get = mock!(aws_sdk_codebuild::Client::batch_get_builds).then_compute_output(move |req| {
        log.lock().unwrap().push(req.clone());
        BatchGetBuildsOutput::builder()
            .builds(build(
                "core-deploy:other-ref",
                commit(7),
                "refs/heads/release/1",
                CLAIMED_AT + 30,
            ))
            .builds(build(
                "core-deploy:before",
                commit(7),
                "refs/heads/main",
                CLAIMED_AT - 6,
            ))
            .builds(build(
                "core-deploy:other-commit",
                commit(8),
                "refs/heads/main",
                CLAIMED_AT + 20,
            ))
            .builds(build(
                "core-deploy:ours",
                commit(7),
                "refs/heads/main",
                CLAIMED_AT - 5,
            ))
            .builds(build(
                "core-deploy:older-ours",
                commit(7),
                "refs/heads/main",
                CLAIMED_AT,
            ))
            .build()
    });
    let starter = AwsStarter::new(
        no_pipelines(),
        mock_client!(aws_sdk_codebuild, RuleMode::MatchAny, [&list, &get]),
    );
    let r = request(RunKind::CodeBuild, commit(7));
    let found = starter.find_run(&r, CLAIMED_AT as u64).await.unwrap();
    assert_eq!(
        found.as_deref(),
        Some("core-deploy:ours"),
        "not another ref's build at the commit, nor one begun more than 5 s before the claim"
    );

    let listed = listed.lock().unwrap().clone();
    assert_eq!(listed.len(), 1, "the first page only: the newest builds");
    assert_eq!(listed[0].project_name(), Some("core-deploy"));
    assert_eq!(listed[0].sort_order(), Some(&SortOrderType::Descending));
    assert_eq!(listed[0].next_token(), None);
    let described = described.lock().unwrap().clone();
    assert_eq!(described.len(), 1);
    let ids = described[0].ids();
    assert_eq!(ids.len(), 100, "BatchGetBuilds takes 100 ids at most");
    assert_eq!(ids[0], "core-deploy:other-ref", "newest first, as listed");

    // Only builds of other refs, or begun before the claim: none is the claim's.
    let since_later = starter.find_run(&r, (CLAIMED_AT + 6) as u64).await.unwrap();
    assert_eq!(since_later, None);
    let tag = StartRequest {
        reference: RefName::tag("v1").unwrap(),
        ..r.clone()
    };
    assert_eq!(starter.find_run(&tag, 0).await.unwrap(), None);
}

#[tokio::test]
async fn find_run_for_a_project_with_no_builds_describes_nothing() {
    use aws_sdk_codebuild::operation::list_builds_for_project::ListBuildsForProjectOutput;
    let list = mock!(aws_sdk_codebuild::Client::list_builds_for_project)
        .then_output(|| ListBuildsForProjectOutput::builder().build());
    let get = mock!(aws_sdk_codebuild::Client::batch_get_builds).then_output(|| {
        aws_sdk_codebuild::operation::batch_get_builds::BatchGetBuildsOutput::builder().build()
    });
    let starter = AwsStarter::new(
        no_pipelines(),
        mock_client!(aws_sdk_codebuild, RuleMode::MatchAny, [&list, &get]),
    );
    let r = request(RunKind::CodeBuild, commit(7));
    assert_eq!(starter.find_run(&r, 0).await.unwrap(), None);
    assert_eq!(list.num_calls(), 1);
    assert_eq!(get.num_calls(), 0);
}

/// A pipeline execution as ListPipelineExecutions summarises it.
fn summary(
    id: &str,
    action: &str,
    at: CommitId,
    started: i64,
) -> aws_sdk_codepipeline::types::PipelineExecutionSummary {
    use aws_sdk_codepipeline::primitives::DateTime;
    use aws_sdk_codepipeline::types::{PipelineExecutionSummary, SourceRevision};
    PipelineExecutionSummary::builder()
        .pipeline_execution_id(id)
        .start_time(DateTime::from_secs(started))
        .source_revisions(
            SourceRevision::builder()
                .action_name(action)
                .revision_id(at.as_str())
                .build()
                .unwrap(),
        )
        .build()
}

/// find_run for a CodePipeline target: one ListPipelineExecutions page; only executions
/// whose source action ran at the commit and that began since the claim (5 s of skew) are
/// read with GetPipelineExecution, for their `TOZAI_REF`.
#[tokio::test]
async fn find_run_finds_the_execution_at_the_commit_for_the_ref_begun_since_the_claim() {
    use aws_sdk_codepipeline::operation::get_pipeline_execution::GetPipelineExecutionOutput;
    use aws_sdk_codepipeline::operation::list_pipeline_executions::ListPipelineExecutionsOutput;
    use aws_sdk_codepipeline::types::{PipelineExecution, ResolvedPipelineVariable};
    let listed = recorder();
    let log = listed.clone();
    let list = mock!(aws_sdk_codepipeline::Client::list_pipeline_executions).then_compute_output(
        move |req| {
            log.lock().unwrap().push(req.clone());
            ListPipelineExecutionsOutput::builder()
                .pipeline_execution_summaries(summary(
                    "other-ref",
                    "Source",
                    commit(7),
                    CLAIMED_AT + 30,
                ))
                .pipeline_execution_summaries(summary(
                    "other-action",
                    "Tools",
                    commit(7),
                    CLAIMED_AT + 25,
                ))
                .pipeline_execution_summaries(summary(
                    "other-commit",
                    "Source",
                    commit(8),
                    CLAIMED_AT + 20,
                ))
                .pipeline_execution_summaries(summary("ours", "Source", commit(7), CLAIMED_AT - 5))
                .pipeline_execution_summaries(summary(
                    "before",
                    "Source",
                    commit(7),
                    CLAIMED_AT - 6,
                ))
                .next_token("page-2")
                .build()
        },
    );
    let read = recorder();
    let log = read.clone();
    let get = mock!(aws_sdk_codepipeline::Client::get_pipeline_execution).then_compute_output(
        move |req| {
            log.lock().unwrap().push(req.clone());
            let reference = match req.pipeline_execution_id() {
                Some("other-ref") => "refs/heads/release/1",
                _ => "refs/heads/main",
            };
            GetPipelineExecutionOutput::builder()
                .pipeline_execution(
                    PipelineExecution::builder()
                        .set_pipeline_execution_id(req.pipeline_execution_id().map(str::to_owned))
                        .variables(
                            ResolvedPipelineVariable::builder()
                                .name("TOZAI_REF")
                                .resolved_value(reference)
                                .build(),
                        )
                        .build(),
                )
                .build()
        },
    );
    let starter = AwsStarter::new(
        mock_client!(aws_sdk_codepipeline, RuleMode::MatchAny, [&list, &get]),
        no_builds(),
    );
    let r = request(RunKind::CodePipeline, commit(7));
    let found = starter.find_run(&r, CLAIMED_AT as u64).await.unwrap();
    assert_eq!(found.as_deref(), Some("ours"));

    let listed = listed.lock().unwrap().clone();
    assert_eq!(
        listed.len(),
        1,
        "the first page only: the newest executions"
    );
    assert_eq!(listed[0].pipeline_name(), Some("core-deploy"));
    assert_eq!(listed[0].max_results(), Some(100));
    assert_eq!(listed[0].next_token(), None);
    let read = read.lock().unwrap().clone();
    assert_eq!(
        read.iter()
            .map(|g| (
                g.pipeline_name().unwrap(),
                g.pipeline_execution_id().unwrap()
            ))
            .collect::<Vec<_>>(),
        [("core-deploy", "other-ref"), ("core-deploy", "ours")],
        "only the candidates at the commit, begun since the claim, are read"
    );

    assert_eq!(
        starter.find_run(&r, (CLAIMED_AT + 6) as u64).await.unwrap(),
        None,
        "the only execution begun since is another ref's"
    );
}

/// A ref longer than a pipeline variable may be is found by the `TOZAI_REF` the judge
/// sends: cut to 1,000 bytes with a marker.
#[tokio::test]
async fn find_run_matches_a_ref_cut_to_the_variable_limit() {
    use aws_sdk_codebuild::operation::batch_get_builds::BatchGetBuildsOutput;
    use aws_sdk_codebuild::operation::list_builds_for_project::ListBuildsForProjectOutput;
    let long = RefName::branch(&format!("feature/{}", "x".repeat(1000))).unwrap();
    let sent = crate::text::cut(&long.full(), 1000);
    assert!(sent.len() <= 1000 && sent.ends_with(crate::text::CUT_MARKER));
    let list = mock!(aws_sdk_codebuild::Client::list_builds_for_project).then_output(|| {
        ListBuildsForProjectOutput::builder()
            .ids("core-deploy:full")
            .ids("core-deploy:cut")
            .build()
    });
    let get = mock!(aws_sdk_codebuild::Client::batch_get_builds).then_output(move || {
        let full = RefName::branch(&format!("feature/{}", "x".repeat(1000))).unwrap();
        BatchGetBuildsOutput::builder()
            // Never sent by the judge: a variable this long is refused.
            .builds(build(
                "core-deploy:full",
                commit(7),
                &full.full(),
                CLAIMED_AT,
            ))
            .builds(build(
                "core-deploy:cut",
                commit(7),
                &crate::text::cut(&full.full(), 1000),
                CLAIMED_AT,
            ))
            .build()
    });
    let starter = AwsStarter::new(
        no_pipelines(),
        mock_client!(aws_sdk_codebuild, RuleMode::MatchAny, [&list, &get]),
    );
    let r = StartRequest {
        reference: long,
        ..request(RunKind::CodeBuild, commit(7))
    };
    assert_eq!(
        starter
            .find_run(&r, CLAIMED_AT as u64)
            .await
            .unwrap()
            .as_deref(),
        Some("core-deploy:cut")
    );
}

/// Each call find_run makes fails as a ServiceError naming the call and the pipeline or
/// project, transient when throttled.
#[tokio::test]
async fn find_run_failures_name_the_call_that_failed() {
    use aws_sdk_codebuild::operation::batch_get_builds::BatchGetBuildsError;
    use aws_sdk_codebuild::operation::list_builds_for_project::{
        ListBuildsForProjectError, ListBuildsForProjectOutput,
    };
    use aws_sdk_codebuild::types::error::{InvalidInputException, ResourceNotFoundException};
    use aws_sdk_codepipeline::operation::get_pipeline_execution::GetPipelineExecutionError;
    use aws_sdk_codepipeline::operation::list_pipeline_executions::{
        ListPipelineExecutionsError, ListPipelineExecutionsOutput,
    };
    use aws_sdk_codepipeline::types::error::PipelineNotFoundException;

    let throttled = |code: &str| {
        aws_sdk_codebuild::error::ErrorMetadata::builder()
            .code(code)
            .message("slow down")
            .build()
    };
    let builds_failing = |rules: &[&aws_smithy_mocks::Rule]| {
        AwsStarter::new(
            no_pipelines(),
            mock_client!(aws_sdk_codebuild, RuleMode::MatchAny, rules.iter().copied()),
        )
    };
    let pipelines_failing = |rules: &[&aws_smithy_mocks::Rule]| {
        AwsStarter::new(
            mock_client!(
                aws_sdk_codepipeline,
                RuleMode::MatchAny,
                rules.iter().copied()
            ),
            no_builds(),
        )
    };

    let missing = mock!(aws_sdk_codebuild::Client::list_builds_for_project).then_error(|| {
        ListBuildsForProjectError::ResourceNotFoundException(
            ResourceNotFoundException::builder()
                .message("no project")
                .build(),
        )
    });
    let slow_list = mock!(aws_sdk_codebuild::Client::list_builds_for_project)
        .then_error(move || ListBuildsForProjectError::generic(throttled("ThrottlingException")));
    let one = mock!(aws_sdk_codebuild::Client::list_builds_for_project).then_output(|| {
        ListBuildsForProjectOutput::builder()
            .ids("core-deploy:1")
            .build()
    });
    let bad_ids = mock!(aws_sdk_codebuild::Client::batch_get_builds).then_error(|| {
        BatchGetBuildsError::InvalidInputException(
            InvalidInputException::builder().message("bad id").build(),
        )
    });
    let no_pipeline =
        mock!(aws_sdk_codepipeline::Client::list_pipeline_executions).then_error(|| {
            ListPipelineExecutionsError::PipelineNotFoundException(
                PipelineNotFoundException::builder().message("nope").build(),
            )
        });
    let listed = mock!(aws_sdk_codepipeline::Client::list_pipeline_executions).then_output(|| {
        ListPipelineExecutionsOutput::builder()
            .pipeline_execution_summaries(summary("ours", "Source", commit(7), CLAIMED_AT))
            .build()
    });
    let slow_get = mock!(aws_sdk_codepipeline::Client::get_pipeline_execution).then_error(|| {
        GetPipelineExecutionError::generic(
            aws_sdk_codepipeline::error::ErrorMetadata::builder()
                .code("ThrottlingException")
                .message("slow down")
                .build(),
        )
    });

    let build = request(RunKind::CodeBuild, commit(7));
    let pipeline = request(RunKind::CodePipeline, commit(7));
    let rows: Vec<(AwsStarter, &StartRequest, &str, &str, bool)> = vec![
        (
            builds_failing(&[&missing]),
            &build,
            "CodeBuild project core-deploy",
            "ListBuildsForProject failed: ResourceNotFoundException",
            false,
        ),
        (
            builds_failing(&[&slow_list]),
            &build,
            "CodeBuild project core-deploy",
            "ListBuildsForProject failed: ThrottlingException",
            true,
        ),
        (
            builds_failing(&[&one, &bad_ids]),
            &build,
            "CodeBuild project core-deploy",
            "BatchGetBuilds failed: InvalidInputException",
            false,
        ),
        (
            pipelines_failing(&[&no_pipeline]),
            &pipeline,
            "CodePipeline pipeline core-deploy",
            "ListPipelineExecutions failed: PipelineNotFoundException",
            false,
        ),
        (
            pipelines_failing(&[&listed, &slow_get]),
            &pipeline,
            "CodePipeline pipeline core-deploy",
            "GetPipelineExecution failed: ThrottlingException",
            true,
        ),
    ];
    for (starter, r, service, context, transient) in rows {
        let e = starter.find_run(r, CLAIMED_AT as u64).await.unwrap_err();
        assert_eq!(e.service, service, "{e}");
        assert!(e.context.starts_with(context), "{context}: {e}");
        assert_eq!(e.transient, transient, "{e}");
    }
}

#[tokio::test]
async fn events_are_published_on_the_bus_and_refusals_are_errors() {
    use aws_sdk_eventbridge::operation::put_events::PutEventsOutput;
    use aws_sdk_eventbridge::types::PutEventsResultEntry;
    let seen = recorder();
    let log = seen.clone();
    let ok = mock!(aws_sdk_eventbridge::Client::put_events).then_compute_output(move |req| {
        log.lock().unwrap().push(req.clone());
        PutEventsOutput::builder()
            .failed_entry_count(0)
            .entries(PutEventsResultEntry::builder().event_id("e-1").build())
            .build()
    });
    let refused = mock!(aws_sdk_eventbridge::Client::put_events).then_output(|| {
        PutEventsOutput::builder()
            .failed_entry_count(1)
            .entries(
                PutEventsResultEntry::builder()
                    .error_code("ThrottlingException")
                    .error_message("slow down")
                    .build(),
            )
            .build()
    });
    let client = mock_client!(aws_sdk_eventbridge, RuleMode::Sequential, [&ok, &refused]);
    let sink = EventBridgeSink::new(client, "tozai-bus");
    let detail = serde_json::json!({"repository": "core-infra", "ref": "refs/heads/main"});
    sink.publish("Sync Requested", &detail).await.unwrap();
    let req = seen.lock().unwrap()[0].clone();
    let entry = &req.entries()[0];
    assert_eq!(entry.source(), Some("tozai"));
    assert_eq!(entry.detail_type(), Some("Sync Requested"));
    assert_eq!(entry.event_bus_name(), Some("tozai-bus"));
    let sent: serde_json::Value = serde_json::from_str(entry.detail().unwrap()).unwrap();
    assert_eq!(sent, detail);
    let e = sink.publish("Sync Requested", &detail).await.unwrap_err();
    assert!(
        e.transient && e.to_string().contains("ThrottlingException"),
        "{e}"
    );
}

/// CodeBuild honours `idempotencyToken` for 5 minutes and refuses the same token with other
/// parameters; CodePipeline documents no window for `clientRequestToken`. A retried start
/// (the same request) sends exactly the same StartBuild, so the same token; the next
/// judgement of the same (target, ref) (`with_sequence`), or the same commit on another ref,
/// sends another token, which CodeBuild would otherwise refuse.
#[tokio::test]
async fn a_retried_start_repeats_its_request_and_another_start_gets_another_token() {
    use aws_sdk_codebuild::operation::start_build::{StartBuildError, StartBuildOutput};
    use aws_sdk_codebuild::types::Build;
    use aws_sdk_codebuild::types::error::AccountLimitExceededException;

    let seen = recorder();
    let log = seen.clone();
    let rule = mock!(aws_sdk_codebuild::Client::start_build).then_compute_response(move |req| {
        let mut log = log.lock().unwrap();
        log.push(req.clone());
        if log.len() <= 2 {
            MockResponse::Error(StartBuildError::AccountLimitExceededException(
                AccountLimitExceededException::builder()
                    .message("too many builds")
                    .build(),
            ))
        } else {
            MockResponse::Output(
                StartBuildOutput::builder()
                    .build_value(
                        Build::builder()
                            .id(format!("core-lint:{}", log.len()))
                            .build(),
                    )
                    .build(),
            )
        }
    });
    let starter = AwsStarter::new(
        no_pipelines(),
        mock_client!(aws_sdk_codebuild, RuleMode::MatchAny, [&rule]),
    );
    let on = |reference: &str| {
        let reference: RefName = reference.parse().unwrap();
        StartRequest::new(
            "tokyo-lint",
            RunKind::CodeBuild,
            "core-lint",
            None,
            commit(5),
            reference.clone(),
            vec![
                ("TOZAI_COMMIT_ID".into(), commit(5).to_string()),
                ("TOZAI_REF".into(), reference.full()),
            ],
        )
        .with_sequence(3)
    };
    let main = on("refs/heads/main");
    for _ in 0..2 {
        let failed = starter.start(&main).await.unwrap_err();
        assert!(failed.transient, "{failed}");
    }
    assert_eq!(starter.start(&main).await.unwrap(), "core-lint:3");
    starter.start(&on("refs/heads/release/1")).await.unwrap();
    starter.start(&main.clone().with_sequence(4)).await.unwrap();

    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 5);
    assert_eq!(seen[0], seen[1], "a retry sends exactly the same request");
    assert_eq!(seen[0], seen[2], "a retry sends exactly the same request");
    let token = |i: usize| seen[i].idempotency_token().unwrap().to_owned();
    for i in 0..5 {
        assert!(token_is_valid(&token(i)), "{}", token(i));
        assert_eq!(seen[i].source_version(), Some(commit(5).as_str()));
    }
    assert_eq!(token(0), main.token);
    assert_ne!(
        seen[3].environment_variables_override(),
        seen[0].environment_variables_override()
    );
    let tokens: BTreeSet<String> = [0, 3, 4].map(token).into_iter().collect();
    assert_eq!(
        tokens.len(),
        3,
        "another ref, another judgement: another token"
    );
}

/// What EventBridge counts of a PutEvents entry against its 256 KB: Source, DetailType,
/// Detail and each of Resources, in UTF-8 bytes (and 14 for Time, which tozai never sets).
fn entry_size(entry: &aws_sdk_eventbridge::types::PutEventsRequestEntry) -> usize {
    let text = |s: Option<&str>| s.map_or(0, str::len);
    text(entry.source())
        + text(entry.detail_type())
        + text(entry.detail())
        + entry.resources().iter().map(String::len).sum::<usize>()
        + entry.time().map_or(0, |_| 14)
}

/// A config with a primary, a standby and the sync between them.
fn config() -> crate::config::Config {
    const CONFIG: &str = r#"
primary = "tokyo"
[regions.tokyo]
aws_region = "ap-northeast-1"
repository = "core-infra"
[regions.osaka]
aws_region = "ap-northeast-3"
repository = "core-infra"
[sync]
branches = ["main", "release/*"]
tags = ["v*"]
[sync.to.osaka]
paths = ["common/**", "secondary/**"]
[sync.to.tokyo]
paths = ["common/**", "primary/**"]
"#;
    crate::config::Config::parse(CONFIG, "tozai.toml".as_ref()).unwrap()
}

/// A mirror that answers every run with the same outcome (or error).
struct Answers(fn() -> Result<crate::mirror::MirrorOutcome, crate::ports::MirrorError>);

impl crate::judge::RefMirror for Answers {
    async fn mirror_ref(
        &self,
        _: &RefName,
    ) -> Result<crate::mirror::MirrorOutcome, crate::ports::MirrorError> {
        (self.0)()
    }

    async fn mirror_selected(
        &self,
        _: crate::mirror::RefSelection,
    ) -> Result<crate::mirror::MirrorOutcome, crate::ports::MirrorError> {
        (self.0)()
    }
}

/// 5,000 refs with long names; `status(i)` says what happened to the i-th.
fn many_refs(status: fn(usize) -> crate::mirror::RefStatus) -> crate::mirror::MirrorOutcome {
    let refs = (0..5000)
        .map(|i| {
            crate::mirror::RefResult::new(
                RefName::branch(&format!("feature/team-{i:04}/a-rather-long-branch-name")).unwrap(),
                status(i),
            )
        })
        .collect();
    crate::mirror::MirrorOutcome {
        source: "codecommit::ap-northeast-1://core-infra".into(),
        target: "codecommit::ap-northeast-3://core-infra".into(),
        dry_run: false,
        refs,
        objects_sent: 9,
        bytes_sent: 900,
        elapsed: Duration::from_millis(1234),
        backups: Vec::new(),
    }
}

/// Regression: `Sync Completed` and `Sync Failed` listed every ref, so a reconciliation of a
/// few thousand refs made an entry EventBridge refuses (and the `Sync Failed` rule forwards
/// the whole event to SNS, whose limit is 256 KB as well). Now they list only the refs that
/// changed or failed, failures first and capped, and always carry the counts.
#[tokio::test]
async fn mirror_events_stay_under_256_kb_whatever_the_number_of_refs() {
    use crate::mirror::RefStatus;
    use aws_sdk_eventbridge::operation::put_events::PutEventsOutput;
    use aws_sdk_eventbridge::types::PutEventsResultEntry;
    const LIMIT: usize = 256 * 1000; // "256 KB", read in the stricter way
    type Row = (
        &'static str,
        Answers,
        &'static str,
        &'static [(&'static str, u64)],
        // the statuses of the first listed refs
        &'static [&'static str],
    );
    let rows: Vec<Row> = vec![
        (
            "5,000 refs, 3 diverged and 2 updated",
            Answers(|| {
                Ok(many_refs(|i| match i {
                    10 | 2000 | 4999 => RefStatus::Diverged {
                        source: Some(commit(1)),
                        standby: commit(2),
                        cause: crate::divergence::Cause::StandbyPushedTo,
                    },
                    7 | 8 => RefStatus::Updated {
                        old: commit(1),
                        new: commit(3),
                        forced: false,
                    },
                    _ => RefStatus::Unchanged { at: commit(1) },
                }))
            }),
            "Sync Failed",
            &[("unchanged", 4995), ("diverged", 3), ("updated", 2)],
            &["diverged", "diverged", "diverged", "updated", "updated"],
        ),
        (
            "5,000 refs created",
            Answers(|| Ok(many_refs(|_| RefStatus::Created { new: commit(4) }))),
            "Sync Completed",
            &[("created", 5000)],
            &["created"],
        ),
        (
            "5,000 refs rejected with long reasons",
            Answers(|| {
                Ok(many_refs(|i| RefStatus::Rejected {
                    reason: format!("pre-receive hook declined ref {i}: {}", "x".repeat(3000)),
                }))
            }),
            "Sync Failed",
            &[("rejected", 5000)],
            &["rejected"],
        ),
        (
            "a run that failed naming 5,000 refs",
            Answers(|| {
                Err(crate::ports::MirrorError::Contended {
                    refs: (0..5000)
                        .map(|i| {
                            format!("refs/heads/feature/team-{i:04}/a-rather-long-branch-name")
                        })
                        .collect::<Vec<_>>()
                        .join(", "),
                    attempts: 3,
                })
            }),
            "Sync Failed",
            &[],
            &[],
        ),
    ];
    let config = config();
    for (what, mirror, detail_type, counts, first) in rows {
        let seen = recorder();
        let log = seen.clone();
        let rule = mock!(aws_sdk_eventbridge::Client::put_events).then_compute_output(move |req| {
            log.lock().unwrap().push(req.clone());
            PutEventsOutput::builder()
                .failed_entry_count(0)
                .entries(PutEventsResultEntry::builder().event_id("e-1").build())
                .build()
        });
        let sink = EventBridgeSink::new(
            mock_client!(aws_sdk_eventbridge, RuleMode::MatchAny, [&rule]),
            "tozai-bus",
        );
        let run =
            crate::judge::mirror_job(&config, &mirror, &sink, crate::event::Inbound::Scheduled)
                .await;
        // A failed run is published, and returned as an error so that it is retried.
        let record = match run {
            Ok(record) => Some(record),
            Err(e) if counts.is_empty() => {
                let shown = e.to_string().len();
                assert!(shown < 4096, "{what}: the error is {shown} bytes");
                None
            }
            Err(e) => panic!("{what}: {}", crate::text::cut(&e.to_string(), 500)),
        };
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1, "{what}: one event");
        let entry = &seen[0].entries()[0];
        assert_eq!(entry.detail_type(), Some(detail_type), "{what}");
        let size = entry_size(entry);
        assert!(size < LIMIT, "{what}: the entry is {size} bytes");
        let detail: serde_json::Value = serde_json::from_str(entry.detail().unwrap()).unwrap();
        let delivered = crate::adapters::local::tozai_event(
            detail_type,
            &detail,
            "ap-northeast-1",
            "111111111111",
            "e-1",
        );
        let delivered = delivered.to_string().len();
        assert!(
            delivered < LIMIT,
            "{what}: the event forwarded to SNS is {delivered} bytes"
        );
        if counts.is_empty() {
            let error = detail["error"].as_str().unwrap();
            assert!(error.starts_with("standby refs kept moving"), "{what}");
            assert!(error.contains("…);"), "{what}: the refs are cut");
            continue;
        }
        assert_eq!(detail["refs_total"], 5000, "{what}");
        for (status, n) in counts {
            assert_eq!(detail["counts"][status], *n, "{what}: {status}");
        }
        let listed = detail["refs"].as_array().unwrap();
        assert!(
            !listed.is_empty() && listed.len() <= 100,
            "{what}: {} listed",
            listed.len()
        );
        for (r, status) in listed.iter().zip(first.iter()) {
            assert_eq!(r["status"], *status, "{what}: {r}");
        }
        assert!(
            listed.iter().all(|r| r["status"] != "unchanged"),
            "{what}: only changed or failed refs are listed"
        );
        let changed_or_failed: u64 = counts
            .iter()
            .filter(|(s, _)| *s != "unchanged")
            .map(|(_, n)| n)
            .sum();
        assert_eq!(
            detail["refs_not_listed"].as_u64().unwrap() + listed.len() as u64,
            changed_or_failed,
            "{what}"
        );
        assert_eq!(
            record.and_then(|r| r.mirror),
            Some(detail_without_envelope(&detail)),
            "{what}: the record logs the same summary"
        );
    }
}

/// The mirror's part of an event's detail (what the decision record logs).
fn detail_without_envelope(detail: &serde_json::Value) -> serde_json::Value {
    let mut d = detail.clone();
    for key in ["repository", "ref", "commit", "from", "to", "status"] {
        d.as_object_mut().unwrap().remove(key);
    }
    d
}

/// A detail over EventBridge's limit is refused before it is sent, naming its size.
#[tokio::test]
async fn an_event_over_the_entry_limit_is_not_sent() {
    let rule = mock!(aws_sdk_eventbridge::Client::put_events).then_output(|| {
        aws_sdk_eventbridge::operation::put_events::PutEventsOutput::builder().build()
    });
    let sink = EventBridgeSink::new(
        mock_client!(aws_sdk_eventbridge, RuleMode::MatchAny, [&rule]),
        "tozai-bus",
    );
    let detail = serde_json::json!({ "x": "y".repeat(300 * 1024) });
    let e = sink.publish("Sync Completed", &detail).await.unwrap_err();
    assert!(!e.transient, "{e}");
    let text = e.to_string();
    assert!(
        text.contains("Sync Completed") && text.contains("256 KB"),
        "{text}"
    );
    assert_eq!(rule.num_calls(), 0);
}
