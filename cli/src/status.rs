//! `tozai status`: is the standby current? Every mirrored branch and tag compared across
//! the two regions.

use std::path::PathBuf;
use std::process::ExitCode;

use tozai::adapters::git::Git2Changes;
use tozai::adapters::git_mirror::Git2Mirror;
use tozai::config::Config;
use tozai::ports::{Mirror, MirrorRequest};
use tozai::status::{Drift, Status};

#[derive(clap::Args)]
pub struct Options {
    /// The config file [default: the nearest tozai.toml, here or in a parent directory].
    #[arg(
        short,
        long,
        value_name = "FILE",
        default_value = "tozai.toml",
        hide_default_value = true
    )]
    pub config: PathBuf,
    /// The cache of source repositories (default: the user's cache directory).
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
    #[command(flatten)]
    pub state: crate::mirror::StateArg,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(o: Options) -> anyhow::Result<ExitCode> {
    let config = Config::load(&o.config)?;
    let cache = o.cache.unwrap_or_else(Git2Mirror::default_cache_root);
    let ledger = o.state.ledger(&cache, &config.standby().repository)?;
    let (source, target, _aws) =
        crate::mirror::remotes(&config.primary().repository, &config.standby().repository)?;
    let request = MirrorRequest {
        source,
        target,
        selection: config.sync.selection(),
        force: false,
        dry_run: true,
        ledger: Some(ledger),
    };
    let mirror = Git2Mirror::new(cache);
    let outcome = mirror
        .mirror(&request, None)
        .map_err(crate::mirror::mirror_failed)?;
    // The dry run fetched the source into the cache, which holds every commit a standby
    // that is behind lacks.
    let history = Git2Changes::open(&mirror.cache_dir(&request.source)).ok();
    let mut status = tozai::status::from_outcome(&outcome, |old, new| {
        history.as_ref()?.count_between(old, new).ok()
    });
    status.primary = format!("{} ({})", config.primary().name, status.primary);
    status.standby = format!("{} ({})", config.standby().name, status.standby);
    if o.json {
        crate::output::json(&status)?;
    } else {
        out!("{}", table(&status, &o.config.display().to_string()));
    }
    Ok(if status.in_sync {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(crate::EXIT_FAILED)
    })
}

/// The readable table.
pub fn table(s: &Status, config: &str) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "primary {}\nstandby {}", s.primary, s.standby);
    let width = s
        .refs
        .iter()
        .map(|r| r.reference.full().len())
        .max()
        .unwrap_or(0);
    for r in &s.refs {
        let detail = match &r.drift {
            Drift::InSync { at } => format!("at {}", at.short()),
            Drift::Behind {
                standby,
                source,
                commits,
            } => format!(
                "standby {} is {} behind {}",
                standby.short(),
                match commits {
                    Some(1) => "1 commit".to_owned(),
                    Some(n) => format!("{n} commits"),
                    None => "some commits".to_owned(),
                },
                source.short()
            ),
            Drift::Diverged {
                standby,
                source: Some(source),
            } => format!(
                "standby {} is not an ancestor of {} (pushed to directly?)",
                standby.short(),
                source.short()
            ),
            Drift::Diverged {
                standby,
                source: None,
            } => format!("only on the standby, at {}", standby.short()),
            Drift::Missing { source } => {
                format!("not on the standby (source at {})", source.short())
            }
            Drift::Stale { standby } => {
                format!(
                    "deleted at the source, still on the standby at {}",
                    standby.short()
                )
            }
            Drift::Unknown { reason } => reason.clone(),
        };
        let word = r.drift.word();
        let word = if r.drift.is_drift() {
            word.to_uppercase()
        } else {
            word.to_owned()
        };
        let _ = writeln!(
            out,
            "  {:<width$}  {:<8}  {detail}",
            r.reference.full(),
            word
        );
    }
    let drifted = s.refs.iter().filter(|r| r.drift.is_drift()).count();
    if s.refs.is_empty() {
        let _ = writeln!(out, "no mirrored branch or tag exists yet");
    } else if drifted == 0 {
        let _ = writeln!(out, "the standby is current: {} refs in sync", s.refs.len());
    } else {
        let _ = writeln!(
            out,
            "DRIFT: {drifted} of {} refs not in sync (`tozai mirror -c {config}` fast-forwards what is behind or missing)",
            s.refs.len(),
        );
    }
    out
}
