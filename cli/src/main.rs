//! `tozai`: test path rules, and plan what a push would trigger.
//!
//! Exit codes: 0 success; 1 a check failed (a rule test, a diverged or rejected ref); 2 a
//! usage, config or input error (the message names what was wrong); 3 an operation failed
//! (network, authentication, git server).

#[macro_use]
mod output;
mod check;
mod demo;
mod mirror;
mod plan;
mod replay;
mod report;
mod status;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// Keeps a standby region's CodeCommit repositories and deployments in step with the primary.
#[derive(Parser)]
#[command(name = "tozai", version, about, long_about = None)]
#[command(
    after_help = "Exit codes: 0 success; 1 a check failed; 2 a usage, config or input error; \
                  3 an operation failed."
)]
struct Cli {
    /// More logging (-v info, -vv debug); logs go to standard error.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct ConfigArg {
    /// The config file.
    #[arg(short, long, value_name = "FILE", default_value = "tozai.toml")]
    config: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// Validate the config and run its rule tests.
    ///
    /// Prints a table of passes and failures, explaining each failure. Exit 1 when any
    /// rule test fails.
    Check {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Show what a push of a commit range would trigger: the mirror and each pipeline.
    ///
    /// RANGE is A..B, or one commit (compared with its first parent).
    Plan(plan::Options),
    /// Replicate branches and tags to the standby, fast-forward only.
    ///
    /// With -c, from the config's primary to its standby, for the branches and tags its
    /// sync rule names; or from --from to --to. A standby ref that is not an ancestor of the
    /// source's is reported DIVERGED and left alone (--force overwrites it); the others still
    /// sync. Exit 1 when any ref is diverged or rejected.
    Mirror(mirror::Options),
    /// Is the standby current? Compare every mirrored branch and tag in both regions.
    ///
    /// Reports each as in sync, behind (by how many commits), diverged, missing on the
    /// standby, or stale (deleted at the source). Changes nothing. Exit 1 on any drift.
    Status(status::Options),
    /// Re-run the sync of one commit: what the sync-judge decides, and the mirror.
    ///
    /// A dry run by default: shows the plan and what the mirror would do. --execute mirrors
    /// (fast-forward only unless --force); --publish sends the sync-judge's `Sync Requested`
    /// event to the mirror Lambda instead. Either way it says what the standby's judge will
    /// start. Exit 1 when the standby ref is diverged or rejected.
    Replay(replay::Options),
    /// Walk through tozai on two local regions: no AWS account needed.
    ///
    /// Sets up two local repositories standing in for the regions' CodeCommit, with the
    /// example config, and runs the Lambdas' own code on each push it makes: a common/
    /// change, a primary/ change, a secondary/ change, a release tag, a standby pushed to
    /// directly (diverged), and events delivered twice. Prints a timeline and checks every
    /// step. Exit 1 when a step did not behave as expected.
    Demo(demo::Options),
}

/// Exit code for a check that ran and failed.
pub const EXIT_FAILED: u8 = 1;
/// Exit code for usage, config and input errors.
pub const EXIT_ERROR: u8 = 2;
/// Exit code for an operation that failed (network, authentication, git server).
pub const EXIT_OPERATION: u8 = 3;

/// Marks an error as an operation failure (exit 3) rather than bad input (exit 2).
#[derive(Debug)]
pub struct OperationFailed(anyhow::Error);

impl OperationFailed {
    pub fn wrap(e: impl Into<anyhow::Error>) -> anyhow::Error {
        anyhow::Error::new(Self(e.into()))
    }
}

impl std::fmt::Display for OperationFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#}", self.0)
    }
}

impl std::error::Error for OperationFailed {}

fn main() -> ExitCode {
    // Before any thread starts: libgit2's first use may set SSL_CERT_FILE / SSL_CERT_DIR.
    tozai::adapters::git_mirror::init_tls();
    let cli = Cli::parse();
    init_logging(cli.verbose);
    match run(cli) {
        Ok(code) => match output::failure() {
            // The work is done, but its report did not reach the reader.
            Some(e) => {
                errln!("tozai: error: cannot write to standard output: {e}");
                ExitCode::from(EXIT_OPERATION)
            }
            None => code,
        },
        Err(e) => {
            errln!("tozai: error: {e:#}");
            if e.is::<OperationFailed>() {
                ExitCode::from(EXIT_OPERATION)
            } else {
                ExitCode::from(EXIT_ERROR)
            }
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Check { config } => check::run(&config.config),
        Command::Plan(options) => plan::run(options),
        Command::Mirror(options) => mirror::run(options),
        Command::Status(options) => status::run(options),
        Command::Replay(options) => replay::run(options),
        Command::Demo(options) => demo::run(options),
    }
}

/// AWS access, built only when one of the locations is CodeCommit: the default credential
/// chain and the git endpoint overrides (`TOZAI_CODECOMMIT_ENDPOINTS`,
/// `TOZAI_CODECOMMIT_ENDPOINT`), with a runtime to call AWS on. The runtime has a worker
/// thread of its own: a CodeCommit target's default branch is read on it while the mirror
/// runs on this thread.
pub fn aws_access(
    locations: &[&tozai::location::Location],
) -> anyhow::Result<Option<(tokio::runtime::Runtime, tozai::remote::AwsAccess)>> {
    use tozai::location::Location;
    if !locations
        .iter()
        .any(|l| matches!(l, Location::CodeCommit { .. }))
    {
        return Ok(None);
    }
    let endpoints = tozai::git_auth::EndpointOverrides::from_lookup(|name| {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    })?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let config = runtime.block_on(aws_config::load_defaults(
        aws_config::BehaviorVersion::latest(),
    ));
    let access = tozai::remote::AwsAccess::new(config, endpoints).map_err(OperationFailed::wrap)?;
    Ok(Some((runtime, access)))
}

fn init_logging(verbose: u8) {
    // Without -v, the AWS SDK's own warnings (each credential provider it tried, IMDS
    // unreachable off EC2) stay out: tozai's error names what was missing.
    let level = match verbose {
        0 => "warn,aws_config=error",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("TOZAI_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
