//! `tozai mirror`: replicate branches and tags to the standby.

mod selection;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use tozai::adapters::git_mirror::Git2Mirror;
use tozai::config::Config;
use tozai::location::Location;
use tozai::mirror::{MirrorOutcome, RefResult, RefSelection, RefStatus};
use tozai::ports::{Mirror, MirrorRequest, TransferProgress};
use tozai::refs::RefName;
use tozai::text::quoted;

#[derive(clap::Args)]
pub struct Options {
    /// The config file: mirror its primary to its standby [default, without --from and
    /// --to: the nearest tozai.toml, here or in a parent directory].
    #[arg(short, long, value_name = "FILE", conflicts_with_all = ["from", "to"])]
    pub config: Option<PathBuf>,
    /// The source repository: codecommit::REGION://NAME, an https URL, or a path.
    #[arg(long, value_name = "LOC", requires = "to")]
    pub from: Option<String>,
    /// The target (standby) repository.
    #[arg(long, value_name = "LOC", requires = "from")]
    pub to: Option<String>,
    /// Only these refs (repeatable): a branch or glob (`main`, `release/*`; a bare name no
    /// branch has is the tag of that name), `refs/heads/GLOB` or `refs/tags/GLOB`. With -c,
    /// only refs the config syncs. Each must match a ref on the source or the standby.
    #[arg(long = "ref", value_name = "REF_OR_GLOB")]
    pub refs: Vec<String>,
    /// Show what would change; push nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Overwrite diverged standby refs (and delete refs the mirror did not push), each after
    /// pushing a backup branch at its old commit (tozai-backup/UTC-TIME/...).
    #[arg(long)]
    pub force: bool,
    /// The cache of source repositories (default: the user's cache directory).
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
    #[command(flatten)]
    pub state: StateArg,
    /// Print JSON instead of a report.
    #[arg(long)]
    pub json: bool,
}

/// `--state`: where the mirror keeps what it pushed to each standby ref.
#[derive(clap::Args)]
pub struct StateArg {
    /// Where the mirror records what it pushed to each standby ref (DIR/mirrored.json), so
    /// that it deletes a standby ref only while it holds what the mirror pushed there
    /// (default: `state` in the cache directory). The mirror Lambda keeps its own records,
    /// in DynamoDB: a ref only it pushed is not deleted from here until a run finds it in
    /// step with the source and adopts it.
    #[arg(long = "state", value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

impl StateArg {
    /// The ledger of `target` in `--state`, or in `state` under `cache`.
    pub fn ledger(
        &self,
        cache: &std::path::Path,
        target: &Location,
    ) -> anyhow::Result<std::sync::Arc<dyn tozai::ports::PushLedger>> {
        let dir = self.dir.clone().unwrap_or_else(|| cache.join("state"));
        let ledger = tozai::adapters::local::ledger::FileLedger::open(dir, target.to_string())?;
        Ok(std::sync::Arc::new(ledger))
    }
}

pub fn run(o: Options) -> anyhow::Result<ExitCode> {
    let cache = cache_root(o.cache.as_deref())?;
    let args = selection::RefArg::parse_all(&o.refs)?;
    let (source, target, config) = locations(&o, &args)?;
    let ledger = o.state.ledger(&cache, &target)?;
    let (source, target, _aws) = remotes(&source, &target)?;
    let mirror = Git2Mirror::new(cache);
    let mut request = MirrorRequest {
        source,
        target,
        selection: RefSelection::all(),
        force: o.force,
        dry_run: o.dry_run,
        ledger: Some(ledger),
    };
    request.selection = select(&mirror, &request, &args, config.as_ref())?;
    let bar = progress_bar();
    let on_progress = |p: TransferProgress| {
        if let Some(bar) = &bar {
            let (what, objects, total, bytes) = match p {
                TransferProgress::Fetch {
                    objects,
                    total,
                    bytes,
                } => ("fetch", objects, total, bytes),
                TransferProgress::Push {
                    objects,
                    total,
                    bytes,
                } => ("push", objects, total, bytes),
            };
            bar.set_length(total);
            bar.set_position(objects);
            bar.set_message(format!("{what} {}", human_bytes(bytes)));
        }
    };
    let outcome = mirror
        .mirror(&request, Some(&on_progress))
        .map_err(mirror_failed)?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if o.json {
        crate::output::json(&outcome)?;
    } else {
        out!("{}", report(&outcome));
    }
    Ok(if outcome.in_sync() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(crate::EXIT_FAILED)
    })
}

