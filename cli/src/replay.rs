//! `tozai replay`: re-run the sync of one commit, by hand. A dry run unless `--execute`
//! (mirror now) or `--publish` (send the sync-judge's `Sync Requested` event to the
//! mirror Lambda).
//!
//! It first checks its premises, and stops with exit 2 naming both when one fails: the ref
//! exists on the primary, and the commit is on it (the ref's head or one of its
//! ancestors). They are read from the local repository (the primary itself, or the clone
//! `--repo` names, where a branch is its remote-tracking `origin/BRANCH` when there is
//! one: a local branch may hold commits never pushed), or through CodeCommit's API
//! (`GetBranch`, `GetMergeOptions`) for a CodeCommit primary. Then, with `--repo` (a clone
//! may be stale) and for a tag on CodeCommit (whose API reads no tags), they are checked
//! again on the primary's own refs, fetched into the mirror's source cache, before
//! anything is mirrored or published.
//!
//! `--ref NAME` names the branch `NAME`, or the tag `NAME` when the primary has no such
//! branch, as `tozai mirror --ref` resolves it.
//!
//! Its last lines say what happened: after a dry run, what the mirror would do; after
//! `--execute`, what it did, and what the standby's judge starts only when the standby's
//! ref really moved to the commit (left diverged or rejected: it starts nothing, exit 1);
//! after `--publish`, that the event went out. AWS errors are printed once, naming the AWS
//! region (and the bus); missing credentials are found before any call.

use std::cell::OnceCell;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, anyhow, bail};
use tozai::adapters::git::Git2Changes;
use tozai::adapters::git_mirror::Git2Mirror;
use tozai::config::{Config, Region};
use tozai::location::Location;
use tozai::mirror::{MirrorOutcome, RefSelection, RefStatus};
use tozai::plan::{Plan, Push};
use tozai::ports::{Ancestry, ChangeError, Mirror, MirrorRequest};
use tozai::refs::{CommitId, RefName};
use tozai::text::quoted;

use crate::OperationFailed;

#[derive(clap::Args)]
pub struct Options {
    #[command(flatten)]
    pub config: crate::config_file::ConfigArg,
    /// The commit whose sync to re-run (full id, or anything git resolves with --repo).
    #[arg(long, value_name = "SHA")]
    pub commit: String,
    /// The branch or tag it was pushed to (default: the config's base branch); a short
    /// name is the branch, or the tag when the primary has no such branch.
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
    /// when it is local, CodeCommit's API when it is CodeCommit). Use a fresh clone (or
    /// `git fetch` first): its `origin/BRANCH` stands for the primary's branch, and the
    /// premises are checked again on the primary's refs once the mirror has fetched them.
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
    let cache = crate::mirror::cache_root(o.cache.as_deref())?;
    let config = Config::load(&o.config.path)?;
    let asked = Asked {
        reference: match &o.reference {
            Some(r) => r.parse()?,
            None => RefName::branch(&config.base_branch)?,
        },
        bare: o
            .reference
            .as_deref()
            .is_some_and(|r| !r.starts_with("refs/")),
    };
    let aws = Aws::new(&config.primary().aws_region)?;
    // What the sync-judge decides for this commit, diffed against its first parent, once
    // the commit is known to be on the ref.
    let plan = match local_repo(&o, config.primary())? {
        Some(dir) => local_plan(&aws.runtime, &config, &o, &asked, &dir)?,
        None => codecommit_plan(&aws, &config, &o.commit, &asked)?,
    };
    let reference = plan.push.reference.clone();
    let mirror = plan.decisions.sync.mirror;
    let executed = o.execute && mirror;

    // A clone may be stale and CodeCommit's API reads no tags: then the premises are
    // checked again on the primary's refs, as the mirror fetches them (a dry run).
    let codecommit = matches!(config.primary().repository, Location::CodeCommit { .. });
    let fetched = if o.repo.is_some() || (codecommit && reference.is_tag()) {
        let (dry, dir) = mirror_ref(&o, &config, &reference, cache.clone(), true)?;
        check_fetched(&aws.runtime, &config, &asked, &plan.push, &dir)?;
        Some(dry)
    } else {
        None
    };

