//! What the three Lambdas share at cold start: the config, which region they serve, the AWS
//! clients, and the live mirror. Built once per process; a bad setting fails the init with
//! a message naming it.
//!
//! | variable | used by | meaning |
//! |---|---|---|
//! | `TOZAI_CONFIG` | all | path of `tozai.toml` (default `$LAMBDA_TASK_ROOT/tozai.toml`, else `./tozai.toml`) |
//! | `TOZAI_PRIMARY` | sync-judge, mirror | the primary region's config name, overriding the file's `primary` (set by the stacks' `Primary` parameter) |
//! | `TOZAI_REGION` | pipeline-judge | the config region this judge serves (default: the one whose `aws_region` is `AWS_REGION`) |
//! | `TOZAI_TABLE` | judges, mirror | the DynamoDB checkpoint table (and the mirror's ledger: what it pushed to each standby ref) |
//! | `TOZAI_EVENT_BUS` | sync-judge, mirror | the EventBridge bus for tozai's events (default `default`) |
//! | `TOZAI_IGNORE_ROLES` | sync-judge | IAM role names or ARNs whose pushes are not mirrored (the mirror's own role) |
//! | `TOZAI_CACHE` | mirror | the mirror's cache directory (default `/tmp/tozai-cache`) |
//! | `TOZAI_CODECOMMIT_ENDPOINTS` | mirror | per-region git endpoint overrides, `REGION=PREFIX,...` (FIPS endpoints; an empty PREFIX keeps the region's own) |
//! | `TOZAI_CODECOMMIT_ENDPOINT` | mirror | one git endpoint override for every region not listed above (a local stand-in serving both) |
//!
//! The AWS SDK's own settings apply as usual (credentials chain, `AWS_ENDPOINT_URL_<SERVICE>`).

use std::path::PathBuf;

use crate::config::{Config, Region};
use crate::location::Location;