/// The config a `-c` mirror stays within: its path (for messages) and its sync rule's
/// selection.
struct Within {
    path: PathBuf,
    selection: RefSelection,
}

/// The source and target, from `-c` or `--from`/`--to`; with `-c`, the config's selection,
/// which no `--ref` naming one ref may leave.
fn locations(
    o: &Options,
    args: &[selection::RefArg],
) -> anyhow::Result<(Location, Location, Option<Within>)> {
    match (&o.config, &o.from, &o.to) {
        (Some(path), None, None) => {
            let config = Config::load(path)?;
            let within = Within {
                path: path.clone(),
                selection: config.sync.selection(),
            };
            if let Some(arg) = selection::outside_config(args, &within.selection) {
                bail!(
                    "--ref {} is outside what {} syncs ({}): `mirror -c` only narrows that selection; mirror other refs with --from/--to",
                    quoted(arg),
                    quoted(&path.display().to_string()),
                    selection::describe(&within.selection)
                );
            }
            Ok((
                config.primary().repository.clone(),
                config.standby().repository.clone(),
                Some(within),
            ))
        }
        (None, Some(from), Some(to)) => Ok((
            parse_location(from, "--from")?,
            parse_location(to, "--to")?,
            None,
        )),
        _ => bail!("give either -c tozai.toml (primary to standby) or both --from and --to"),
    }
}

/// What the mirror touches: without `--ref`, the config's selection (or everything); with
/// it, the refs the arguments name among those the source and the standby have (a first
/// look, a dry run), within the config's selection. An argument that names nothing is an
/// error, before anything is pushed.
fn select(
    mirror: &Git2Mirror,
    request: &MirrorRequest,
    args: &[selection::RefArg],
    within: Option<&Within>,
) -> anyhow::Result<RefSelection> {
    if args.is_empty() {
        return Ok(within.map_or_else(RefSelection::all, |w| w.selection.clone()));
    }
    let probe = MirrorRequest {
        selection: match within {
            Some(w) => w.selection.clone(),
            None => selection::widest(args)?,
        },
        dry_run: true,
        ..request.clone()
    };
    let seen: Vec<RefName> = (mirror.mirror(&probe, None).map_err(mirror_failed)?.refs)
        .into_iter()
        .map(|r| r.reference)
        .collect();
    let resolved = selection::resolve(args, &seen).map_err(|arg| {
        let syncs = within.map_or_else(String::new, |w| {
            format!(
                " that {} syncs ({}),",
                quoted(&w.path.display().to_string()),
                selection::describe(&w.selection)
            )
        });
        anyhow::anyhow!(
            "--ref {} matches no branch or tag{syncs} on the source {} nor on the standby {}",
            quoted(arg),
            quoted(&request.source.shown),
            quoted(&request.target.shown)
        )
    })?;
    for note in &resolved.notes {
        errln!("tozai: {note}");
    }
    Ok(RefSelection::exactly_these(&resolved.refs))
}

/// The cache directory: `--cache`, which must be a directory when it exists, or the
/// user's cache directory.
pub fn cache_root(cache: Option<&std::path::Path>) -> anyhow::Result<PathBuf> {
    match cache {
        Some(dir) if dir.exists() && !dir.is_dir() => bail!(
            "--cache {} is not a directory: give a directory for the cache of source repositories",
            quoted(&dir.display().to_string())
        ),
        Some(dir) => Ok(dir.to_owned()),
        None => Ok(Git2Mirror::default_cache_root()),
    }
}

