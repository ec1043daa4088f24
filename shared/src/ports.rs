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

/// A git remote: where it is, how it is shown, and how to log in (no static secrets).
#[derive(Clone)]
pub struct GitRemote {
    /// The URL or local path git connects to.
    pub url: String,
    /// How the remote is named in reports and errors (never with credentials).
    pub shown: String,
    pub credentials: Option<std::sync::Arc<dyn GitCredentials>>,
}

impl std::fmt::Debug for GitRemote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitRemote")
            .field("shown", &self.shown)
            .field("signed", &self.credentials.is_some())
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
    #[error(
        "standby refs kept moving during the mirror ({refs}); gave up after {attempts} attempts"
    )]
    Contended { refs: String, attempts: u32 },
}

impl MirrorError {
    /// True when running again later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unreachable { .. } | Self::Contended { .. })
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
