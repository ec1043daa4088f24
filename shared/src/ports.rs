//! The capabilities tozai's decisions need from the outside world, as traits. Adapters
//! (git2, CodeCommit's API) implement them; tests use fakes. Ports speak tozai's types.

use std::future::Future;

use crate::change::Change;
use crate::refs::CommitId;

/// Why the changes of a push could not be listed.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error("{repository} is not a git repository")]
    NotARepository {
        repository: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("unknown commit or range {spec:?} in {repository}")]
    UnknownRevision { repository: String, spec: String },
    #[error("{repository}: {context}")]
    Backend {
        repository: String,
        context: String,
        transient: bool,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl ChangeError {
    /// True when trying again later may succeed (throttling, a network error).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Backend {
                transient: true,
                ..
            }
        )
    }
}

/// Lists the paths that changed between two commits.
pub trait ChangeSource {
    /// The changes from `before` to `after`. Without `before`, every file of `after` counts
    /// as added. A rename carries both paths; nothing is ever truncated.
    fn changes(
        &self,
        before: Option<&CommitId>,
        after: &CommitId,
    ) -> impl Future<Output = Result<Vec<Change>, ChangeError>> + Send;
}

/// A username and password for one git HTTPS operation. The password is time-bound (a
/// signed CodeCommit password) and is never logged: `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct GitLogin {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for GitLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitLogin")
            .field("username", &"***")
            .field("password", &"***")
            .finish()
    }
}

/// Computes a fresh login for a git remote, each time one is needed.
pub trait GitCredentials: Send + Sync {
    fn login(&self) -> Result<GitLogin, String>;
}

/// Says which branch is a repository's default from outside git, for a server whose push
/// advertisement does not (CodeCommit's receive-pack advertises no `HEAD`): CodeCommit's
/// `GetRepository`. Called only when the answer matters (a branch the mirror would delete),
/// from the thread the mirror runs on.
pub trait DefaultBranchSource: Send + Sync {
    /// The default branch's short name (`main`); `None` when the repository has none yet.
    fn default_branch(&self) -> Result<Option<String>, ServiceError>;
}

/// What the mirror last pushed to each ref of one standby repository: the values it owns
/// there. The mirror deletes or overwrites a standby ref only while the standby still holds
/// its recorded value; anything else was made or moved on the standby. Called from the
/// thread the mirror runs on.
pub trait PushLedger: Send + Sync + std::fmt::Debug {
    /// The recorded values of `refs` (a ref with no record is absent from the answer).
    fn recorded(
        &self,
        refs: &[crate::refs::RefName],
    ) -> Result<crate::mirror::RefMap, ServiceError>;

    /// Records each ref's new value (`None`: deleted, the record is forgotten).
    fn record(
        &self,
        changes: &[(crate::refs::RefName, Option<CommitId>)],
    ) -> Result<(), ServiceError>;
}

/// A git remote: where it is, how it is shown, and how to log in (no static secrets).
#[derive(Clone)]
pub struct GitRemote {
    /// The URL or local path git connects to.
    pub url: String,
    /// How the remote is named in reports and errors (never with credentials).
    pub shown: String,
    pub credentials: Option<std::sync::Arc<dyn GitCredentials>>,
    /// Where its default branch is read when it is a mirror's target; `None`: from git
    /// itself (a local repository's `HEAD`, upload-pack's `symref=HEAD:`).
    pub default_branch: Option<std::sync::Arc<dyn DefaultBranchSource>>,
}

impl std::fmt::Debug for GitRemote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitRemote")
            .field("shown", &self.shown)
            .field("signed", &self.credentials.is_some())
            .field("default_branch_source", &self.default_branch.is_some())
            .finish()
    }
}

/// One mirror run's request.
#[derive(Debug, Clone)]
pub struct MirrorRequest {
    pub source: GitRemote,
    pub target: GitRemote,
    pub selection: crate::mirror::RefSelection,
    pub force: bool,
    pub dry_run: bool,
    /// What the mirror pushed to the target before; `None`: nothing is known, so no target
    /// ref is deleted unless forced.
    pub ledger: Option<std::sync::Arc<dyn PushLedger>>,
}

/// Progress of a long transfer, for a progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferProgress {
    Fetch {
        objects: u64,
        total: u64,
        bytes: u64,
    },
    Push {
        objects: u64,
        total: u64,
        bytes: u64,
    },
}