/// The error of a failed mirror: a path that is not a git repository is bad input
/// (exit 2), anything else a failed operation (exit 3).
pub fn mirror_failed(e: tozai::ports::MirrorError) -> anyhow::Error {
    match e {
        e @ tozai::ports::MirrorError::NotARepository { .. } => anyhow::Error::new(e),
        e => crate::OperationFailed::wrap(e),
    }
}

/// The git remotes of two locations, signed with AWS credentials when one is CodeCommit,
/// and the runtime AWS is called on, which must be kept while the mirror runs (a CodeCommit
/// target reads its default branch on it).
pub fn remotes(
    source: &Location,
    target: &Location,
) -> anyhow::Result<(
    tozai::ports::GitRemote,
    tozai::ports::GitRemote,
    Option<tokio::runtime::Runtime>,
)> {
    let Some((runtime, access)) = crate::aws_access(&[source, target])? else {
        let (source, target) = (tozai::remote::plain(source)?, tozai::remote::plain(target)?);
        return Ok((source, target, None));
    };
    // An endpoint error (a region with no git host, another region's endpoint) is a
    // setting to fix (exit 2); credentials that cannot be had, an operation failure.
    let failed = |e: tozai::remote::RemoteError| match e {
        e @ tozai::remote::RemoteError::Endpoint(_) => anyhow::Error::new(e),
        e => crate::OperationFailed::wrap(e),
    };
    let source = runtime.block_on(access.remote(source)).map_err(failed)?;
    let target = runtime
        .block_on(access.target_remote(target))
        .map_err(failed)?;
    Ok((source, target, Some(runtime)))
}

fn parse_location(text: &str, flag: &str) -> anyhow::Result<Location> {
    let region = std::env::var("AWS_REGION")
        .or_else(|_| std::env::var("AWS_DEFAULT_REGION"))
        .unwrap_or_default();
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let location = Location::parse(text, &region, &cwd).with_context(|| flag.to_owned())?;
    if let Location::CodeCommit { region, .. } = &location
        && region.is_empty()
    {
        bail!(
            "{flag} {text:?}: a bare CodeCommit name needs a region: write codecommit::REGION://{text} or set AWS_REGION"
        );
    }
    Ok(location)
}

fn progress_bar() -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len} objects")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    Some(bar)
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

fn short(id: &tozai::refs::CommitId) -> &str {
    id.short()
}

/// How a report names a ref: its full name with git's `core.quotePath` quoting.
pub fn name(r: &tozai::refs::RefName) -> String {
    tozai::text::quoted(&r.full()).into_owned()
}

/// The readable report: each ref that changed or needs attention, then the counts. A dry
/// run says what it would do.
pub fn report(o: &MirrorOutcome) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let verb = if o.dry_run { "would mirror" } else { "mirror" };
    let _ = writeln!(out, "{verb} {} -> {}", o.source, o.target);
    let mut unchanged = 0;
    for r in &o.refs {
        if matches!(r.status, RefStatus::Unchanged { .. }) {
            unchanged += 1;
            continue;
        }
        let (word, what) = ref_line(r, o.dry_run);
        let width = word_width(o.dry_run);
        let _ = writeln!(out, "  {word:<width$}{what}");
        // Its commits, under the ref's name.
        for line in r.log.iter().flat_map(|l| shown_log(r, l)) {
            let _ = writeln!(out, "  {:width$}{line}", "");
        }
    }
    if unchanged > 0 {
        let _ = writeln!(
            out,
            "  unchanged {unchanged} ref{}",
            if unchanged == 1 { "" } else { "s" }
        );
    }
    let _ = writeln!(out, "{}", totals(o));
    if !o.in_sync() {
        let _ = writeln!(
            out,
            "the standby is NOT in step: see DIVERGED/REJECTED above"
        );
    }
    out
}

/// The width of a ref line's first word: `created   `, `would create  `.
fn word_width(dry_run: bool) -> usize {
    if dry_run { 14 } else { 10 }
}