    // The mirror: a dry run, the real thing, or the event that asks the Lambda for it.
    let outcome: Option<MirrorOutcome> = if o.publish {
        publish(&aws, &o, &config, &plan)?;
        None
    } else if executed {
        Some(mirror_ref(&o, &config, &reference, cache, false)?.0)
    } else if !o.execute {
        match fetched {
            Some(dry) => Some(dry),
            None => Some(mirror_ref(&o, &config, &reference, cache, true)?.0),
        }
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
        report(&o, &config, &plan, outcome.as_ref());
    }
    Ok(match &outcome {
        Some(out) if !out.in_sync() => ExitCode::from(crate::EXIT_FAILED),
        _ => ExitCode::SUCCESS,
    })
}

/// The ref `--ref` names, and whether it was a short name (a branch, else a tag).
struct Asked {
    reference: RefName,
    bare: bool,
}

impl Asked {
    /// The tag a short name names when the primary has no such branch.
    fn as_tag(&self) -> anyhow::Result<Option<RefName>> {
        Ok(match &self.reference {
            RefName::Branch(b) if self.bare => Some(RefName::tag(b)?),
            _ => None,
        })
    }
}

/// The premises again, on the primary's refs as the mirror fetched them into its source
/// cache `dir`: the ref is there and the commit is on it. A ref that is not there is named
/// as it was asked for (a short name as the branch).
fn check_fetched(
    runtime: &tokio::runtime::Runtime,
    config: &Config,
    asked: &Asked,
    push: &Push,
    dir: &Path,
) -> anyhow::Result<()> {
    let git = Git2Changes::open(dir).with_context(|| {
        format!(
            "cannot read the source cache {}",
            quoted(&dir.display().to_string())
        )
    })?;
    let reference = &push.reference;
    let Some(head) = ref_head(&git, &reference.full())? else {
        bail!(
            "{} does not exist {}",
            quoted(&asked.reference.full()),
            on_primary(config.primary())
        );
    };
    let on = match runtime.block_on(is_on(&git, &push.after, &head)) {
        Ok(on) => on,
        // Not fetched: the primary does not have the commit at all.
        Err(ChangeError::UnknownRevision { .. }) => false,
        Err(e) => return Err(e.into()),
    };
    if !on {
        return Err(not_on_ref(&push.after, reference, &head)
            .context(format!("the primary {} as fetched", config.primary().name)));
    }
    Ok(())
}

/// The runtime AWS is called on, and the SDK's configuration for the primary's AWS region,
/// loaded at most once and only when needed (CodeCommit, `--publish`).
struct Aws {
    runtime: tokio::runtime::Runtime,
    region: String,
    sdk: OnceCell<aws_config::SdkConfig>,
}

impl Aws {
    fn new(region: &str) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(Self {
            runtime,
            region: region.to_owned(),
            sdk: OnceCell::new(),
        })
    }

    /// The SDK's configuration, once AWS credentials were found: without them, one error
    /// `what: no AWS credentials ...` (exit 3) rather than the SDK's chain on each call.
    fn signed(&self, what: &str) -> anyhow::Result<&aws_config::SdkConfig> {
        use aws_credential_types::provider::ProvideCredentials;
        let sdk = self.sdk.get_or_init(|| {
            self.runtime.block_on(
                aws_config::defaults(aws_config::BehaviorVersion::latest())
                    .region(aws_config::Region::new(self.region.clone()))
                    .load(),
            )
        });
        let Some(provider) = sdk.credentials_provider() else {
            return Err(OperationFailed::wrap(anyhow!(
                "{what}: no AWS credentials provider is configured"
            )));
        };
        (self.runtime.block_on(provider.provide_credentials()))
            .map_err(|e| OperationFailed::wrap(anyhow!("{what}: {}", credentials_problem(&e))))?;
        Ok(sdk)
    }
}

/// Why there are no AWS credentials, on one line. The SDK's account of a chain that found
/// none lists each provider it tried on a line of its own: that goes to the log (`-v`).
fn credentials_problem(e: &aws_credential_types::provider::error::CredentialsError) -> String {
    use aws_credential_types::provider::error::CredentialsError;
    let chain = one_line(e);
    tracing::info!(error = %chain, "no AWS credentials");
    if matches!(e, CredentialsError::CredentialsNotLoaded(_)) {
        "no AWS credentials: none in the environment, the AWS config files, a web identity token, the ECS container or EC2 instance metadata (-v says why each gave none)".to_owned()
    } else {
        // Its own message is only "an error occurred while loading credentials".
        let cause = std::error::Error::source(e).map_or(chain, one_line);
        format!("no AWS credentials: {cause}")
    }
}

