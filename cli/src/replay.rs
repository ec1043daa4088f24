//! `tozai replay`: re-run the sync of one commit, by hand. A dry run unless `--execute`
//! (mirror now) or `--publish` (send the sync-judge's `Sync Requested` event to the
//! mirror Lambda).

use std::cell::OnceCell;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use tozai::adapters::git::Git2Changes;
use tozai::adapters::git_mirror::Git2Mirror;
use tozai::config::Config;
use tozai::location::Location;
use tozai::mirror::{MirrorOutcome, RefSelection};
use tozai::plan::{Plan, Push};
use tozai::ports::{Mirror, MirrorRequest};
use tozai::refs::{CommitId, RefName};

use crate::OperationFailed;

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
    /// The commit whose sync to re-run (full id, or anything git resolves with --repo).
    #[arg(long, value_name = "SHA")]
    pub commit: String,
    /// The branch or tag it was pushed to (default: the config's base branch).
    #[arg(long = "ref", value_name = "REF")]
    pub reference: Option<String>,
    /// Mirror now (fast-forward only unless --force), instead of showing what would happen.
    #[arg(long, conflicts_with = "publish")]
    pub execute: bool,
    /// With --execute: overwrite a diverged standby ref.
    #[arg(long, requires = "execute")]
    pub force: bool,
    /// Publish the sync-judge's `Sync Requested` event (AWS) for the mirror Lambda instead.
    #[arg(long)]
    pub publish: bool,
    /// The EventBridge bus for --publish.
    #[arg(long, value_name = "NAME", default_value = "default")]
    pub event_bus: String,
    /// A local clone of the primary to read the commit from (default: the primary itself
    /// when it is local, CodeCommit's API when it is CodeCommit).
    #[arg(long, value_name = "DIR")]
    pub repo: Option<PathBuf>,
    /// The cache of source repositories (default: the user's cache directory).
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
    #[command(flatten)]
    pub state: crate::mirror::StateArg,
    /// Print JSON instead of a report.
    #[arg(long)]
    pub json: bool,
}

pub fn run(o: Options) -> anyhow::Result<ExitCode> {
    let config = Config::load(&o.config)?;
    let primary = config.primary().clone();
    let reference: RefName = match &o.reference {
        Some(r) => r.parse()?,
        None => RefName::branch(&config.base_branch)?,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // Loaded at most once, and only when needed (CodeCommit, --publish).
    let sdk_config = OnceCell::new();
    let sdk = || {
        sdk_config.get_or_init(|| {
            runtime.block_on(
                aws_config::defaults(aws_config::BehaviorVersion::latest())
                    .region(aws_config::Region::new(primary.aws_region.clone()))
                    .load(),
            )
        })
    };

    // What the sync-judge decides for this commit, diffed against its first parent.
    let local = match (&o.repo, &primary.repository) {
        (Some(dir), _) => Some(dir.clone()),
        (None, Location::Local(dir)) => Some(dir.clone()),
        (None, Location::CodeCommit { .. }) => None,
        (None, Location::Url(url)) => {
            bail!(
                "the primary {url} is neither local nor CodeCommit: give a local clone with --repo"
            )
        }
    };
    let push = |before, after| Push {
        repository: primary.repository.to_string(),
        region: primary.name.clone(),
        reference: reference.clone(),
        before,
        after,
    };
    let plan: Plan = match local {
        Some(dir) => {
            let git = Git2Changes::open(&dir)?;
            let (before, after) = git.resolve_range(&o.commit)?;
            runtime.block_on(tozai::service::plan_push(
                &config,
                &git,
                push(before, after),
            ))?
        }
        None => {
            let after: CommitId = o
                .commit
                .parse()
                .context("--commit: give the full commit id (or a local clone with --repo)")?;
            let repo = tozai::lambda::repo(sdk(), &primary)?;
            let before = runtime
                .block_on(repo.first_parent(&after))
                .map_err(OperationFailed::wrap)?;
            runtime
                .block_on(tozai::service::plan_push(
                    &config,
                    &repo,
                    push(before, after),
                ))
                .map_err(OperationFailed::wrap)?
        }
    };
    let commit = plan.push.after.clone();
    let mirror = plan.decisions.sync.mirror;
    let executed = o.execute && mirror;

    // The mirror: a dry run, the real thing, or the event that asks the Lambda for it.
    let outcome: Option<MirrorOutcome> = if o.publish {
        if !mirror {
            bail!(
                "the sync-judge would not mirror {} ({}): nothing to publish; `tozai mirror -c {} --ref {}` mirrors it anyway",
                commit.short(),
                plan.decisions.sync.reason.describe(),
                o.config.display(),
                reference.full()
            );
        }
        let request = tozai::event::SyncRequested {
            repository: primary.repository.name(),
            reference: reference.full(),
            commit: Some(commit.to_string()),
            reason: format!("replay: {}", plan.decisions.sync.reason.describe()),
        };
        let sink = tozai::lambda::events_on(sdk(), &o.event_bus);
        runtime
            .block_on(tozai::judge::request_sync(&sink, &request))
            .map_err(OperationFailed::wrap)?;
        None
    } else if mirror || !o.execute {
        let cache = (o.cache.clone()).unwrap_or_else(Git2Mirror::default_cache_root);
        let ledger = o.state.ledger(&cache, &config.standby().repository)?;
        let (source, target, _aws) =
            crate::mirror::remotes(&primary.repository, &config.standby().repository)?;
        let request = MirrorRequest {
            source,
            target,
            selection: RefSelection::exactly(&reference),
            force: o.force,
            dry_run: !executed,
            ledger: Some(ledger),
        };
        let git = Git2Mirror::new(cache);
        Some(
            git.mirror(&request, None)
                .map_err(crate::mirror::mirror_failed)?,
        )
    } else {
        None
    };

    if o.json {
        let json = serde_json::json!({
            "plan": plan,
            "mirror": outcome,
            "published": o.publish,
            "executed": executed,
        });
        crate::output::json(&json)?;
    } else {
        out!("{}", crate::report::plan(&plan));
        outln!();
        if o.publish {
            outln!(
                "published Sync Requested for {} at {} on bus {}: the mirror Lambda takes it from here",
                reference.full(),
                commit.short(),
                o.event_bus
            );
        } else if !mirror {
            outln!(
                "not mirrored: {} (`tozai mirror -c {} --ref {}` mirrors it anyway)",
                plan.decisions.sync.reason.describe(),
                o.config.display(),
                reference.full()
            );
        } else if let Some(out) = &outcome {
            out!("{}", crate::mirror::report(out));
            if out.dry_run {
                outln!("(dry run: --execute mirrors, or --publish asks the mirror Lambda)");
            }
        }
        if mirror {
            let starts: Vec<&str> = plan
                .decisions
                .after_mirror
                .iter()
                .filter(|d| d.start)
                .map(|d| d.target.as_str())
                .collect();
            outln!(
                "once mirrored, {}'s judge starts: {}",
                config.standby().name,
                if starts.is_empty() {
                    "nothing".to_owned()
                } else {
                    starts.join(", ")
                }
            );
        }
    }
    Ok(match &outcome {
        Some(out) if !out.in_sync() => ExitCode::from(crate::EXIT_FAILED),
        _ => ExitCode::SUCCESS,
    })
}
