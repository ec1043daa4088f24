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
