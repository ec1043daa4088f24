//! The ports over AWS's APIs (the `aws` feature): CodeCommit for changes and ancestry,
//! DynamoDB for checkpoints (each with its claimed start), CodePipeline and CodeBuild for
//! starts and for finding the run a start made, EventBridge for tozai's own events.
//!
//! Each adapter takes an SDK client built by the caller (`aws_config` in the binaries,
//! `endpoint_url` pointed at a local stand-in in tests), so nothing here has a test-only
//! path. Errors keep the AWS error code and say whether a retry may help: throttling,
//! timeouts and network failures are transient; a missing pipeline is not.

pub mod ledger;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_codecommit::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::AttributeValue;

use crate::change::{Change, ChangeKind, RepoPath};
use crate::ports::{
    Ancestry, ChangeError, ChangeSource, Checkpoint, CheckpointStore, EventSink, PendingStart,
    RunKind, ServiceError, StartRequest, Starter,
};
use crate::refs::{CommitId, RefName};

type SdkError<E> =
    aws_sdk_codecommit::error::SdkError<E, aws_sdk_codecommit::config::http::HttpResponse>;

/// Error codes that mean "try again later".
const TRANSIENT_CODES: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "ProvisionedThroughputExceededException",
    "InternalServerError",
    "InternalFailure",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "InternalServerException",
    "TransactionConflictException",
    "LimitExceededException",
    "ConcurrentPipelineExecutionsLimitExceededException",
    "AccountLimitExceededException",
];

/// The AWS error code of a failed call (`None` for network and timeout errors), and
/// whether it is transient.
fn classify<E: ProvideErrorMetadata + std::error::Error>(
    err: &SdkError<E>,
) -> (Option<String>, bool) {
    match err {
        SdkError::ServiceError(s) => {
            let code = s
                .err()
                .code()
                .map(str::to_owned)
                .or_else(|| modeled_code(s.err()));
            let transient = code
                .as_deref()
                .is_some_and(|c| TRANSIENT_CODES.contains(&c))
                || s.raw().status().as_u16() >= 500;
            (code, transient)
        }
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) | SdkError::ResponseError(_) => {
            (None, true)
        }
        _ => (err.code().map(str::to_owned), false),
    }
}

/// The code of a modeled error whose metadata carries none: its Display starts with the
/// exception's name (`ConflictException: busy`, `ConflictException [ConflictException]`).
fn modeled_code<E: std::error::Error>(err: &E) -> Option<String> {
    let text = err.to_string();
    let name: String = text
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect();
    (name.len() > 3 && (name.ends_with("Exception") || name.ends_with("Error"))).then_some(name)
}

/// One line for an SDK error: its code and message, or the transport failure.
fn describe<E: ProvideErrorMetadata + std::error::Error + 'static>(err: &SdkError<E>) -> String {
    match err {
        SdkError::ServiceError(s) => match (s.err().code(), s.err().message()) {
            (Some(code), Some(message)) => format!("{code}: {message}"),
            // A modeled error names itself in its Display.
            _ => s.err().to_string(),
        },
        other => super::error_chain(other),
    }
}

pub(crate) fn service_error<E>(service: &str, context: String, err: SdkError<E>) -> ServiceError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let (_, transient) = classify(&err);
    let context = format!("{context}: {}", describe(&err));
    ServiceError::new(service, context, transient).with_source(err)
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

// ---------------------------------------------------------------- CodeCommit

/// One CodeCommit repository as a [`ChangeSource`] (GetDifferences, every page) and as
/// [`Ancestry`] (GetMergeOptions, GetBranch, GetCommit).
#[derive(Debug, Clone)]
pub struct CodeCommitRepo {
    client: aws_sdk_codecommit::Client,
    repository: String,
}

impl CodeCommitRepo {
    pub fn new(client: aws_sdk_codecommit::Client, repository: impl Into<String>) -> Self {
        Self {
            client,
            repository: repository.into(),
        }
    }