/// A ref's first word and the rest of its line.
fn ref_line(r: &RefResult, dry_run: bool) -> (String, String) {
    let n = name(&r.reference);
    let act = |done: &str, would: &str| {
        if dry_run {
            format!("would {would}")
        } else {
            done.to_owned()
        }
    };
    match &r.status {
        RefStatus::Created { new } => (act("created", "create"), format!("{n} at {}", short(new))),
        RefStatus::Updated { old, new, forced } => {
            let how = if *forced {
                format!(" ({})", forced_note(r, dry_run))
            } else {
                String::new()
            };
            let range = format!("{}..{}", short(old), short(new));
            (act("updated", "update"), format!("{n} {range}{how}"))
        }
        RefStatus::Deleted { old } => {
            let how = match r.backup {
                Some(_) => format!("; {}", forced_note(r, dry_run)),
                None => String::new(),
            };
            (
                act("deleted", "delete"),
                format!("{n} (was {}{how})", short(old)),
            )
        }
        RefStatus::Unchanged { at } => ("unchanged".into(), format!("{n} at {}", short(at))),
        RefStatus::Diverged {
            source,
            standby,
            cause,
        } => {
            let then = if source.is_some() {
                "overwrites"
            } else {
                "deletes"
            };
            let why = tozai::divergence::explain(*cause, source.as_ref(), standby);
            let what = format!("{n}: {why}; left alone (--force backs it up, then {then} it)");
            ("DIVERGED".into(), what)
        }
        RefStatus::Kept { standby, reason } => (
            act("kept", "keep"),
            format!("{n} at {}: {reason}", short(standby)),
        ),
        RefStatus::Rejected { reason } => ("REJECTED".into(), format!("{n}: {reason}")),
    }
}

/// What a forced update or deletion discarded and where it is kept:
/// `forced; discarded 1 commit, kept in refs/heads/tozai-backup/...`.
fn forced_note(r: &RefResult, dry_run: bool) -> String {
    let lost = r.log.as_ref().map(|l| l.standby_only.total);
    let discarded = match (lost, dry_run) {
        (Some(0), false) => "discarded no commit the source lacks".to_owned(),
        (Some(0), true) => "would discard no commit the source lacks".to_owned(),
        (Some(n), false) => format!("discarded {}", tozai::divergence::commits(n)),
        (Some(n), true) => format!("would discard {}", tozai::divergence::commits(n)),
        (None, _) => "its commits could not be listed".to_owned(),
    };
    match (&r.backup, dry_run) {
        (Some(b), false) => format!("forced; {discarded}, kept in {}", name(b)),
        (Some(b), true) => format!("forced; {discarded}, backed up first to {}", name(b)),
        (None, _) => format!("forced; {discarded}"),
    }
}

/// The commits a ref's line lists: both sides for a diverged or refused one, only what
/// was discarded for a forced one.
fn shown_log(r: &RefResult, log: &tozai::divergence::LeftRight) -> Vec<String> {
    match r.status {
        RefStatus::Updated { .. } | RefStatus::Deleted { .. } => tozai::divergence::LeftRight {
            standby_only: log.standby_only.clone(),
            source_only: Default::default(),
        }
        .lines(),
        _ => log.lines(),
    }
}

/// The last line: the counts, and what was sent (a dry run: that it would send).
fn totals(o: &MirrorOutcome) -> String {
    let counts: Vec<String> = (o.counts().iter())
        .map(|(k, v)| match (o.dry_run, *k) {
            (true, "created") => format!("{v} to create"),
            (true, "updated") => format!("{v} to update"),
            (true, "deleted") => format!("{v} to delete"),
            (true, "kept") => format!("{v} to keep"),
            _ => format!("{v} {k}"),
        })
        .collect();
    let counts = if counts.is_empty() {
        "no refs selected".to_owned()
    } else {
        counts.join(", ")
    };
    if o.dry_run {
        let sends = o.refs.iter().any(|r| r.status.is_change());
        let what = if sends {
            "would send the objects the standby lacks"
        } else {
            "would send nothing"
        };
        format!("{counts}; {what} (a dry run: nothing was pushed)")
    } else {
        format!(
            "{counts}; sent {} objects, {} in {:.2} s",
            o.objects_sent,
            human_bytes(o.bytes_sent),
            o.elapsed.as_secs_f64()
        )
    }
}
