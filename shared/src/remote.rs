//! From a repository [`Location`] to a [`GitRemote`] git can connect to.
//!
//! Local paths and plain URLs are used as they are. CodeCommit locations become
//! `https://git-codecommit.REGION.amazonaws.com/v1/repos/NAME` (or the endpoint override)
//! with IAM-signed credentials computed for each request.

use crate::location::Location;
use crate::ports::GitRemote;

/// A location that cannot be turned into a remote.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("{location} is a CodeCommit repository: it needs AWS credentials")]
    NeedsAws { location: String },
}

/// The remote for a location that needs no AWS credentials (a local path or a URL).
pub fn plain(location: &Location) -> Result<GitRemote, RemoteError> {
    let shown = location.to_string();
    match location {
        Location::Local(path) => Ok(GitRemote {
            url: path.display().to_string(),
            shown,
            credentials: None,
        }),
        Location::Url(url) => Ok(GitRemote {
            url: url.clone(),
            shown,
            credentials: None,
        }),
        Location::CodeCommit { .. } => Err(RemoteError::NeedsAws { location: shown }),
    }
}