    fn error<E>(&self, context: &str, spec: &str, err: SdkError<E>) -> ChangeError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let (code, transient) = classify(&err);
        match code.as_deref() {
            Some(
                "CommitDoesNotExistException"
                | "CommitIdDoesNotExistException"
                | "InvalidCommitException"
                | "InvalidCommitIdException",
            ) => ChangeError::UnknownRevision {
                repository: self.repository.clone(),
                spec: spec.to_owned(),
            },
            _ => ChangeError::Backend {
                repository: format!("CodeCommit repository {}", self.repository),
                context: format!("{context}: {}", describe(&err)),
                transient,
                source: Box::new(err),
            },
        }
    }

    /// A CodeCommit answer tozai cannot use (never transient: asking again gives the same).
    fn invalid_answer(
        &self,
        context: &str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> ChangeError {
        ChangeError::Backend {
            repository: format!("CodeCommit repository {}", self.repository),
            context: context.to_owned(),
            transient: false,
            source: source.into(),
        }
    }

    /// Every difference from `before` to `after`, page after page until the last.
    pub async fn differences(
        &self,
        before: Option<&CommitId>,
        after: &CommitId,
    ) -> Result<Vec<Change>, ChangeError> {
        let spec = match before {
            Some(b) => format!("{b}..{after}"),
            None => after.to_string(),
        };
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .get_differences()
                .repository_name(&self.repository)
                .set_before_commit_specifier(before.map(|b| b.to_string()))
                .after_commit_specifier(after.as_str())
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| self.error("GetDifferences failed", &spec, e))?;
            for d in page.differences() {
                out.push(self.change(d)?);
            }
            match page.next_token() {
                Some(next) if !next.is_empty() => token = Some(next.to_owned()),
                _ => break,
            }
        }
        Ok(out)
    }

    fn change(&self, d: &aws_sdk_codecommit::types::Difference) -> Result<Change, ChangeError> {
        let path = |blob: Option<&aws_sdk_codecommit::types::BlobMetadata>| {
            blob.and_then(|b| b.path())
                .filter(|p| !p.is_empty())
                .map(|p| RepoPath::from_bytes(p.as_bytes()))
        };
        let (before, after) = (path(d.before_blob()), path(d.after_blob()));
        let change = match (before, after) {
            (None, Some(a)) => Change::new(ChangeKind::Added, a),
            (Some(b), None) => Change::new(ChangeKind::Deleted, b),
            (Some(b), Some(a)) if a == b => Change::new(ChangeKind::Modified, a),
            (Some(b), Some(a)) => Change {
                path: a,
                old_path: Some(b),
                kind: ChangeKind::Renamed,
            },
            (None, None) => {
                return Err(self.invalid_answer(
                    "GetDifferences returned a difference with no path",
                    "difference without beforeBlob.path or afterBlob.path",
                ));
            }
        };
        Ok(change)
    }
}

impl CodeCommitRepo {
    /// The first parent of a commit (GetCommit); `None` for a root commit.
    pub async fn first_parent(&self, commit: &CommitId) -> Result<Option<CommitId>, ChangeError> {
        let out = self
            .client
            .get_commit()
            .repository_name(&self.repository)
            .commit_id(commit.as_str())
            .send()
            .await
            .map_err(|e| self.error("GetCommit failed", commit.as_str(), e))?;
        let parent = out
            .commit()
            .map(|c| c.parents())
            .and_then(|p| p.first())
            .map(|p| p.parse())
            .transpose()
            .map_err(|e: crate::refs::RefError| {
                self.invalid_answer("GetCommit returned an invalid parent", e)
            })?;
        Ok(parent)
    }
}

impl ChangeSource for CodeCommitRepo {
    fn changes(
        &self,
        before: Option<&CommitId>,
        after: &CommitId,
    ) -> impl Future<Output = Result<Vec<Change>, ChangeError>> + Send {
        self.differences(before, after)
    }
}

