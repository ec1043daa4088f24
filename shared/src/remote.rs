//! From a repository [`Location`] to a [`GitRemote`] git can connect to.
//!
//! Local paths and plain URLs are used as they are. CodeCommit locations become
//! `https://git-codecommit.REGION.amazonaws.com/v1/repos/NAME` (or `<override>/v1/repos/NAME`)
//! with a [`SignedLogin`]: AWS credentials are resolved once per run, only when a CodeCommit
//! location is involved, and the SigV4 git password is signed afresh for every request.

use std::sync::Arc;
use std::time::SystemTime;

use crate::git_auth::{Credentials, EndpointError, GitEndpoint};
use crate::location::Location;
use crate::ports::{GitCredentials, GitLogin, GitRemote};

/// A location that cannot be turned into a remote.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("{location} is a CodeCommit repository: it needs AWS credentials")]
    NeedsAws { location: String },
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    #[error("no AWS credentials for {location}")]
    Credentials {
        location: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Signs a CodeCommit git login for each request.
pub struct SignedLogin {
    endpoint: GitEndpoint,
    credentials: Credentials,
}

impl SignedLogin {
    pub fn new(endpoint: GitEndpoint, credentials: Credentials) -> Self {
        Self {
            endpoint,
            credentials,
        }
    }
}

impl GitCredentials for SignedLogin {
    fn login(&self) -> Result<GitLogin, String> {
        Ok(self.endpoint.sign(&self.credentials, SystemTime::now()))
    }
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

/// The remote for a CodeCommit location, signed with `credentials`.
pub fn codecommit(
    location: &Location,
    credentials: Credentials,
    endpoint_override: Option<&str>,
) -> Result<GitRemote, RemoteError> {
    let endpoint = GitEndpoint::for_location(location, endpoint_override)?;
    Ok(GitRemote {
        url: endpoint.url.clone(),
        shown: location.to_string(),
        credentials: Some(Arc::new(SignedLogin::new(endpoint, credentials))),
    })
}

/// AWS access for CodeCommit locations: a credentials provider (the default chain, in the
/// binaries) and the optional endpoint override (`TOZAI_CODECOMMIT_ENDPOINT`).
#[cfg(feature = "aws")]
#[derive(Debug, Clone)]
pub struct AwsAccess {
    pub provider: aws_credential_types::provider::SharedCredentialsProvider,
    pub endpoint_override: Option<String>,
}

#[cfg(feature = "aws")]
impl AwsAccess {
    /// The remote for any location; AWS credentials are asked for only when it is
    /// CodeCommit.
    pub async fn remote(&self, location: &Location) -> Result<GitRemote, RemoteError> {
        use aws_credential_types::provider::ProvideCredentials;
        if !matches!(location, Location::CodeCommit { .. }) {
            return plain(location);
        }
        let credentials =
            self.provider
                .provide_credentials()
                .await
                .map_err(|e| RemoteError::Credentials {
                    location: location.to_string(),
                    source: Box::new(e),
                })?;
        codecommit(
            location,
            Credentials::from(&credentials),
            self.endpoint_override.as_deref(),
        )
    }
}
