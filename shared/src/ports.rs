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

/// What the mirror may have left on each ref of one standby repository: the values it owns
/// there. The mirror deletes or overwrites a standby ref only while the standby still holds
/// one of its recorded values; anything else was made or moved on the standby. A record
/// holds one value, what the mirror last pushed there, and two while a push is in flight:
/// the mirror records its intent (the owned value it replaces and the new one) before it
/// pushes, and settles the record after. Called from the thread the mirror runs on.
pub trait PushLedger: Send + Sync + std::fmt::Debug {
    /// The recorded values of `refs` (a ref with no record is absent from the answer; a
    /// record is never empty).
    fn recorded(
        &self,
        refs: &[crate::refs::RefName],
    ) -> Result<crate::mirror::OwnedRefs, ServiceError>;

    /// Replaces each ref's record with the values given, in order (none: the record is
    /// forgotten). A ref named twice takes its last values.
    fn record(&self, records: &[crate::mirror::Record]) -> Result<(), ServiceError>;
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
    /// The target's [`PushLedger`] could not be read, or the intent of a push could not be
    /// recorded in it: the run stopped before pushing.
    #[error("cannot {context} (the mirror's ledger of {location}); stopped before pushing")]
    Ledger {
        location: String,
        /// What the run could not do: read the records, or write the intent.
        context: &'static str,
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

/// Commit ancestry in one repository, and its refs' current values: what makes the judges
/// level-triggered (they act on the ref's head now, not on what an event said).
pub trait Ancestry {
    /// The best common ancestor of `a` and `b`; `None` when their histories are unrelated.
    fn merge_base(
        &self,
        a: &CommitId,
        b: &CommitId,
    ) -> impl Future<Output = Result<Option<CommitId>, ChangeError>> + Send;

    /// The commit `branch` points at now (CodeCommit's `GetBranch`); `None` when there is no
    /// such branch.
    fn branch_head(
        &self,
        branch: &str,
    ) -> impl Future<Output = Result<Option<CommitId>, ChangeError>> + Send;

    /// The first parent of `commit` (CodeCommit's `GetCommit`); `None` for a root commit.
    fn first_parent(
        &self,
        commit: &CommitId,
    ) -> impl Future<Output = Result<Option<CommitId>, ChangeError>> + Send;

    /// Every branch's short name (CodeCommit's `ListBranches`, every page): what the
    /// pipeline-judge's scheduled sweep judges, so a push whose events were all lost is
    /// still deployed.
    fn branches(&self) -> impl Future<Output = Result<Vec<String>, ChangeError>> + Send;
}

/// A start one invocation has claimed and not yet recorded. While its lease runs, no other
/// invocation judges the (target, ref): starts of one ref are serialised and ordered.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PendingStart {
    /// The head being started.
    pub commit: CommitId,
    /// When it was claimed (Unix seconds, the store's clock): a run started for it began no
    /// earlier, which is how a takeover tells it from an older run at the same commit.
    pub claimed_at: u64,
    /// Until when (Unix seconds) no other invocation may take it over.
    pub lease_until: u64,
}

/// What a consumer (the sync, or one pipeline target) has done on one ref.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Checkpoint {
    /// The head it last judged: for a target, the commit whose tree it last started on or
    /// found nothing to start for. `None` until the first judgement completes.
    pub commit: Option<CommitId>,
    /// Bumped by every save: a save names the version it read (compare-and-swap).
    pub version: u64,
    /// A claimed start not yet recorded (targets only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending: Option<PendingStart>,
    /// The id of the last run started on this ref (targets only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
}

impl Checkpoint {
    /// A checkpoint at `commit` with nothing pending (the version is the store's to set).
    pub fn at(commit: CommitId) -> Self {
        Self {
            commit: Some(commit),
            version: 0,
            pending: None,
            run_id: None,
        }
    }
}

/// The durable store of checkpoints (DynamoDB in AWS). Every write is a compare-and-swap,
/// so concurrent invocations never lose each other's updates and a stale one always loses.
pub trait CheckpointStore {
    /// The checkpoint of `consumer` on `reference` of `repository`.
    fn load(
        &self,
        consumer: &str,
        repository: &str,
        reference: &crate::refs::RefName,
    ) -> impl Future<Output = Result<Option<Checkpoint>, ServiceError>> + Send;