impl CodeCommitRepo {
    async fn merge_base_once(
        &self,
        source: &CommitId,
        destination: &CommitId,
    ) -> Result<Result<CommitId, String>, ChangeError> {
        let spec = format!("{source}...{destination}");
        match self
            .client
            .get_merge_options()
            .repository_name(&self.repository)
            .source_commit_specifier(source.as_str())
            .destination_commit_specifier(destination.as_str())
            .send()
            .await
        {
            Ok(out) => out
                .base_commit_id()
                .parse()
                .map(Ok)
                .map_err(|e: crate::refs::RefError| {
                    self.invalid_answer("GetMergeOptions returned an invalid baseCommitId", e)
                }),
            Err(err) => {
                let (code, transient) = classify(&err);
                let unknown = matches!(
                    code.as_deref(),
                    Some("CommitDoesNotExistException" | "RepositoryDoesNotExistException")
                );
                if transient || unknown {
                    return Err(self.error("GetMergeOptions failed", &spec, err));
                }
                Ok(Err(describe(&err)))
            }
        }
    }
}

impl Ancestry for CodeCommitRepo {
    /// GetMergeOptions's `baseCommitId`. CodeCommit documents no answer for commits that
    /// are already merged or unrelated, so both orders are tried; when neither gives a
    /// base, there is none (the caller then falls back, failing open).
    async fn merge_base(
        &self,
        a: &CommitId,
        b: &CommitId,
    ) -> Result<Option<CommitId>, ChangeError> {
        let first = match self.merge_base_once(b, a).await? {
            Ok(base) => return Ok(Some(base)),
            Err(why) => why,
        };
        match self.merge_base_once(a, b).await? {
            Ok(base) => Ok(Some(base)),
            Err(second) => {
                tracing::warn!(
                    repository = %self.repository, %a, %b, first, second,
                    "CodeCommit gave no merge base"
                );
                Ok(None)
            }
        }
    }

    async fn branch_head(&self, branch: &str) -> Result<Option<CommitId>, ChangeError> {
        match self
            .client
            .get_branch()
            .repository_name(&self.repository)
            .branch_name(branch)
            .send()
            .await
        {
            Ok(out) => {
                let Some(id) = out.branch().and_then(|b| b.commit_id()) else {
                    return Ok(None);
                };
                id.parse().map(Some).map_err(|e: crate::refs::RefError| {
                    self.invalid_answer("GetBranch returned an invalid commitId", e)
                })
            }
            Err(err) if classify(&err).0.as_deref() == Some("BranchDoesNotExistException") => {
                Ok(None)
            }
            Err(err) => Err(self.error("GetBranch failed", branch, err)),
        }
    }

    fn first_parent(
        &self,
        commit: &CommitId,
    ) -> impl Future<Output = Result<Option<CommitId>, ChangeError>> + Send {
        CodeCommitRepo::first_parent(self, commit)
    }

    async fn branches(&self) -> Result<Vec<String>, ChangeError> {
        let mut names = Vec::new();
        let mut token = None;
        loop {
            let out = self
                .client
                .list_branches()
                .repository_name(&self.repository)
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| self.error("ListBranches failed", &self.repository, e))?;
            names.extend(out.branches().iter().cloned());
            match out.next_token() {
                Some(next) if !next.is_empty() => token = Some(next.to_owned()),
                _ => return Ok(names),
            }
        }
    }
}

// ---------------------------------------------------------------- DynamoDB

/// Checkpoints in one DynamoDB table whose partition key is the string attribute `pk`: one
/// item per (consumer, repository, ref), `pk = ["checkpoint", CONSUMER, REPOSITORY, REF]`
/// (a JSON array, so no name can collide with another), with `version`, `updated_at`, and
/// when set `commit`, `run_id` and the pending start (`pending_commit`,
/// `pending_claimed_at`, `pending_lease_until`). Every save is conditional on the version
/// read.
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoStore {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    fn service(&self) -> String {
        format!("DynamoDB table {}", self.table)
    }

    fn checkpoint_key(consumer: &str, repository: &str, reference: &RefName) -> String {
        serde_json::json!(["checkpoint", consumer, repository, reference.full()]).to_string()
    }

    async fn get(
        &self,
        key: &str,
    ) -> Result<Option<std::collections::HashMap<String, AttributeValue>>, ServiceError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(key.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| service_error(&self.service(), format!("GetItem {key}"), e))?;
        Ok(out.item)
    }

    fn invalid(&self, key: &str, what: &str) -> ServiceError {
        ServiceError::new(
            self.service(),
            format!("item {key} is not a checkpoint: {what}"),
            false,
        )
    }
}

