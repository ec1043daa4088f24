//! `tozai`: test path rules, and plan what a push would trigger.
//!
//! Exit codes: 0 success; 1 a check failed (a rule test, later drift); 2 a usage, config
//! or input error (the message names what was wrong).

mod check;
mod plan;
mod report;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// Keeps a standby region's CodeCommit repositories and deployments in step with the primary.
#[derive(Parser)]
#[command(name = "tozai", version, about, long_about = None)]
#[command(
    after_help = "Exit codes: 0 success; 1 a check failed; 2 a usage, config or input error."
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
    Plan {
        #[command(flatten)]
        config: ConfigArg,
        /// The local git repository holding the commits.
        #[arg(long, value_name = "DIR", default_value = ".")]
        repo: PathBuf,
        /// The region receiving the push (default: the primary).
        #[arg(long, value_name = "NAME")]
        region: Option<String>,
        /// The branch or tag pushed (default: the branch checked out).
        #[arg(long = "ref", value_name = "REF")]
        reference: Option<String>,
        /// Print JSON instead of a report.
        #[arg(long)]
        json: bool,
        /// The commits: A..B, or one commit.
        range: String,
    },
}

/// Exit code for a check that ran and failed.
pub const EXIT_FAILED: u8 = 1;
/// Exit code for usage, config and input errors.
pub const EXIT_ERROR: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tozai: error: {e:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Check { config } => check::run(&config.config),
        Command::Plan {
            config,
            repo,
            region,
            reference,
            json,
            range,
        } => plan::run(plan::Options {
            config: config.config,
            repo,
            region,
            reference,
            json,
            range,
        }),
    }
}

fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => "warn",
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