    /// Replaces the checkpoint with `next` (its `commit`, `pending` and `run_id`; the
    /// version becomes `expected`'s plus one, or 1) if it is still `expected` (`None`: still
    /// absent). `Ok(false)`: it changed meanwhile and nothing was written.
    fn save(
        &self,
        consumer: &str,
        repository: &str,
        reference: &crate::refs::RefName,
        next: &Checkpoint,
        expected: Option<&Checkpoint>,
    ) -> impl Future<Output = Result<bool, ServiceError>> + Send;

    /// The clock leases are measured by, in Unix seconds.
    fn now(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }
}

/// What a target starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunKind {
    CodePipeline,
    CodeBuild,
}

impl RunKind {
    /// `codepipeline` or `codebuild`.
    pub fn label(self) -> &'static str {
        match self {
            Self::CodePipeline => "codepipeline",
            Self::CodeBuild => "codebuild",
        }
    }
}

impl std::fmt::Display for RunKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// One start of a pipeline or build, pinned to a commit.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StartRequest {
    /// The target's name in the config.
    pub target: String,
    pub kind: RunKind,
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
    /// Which judgement of the (target, ref) this start is (its checkpoint's version when
    /// claimed): a repeated transition, such as a force-push back to a commit started
    /// before, is a new start with a new token.
    pub sequence: u64,
    /// `clientRequestToken` or `idempotencyToken`: derived from every other field (see
    /// [`StartRequest::new`]), so the same for every attempt with the same parameters.
    pub token: String,
}

impl StartRequest {
    /// A start of `target` at `commit`, with its token.
    ///
    /// The token is `tozai-COMMIT-HASH`, HASH covering the target, its sequence and every
    /// parameter the start sends (kind, pipeline or project, source action, commit, ref,
    /// variables): a
    /// retry with the same parameters sends the same token, and a start with other
    /// parameters another one, which CodeBuild (5 minutes of idempotency, an error for the
    /// same token with other parameters) requires. At most 128 characters of
    /// `[a-zA-Z0-9-]`. At-most-once rests on the claim store, not on the token.
    pub fn new(
        target: &str,
        kind: RunKind,
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
            sequence: 0,
            token: String::new(),
        };
        request.token = request.derived_token();
        request
    }

    /// The same start as the `sequence`-th judgement of its (target, ref), with its token.
    pub fn with_sequence(mut self, sequence: u64) -> Self {
        self.sequence = sequence;
        self.token = self.derived_token();
        self
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
            self.sequence,
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

    /// The run `request` started, if one exists: same pipeline or project, pinned to the
    /// same commit (CodeBuild's `sourceVersion`, CodePipeline's `sourceRevisions`), with
    /// tozai's `TOZAI_REF` variable naming the same ref, begun at or after `since` (Unix
    /// seconds). Called before taking over a claim whose lease ran out, so a start whose
    /// record failed is never repeated.
    fn find_run(
        &self,
        request: &StartRequest,
        since: u64,
    ) -> impl Future<Output = Result<Option<String>, ServiceError>> + Send;
}

/// Publishes tozai's own events (`Sync Requested`, `Sync Completed`, `Sync Failed`).
pub trait EventSink {
    fn publish(
        &self,
        detail_type: &str,
        detail: &serde_json::Value,
    ) -> impl Future<Output = Result<(), ServiceError>> + Send;
}

/// Mirrors one ref from the primary's repository to the standby's, from the source's
/// current state (never an older commit over a newer one).
pub trait RefMirror {
    fn mirror_ref(
        &self,
        reference: &crate::refs::RefName,
    ) -> impl Future<Output = Result<crate::mirror::MirrorOutcome, MirrorError>> + Send;

    /// Mirrors every branch and tag the selection names (the scheduled reconciliation).
    fn mirror_selected(
        &self,
        selection: crate::mirror::RefSelection,
    ) -> impl Future<Output = Result<crate::mirror::MirrorOutcome, MirrorError>> + Send;
}