type Item = std::collections::HashMap<String, AttributeValue>;

fn is_condition_failure<E: ProvideErrorMetadata + std::error::Error>(err: &SdkError<E>) -> bool {
    classify(err).0.as_deref() == Some("ConditionalCheckFailedException")
}

/// How an attribute of the wrong type is shown: its type and value.
fn shown(value: &AttributeValue) -> String {
    crate::text::cut(&format!("{value:?}"), 200)
}

impl DynamoStore {
    /// A stored item as a checkpoint; an item that is not one is an error naming the item,
    /// the attribute and what is wrong with it (never transient: reading it again gives the
    /// same).
    fn checkpoint(&self, key: &str, item: &Item) -> Result<Checkpoint, ServiceError> {
        let text = |name: &str| -> Result<Option<&str>, ServiceError> {
            match item.get(name) {
                None => Ok(None),
                Some(AttributeValue::S(text)) => Ok(Some(text)),
                Some(other) => {
                    Err(self.invalid(key, &format!("{name} is not a string: {}", shown(other))))
                }
            }
        };
        let commit = |name: &str| -> Result<Option<CommitId>, ServiceError> {
            text(name)?
                .map(|t| {
                    t.parse()
                        .map_err(|_| self.invalid(key, &format!("{name} {t:?} is not a commit id")))
                })
                .transpose()
        };
        let number = |name: &str| -> Result<u64, ServiceError> {
            match item.get(name) {
                Some(AttributeValue::N(n)) => n
                    .parse()
                    .map_err(|_| self.invalid(key, &format!("{name} {n:?} is not a whole number"))),
                Some(other) => {
                    Err(self.invalid(key, &format!("{name} is not a number: {}", shown(other))))
                }
                None => Err(self.invalid(key, &format!("no {name}"))),
            }
        };
        let pending = match commit("pending_commit")? {
            None => None,
            Some(commit) => Some(PendingStart {
                commit,
                claimed_at: number("pending_claimed_at")?,
                lease_until: number("pending_lease_until")?,
            }),
        };
        Ok(Checkpoint {
            commit: commit("commit")?,
            version: number("version")?,
            pending,
            run_id: text("run_id")?.map(str::to_owned),
        })
    }
}

impl CheckpointStore for DynamoStore {
    async fn load(
        &self,
        consumer: &str,
        repository: &str,
        reference: &RefName,
    ) -> Result<Option<Checkpoint>, ServiceError> {
        let key = Self::checkpoint_key(consumer, repository, reference);
        match self.get(&key).await? {
            None => Ok(None),
            Some(item) => self.checkpoint(&key, &item).map(Some),
        }
    }

    async fn save(
        &self,
        consumer: &str,
        repository: &str,
        reference: &RefName,
        next: &Checkpoint,
        expected: Option<&Checkpoint>,
    ) -> Result<bool, ServiceError> {
        let key = Self::checkpoint_key(consumer, repository, reference);
        let version = expected.map_or(1, |e| e.version + 1);
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", AttributeValue::S(key.clone()))
            .item("version", AttributeValue::N(version.to_string()))
            .item("updated_at", AttributeValue::N(now_secs().to_string()));
        if let Some(commit) = &next.commit {
            put = put.item("commit", AttributeValue::S(commit.to_string()));
        }
        if let Some(run_id) = &next.run_id {
            put = put.item("run_id", AttributeValue::S(run_id.clone()));
        }
        if let Some(p) = &next.pending {
            put = put
                .item("pending_commit", AttributeValue::S(p.commit.to_string()))
                .item(
                    "pending_claimed_at",
                    AttributeValue::N(p.claimed_at.to_string()),
                )
                .item(
                    "pending_lease_until",
                    AttributeValue::N(p.lease_until.to_string()),
                );
        }
        put = match expected {
            None => put.condition_expression("attribute_not_exists(pk)"),
            Some(e) => put
                .condition_expression("#v = :v")
                .expression_attribute_names("#v", "version")
                .expression_attribute_values(":v", AttributeValue::N(e.version.to_string())),
        };
        match put.send().await {
            Ok(_) => Ok(true),
            Err(err) if is_condition_failure(&err) => Ok(false),
            Err(err) => Err(service_error(
                &self.service(),
                format!("PutItem {key}"),
                err,
            )),
        }
    }
}

