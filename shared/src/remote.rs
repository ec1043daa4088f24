//! From a repository [`Location`] to a [`GitRemote`] git can connect to.
//!
//! Local paths and plain URLs are used as they are. CodeCommit locations become
//! `https://git-codecommit.REGION.amazonaws.com/v1/repos/NAME` (`.amazonaws.com.cn` in
//! China), or `<override>/v1/repos/NAME` when [`EndpointOverrides`] has one for the
//! location's region, with a [`SignedLogin`]: AWS credentials are resolved once per run,
//! only when a CodeCommit location is involved, and the SigV4 git password is signed afresh
//! for every request. A CodeCommit mirror target also says where its default branch is
//! read ([`AwsAccess::target_remote`]: CodeCommit's `GetRepository`), since its git
//! advertisement does not.

use std::sync::Arc;
use std::time::SystemTime;

#[cfg(feature = "aws")]
use crate::git_auth::EndpointOverrides;
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
    let shown = location.shown();
    match location {
        Location::Local(path) => Ok(GitRemote {
            url: path.display().to_string(),
            shown,
            credentials: None,
            default_branch: None,
        }),
        Location::Url(url) => Ok(GitRemote {
            url: url.clone(),
            shown,
            credentials: None,
            default_branch: None,
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
        shown: location.shown(),
        credentials: Some(Arc::new(SignedLogin::new(endpoint, credentials))),
        default_branch: None,
    })
}

/// AWS access for CodeCommit locations: the SDK's configuration (the default credential
/// chain, in the binaries) and the git endpoint overrides.
#[cfg(feature = "aws")]
#[derive(Debug, Clone)]
pub struct AwsAccess {
    sdk: aws_config::SdkConfig,
    provider: aws_credential_types::provider::SharedCredentialsProvider,
    endpoints: EndpointOverrides,
}

#[cfg(feature = "aws")]
impl AwsAccess {
    /// Fails when the SDK's configuration has no credentials provider.
    pub fn new(
        sdk: aws_config::SdkConfig,
        endpoints: EndpointOverrides,
    ) -> Result<Self, RemoteError> {
        let provider = sdk.credentials_provider().ok_or_else(|| RemoteError::Credentials {
            location: "CodeCommit".into(),
            source: "no AWS credentials provider is configured (environment, profile, SSO, container or instance role)".into(),
        })?;
        Ok(Self {
            sdk,
            provider,
            endpoints,
        })
    }

    /// The remote for any location; AWS credentials are asked for only when it is
    /// CodeCommit.
    pub async fn remote(&self, location: &Location) -> Result<GitRemote, RemoteError> {
        use aws_credential_types::provider::ProvideCredentials;
        let Location::CodeCommit { region, .. } = location else {
            return plain(location);
        };
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
            self.endpoints.for_region(region),
        )
    }

    /// [`remote`](Self::remote), for a mirror's target: a CodeCommit target's default
    /// branch is read with `GetRepository` (on the runtime this is called on, which must be
    /// running while the mirror does: a multi-thread runtime, or one whose `block_on` awaits
    /// the mirror's blocking task).
    pub async fn target_remote(&self, location: &Location) -> Result<GitRemote, RemoteError> {
        let mut remote = self.remote(location).await?;
        if let Location::CodeCommit { region, name } = location {
            let conf = aws_sdk_codecommit::config::Builder::from(&self.sdk)
                .region(aws_config::Region::new(region.clone()))
                .build();
            remote.default_branch = Some(Arc::new(GetRepositoryDefault {
                client: aws_sdk_codecommit::Client::from_conf(conf),
                name: name.clone(),
                runtime: tokio::runtime::Handle::current(),
            }));
        }
        Ok(remote)
    }
}

/// A CodeCommit repository's default branch, from `GetRepository`'s `defaultBranch`.
#[cfg(feature = "aws")]
struct GetRepositoryDefault {
    client: aws_sdk_codecommit::Client,
    name: String,
    runtime: tokio::runtime::Handle,
}

#[cfg(feature = "aws")]
impl crate::ports::DefaultBranchSource for GetRepositoryDefault {
    fn default_branch(&self) -> Result<Option<String>, crate::ports::ServiceError> {
        let call = self
            .client
            .get_repository()
            .repository_name(&self.name)
            .send();
        let answer = self.runtime.block_on(call).map_err(|e| {
            crate::adapters::aws::service_error(
                "CodeCommit",
                format!("GetRepository {}", self.name),
                e,
            )
        })?;
        Ok(answer
            .repository_metadata()
            .and_then(|m| m.default_branch())
            .filter(|b| !b.is_empty())
            .map(str::to_owned))
    }
}