/// Why a mirror run failed as a whole (per-ref problems are in the outcome instead).
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    #[error("authentication failed for {location}: {detail}")]
    AuthenticationFailed { location: String, detail: String },
    #[error("cannot reach {location} while {context}")]
    Unreachable {
        location: String,
        context: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The server's TLS certificate was refused: not from a trusted CA (the system's roots,
    /// or `SSL_CERT_FILE` / `SSL_CERT_DIR`), expired, or not for this host. Never retried.
    #[error("the TLS certificate of {host} was refused while {context} ({location}): {reason}")]
    Certificate {
        location: String,
        host: String,
        context: &'static str,
        reason: String,
    },
    #[error("git failed on {location} while {context}")]
    Git {
        location: String,
        context: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("cache {path}: {context}")]
    Cache {
        path: std::path::PathBuf,
        context: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A local path that is not a git repository (nothing was fetched or pushed).
    #[error("the {role} {location} is not a git repository: {detail}")]
    NotARepository {
        location: String,
        role: &'static str,
        detail: String,
    },
    /// The target's [`PushLedger`] could not be read: nothing was pushed.
    #[error("cannot read what the mirror pushed to {location} before (its ledger)")]
    Ledger {
        location: String,
        #[source]
        source: ServiceError,
    },
    /// `refs` may name thousands of refs: the message shows the first 1,000 bytes (an
    /// error travels in `Sync Failed`, logs and the Lambda's failure record).
    #[error(
        "standby refs kept moving during the mirror ({}); gave up after {attempts} attempts",
        crate::text::cut(.refs, 1000)
    )]
    Contended { refs: String, attempts: u32 },
}

impl MirrorError {
    /// True when running again later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Ledger { source, .. } => source.transient,
            _ => matches!(self, Self::Unreachable { .. } | Self::Contended { .. }),
        }
    }
}

/// Replicates branches and tags from a source repository to a target.
pub trait Mirror {
    fn mirror(
        &self,
        request: &MirrorRequest,
        progress: Option<&dyn Fn(TransferProgress)>,
    ) -> Result<crate::mirror::MirrorOutcome, MirrorError>;
}

/// Why a store, a starter or an event bus call failed.
#[derive(Debug, thiserror::Error)]
#[error("{service}: {context}")]
pub struct ServiceError {
    /// What was called (`DynamoDB table tozai-checkpoints`, `EventBridge bus default`...).
    pub service: String,
    pub context: String,
    /// True when trying again later may succeed (throttling, a network error, a busy
    /// pipeline).
    pub transient: bool,
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl ServiceError {
    pub fn new(service: impl Into<String>, context: impl Into<String>, transient: bool) -> Self {
        Self {
            service: service.into(),
            context: context.into(),
            transient,
            source: None,
        }
    }

    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }
}

/// Commit ancestry in one repository, for choosing diff bases.
pub trait Ancestry {
    /// The best common ancestor of `a` and `b`; `None` when their histories are unrelated.
    fn merge_base(
        &self,
        a: &CommitId,
        b: &CommitId,
    ) -> impl Future<Output = Result<Option<CommitId>, ChangeError>> + Send;

    /// The commit `branch` points at now; `None` when there is no such branch.
    fn branch_head(
        &self,
        branch: &str,
    ) -> impl Future<Output = Result<Option<CommitId>, ChangeError>> + Send;
}

/// What a consumer (the sync, or one pipeline target) last handled on one ref.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Checkpoint {
    pub commit: CommitId,
    /// Bumped by every save: a save names the version it read (optimistic locking).
    pub version: u64,
    /// Where the handled history starts: the consumer has judged every commit reachable
    /// from `commit` but not from `covered_from`. `None`: every commit reachable from
    /// `commit`. An older event inside the handled history is a duplicate; one before
    /// `covered_from` still needs judging.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub covered_from: Option<CommitId>,
}

/// The state of one (target, commit) start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This invocation holds the start: start it, then [`CheckpointStore::record_start`].
    Won,
    /// Already started; the run's id.
    Started(String),
    /// Another invocation is starting it now (its lease has not run out).
    InProgress,
}

/// The durable store of checkpoints and start records (DynamoDB in AWS). Every write is
/// conditional, so concurrent invocations never lose each other's updates.
pub trait CheckpointStore {
    /// The checkpoint of `consumer` on `reference` of `repository`.
    fn load(
        &self,
        consumer: &str,
        repository: &str,
        reference: &crate::refs::RefName,
    ) -> impl Future<Output = Result<Option<Checkpoint>, ServiceError>> + Send;