// ---------------------------------------------------------------- CodePipeline, CodeBuild

/// Starts CodePipeline executions and CodeBuild builds.
#[derive(Debug, Clone)]
pub struct AwsStarter {
    codepipeline: aws_sdk_codepipeline::Client,
    codebuild: aws_sdk_codebuild::Client,
    /// Waits between attempts while a pipeline answers `ConflictException`.
    conflict_backoff: Vec<Duration>,
}

impl AwsStarter {
    pub fn new(
        codepipeline: aws_sdk_codepipeline::Client,
        codebuild: aws_sdk_codebuild::Client,
    ) -> Self {
        Self {
            codepipeline,
            codebuild,
            conflict_backoff: [1, 2, 4, 8].map(Duration::from_secs).to_vec(),
        }
    }

    /// Sets the waits between attempts after a `ConflictException` (their number is the
    /// number of retries).
    pub fn with_conflict_backoff(mut self, waits: Vec<Duration>) -> Self {
        self.conflict_backoff = waits;
        self
    }

    async fn start_pipeline(
        &self,
        r: &StartRequest,
        source_action: &str,
    ) -> Result<String, ServiceError> {
        use aws_sdk_codepipeline::types::{
            PipelineVariable, SourceRevisionOverride, SourceRevisionType,
        };
        let service = format!("CodePipeline pipeline {}", r.name);
        let invalid = |e: aws_sdk_codepipeline::error::BuildError| {
            ServiceError::new(&service, format!("invalid request: {e}"), false)
        };
        let revision = SourceRevisionOverride::builder()
            .action_name(source_action)
            .revision_type(SourceRevisionType::CommitId)
            .revision_value(r.commit.as_str())
            .build()
            .map_err(invalid)?;
        let variables = r
            .variables
            .iter()
            .map(|(n, v)| PipelineVariable::builder().name(n).value(v).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(invalid)?;
        let mut waits = self.conflict_backoff.iter();
        loop {
            let sent = self
                .codepipeline
                .start_pipeline_execution()
                .name(&r.name)
                .client_request_token(&r.token)
                .source_revisions(revision.clone())
                .set_variables(Some(variables.clone()))
                .send()
                .await;
            match sent {
                Ok(out) => {
                    return out
                        .pipeline_execution_id()
                        .map(str::to_owned)
                        .ok_or_else(|| {
                            ServiceError::new(
                                &service,
                                "StartPipelineExecution returned no id",
                                false,
                            )
                        });
                }
                Err(err) => {
                    let (code, _) = classify(&err);
                    match code.as_deref() {
                        Some("ConflictException") => {
                            if let Some(wait) = waits.next() {
                                tracing::info!(pipeline = %r.name, ?wait, "pipeline busy (ConflictException): retrying");
                                tokio::time::sleep(*wait).await;
                                continue;
                            }
                            let mut e = service_error(
                                &service,
                                "StartPipelineExecution kept answering ConflictException".into(),
                                err,
                            );
                            e.transient = true;
                            return Err(e);
                        }
                        Some("PipelineNotFoundException") => {
                            return Err(service_error(
                                &service,
                                "the pipeline does not exist (check the config's codepipeline name and region)".into(),
                                err,
                            ));
                        }
                        _ => {
                            return Err(service_error(
                                &service,
                                "StartPipelineExecution failed".into(),
                                err,
                            ));
                        }
                    }
                }
            }
        }
    }

    async fn start_build(&self, r: &StartRequest) -> Result<String, ServiceError> {
        use aws_sdk_codebuild::types::{EnvironmentVariable, EnvironmentVariableType};
        let service = format!("CodeBuild project {}", r.name);
        let variables = r
            .variables
            .iter()
            .map(|(n, v)| {
                EnvironmentVariable::builder()
                    .name(n)
                    .value(v)
                    .r#type(EnvironmentVariableType::Plaintext)
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ServiceError::new(&service, format!("invalid request: {e}"), false))?;
        let out = self
            .codebuild
            .start_build()
            .project_name(&r.name)
            .source_version(r.commit.as_str())
            .idempotency_token(&r.token)
            .set_environment_variables_override(Some(variables))
            .send()
            .await
            .map_err(|err| {
                let context = match classify(&err).0.as_deref() {
                    Some("ResourceNotFoundException") => {
                        "the project does not exist (check the config's codebuild name and region)"
                    }
                    _ => "StartBuild failed",
                };
                service_error(&service, context.into(), err)
            })?;
        out.build_value()
            .and_then(|b| b.id())
            .map(str::to_owned)
            .ok_or_else(|| ServiceError::new(&service, "StartBuild returned no build id", false))
    }
}

/// How far a run's start time (the service's clock) may be before the claim (the judge's
/// clock) and still be the claim's run.
const CLOCK_SKEW_SECS: u64 = 5;

/// The longest value of a pipeline variable (CodePipeline's limit): the judge cuts
/// `TOZAI_REF` to it (`judge::pipeline`'s `VARIABLE_MAX`), for CodeBuild too.
const VARIABLE_MAX: usize = 1000;

/// Whether a run's variables carry the `TOZAI_REF` the judge sends for `r`'s ref (the
/// full name, cut as the judge cuts it when it is longer than a variable may be).
fn names_ref<'a>(
    mut variables: impl Iterator<Item = (&'a str, &'a str)>,
    r: &StartRequest,
) -> bool {
    let sent = crate::text::cut(&r.reference.full(), VARIABLE_MAX);
    variables.any(|(name, value)| name == "TOZAI_REF" && value == sent)
}

fn started_since(time: Option<&aws_sdk_codebuild::primitives::DateTime>, since: u64) -> bool {
    time.is_some_and(|t| t.secs() >= since.saturating_sub(CLOCK_SKEW_SECS) as i64)
}

impl AwsStarter {
    /// The newest build of the project at `r.commit` for `r.reference` begun since `since`
    /// (ListBuildsForProject's first page, newest first, then BatchGetBuilds).
    async fn find_build(
        &self,
        r: &StartRequest,
        since: u64,
    ) -> Result<Option<String>, ServiceError> {
        use aws_sdk_codebuild::types::SortOrderType;
        let service = format!("CodeBuild project {}", r.name);
        let ids = self
            .codebuild
            .list_builds_for_project()
            .project_name(&r.name)
            .sort_order(SortOrderType::Descending)
            .send()
            .await
            .map_err(|e| service_error(&service, "ListBuildsForProject failed".into(), e))?
            .ids
            .unwrap_or_default();
        if ids.is_empty() {
            return Ok(None);
        }
        let builds = self
            .codebuild
            .batch_get_builds()
            .set_ids(Some(ids.into_iter().take(100).collect()))
            .send()
            .await
            .map_err(|e| service_error(&service, "BatchGetBuilds failed".into(), e))?;
        Ok(builds
            .builds()
            .iter()
            .filter(|b| started_since(b.start_time(), since))
            .filter(|b| b.source_version() == Some(r.commit.as_str()))
            .find(|b| {
                let variables = b
                    .environment()
                    .map(|e| e.environment_variables())
                    .unwrap_or_default()
                    .iter()
                    .map(|v| (v.name(), v.value()));
                names_ref(variables, r)
            })
            .and_then(|b| b.id().map(str::to_owned)))
    }

