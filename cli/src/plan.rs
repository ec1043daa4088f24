//! `tozai plan`: what a push of a commit range would trigger.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, anyhow, bail};
use tozai::adapters::git::Git2Changes;
use tozai::config::Config;
use tozai::plan::Push;
use tozai::ports::ChangeError;
use tozai::refs::RefName;
use tozai::text::quoted;

use crate::report;

#[derive(clap::Args)]
pub struct Options {
    #[command(flatten)]
    pub config: crate::config_file::ConfigArg,
    /// The local git repository holding the commits.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub repo: PathBuf,
    /// The region receiving the push (default: the primary).
    #[arg(long, value_name = "NAME")]
    pub region: Option<String>,
    /// The branch or tag pushed (default: the branch checked out).
    #[arg(long = "ref", value_name = "REF")]
    pub reference: Option<String>,
    /// Print JSON instead of a report.
    #[arg(long)]
    pub json: bool,
    /// The commits: A..B, or one commit.
    pub range: String,
}

pub fn run(o: Options) -> anyhow::Result<ExitCode> {
    let config = Config::load(&o.config.path)?;
    let region = match o.region {
        Some(name) => match config.region(&name) {
            Some(r) => r,
            None => bail!(
                "unknown region {name:?} (the regions in {} are {})",
                config.origin,
                report::region_names(&config)
            ),
        },
        None => config.primary(),
    };
    let git = Git2Changes::open(&o.repo).map_err(|e| match e {
        // libgit2's own message repeats the path raw.
        ChangeError::NotARepository { .. } => anyhow!(
            "{} is not a git repository (--repo)",
            quoted(&o.repo.display().to_string())
        ),
        e => e.into(),
    })?;
    let reference = match o.reference {
        Some(r) => r.parse::<RefName>()?,
        None => git
            .current_branch()?
            .context("HEAD is not on a branch: name the pushed branch or tag with --ref")?,
    };
    let (before, after) = git.resolve_range(&o.range)?;
    let push = Push {
        repository: region.repository.shown(),
        region: region.name.clone(),
        reference,
        before,
        after,
    };
    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    let plan = runtime.block_on(tozai::service::plan_push(&config, &git, push))?;
    if o.json {
        crate::output::json(&plan)?;
    } else {
        out!("{}", report::plan(&plan));
    }
    Ok(ExitCode::SUCCESS)
}
