//! `tozai`: test path rules, and plan what a push would trigger.
//!
//! Exit codes: 0 success; 1 a check failed (a rule test, a diverged or rejected ref); 2 a
//! usage, config or input error (the message names what was wrong); 3 an operation failed
//! (network, authentication, git server).
//!
//! Nothing hostile reaches the terminal or a log: errors and log lines go through
//! [`tozai::location::redact`] (URL credentials and query strings), control characters in
//! errors are escaped, and logs are coloured only on a terminal without `NO_COLOR`.

#[macro_use]
mod output;
mod check;
mod config_file;
mod demo;
mod init;
mod mirror;
mod plan;
mod replay;
mod report;
mod status;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};

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

#[derive(Subcommand)]
enum Command {
    /// Validate the config and run its rule tests.
    ///
    /// Prints a table of passes and failures, explaining each failure. Exit 1 when any
    /// rule test fails.
    Check(check::Options),
    /// Show what a push of a commit range would trigger: the mirror and each pipeline.
    ///
    /// RANGE is A..B, or one commit (compared with its first parent).
    Plan(plan::Options),
    /// Replicate branches and tags to the standby, fast-forward only.
    ///
    /// With -c, from the config's primary to its standby, for the branches and tags its
    /// sync rule names; or from --from to --to. A standby ref that is not an ancestor of the
    /// source's is reported DIVERGED, with which side moved and both sides' commits, and left
    /// alone (--force overwrites it, after a backup branch); the others still sync. Exit 1
    /// when any ref is diverged or rejected.
    Mirror(mirror::Options),
    /// Can we fail over now without losing anything that matters? Every mirrored branch
    /// and tag compared in both regions.
    ///
    /// Reports each as in sync; behind (the commits missing, and whether any changes a path
    /// the standby deploys or the sync rule selects); behind or missing by policy (only the
    /// next reconciliation brings it: not drift); diverged (saying which side moved);
    /// missing; or stale. Lists the backups `mirror --force` kept. Changes nothing. Exit 1
    /// on drift: missing commits that matter, diverged, missing, stale, or an overdue
    /// reconciliation (--strict: any lag).
    Status(status::Options),
    /// Re-run the sync of one commit: what the sync-judge decides, and the mirror.
    ///
    /// A dry run by default: shows the plan and what the mirror would do. --execute mirrors
    /// (fast-forward only unless --force); --publish sends the sync-judge's `Sync Requested`
    /// event to the mirror Lambda instead. The ref must exist on the primary and hold the commit
    /// (exit 2 otherwise). Its last line says what happened: what the standby's judge
    /// starts only when the standby ref really moved. Exit 1 when the standby ref is
    /// diverged or rejected.
    Replay(replay::Options),
    /// Walk through tozai on two local regions: no AWS account needed.
    ///
    /// Sets up two local repositories standing in for the regions' CodeCommit, with the
    /// example config, and runs the Lambdas' own code on each push it makes: a common/
    /// change, a primary/ change, a secondary/ change, a release tag, a standby pushed to
    /// directly (diverged), and events delivered twice. Prints a timeline and checks every
    /// step. Exit 1 when a step did not behave as expected.
    Demo(demo::Options),
    /// Write a commented tozai.toml for the seed's layout (common/, primary/, secondary/).
    ///
    /// Asks nothing: the regions default to tokyo (ap-northeast-1) and osaka
    /// (ap-northeast-3), both on the CodeCommit repository core-infra; --primary and
    /// --standby name others. The file has two pipeline targets and rule tests, and passes
    /// `tozai check`. An existing tozai.toml is kept unless --force (exit 2).
    Init(init::Options),
    /// Print a shell's completion script for tozai.
    ///
    /// bash: `source <(tozai completions bash)`; zsh: `tozai completions zsh >
    /// ~/.zfunc/_tozai`; fish: `tozai completions fish > ~/.config/fish/completions/tozai.fish`.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
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
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    init_logging(cli.verbose);
    match find_config(cli, &matches).and_then(run) {
        Ok(code) => match output::failure() {
            // The work is done, but its report did not reach the reader.
            Some(e) => {
                errln!("tozai: error: cannot write to standard output: {e}");
                ExitCode::from(EXIT_OPERATION)
            }
            None => code,
        },
        Err(e) => {
            errln!("tozai: error: {}", safe(&format!("{e:#}")));
            if e.is::<OperationFailed>() {
                ExitCode::from(EXIT_OPERATION)
            } else {
                ExitCode::from(EXIT_ERROR)
            }
        }
    }
}