    /// The newest execution of the pipeline whose source action ran at `r.commit` for
    /// `r.reference`, begun since `since` (ListPipelineExecutions's first page, then
    /// GetPipelineExecution for its variables).
    async fn find_execution(
        &self,
        r: &StartRequest,
        source_action: &str,
        since: u64,
    ) -> Result<Option<String>, ServiceError> {
        let service = format!("CodePipeline pipeline {}", r.name);
        let listed = self
            .codepipeline
            .list_pipeline_executions()
            .pipeline_name(&r.name)
            .max_results(100)
            .send()
            .await
            .map_err(|e| service_error(&service, "ListPipelineExecutions failed".into(), e))?;
        let candidates = listed.pipeline_execution_summaries().iter().filter(|x| {
            started_since(x.start_time(), since)
                && x.source_revisions().iter().any(|s| {
                    s.action_name() == source_action && s.revision_id() == Some(r.commit.as_str())
                })
        });
        for candidate in candidates {
            let Some(id) = candidate.pipeline_execution_id() else {
                continue;
            };
            let execution = self
                .codepipeline
                .get_pipeline_execution()
                .pipeline_name(&r.name)
                .pipeline_execution_id(id)
                .send()
                .await
                .map_err(|e| service_error(&service, "GetPipelineExecution failed".into(), e))?;
            let variables = execution
                .pipeline_execution()
                .map(|x| x.variables())
                .unwrap_or_default()
                .iter()
                .map(|v| (v.name().unwrap_or(""), v.resolved_value().unwrap_or("")));
            if names_ref(variables, r) {
                return Ok(Some(id.to_owned()));
            }
        }
        Ok(None)
    }
}

impl Starter for AwsStarter {
    async fn start(&self, request: &StartRequest) -> Result<String, ServiceError> {
        match &request.source_action {
            Some(action) if request.kind == RunKind::CodePipeline => {
                self.start_pipeline(request, action).await
            }
            _ => self.start_build(request).await,
        }
    }