/// An error and its causes on one line, each said once (an SDK error often repeats its
/// source's message in its own).
fn one_line(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = String::new();
    let mut next = Some(e);
    while let Some(e) = next {
        let text = e.to_string();
        let text: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        let text = text.join("; ");
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
        next = e.source();
    }
    out
}

/// An AWS call that failed (exit 3), once: tozai's adapters already put the SDK's causes
/// in their message, so its sources are not printed again.
fn aws_failed(what: &str, e: impl std::fmt::Display) -> anyhow::Error {
    OperationFailed::wrap(anyhow!("{what}: {e}"))
}

/// The local repository to read the commit from: `--repo`, or the primary when it is
/// local; `None` for a CodeCommit primary (its API).
fn local_repo(o: &Options, primary: &Region) -> anyhow::Result<Option<PathBuf>> {
    Ok(match (&o.repo, &primary.repository) {
        (Some(dir), _) => Some(dir.clone()),
        (None, Location::Local(dir)) => Some(dir.clone()),
        (None, Location::CodeCommit { .. }) => None,
        (None, Location::Url(url)) => {
            bail!(
                "the primary {} is neither local nor CodeCommit: give a local clone with --repo",
                quoted(url)
            )
        }
    })
}

/// The push the sync-judge would have seen for `after` on `reference`.
fn push(primary: &Region, reference: &RefName, before: Option<CommitId>, after: CommitId) -> Push {
    Push {
        repository: primary.repository.shown(),
        region: primary.name.clone(),
        reference: reference.clone(),
        before,
        after,
    }
}

/// The plan, read from a local repository (the primary, or `--repo`'s clone, where a
/// branch is preferably its remote-tracking `origin/BRANCH`), once the premises hold.
fn local_plan(
    runtime: &tokio::runtime::Runtime,
    config: &Config,
    o: &Options,
    asked: &Asked,
    dir: &Path,
) -> anyhow::Result<Plan> {
    let primary = config.primary();
    let git = Git2Changes::open(dir)?;
    let (before, after) = git.resolve_range(&o.commit)?;
    let Some((reference, head)) = local_head(&git, asked, o.repo.is_some())? else {
        let place = match &o.repo {
            Some(clone) => format!(
                "in {}, the clone of the primary {} given with --repo",
                quoted(&clone.display().to_string()),
                primary.name
            ),
            None => on_primary(primary),
        };
        bail!("{} does not exist {place}", quoted(&asked.reference.full()));
    };
    if !runtime.block_on(is_on(&git, &after, &head))? {
        return Err(not_on_ref(&after, &reference, &head));
    }
    let push = push(primary, &reference, before, after);
    Ok(runtime.block_on(tozai::service::plan_push(config, &git, push))?)
}

/// The ref asked for and its head in a local repository, `None` when it has no such ref.
/// In a clone (`--repo`), a branch is its remote-tracking `origin/BRANCH` when there is
/// one (what the primary had at the last fetch), else the local branch; a short name that
/// is no branch there is the tag of that name.
fn local_head(
    git: &Git2Changes,
    asked: &Asked,
    clone: bool,
) -> anyhow::Result<Option<(RefName, CommitId)>> {
    let reference = &asked.reference;
    let mut candidates = Vec::new();
    if let (RefName::Branch(b), true) = (reference, clone) {
        candidates.push((reference.clone(), format!("refs/remotes/origin/{b}")));
    }
    candidates.push((reference.clone(), reference.full()));
    if let Some(tag) = asked.as_tag()? {
        let full = tag.full();
        candidates.push((tag, full));
    }
    for (reference, full) in candidates {
        if let Some(head) = ref_head(git, &full)? {
            return Ok(Some((reference, head)));
        }
    }
    Ok(None)
}