/// A setting that stops the function from starting.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("environment variable {name}: {problem}")]
    Env { name: &'static str, problem: String },
    /// A git endpoint setting, or a region it cannot serve.
    #[error(transparent)]
    Endpoint(#[from] crate::git_auth::EndpointError),
    /// Set up outside a Tokio runtime, which the AWS calls of the mirror's thread need.
    #[error("the mirror must be set up on a Tokio runtime: {0}")]
    Runtime(#[from] tokio::runtime::TryCurrentError),
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn required(name: &'static str) -> Result<String, InitError> {
    env(name).ok_or(InitError::Env {
        name,
        problem: "is not set".into(),
    })
}

/// The config, from `TOZAI_CONFIG` or the function's package, with `TOZAI_PRIMARY` (when
/// set) naming the primary instead of the file's `primary` line: a failover is then a
/// change of the stacks' `Primary` parameter, not a rebuild.
pub fn config_from_env() -> Result<Config, InitError> {
    let path = match env("TOZAI_CONFIG") {
        Some(p) => PathBuf::from(p),
        None => env("LAMBDA_TASK_ROOT")
            .map(PathBuf::from)
            .unwrap_or_default()
            .join("tozai.toml"),
    };
    let mut config = Config::load(&path)?;
    if let Some(primary) = env("TOZAI_PRIMARY") {
        config
            .fail_over_to(primary.trim())
            .map_err(|problem| InitError::Env {
                name: "TOZAI_PRIMARY",
                problem,
            })?;
    }
    Ok(config)
}

/// The config region a pipeline-judge serves: `TOZAI_REGION`, or the region whose
/// `aws_region` is the function's `AWS_REGION`.
pub fn served_region(config: &Config) -> Result<&Region, InitError> {
    let names = || {
        config
            .regions
            .iter()
            .map(|r| format!("{} ({})", r.name, r.aws_region))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if let Some(name) = env("TOZAI_REGION") {
        return match config.region(&name) {
            Some(r) => Ok(r),
            None => Err(InitError::Env {
                name: "TOZAI_REGION",
                problem: format!("{name:?} is not a region of the config ({})", names()),
            }),
        };
    }
    let aws = required("AWS_REGION")?;
    match config.regions.iter().find(|r| r.aws_region == aws) {
        Some(r) => Ok(r),
        None => Err(InitError::Env {
            name: "AWS_REGION",
            problem: format!(
                "{aws} is no region's aws_region ({}); set TOZAI_REGION",
                names()
            ),
        }),
    }
}

/// The checkpoint table's name.
fn table_from_env() -> Result<String, InitError> {
    required("TOZAI_TABLE")
}

/// The event bus's name.
fn bus_from_env() -> String {
    env("TOZAI_EVENT_BUS").unwrap_or_else(|| "default".into())
}

/// The roles whose pushes the sync-judge ignores.
pub fn ignored_from_env() -> Result<crate::judge::IgnoredCallers, InitError> {
    crate::judge::IgnoredCallers::parse(&env("TOZAI_IGNORE_ROLES").unwrap_or_default()).map_err(
        |problem| InitError::Env {
            name: "TOZAI_IGNORE_ROLES",
            problem,
        },
    )
}

/// The mirror as the Lambda, `tozai replay` and `tozai demo` run it: fresh signed remotes
/// for each run (AWS access only for CodeCommit locations), the git2 mirror on a blocking
/// thread. The Lambda never forces and never dry-runs.
#[cfg(feature = "git")]
#[derive(Debug, Clone)]
pub struct LiveMirror {
    /// Needed when a location is CodeCommit.
    pub access: Option<crate::remote::AwsAccess>,
    pub source: Location,
    pub target: Location,
    pub cache: PathBuf,
    /// Overwrite diverged refs (`tozai replay --force` only).
    pub force: bool,
    /// Plan only; push nothing.
    pub dry_run: bool,
    /// What the mirror pushed to the target before (DynamoDB in the Lambda, a local file in
    /// the CLI and the demo); `None`: nothing is deleted unless forced.
    pub ledger: Option<std::sync::Arc<dyn crate::ports::PushLedger>>,
}

#[cfg(feature = "git")]
impl LiveMirror {
    /// From the config (primary to standby) and the environment, on the runtime the mirror
    /// will run on (its ledger, in `TOZAI_TABLE`, is called on it). The git endpoints of both
    /// regions are checked here, so a bad override fails the init.
    pub fn from_config(config: &Config, sdk: &aws_config::SdkConfig) -> Result<Self, InitError> {
        let target = config.standby().repository.clone();
        let ledger = store(sdk)?.ledger(target.to_string(), tokio::runtime::Handle::try_current()?);
        let endpoints = endpoints_from_env(config)?;
        let access =
            crate::remote::AwsAccess::new(sdk.clone(), endpoints).map_err(|e| InitError::Env {
                name: "AWS_ACCESS_KEY_ID",
                problem: e.to_string(),
            })?;
        Ok(Self {
            access: Some(access),
            source: config.primary().repository.clone(),
            target,
            cache: env("TOZAI_CACHE")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/tmp/tozai-cache")),
            force: false,
            dry_run: false,
            ledger: Some(std::sync::Arc::new(ledger)),
        })
    }
}

#[cfg(feature = "git")]
impl crate::judge::RefMirror for LiveMirror {
    async fn mirror_ref(
        &self,
        reference: &crate::refs::RefName,
    ) -> Result<crate::mirror::MirrorOutcome, crate::ports::MirrorError> {
        self.mirror_selected(crate::mirror::RefSelection::exactly(reference))
            .await
    }

    async fn mirror_selected(
        &self,
        selection: crate::mirror::RefSelection,
    ) -> Result<crate::mirror::MirrorOutcome, crate::ports::MirrorError> {
        use crate::ports::{Mirror, MirrorError, MirrorRequest};
        let remote = async |location: &Location| {
            let remote = match &self.access {
                Some(access) if location == &self.target => access.target_remote(location).await,
                Some(access) => access.remote(location).await,
                None => crate::remote::plain(location),
            };
            remote.map_err(|e| MirrorError::AuthenticationFailed {
                location: location.to_string(),
                detail: e.to_string(),
            })
        };
        let request = MirrorRequest {
            source: remote(&self.source).await?,
            target: remote(&self.target).await?,
            selection,
            force: self.force,
            dry_run: self.dry_run,
            ledger: self.ledger.clone(),
        };
        let mirror = crate::adapters::git_mirror::Git2Mirror::new(self.cache.clone());
        tokio::task::spawn_blocking(move || mirror.mirror(&request, None))
            .await
            .map_err(|e| MirrorError::Git {
                location: self.target.to_string(),
                context: "running the mirror",
                source: Box::new(e),
            })?
    }
}

/// The git endpoint overrides (`TOZAI_CODECOMMIT_ENDPOINTS`, `TOZAI_CODECOMMIT_ENDPOINT`),
/// checked against each region's CodeCommit repository: an override that is another
/// region's AWS host, or a region with no git host, is an error here.
pub fn endpoints_from_env(
    config: &Config,
) -> Result<crate::git_auth::EndpointOverrides, InitError> {
    let endpoints = crate::git_auth::EndpointOverrides::from_lookup(env)?;
    for region in &config.regions {
        if let Location::CodeCommit { region: aws, .. } = &region.repository {
            crate::git_auth::GitEndpoint::for_location(
                &region.repository,
                endpoints.for_region(aws),
            )?;
        }
    }
    Ok(endpoints)
}

/// The pushed region's repository as a CodeCommit change source.
pub fn repo(
    sdk: &aws_config::SdkConfig,
    region: &Region,
) -> Result<crate::adapters::aws::CodeCommitRepo, InitError> {
    // The functions read changes through CodeCommit's API, so it must be a CodeCommit
    // location; the client works in that repository's AWS region.
    let Location::CodeCommit {
        region: aws_region,
        name,
    } = &region.repository
    else {
        return Err(InitError::Env {
            name: "TOZAI_CONFIG",
            problem: format!(
                "region {}'s repository {} is not a CodeCommit repository",
                region.name, region.repository
            ),
        });
    };
    let conf = aws_sdk_codecommit::config::Builder::from(sdk)
        .region(aws_config::Region::new(aws_region.clone()))
        .build();
    Ok(crate::adapters::aws::CodeCommitRepo::new(
        aws_sdk_codecommit::Client::from_conf(conf),
        name.clone(),
    ))
}

/// The checkpoint store in `TOZAI_TABLE`.
pub fn store(sdk: &aws_config::SdkConfig) -> Result<crate::adapters::aws::DynamoStore, InitError> {
    Ok(crate::adapters::aws::DynamoStore::new(
        aws_sdk_dynamodb::Client::new(sdk),
        table_from_env()?,
    ))
}

/// tozai's events on `TOZAI_EVENT_BUS`.
pub fn events(sdk: &aws_config::SdkConfig) -> crate::adapters::aws::EventBridgeSink {
    events_on(sdk, &bus_from_env())
}

/// tozai's events on the bus `bus`.
pub fn events_on(sdk: &aws_config::SdkConfig, bus: &str) -> crate::adapters::aws::EventBridgeSink {
    crate::adapters::aws::EventBridgeSink::new(aws_sdk_eventbridge::Client::new(sdk), bus)
}

/// The pipeline and build starter.
pub fn starter(sdk: &aws_config::SdkConfig) -> crate::adapters::aws::AwsStarter {
    crate::adapters::aws::AwsStarter::new(
        aws_sdk_codepipeline::Client::new(sdk),
        aws_sdk_codebuild::Client::new(sdk),
    )
}

/// JSON logs, one object a line (what CloudWatch Logs Insights reads), level from
/// `RUST_LOG` (default `info`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(false)
        .with_target(false)
        .without_time()
        .init();
}

/// A failed invocation as the Lambda reports it. `error_type` is `Transient` when a retry
/// may pass (throttling, a network error, a busy pipeline, a start another invocation
/// holds) and `Permanent` when it cannot (a malformed event, the config, a refused
/// certificate), so logs, the on-failure destination and alarms can tell them apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub error_type: &'static str,
    pub message: String,
}

impl Failure {
    pub const TRANSIENT: &'static str = "Transient";
    pub const PERMANENT: &'static str = "Permanent";
}

impl From<crate::judge::JudgeError> for Failure {
    fn from(e: crate::judge::JudgeError) -> Self {
        Self {
            error_type: if e.is_transient() {
                Self::TRANSIENT
            } else {
                Self::PERMANENT
            },
            message: e.to_string(),
        }
    }
}

impl From<crate::event::EventError> for Failure {
    fn from(e: crate::event::EventError) -> Self {
        Self {
            error_type: Self::PERMANENT,
            message: e.to_string(),
        }
    }
}

#[cfg(feature = "lambda")]
impl From<Failure> for lambda_runtime::Diagnostic {
    fn from(f: Failure) -> Self {
        Self {
            error_type: f.error_type.to_owned(),
            error_message: f.message,
        }
    }
}

/// Writes the invocation's decision record (one JSON line on stdout) or logs its error,
/// and gives the error back as a [`Failure`].
pub fn logged(
    result: Result<crate::judge::DecisionRecord, crate::judge::JudgeError>,
) -> Result<crate::judge::DecisionRecord, Failure> {
    match &result {
        Ok(record) => {
            // One line, serialized straight from the record.
            #[derive(serde::Serialize)]
            struct Line<'a> {
                decision: &'a crate::judge::DecisionRecord,
            }
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            let written = serde_json::to_writer(&mut out, &Line { decision: record })
                .map_err(std::io::Error::from)
                .and_then(|()| out.write_all(b"\n"));
            if let Err(e) = written {
                tracing::error!(error = %e, "cannot write the decision record");
            }
        }
        Err(e) => tracing::error!(error = %e, transient = e.is_transient(), "the event failed"),
    }
    result.map_err(Failure::from)
}

/// Logs why the function cannot start (as a JSON log line, with the message in full)
/// and hands the error back for `main` to return.
pub fn fatal(e: impl Into<InitError>) -> InitError {
    let e = e.into();
    tracing::error!(error = %e, "the function cannot start");
    e
}

/// Parses the Lambda's payload; a malformed event is logged with the field at fault.
pub fn inbound(payload: serde_json::Value) -> Result<crate::event::Inbound, Failure> {
    crate::event::from_value(payload)
        .inspect_err(|e| tracing::error!(error = %e, "malformed event: not retried usefully"))
        .map_err(Failure::from)
}

#[cfg(test)]
mod tests {
    use super::Failure;
    use crate::judge::JudgeError;
    use crate::ports::ServiceError;

    #[test]
    fn failures_say_whether_a_retry_may_pass() {
        let throttled =
            JudgeError::Service(ServiceError::new("DynamoDB table t", "throttled", true));
        let missing = JudgeError::Service(ServiceError::new(
            "CodePipeline pipeline p",
            "not found",
            false,
        ));
        let held = JudgeError::Starts {
            failed: 1,
            total: 2,
            details: "tokyo-core: another invocation is starting it".into(),
            transient: true,
        };
        assert_eq!(Failure::from(throttled).error_type, "Transient");
        assert_eq!(Failure::from(held).error_type, "Transient");
        let permanent = Failure::from(missing);
        assert_eq!(permanent.error_type, "Permanent");
        assert!(
            permanent.message.contains("CodePipeline pipeline p"),
            "{permanent:?}"
        );
        let malformed =
            crate::event::from_value(serde_json::json!({"detail-type": 1})).unwrap_err();
        assert_eq!(Failure::from(malformed).error_type, "Permanent");
    }
}