    async fn find_run(
        &self,
        request: &StartRequest,
        since: u64,
    ) -> Result<Option<String>, ServiceError> {
        match &request.source_action {
            Some(action) if request.kind == RunKind::CodePipeline => {
                self.find_execution(request, action, since).await
            }
            _ => self.find_build(request, since).await,
        }
    }
}

// ---------------------------------------------------------------- EventBridge

/// Publishes tozai's events (source `tozai`) on an EventBridge bus.
#[derive(Debug, Clone)]
pub struct EventBridgeSink {
    client: aws_sdk_eventbridge::Client,
    bus: String,
}

impl EventBridgeSink {
    pub fn new(client: aws_sdk_eventbridge::Client, bus: impl Into<String>) -> Self {
        Self {
            client,
            bus: bus.into(),
        }
    }
}

impl EventSink for EventBridgeSink {
    async fn publish(
        &self,
        detail_type: &str,
        detail: &serde_json::Value,
    ) -> Result<(), ServiceError> {
        use aws_sdk_eventbridge::types::PutEventsRequestEntry;
        let service = format!("EventBridge bus {}", self.bus);
        let detail = detail.to_string();
        let size = crate::event::entry_size(detail_type, &detail);
        if size > crate::event::MAX_ENTRY_BYTES {
            return Err(ServiceError::new(
                service,
                format!(
                    "the {detail_type} event is {size} bytes, over EventBridge's 256 KB per entry; not sent"
                ),
                false,
            ));
        }
        let entry = PutEventsRequestEntry::builder()
            .event_bus_name(&self.bus)
            .source(crate::event::TOZAI_SOURCE)
            .detail_type(detail_type)
            .detail(detail)
            .build();
        let out = self
            .client
            .put_events()
            .entries(entry)
            .send()
            .await
            .map_err(|e| service_error(&service, format!("PutEvents {detail_type}"), e))?;
        if out.failed_entry_count() > 0 {
            let entry = out.entries().first();
            let code = entry.and_then(|e| e.error_code()).unwrap_or("unknown");
            let message = entry.and_then(|e| e.error_message()).unwrap_or("");
            return Err(ServiceError::new(
                service,
                format!("PutEvents {detail_type} was refused: {code} {message}"),
                TRANSIENT_CODES.contains(&code),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