    /// Moves the checkpoint to `commit`, its handled history starting after
    /// `covered_from`, if it is still `expected` (`None`: still absent). `Ok(false)`: it
    /// moved meanwhile, nothing was written.
    fn save_covering(
        &self,
        consumer: &str,
        repository: &str,
        reference: &crate::refs::RefName,
        commit: &CommitId,
        covered_from: Option<&CommitId>,
        expected: Option<&Checkpoint>,
    ) -> impl Future<Output = Result<bool, ServiceError>> + Send;

    /// [`save_covering`](Self::save_covering) with all of `commit`'s history handled.
    fn save(
        &self,
        consumer: &str,
        repository: &str,
        reference: &crate::refs::RefName,
        commit: &CommitId,
        expected: Option<&Checkpoint>,
    ) -> impl Future<Output = Result<bool, ServiceError>> + Send {
        self.save_covering(consumer, repository, reference, commit, None, expected)
    }

    /// Claims the start of `target` at `commit`, before starting it. A claim whose holder
    /// did not record a start within `lease` may be taken over.
    fn claim_start(
        &self,
        target: &str,
        commit: &CommitId,
        lease: std::time::Duration,
    ) -> impl Future<Output = Result<Claim, ServiceError>> + Send;

    /// Gives up a claim whose start failed, so that a retry may claim it at once.
    fn release_start(
        &self,
        target: &str,
        commit: &CommitId,
    ) -> impl Future<Output = Result<(), ServiceError>> + Send;

    /// Records that the claimed start happened, with the run's id.
    fn record_start(
        &self,
        target: &str,
        commit: &CommitId,
        run_id: &str,
    ) -> impl Future<Output = Result<(), ServiceError>> + Send;
}

/// One start of a pipeline or build, pinned to a commit.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StartRequest {
    /// The target's name in the config.
    pub target: String,
    /// `codepipeline` or `codebuild`.
    pub kind: &'static str,
    /// The pipeline or project.
    pub name: String,
    /// The CodePipeline source action pinned to the commit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_action: Option<String>,
    pub commit: CommitId,
    #[serde(rename = "ref")]
    pub reference: crate::refs::RefName,
    /// Pipeline variables (name, value).
    pub variables: Vec<(String, String)>,
    /// `clientRequestToken` or `idempotencyToken`: derived from every other field (see
    /// [`StartRequest::new`]), so the same for every attempt with the same parameters.
    pub token: String,
}

impl StartRequest {
    /// A start of `target` at `commit`, with its token.
    ///
    /// The token is `tozai-COMMIT-HASH`, HASH covering the target and every parameter the
    /// start sends (kind, pipeline or project, source action, commit, ref, variables): a
    /// retry with the same parameters sends the same token, and a start with other
    /// parameters another one, which CodeBuild (5 minutes of idempotency, an error for the
    /// same token with other parameters) requires. At most 128 characters of
    /// `[a-zA-Z0-9-]`. At-most-once rests on the claim store, not on the token.
    pub fn new(
        target: &str,
        kind: &'static str,
        name: &str,
        source_action: Option<String>,
        commit: CommitId,
        reference: crate::refs::RefName,
        variables: Vec<(String, String)>,
    ) -> Self {
        let mut request = Self {
            target: target.to_owned(),
            kind,
            name: name.to_owned(),
            source_action,
            commit,
            reference,
            variables,
            token: String::new(),
        };
        request.token = request.derived_token();
        request
    }

    /// The token the parameters give (see [`StartRequest::new`]).
    pub fn derived_token(&self) -> String {
        use sha2::{Digest, Sha256};
        let parameters = serde_json::json!([
            self.target,
            self.kind,
            self.name,
            self.source_action,
            self.commit.as_str(),
            self.reference.full(),
            self.variables,
        ]);
        let digest = Sha256::digest(parameters.to_string().as_bytes());
        let hash: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        format!("tozai-{}-{hash}", self.commit.as_str())
    }
}

/// Starts pipelines and builds.
pub trait Starter {
    /// Starts it; the execution or build id.
    fn start(
        &self,
        request: &StartRequest,
    ) -> impl Future<Output = Result<String, ServiceError>> + Send;
}

/// Publishes tozai's own events (`Sync Requested`, `Sync Completed`, `Sync Failed`).
pub trait EventSink {
    fn publish(
        &self,
        detail_type: &str,
        detail: &serde_json::Value,
    ) -> impl Future<Output = Result<(), ServiceError>> + Send;
}