/// An error as it is printed: URL secrets redacted, control characters (but the newlines
/// of a config excerpt) escaped as git's `core.quotePath` does.
fn safe(message: &str) -> String {
    let message = tozai::location::redact(message);
    let mut out = String::with_capacity(message.len());
    for c in message.chars() {
        if c.is_control() && c != '\n' {
            let one = c.to_string();
            out.push_str(tozai::text::quoted(&one).trim_matches('"'));
        } else {
            out.push(c);
        }
    }
    out
}

/// Every command that reads a config and was not given `-c` reads the nearest
/// `tozai.toml` (`mirror`: when given neither -c nor --from/--to).
fn find_config(mut cli: Cli, matches: &ArgMatches) -> anyhow::Result<Cli> {
    let defaulted = || {
        matches
            .subcommand()
            .is_some_and(|(_, m)| m.value_source("config") == Some(ValueSource::DefaultValue))
    };
    match &mut cli.command {
        Command::Check(o) if defaulted() => o.config.path = config_file::find()?,
        Command::Plan(o) if defaulted() => o.config.path = config_file::find()?,
        Command::Status(o) if defaulted() => o.config.path = config_file::find()?,
        Command::Replay(o) if defaulted() => o.config.path = config_file::find()?,
        Command::Mirror(o) if o.config.is_none() && o.from.is_none() && o.to.is_none() => {
            o.config = Some(config_file::find()?);
        }
        _ => {}
    }
    Ok(cli)
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Check(options) => check::run(options),
        Command::Plan(options) => plan::run(options),
        Command::Mirror(options) => mirror::run(options),
        Command::Status(options) => status::run(options),
        Command::Replay(options) => replay::run(options),
        Command::Demo(options) => demo::run(options),
        Command::Init(options) => init::run(options),
        Command::Completions { shell } => {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "tozai", &mut out);
            out!("{}", String::from_utf8_lossy(&out));
            Ok(ExitCode::SUCCESS)
        }
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
        .with_ansi(colour(
            std::io::stderr().is_terminal(),
            std::env::var_os("NO_COLOR"),
        ))
        .with_writer(|| RedactedStderr)
        .init();
}

/// Colour only on a terminal, and never when `NO_COLOR` is set to anything but empty
/// (<https://no-color.org>).
fn colour(terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

/// Standard error for log lines, with URL secrets redacted (each event is one write).
struct RedactedStderr;

impl std::io::Write for RedactedStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        std::io::stderr()
            .lock()
            .write_all(tozai::location::redact(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        let rows = [
            (true, None, true),
            (true, Some(""), true),
            (true, Some("1"), false),
            (true, Some("0"), false),
            (false, None, false),
            (false, Some("1"), false),
        ];
        for (terminal, no_color, want) in rows {
            assert_eq!(
                colour(terminal, no_color.map(Into::into)),
                want,
                "{terminal} {no_color:?}"
            );
        }
    }

    #[test]
    fn errors_are_redacted_and_escaped() {
        assert_eq!(
            safe("cannot reach https://u:pw@h/x?t=1 in /a\u{1b}[2J\tb\nnext"),
            "cannot reach https://***@h/x?*** in /a\\033[2J\\tb\nnext"
        );
    }

    #[test]
    fn the_cli_is_well_formed() {
        Cli::command().debug_assert();
    }
}