/// The commit a full ref name points at in a local repository (a tag peeled), `None`
/// when there is no such ref.
fn ref_head(git: &Git2Changes, full: &str) -> anyhow::Result<Option<CommitId>> {
    match git.resolve_range(full) {
        Ok((_, head)) => Ok(Some(head)),
        Err(ChangeError::UnknownRevision { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The plan, read through CodeCommit's API (the commit must be a full id), once the
/// premises hold. CodeCommit's API reads no tags: a tag (or a short name that is no
/// branch, taken for a tag) is checked once the mirror has fetched it ([`check_fetched`]).
fn codecommit_plan(
    aws: &Aws,
    config: &Config,
    commit: &str,
    asked: &Asked,
) -> anyhow::Result<Plan> {
    let primary = config.primary();
    let after: CommitId = commit
        .parse()
        .context("--commit: give the full commit id (or a local clone with --repo)")?;
    let what = format!(
        "cannot read the primary {} ({}) through CodeCommit's API",
        primary.name, primary.repository
    );
    let repo = tozai::lambda::repo(aws.signed(&what)?, primary)?;
    let failed = |e: ChangeError| match e {
        e @ ChangeError::UnknownRevision { .. } => anyhow::Error::new(e),
        e => aws_failed(&what, e),
    };
    let mut reference = asked.reference.clone();
    if let RefName::Branch(branch) = &asked.reference {
        let head = (aws.runtime.block_on(repo.branch_head(branch))).map_err(failed)?;
        match (head, asked.as_tag()?) {
            (Some(head), _) => {
                if !aws
                    .runtime
                    .block_on(is_on(&repo, &after, &head))
                    .map_err(failed)?
                {
                    return Err(not_on_ref(&after, &reference, &head));
                }
            }
            (None, Some(tag)) => reference = tag,
            (None, None) => bail!(
                "{} does not exist {}",
                quoted(&reference.full()),
                on_primary(primary)
            ),
        }
    }
    let before = (aws.runtime.block_on(repo.first_parent(&after))).map_err(failed)?;
    let push = push(primary, &reference, before, after);
    (aws.runtime
        .block_on(tozai::service::plan_push(config, &repo, push)))
    .map_err(|e| aws_failed(&what, e))
}

/// `on the primary tokyo (LOCATION)`.
fn on_primary(primary: &Region) -> String {
    format!(
        "on the primary {} ({})",
        primary.name,
        quoted(&primary.repository.shown())
    )
}

/// True when `commit` is `head` or one of its ancestors.
async fn is_on<A: Ancestry>(
    repo: &A,
    commit: &CommitId,
    head: &CommitId,
) -> Result<bool, ChangeError> {
    Ok(commit == head || repo.merge_base(commit, head).await?.as_ref() == Some(commit))
}

fn not_on_ref(commit: &CommitId, reference: &RefName, head: &CommitId) -> anyhow::Error {
    anyhow!(
        "commit {} is not on {} (its head is {}): replay a commit of the ref",
        commit.short(),
        quoted(&reference.full()),
        head.short()
    )
}

/// Publishes the sync-judge's `Sync Requested` for the plan's commit.
fn publish(aws: &Aws, o: &Options, config: &Config, plan: &Plan) -> anyhow::Result<()> {
    let (commit, reference) = (&plan.push.after, &plan.push.reference);
    if !plan.decisions.sync.mirror {
        bail!(
            "the sync-judge would not mirror {} ({}): nothing to publish; `tozai mirror -c {} --ref {}` mirrors it anyway",
            commit.short(),
            plan.decisions.sync.reason.describe(),
            quoted(&o.config.path.display().to_string()),
            quoted(&reference.full())
        );
    }
    let request = tozai::event::SyncRequested {
        repository: config.primary().repository.name(),
        reference: reference.full(),
        commit: Some(commit.to_string()),
        reason: format!("replay: {}", plan.decisions.sync.reason.describe()),
    };
    let what = format!(
        "cannot publish to EventBridge in {} (bus {})",
        aws.region, o.event_bus
    );
    let sink = tozai::lambda::events_on(aws.signed(&what)?, &o.event_bus);
    (aws.runtime
        .block_on(tozai::judge::request_sync(&sink, &request)))
    .map_err(|e| aws_failed(&what, e.context))
}

/// Mirrors the one ref (or shows what the mirror would do); with the source cache the
/// mirror fetched the primary into.
fn mirror_ref(
    o: &Options,
    config: &Config,
    reference: &RefName,
    cache: PathBuf,
    dry_run: bool,
) -> anyhow::Result<(MirrorOutcome, PathBuf)> {
    let ledger = o.state.ledger(&cache, &config.standby().repository)?;
    // `_aws` keeps the runtime a CodeCommit target is read on while the mirror runs.
    let (source, target, _aws) =
        crate::mirror::remotes(&config.primary().repository, &config.standby().repository)?;
    let mirror = Git2Mirror::new(cache);
    let dir = mirror.cache_dir(&source);
    let request = MirrorRequest {
        source,
        target,
        selection: RefSelection::exactly(reference),
        force: o.force,
        dry_run,
        ledger: Some(ledger),
    };
    let outcome = mirror
        .mirror(&request, None)
        .map_err(crate::mirror::mirror_failed)?;
    Ok((outcome, dir))
}

/// The readable report: the plan, then what happened.
fn report(o: &Options, config: &Config, plan: &Plan, outcome: Option<&MirrorOutcome>) {
    let (commit, reference) = (&plan.push.after, &plan.push.reference);
    let standby = &config.standby().name;
    let starts: Vec<&str> = (plan.decisions.after_mirror.iter())
        .filter(|d| d.start)
        .map(|d| d.target.as_str())
        .collect();
    let starts = if starts.is_empty() {
        "nothing".to_owned()
    } else {
        starts.join(", ")
    };
    out!("{}", crate::report::plan(plan));
    outln!();
    if o.publish {
        outln!(
            "published Sync Requested for {} at {} on bus {} in {}: the mirror Lambda takes it from here",
            quoted(&reference.full()),
            commit.short(),
            o.event_bus,
            config.primary().aws_region
        );
        outln!("once it has mirrored, {standby}'s judge starts: {starts}");
    } else if !plan.decisions.sync.mirror {
        outln!(
            "not mirrored: {} (`tozai mirror -c {} --ref {}` mirrors it anyway)",
            plan.decisions.sync.reason.describe(),
            quoted(&o.config.path.display().to_string()),
            quoted(&reference.full())
        );
    } else if let Some(out) = outcome {
        out!("{}", crate::mirror::report(out));
        let status = (out.refs.iter())
            .find(|r| &r.reference == reference)
            .map(|r| &r.status);
        let seen = Standby {
            name: standby,
            reference,
            commit,
            dry_run: out.dry_run,
        };
        outln!("{}", seen.conclusion(status, &starts));
        if out.dry_run {
            outln!("(dry run: --execute mirrors, or --publish asks the mirror Lambda)");
        }
    }
}

/// The standby's ref a replay mirrors, for the last line.
struct Standby<'a> {
    name: &'a str,
    reference: &'a RefName,
    commit: &'a CommitId,
    dry_run: bool,
}

impl Standby<'_> {
    /// What the mirror did (or would do) to the standby's ref, and what the standby's judge
    /// starts: the plan's targets only when the ref moved to the commit itself.
    fn conclusion(&self, status: Option<&RefStatus>, starts: &str) -> String {
        let (s, r, c) = (
            self.name,
            crate::mirror::name(self.reference),
            self.commit.short(),
        );
        let moved = match status {
            Some(RefStatus::Created { new } | RefStatus::Updated { new, .. }) => Some(new),
            _ => None,
        };
        match (moved, status, self.dry_run) {
            (Some(new), _, true) if new == self.commit => {
                format!("would move {s}'s {r} to {c}: then {s}'s judge would start: {starts}")
            }
            (Some(new), _, false) if new == self.commit => {
                format!("{s}'s {r} moved to {c}: {s}'s judge starts: {starts}")
            }
            (Some(new), _, true) => format!(
                "would move {s}'s {r} to {}, the head of the ref, past {c}: {s}'s judge would judge that push, not this commit",
                new.short()
            ),
            (Some(new), _, false) => format!(
                "{s}'s {r} moved to {}, the head of the ref, past {c}: {s}'s judge judges that push, not this commit",
                new.short()
            ),
            (None, Some(RefStatus::Unchanged { at }), _) => {
                let past = if at == self.commit {
                    String::new()
                } else {
                    format!(", past {c}")
                };
                format!(
                    "{s}'s {r} is already at {}{past}: nothing to mirror, so {s}'s judge starts nothing",
                    at.short()
                )
            }
            // Checked to exist, yet gone from the primary by the time the mirror fetched it
            // (deleted meanwhile): the mirror deletes it on the standby too.
            (None, Some(RefStatus::Deleted { .. }), true) => format!(
                "would delete {s}'s {r}: the primary no longer has it, so {s}'s judge would start nothing"
            ),
            (None, Some(RefStatus::Deleted { .. }), false) => format!(
                "{s}'s {r} was deleted: the primary no longer has it, so {s}'s judge starts nothing"
            ),
            (None, status, dry_run) => {
                let why = match status {
                    Some(RefStatus::Diverged { .. }) => {
                        " (diverged; --force backs it up, then overwrites it)"
                    }
                    Some(RefStatus::Rejected { .. }) => " (rejected)",
                    _ => "",
                };
                if dry_run {
                    format!("{s}'s {r} would not be updated{why}: {s}'s judge would start nothing")
                } else {
                    format!("{s}'s {r} was not updated{why}: {s}'s judge starts nothing")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(c: char) -> CommitId {
        c.to_string().repeat(40).parse().unwrap()
    }

    fn line(status: Option<RefStatus>, dry_run: bool) -> String {
        let main = RefName::branch("main").unwrap();
        let commit = id('a');
        let standby = Standby {
            name: "osaka",
            reference: &main,
            commit: &commit,
            dry_run,
        };
        standby.conclusion(status.as_ref(), "osaka-core")
    }

    #[test]
    fn the_judge_starts_only_when_the_standby_moved_to_the_commit() {
        let moved = RefStatus::Updated {
            old: id('0'),
            new: id('a'),
            forced: false,
        };
        assert_eq!(
            line(Some(moved.clone()), false),
            "osaka's refs/heads/main moved to aaaaaaaaaaaa: osaka's judge starts: osaka-core"
        );
        assert_eq!(
            line(Some(moved), true),
            "would move osaka's refs/heads/main to aaaaaaaaaaaa: then osaka's judge would start: osaka-core"
        );
        assert_eq!(
            line(Some(RefStatus::Created { new: id('b') }), false),
            "osaka's refs/heads/main moved to bbbbbbbbbbbb, the head of the ref, past aaaaaaaaaaaa: osaka's judge judges that push, not this commit"
        );
        assert_eq!(
            line(Some(RefStatus::Unchanged { at: id('a') }), false),
            "osaka's refs/heads/main is already at aaaaaaaaaaaa: nothing to mirror, so osaka's judge starts nothing"
        );
    }

    #[test]
    fn a_standby_left_alone_starts_nothing() {
        let diverged = RefStatus::Diverged {
            source: Some(id('a')),
            standby: id('c'),
            cause: tozai::divergence::Cause::StandbyPushedTo,
        };
        assert_eq!(
            line(Some(diverged.clone()), false),
            "osaka's refs/heads/main was not updated (diverged; --force backs it up, then overwrites it): osaka's judge starts nothing"
        );
        assert_eq!(
            line(Some(diverged), true),
            "osaka's refs/heads/main would not be updated (diverged; --force backs it up, then overwrites it): osaka's judge would start nothing"
        );
        assert_eq!(
            line(
                Some(RefStatus::Rejected {
                    reason: "hook".into()
                }),
                false
            ),
            "osaka's refs/heads/main was not updated (rejected): osaka's judge starts nothing"
        );
        assert_eq!(
            line(None, false),
            "osaka's refs/heads/main was not updated: osaka's judge starts nothing"
        );
        let deleted = RefStatus::Deleted { old: id('a') };
        assert_eq!(
            line(Some(deleted.clone()), false),
            "osaka's refs/heads/main was deleted: the primary no longer has it, so osaka's judge starts nothing"
        );
        assert_eq!(
            line(Some(deleted), true),
            "would delete osaka's refs/heads/main: the primary no longer has it, so osaka's judge would start nothing"
        );
    }

    #[test]
    fn an_error_chain_is_one_line_each_cause_once() {
        #[derive(Debug)]
        struct E(&'static str, Option<Box<E>>);
        impl std::fmt::Display for E {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.0)
            }
        }
        impl std::error::Error for E {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                self.1.as_deref().map(|e| e as _)
            }
        }
        let inner = E(
            "no credentials found. Attempted:\n  Environment: not set\n",
            None,
        );
        let middle = E(
            "dispatch failure: no credentials found. Attempted:\n  Environment: not set",
            Some(Box::new(inner)),
        );
        let outer = E("PutEvents failed", Some(Box::new(middle)));
        assert_eq!(
            one_line(&outer),
            "PutEvents failed: dispatch failure: no credentials found. Attempted:; Environment: not set"
        );
    }
}
