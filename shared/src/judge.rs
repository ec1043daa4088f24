//! The judges' use cases: what the sync-judge, the pipeline-judge and the mirror Lambdas do
//! with one event, over the ports. The Lambdas are thin wrappers around these functions,
//! and `tozai demo` and `tozai replay` call the same ones.
//!
//! CodeCommit's events are best effort, unordered and delivered at least once, so no event
//! is trusted to carry the whole truth. Each consumer (the sync, and each pipeline target)
//! keeps a checkpoint per repository and ref: the last commit it handled, and where the
//! history it has judged starts. The diff base ([`choose_base`]) is:
//!
//! 1. the checkpoint, when it is an ancestor of the new commit (so a lost or coalesced
//!    event's changes are still in the diff);
//! 2. nothing to do, when the new commit is the checkpoint or inside the history already
//!    judged (a duplicate, or an event overtaken by a newer one);
//! 3. an older event whose changes were never judged (events reordered before the first
//!    checkpoint): its own changes are judged, and acted on at the checkpoint's commit, so
//!    nothing is ever rolled back;
//! 4. otherwise the event's old commit (a force-push, or no checkpoint yet);
//! 5. for a new branch, its merge base with the config's base branch;
//! 6. with no usable base, every file of the commit counts as changed (fail open, logged).
//!
//! The sync-judge lists no changes when the ref alone decides ([`crate::plan::sync_by_ref`]:
//! a tag `sync.tags` selects is mirrored whatever it changed), so a new tag never lists its
//! whole tree there; a pipeline target that opts into tags is judged on the tag's paths.
//!
//! Pipeline starts happen at most once per (target, commit): a claim in the checkpoint
//! store is written before the start and the start's id is recorded after it. The start
//! carries a token derived from the target, the commit and every parameter it sends
//! ([`StartRequest::new`]), so a retry repeats it exactly; the services' own deduplication
//! is a second line only (CodeBuild's lasts 5 minutes, CodePipeline documents none).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::config::{Config, Region, Target};
use crate::event::{Inbound, RefChange, RefChanged, SYNC_REQUESTED, SyncRequested};
use crate::location::Location;
use crate::plan::{Reason, SyncDecision, TargetDecision, decide};
use crate::ports::{
    Ancestry, ChangeError, ChangeSource, CheckpointStore, Claim, EventSink, ServiceError,
    StartRequest, Starter,
};
use crate::refs::{CommitId, RefName};

/// The checkpoint consumer name of the sync.
pub const SYNC_CONSUMER: &str = "sync";
/// How long a claimed start may stay unrecorded before another invocation takes it over.
pub const START_LEASE: Duration = Duration::from_secs(120);
/// Attempts at moving a checkpoint that other invocations keep moving.
const SAVE_ATTEMPTS: u32 = 5;
/// CodePipeline's limit on a variable's value (1-1,000 characters; counted here in bytes,
/// which is never fewer).
const VARIABLE_MAX: usize = 1000;
/// The value of a variable that has nothing to say (CodePipeline refuses empty values).
const NO_VALUE: &str = "(none)";

/// The checkpoint consumer name of a pipeline target.
pub fn target_consumer(target: &str) -> String {
    format!("target:{target}")
}

/// Why a judge could not finish. The Lambda returns it as an error, so the event is
/// retried (then goes to the on-failure destination, which raises an alarm).
#[derive(Debug, thiserror::Error)]
pub enum JudgeError {
    #[error(transparent)]
    Changes(#[from] ChangeError),
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error(transparent)]
    Event(#[from] crate::event::EventError),
    #[error("{0}")]
    Config(String),
    /// Some targets failed to start; the others were started and recorded.
    #[error("{failed} of {total} starts failed: {details}")]
    Starts {
        failed: usize,
        total: usize,
        details: String,
        transient: bool,
    },
    #[error(transparent)]
    Mirror(#[from] crate::ports::MirrorError),
}

impl JudgeError {
    /// True when a retry may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Changes(e) => e.is_transient(),
            Self::Service(e) => e.transient,
            Self::Starts { transient, .. } => *transient,
            Self::Mirror(e) => e.is_transient(),
            Self::Event(_) | Self::Config(_) => false,
        }
    }
}

/// Why a diff base was chosen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "why")]
pub enum BaseWhy {
    /// The consumer's checkpoint, an ancestor of the new commit.
    Checkpoint,
    /// The event's old commit; `checkpoint` says why the checkpoint was not used.
    EventBefore { checkpoint: &'static str },
    /// A new branch: its merge base with the base branch.
    MergeBase { branch: String },
    /// No usable base: every file counts as changed.
    WholeTree { because: &'static str },
}

/// The diff base for one consumer, or that it has nothing to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BaseChoice {
    Diff {
        base: Option<CommitId>,
        why: BaseWhy,
        /// The commit to act on (start, mirror): the event's own, or, for an older event
        /// whose changes were never judged, the checkpoint's, so nothing is rolled back.
        act_on: CommitId,
        /// The checkpoint to save once handled: its commit and where its handled history
        /// starts (see [`Checkpoint::covered_from`](crate::ports::Checkpoint)).
        save: (CommitId, Option<CommitId>),
    },
    /// The new commit is the checkpoint or inside its handled history.
    AlreadyHandled { checkpoint: CommitId },
}

/// Chooses the diff base of one consumer (see the module's documentation).
pub async fn choose_base(
    history: &impl Ancestry,
    checkpoint: Option<&crate::ports::Checkpoint>,
    event: &RefChange,
    after: &CommitId,
    reference: &RefName,
    base_branch: &str,
) -> Result<BaseChoice, ChangeError> {
    let mut unusable = "there is none yet";
    if let Some(cp) = checkpoint {
        if &cp.commit == after {
            return Ok(BaseChoice::AlreadyHandled {
                checkpoint: cp.commit.clone(),
            });
        }
        match history.merge_base(&cp.commit, after).await? {
            Some(base) if base == cp.commit => {
                return Ok(BaseChoice::Diff {
                    base: Some(cp.commit.clone()),
                    why: BaseWhy::Checkpoint,
                    act_on: after.clone(),
                    save: (after.clone(), cp.covered_from.clone()),
                });
            }
            Some(base) if &base == after => {
                // An older event. Inside the handled history: a duplicate or overtaken.
                let handled = match &cp.covered_from {
                    None => true,
                    Some(from) => {
                        from != after
                            && history.merge_base(after, from).await?.as_ref() != Some(after)
                    }
                };
                if handled {
                    return Ok(BaseChoice::AlreadyHandled {
                        checkpoint: cp.commit.clone(),
                    });
                }
                // Before it (events reordered before the first checkpoint): judge its own
                // changes, act on the checkpoint's commit, and extend the handled history
                // when the two ranges meet.
                let (base, why) = fallback(
                    history,
                    event,
                    after,
                    reference,
                    base_branch,
                    "the event is older than the checkpoint and its changes were never judged",
                )
                .await?;
                let covered_from = if cp.covered_from.as_ref() == Some(after) {
                    base.clone()
                } else {
                    cp.covered_from.clone()
                };
                return Ok(BaseChoice::Diff {
                    base,
                    why,
                    act_on: cp.commit.clone(),
                    save: (cp.commit.clone(), covered_from),
                });
            }
            Some(_) => unusable = "it is not an ancestor of the new commit (a force-push?)",
            None => unusable = "it shares no history with the new commit",
        }
    }
    let (base, why) = fallback(history, event, after, reference, base_branch, unusable).await?;
    Ok(BaseChoice::Diff {
        save: (after.clone(), base.clone()),
        base,
        why,
        act_on: after.clone(),
    })
}

/// The base when the checkpoint gives none: the event's old commit, a new branch's merge
/// base with the base branch, or nothing (every file counts).
async fn fallback(
    history: &impl Ancestry,
    event: &RefChange,
    after: &CommitId,
    reference: &RefName,
    base_branch: &str,
    unusable: &'static str,
) -> Result<(Option<CommitId>, BaseWhy), ChangeError> {
    if let Some(before) = event.before() {
        return Ok((
            Some(before.clone()),
            BaseWhy::EventBefore {
                checkpoint: unusable,
            },
        ));
    }
    let because = match reference {
        RefName::Tag(_) => "a new tag is judged on its whole tree",
        RefName::Branch(b) if b == base_branch => "the base branch itself is new",
        RefName::Branch(_) => match history.branch_head(base_branch).await? {
            None => "the base branch does not exist",
            Some(head) => match history.merge_base(&head, after).await? {
                Some(base) => {
                    return Ok((
                        Some(base),
                        BaseWhy::MergeBase {
                            branch: base_branch.to_owned(),
                        },
                    ));
                }
                None => "the new branch shares no history with the base branch",
            },
        },
    };
    Ok((None, BaseWhy::WholeTree { because }))
}

/// Publishes `request` as the `Sync Requested` event the mirror acts on: what the
/// sync-judge sends, and `tozai replay --publish` by hand.
pub async fn request_sync<E: EventSink>(
    events: &E,
    request: &SyncRequested,
) -> Result<(), ServiceError> {
    let detail = serde_json::to_value(request).map_err(|err| {
        ServiceError::new(
            "event bus",
            format!("cannot encode the request: {err}"),
            false,
        )
    })?;
    events.publish(SYNC_REQUESTED, &detail).await
}

/// The one structured record every invocation logs (and returns).
#[derive(Debug, Clone, Default, Serialize)]
pub struct DecisionRecord {
    pub function: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// The region (config name) whose repository the event is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// The event's old commit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<CommitId>,
    /// The event's new commit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<CommitId>,
    /// Set when the event was acknowledged without acting: why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ignored: Option<String>,
    /// Each diff made: its base, why, and how many paths changed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub diffs: Vec<DiffRecord>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync: Option<SyncRecord>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<TargetRecord>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mirror: Option<serde_json::Value>,
}

impl DecisionRecord {
    fn new(function: &'static str) -> Self {
        Self {
            function,
            ..Self::default()
        }
    }

    fn ignore(mut self, why: impl Into<String>) -> Self {
        self.ignored = Some(why.into());
        self
    }

    fn for_event(function: &'static str, e: &RefChanged) -> Self {
        Self {
            event_id: e.id.clone(),
            repository: Some(e.repository.clone()),
            reference: Some(e.reference.full()),
            before: e.change.before().cloned(),
            after: e.change.after().cloned(),
            ..Self::new(function)
        }
    }

    /// The record as one JSON line.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

/// One diff a judge made.
#[derive(Debug, Clone, Serialize)]
pub struct DiffRecord {
    pub consumers: Vec<String>,
    pub base: Option<CommitId>,
    #[serde(flatten)]
    pub why: BaseWhy,
    pub changed: usize,
}

/// The sync-judge's decision.
#[derive(Debug, Clone, Serialize)]
pub struct SyncRecord {
    /// The decision, its `matches` and `excluded` cut at [`RECORD_MATCHES`].
    #[serde(flatten)]
    pub decision: SyncDecision,
    /// How many matches and excludes there were in all.
    pub matches_total: usize,
    pub excluded_total: usize,
    /// True when a `Sync Requested` event was published.
    pub requested: bool,
}

/// How many matches a decision record lists (the totals are kept): a push of 10,000
/// matching paths must not make a log line over CloudWatch's event size limit.
pub const RECORD_MATCHES: usize = 100;

fn cut<T>(mut items: Vec<T>) -> (Vec<T>, usize) {
    let total = items.len();
    items.truncate(RECORD_MATCHES);
    (items, total)
}

/// One target's decision and what came of it.
#[derive(Debug, Clone, Serialize)]
pub struct TargetRecord {
    pub target: String,
    pub kind: &'static str,
    pub name: String,
    pub start: bool,
    pub reason: Reason,
    /// The first [`RECORD_MATCHES`] matches.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<crate::rules::Match>,
    /// How many matches there were in all.
    pub matches_total: usize,
    /// What happened: `started`, `already_started`, `in_progress`, `failed`,
    /// `already_handled` or `not_started`.
    pub result: &'static str,
    /// The commit started (or found started): the event's, or the checkpoint's for an
    /// older event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<CommitId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Who pushed, and whether that push is the mirror's own (to be ignored).
#[derive(Debug, Clone, Default)]
pub struct IgnoredCallers {
    /// IAM role names (not ARNs) whose pushes the sync-judge ignores.
    roles: Vec<String>,
}

impl IgnoredCallers {
    /// From role names or role ARNs (`arn:aws:iam::ACCOUNT:role/path/NAME`), comma- or
    /// space-separated, as `TOZAI_IGNORE_ROLES` gives them.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut roles = Vec::new();
        for item in text.split([',', ' ']).filter(|s| !s.is_empty()) {
            let name = match item.strip_prefix("arn:") {
                Some(_) => item
                    .split_once(":role/")
                    .map(|(_, path)| path.rsplit('/').next().unwrap_or(path))
                    .ok_or_else(|| format!("{item:?} is not an IAM role ARN"))?,
                None => item,
            };
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c))
            {
                return Err(format!("{item:?} is not an IAM role name or ARN"));
            }
            roles.push(name.to_owned());
        }
        Ok(Self { roles })
    }

    /// True when `caller` (an event's `callerUserArn`) is one of the roles, in any session.
    pub fn ignores(&self, caller: Option<&str>) -> bool {
        let Some(caller) = caller else { return false };
        let Some((_, rest)) = caller.split_once(":assumed-role/") else {
            return false;
        };
        let role = rest.split('/').next().unwrap_or("");
        self.roles.iter().any(|r| r == role)
    }
}

/// The config region whose repository the event is about.
fn region_of<'c>(config: &'c Config, e: &RefChanged) -> Option<&'c Region> {
    config.regions.iter().find(|r| match &r.repository {
        Location::CodeCommit { region, name } => {
            name == &e.repository && e.region.as_ref().is_none_or(|er| er == region)
        }
        // A local or plain-URL repository (`tozai demo`, tests): by name, and by the
        // region's `aws_region` when the event says.
        other => {
            other.name() == e.repository && e.region.as_ref().is_none_or(|er| er == &r.aws_region)
        }
    })
}

/// The ref event of a judge's input, its record, and the config region whose repository
/// it is about; anything else is the record of why it is ignored.
fn locate<'c>(
    function: &'static str,
    config: &'c Config,
    inbound: Inbound,
) -> Result<(RefChanged, DecisionRecord, &'c Region), Box<DecisionRecord>> {
    let ignored = |why: &str| Box::new(DecisionRecord::new(function).ignore(why));
    let e = match inbound {
        Inbound::RefChanged(e) => e,
        Inbound::Ignored(why) => return Err(ignored(&why)),
        Inbound::Scheduled => return Err(ignored("a schedule is the mirror's reconciliation")),
        Inbound::SyncRequested { .. } => {
            return Err(ignored("a sync request is the mirror's to handle"));
        }
    };
    let mut record = DecisionRecord::for_event(function, &e);
    let Some(region) = region_of(config, &e) else {
        return Err(Box::new(
            record.ignore("the repository is not in the config"),
        ));
    };
    record.region = Some(region.name.clone());
    Ok((e, record, region))
}

/// Loads a checkpoint and chooses the diff base from it.
async fn base_for(
    config: &Config,
    repo: &impl Ancestry,
    store: &impl CheckpointStore,
    consumer: &str,
    e: &RefChanged,
    after: &CommitId,
) -> Result<(Option<crate::ports::Checkpoint>, BaseChoice), JudgeError> {
    let checkpoint = store.load(consumer, &e.repository, &e.reference).await?;
    let choice = choose_base(
        repo,
        checkpoint.as_ref(),
        &e.change,
        after,
        &e.reference,
        &config.base_branch,
    )
    .await?;
    Ok((checkpoint, choice))
}

/// Saves a consumer's checkpoint (`save`: its commit and where its handled history
/// starts), unless another invocation already moved it to that commit or past it.
async fn advance(
    repo: &impl Ancestry,
    store: &impl CheckpointStore,
    consumer: &str,
    e: &RefChanged,
    save: &(CommitId, Option<CommitId>),
    mut expected: Option<crate::ports::Checkpoint>,
) -> Result<(), JudgeError> {
    let (commit, covered_from) = save;
    if expected
        .as_ref()
        .is_some_and(|cp| &cp.commit == commit && &cp.covered_from == covered_from)
    {
        return Ok(());
    }
    for _ in 0..SAVE_ATTEMPTS {
        if store
            .save_covering(
                consumer,
                &e.repository,
                &e.reference,
                commit,
                covered_from.as_ref(),
                expected.as_ref(),
            )
            .await?
        {
            return Ok(());
        }
        expected = store.load(consumer, &e.repository, &e.reference).await?;
        if let Some(now) = &expected {
            let newer = &now.commit == commit
                || repo.merge_base(commit, &now.commit).await?.as_ref() == Some(commit);
            if newer {
                return Ok(());
            }
        }
    }
    Err(ServiceError::new(
        "checkpoint store",
        format!(
            "checkpoint {consumer} of {} {} kept moving; gave up after {SAVE_ATTEMPTS} attempts",
            e.repository,
            e.reference.full()
        ),
        true,
    )
    .into())
}

/// Lists changes once per distinct base.
/// One push's diffs and their judgements, once per base: targets whose checkpoints agree
/// share one diff and one pass of the rules.
struct Diffs<'a, C> {
    repo: &'a C,
    config: &'a Config,
    region: &'a str,
    reference: &'a RefName,
    by_base: BTreeMap<Option<CommitId>, Judged>,
}

/// The number of paths a diff changed, and what the rules decided of them.
struct Judged {
    changed: usize,
    decisions: crate::plan::Decisions,
}

impl<'a, C: ChangeSource> Diffs<'a, C> {
    fn new(repo: &'a C, config: &'a Config, region: &'a str, reference: &'a RefName) -> Self {
        Self {
            repo,
            config,
            region,
            reference,
            by_base: BTreeMap::new(),
        }
    }

    async fn judged(
        &mut self,
        base: &Option<CommitId>,
        after: &CommitId,
    ) -> Result<&Judged, JudgeError> {
        if !self.by_base.contains_key(base) {
            let changes = self.repo.changes(base.as_ref(), after).await?;
            let decisions = decide(self.config, self.region, self.reference, &changes)
                .map_err(|u| JudgeError::Config(u.to_string()))?;
            let judged = Judged {
                changed: changes.len(),
                decisions,
            };
            self.by_base.insert(base.clone(), judged);
        }
        Ok(&self.by_base[base])
    }
}

fn note_diff(
    record: &mut DecisionRecord,
    consumer: &str,
    base: &Option<CommitId>,
    why: &BaseWhy,
    changed: usize,
) {
    match why {
        BaseWhy::WholeTree { because } if because.starts_with("a new tag") => {
            tracing::info!(consumer, because, "every file of the tag counts as changed");
        }
        BaseWhy::WholeTree { because } => {
            tracing::warn!(
                consumer,
                because,
                "no usable diff base: every file counts as changed"
            );
        }
        _ => {}
    }
    match record
        .diffs
        .iter_mut()
        .find(|d| &d.base == base && &d.why == why)
    {
        Some(d) => d.consumers.push(consumer.to_owned()),
        None => record.diffs.push(DiffRecord {
            consumers: vec![consumer.to_owned()],
            base: base.clone(),
            why: why.clone(),
            changed,
        }),
    }
}

/// The sync-judge: on a push to the primary's repository, decides whether to mirror it and
/// if so publishes `Sync Requested`.
pub async fn sync_judge<R, S, E>(
    config: &Config,
    repo: &R,
    store: &S,
    events: &E,
    ignored: &IgnoredCallers,
    inbound: Inbound,
) -> Result<DecisionRecord, JudgeError>
where
    R: ChangeSource + Ancestry,
    S: CheckpointStore,
    E: EventSink,
{
    const F: &str = "sync-judge";
    let (e, mut record, region) = match locate(F, config, inbound) {
        Ok(located) => located,
        Err(record) => return Ok(*record),
    };
    if region.name != config.primary {
        return Ok(record.ignore(format!(
            "{} is the standby: mirroring goes from the primary ({}) only",
            region.name, config.primary
        )));
    }
    if ignored.ignores(e.caller.as_deref()) {
        return Ok(record.ignore("pushed by the mirror's own role"));
    }
    let Some(after) = e.change.after().cloned() else {
        return Ok(record.ignore("a deletion is mirrored by the mirror function directly"));
    };
    let filter = config.sync.filter_for(&e.reference);
    if filter.first_match(e.reference.short()).is_none() {
        return Ok(record.ignore(format!(
            "{} {} is not mirrored (sync.{})",
            e.reference.kind(),
            e.reference.short(),
            if e.reference.is_tag() {
                "tags"
            } else {
                "branches"
            }
        )));
    }
    let (checkpoint, choice) = base_for(config, repo, store, SYNC_CONSUMER, &e, &after).await?;
    let (base, why, act_on, save) = match choice {
        BaseChoice::AlreadyHandled { checkpoint } => {
            return Ok(record.ignore(format!(
                "already handled: the sync checkpoint is at {checkpoint}"
            )));
        }
        BaseChoice::Diff {
            base,
            why,
            act_on,
            save,
        } => (base, why, act_on, save),
    };
    let mut decision = match crate::plan::sync_by_ref(config, &region.name, &e.reference) {
        // A selected tag is mirrored whatever it changed: nothing to list.
        Some(decision) => decision,
        None => {
            let changes = repo.changes(base.as_ref(), &after).await?;
            note_diff(&mut record, SYNC_CONSUMER, &base, &why, changes.len());
            decide(config, &region.name, &e.reference, &changes)
                .map_err(|u| JudgeError::Config(u.to_string()))?
                .sync
        }
    };
    let mirror = decision.mirror;
    if mirror {
        let request = SyncRequested {
            repository: e.repository.clone(),
            reference: e.reference.full(),
            commit: Some(act_on.to_string()),
            reason: decision.reason.describe().to_owned(),
        };
        request_sync(events, &request).await?;
    }
    advance(repo, store, SYNC_CONSUMER, &e, &save, checkpoint).await?;
    let (matches, matches_total) = cut(std::mem::take(&mut decision.matches));
    let (excluded, excluded_total) = cut(std::mem::take(&mut decision.excluded));
    decision.matches = matches;
    decision.excluded = excluded;
    record.sync = Some(SyncRecord {
        decision,
        matches_total,
        excluded_total,
        requested: mirror,
    });
    Ok(record)
}

fn eligible(target: &Target, reference: &RefName) -> bool {
    let filter = match reference {
        RefName::Branch(_) => &target.branches,
        RefName::Tag(_) => &target.tags,
    };
    filter.first_match(reference.short()).is_some()
}

/// The variables a start carries, each cut to CodePipeline's 1,000 characters with a
/// visible marker (see [`crate::text`]) and never empty: CodePipeline refuses both.
fn variables(
    decision: &TargetDecision,
    e: &RefChanged,
    commit: &CommitId,
) -> Vec<(String, String)> {
    let paths: Vec<String> = decision
        .matches
        .iter()
        .map(|m| m.path.to_string())
        .collect();
    let mut rules: Vec<String> = decision
        .matches
        .iter()
        .map(|m| format!("{}:{}", m.rule, m.pattern))
        .collect();
    rules.sort();
    rules.dedup();
    [
        ("TOZAI_COMMIT_ID", commit.to_string()),
        (
            "TOZAI_REF",
            crate::text::cut(&e.reference.full(), VARIABLE_MAX),
        ),
        (
            "TOZAI_MATCHED_RULES",
            crate::text::list(&rules, VARIABLE_MAX),
        ),
        (
            "TOZAI_MATCHED_PATHS",
            crate::text::list(&paths, VARIABLE_MAX),
        ),
    ]
    .into_iter()
    .map(|(name, value)| {
        let value = if value.is_empty() {
            NO_VALUE.to_owned()
        } else {
            value
        };
        (name.to_owned(), value)
    })
    .collect()
}

/// The pipeline-judge of `region_name`: on a push to that region's repository, starts each
/// of its targets whose files changed, exactly once per (target, commit).
pub async fn pipeline_judge<R, S, P>(
    config: &Config,
    region_name: &str,
    repo: &R,
    store: &S,
    starter: &P,
    inbound: Inbound,
) -> Result<DecisionRecord, JudgeError>
where
    R: ChangeSource + Ancestry,
    S: CheckpointStore,
    P: Starter,
{
    const F: &str = "pipeline-judge";
    let (e, mut record, region) = match locate(F, config, inbound) {
        Ok(located) => located,
        Err(record) => return Ok(*record),
    };
    if region.name != region_name {
        return Ok(record.ignore(format!(
            "a push to {}'s repository; this judge is {region_name}'s",
            region.name
        )));
    }
    let Some(after) = e.change.after().cloned() else {
        return Ok(record.ignore("a deletion starts nothing"));
    };
    let targets: Vec<&Target> = config
        .targets_in(region_name)
        .filter(|t| eligible(t, &e.reference))
        .collect();
    if targets.is_empty() {
        return Ok(record.ignore(format!(
            "no target of {region_name} runs for {} {}",
            e.reference.kind(),
            e.reference.short()
        )));
    }

    let mut diffs = Diffs::new(repo, config, region_name, &e.reference);
    let mut failures = Vec::new();
    let mut transient = true;
    for target in targets {
        let consumer = target_consumer(&target.name);
        let base_record = |result| TargetRecord {
            target: target.name.clone(),
            kind: target.kind.label(),
            name: target.kind.resource().to_owned(),
            start: false,
            reason: Reason::NothingChanged,
            matches: Vec::new(),
            matches_total: 0,
            result,
            commit: None,
            run_id: None,
            error: None,
        };
        let (checkpoint, choice) = base_for(config, repo, store, &consumer, &e, &after).await?;
        let (base, why, act_on, save) = match choice {
            BaseChoice::AlreadyHandled { .. } => {
                record.targets.push(base_record("already_handled"));
                continue;
            }
            BaseChoice::Diff {
                base,
                why,
                act_on,
                save,
            } => (base, why, act_on, save),
        };
        let judged = diffs.judged(&base, &after).await?;
        note_diff(&mut record, &consumer, &base, &why, judged.changed);
        let Some(decision) = judged
            .decisions
            .pipelines
            .iter()
            .find(|d| d.target == target.name)
        else {
            return Err(JudgeError::Config(format!(
                "target {} has no decision",
                target.name
            )));
        };
        let mut tr = TargetRecord {
            start: decision.start,
            reason: decision.reason,
            matches: decision
                .matches
                .iter()
                .take(RECORD_MATCHES)
                .cloned()
                .collect(),
            matches_total: decision.matches.len(),
            ..base_record("not_started")
        };
        if decision.start {
            match start_once(store, starter, target, decision, &e, &act_on).await {
                Ok((result, run_id)) => {
                    tr.result = result;
                    tr.run_id = run_id;
                    tr.commit = Some(act_on.clone());
                }
                Err(err) => {
                    transient &= err.transient;
                    tr.result = "failed";
                    tr.error = Some(err.to_string());
                    failures.push(format!("{}: {err}", target.name));
                    record.targets.push(tr);
                    continue;
                }
            }
            if tr.result == "in_progress" {
                failures.push(format!(
                    "{}: another invocation is starting it at {act_on}",
                    target.name
                ));
                record.targets.push(tr);
                continue;
            }
        }
        advance(repo, store, &consumer, &e, &save, checkpoint).await?;
        record.targets.push(tr);
    }
    if failures.is_empty() {
        Ok(record)
    } else {
        tracing::error!(record = %record.to_json(), "some targets did not start");
        Err(JudgeError::Starts {
            failed: failures.len(),
            total: record.targets.len(),
            details: failures.join("; "),
            transient,
        })
    }
}

async fn start_once(
    store: &impl CheckpointStore,
    starter: &impl Starter,
    target: &Target,
    decision: &TargetDecision,
    e: &RefChanged,
    commit: &CommitId,
) -> Result<(&'static str, Option<String>), ServiceError> {
    match store.claim_start(&target.name, commit, START_LEASE).await? {
        Claim::Started(id) => return Ok(("already_started", Some(id))),
        Claim::InProgress => return Ok(("in_progress", None)),
        Claim::Won => {}
    }
    let source_action = match &target.kind {
        crate::config::TargetKind::CodePipeline { source_action, .. } => {
            Some(source_action.clone())
        }
        crate::config::TargetKind::CodeBuild { .. } => None,
    };
    let request = StartRequest::new(
        &target.name,
        target.kind.label(),
        target.kind.resource(),
        source_action,
        commit.clone(),
        e.reference.clone(),
        variables(decision, e, commit),
    );
    let id = match starter.start(&request).await {
        Ok(id) => id,
        Err(err) => {
            if let Err(release) = store.release_start(&target.name, commit).await {
                tracing::warn!(error = %release, target = %target.name, "could not release the claim; it lapses after its lease");
            }
            return Err(err);
        }
    };
    store.record_start(&target.name, commit, &id).await?;
    Ok(("started", Some(id)))
}

/// Mirrors one ref from the primary's repository to the standby's, from the source's
/// current state (never an older commit over a newer one).
pub trait RefMirror {
    fn mirror_ref(
        &self,
        reference: &RefName,
    ) -> impl Future<Output = Result<crate::mirror::MirrorOutcome, crate::ports::MirrorError>> + Send;

    /// Mirrors every branch and tag the selection names (the scheduled reconciliation).
    fn mirror_selected(
        &self,
        selection: crate::mirror::RefSelection,
    ) -> impl Future<Output = Result<crate::mirror::MirrorOutcome, crate::ports::MirrorError>> + Send;
}

/// The detail-type of a finished mirror.
pub const SYNC_COMPLETED: &str = "Sync Completed";
/// The detail-type of a mirror that left the standby out of step.
pub const SYNC_FAILED: &str = "Sync Failed";

/// The mirror: on `Sync Requested`, and on a branch or tag deleted in the primary's
/// repository, mirrors that ref and publishes `Sync Completed` or `Sync Failed`.
///
/// A ref left diverged or rejected is `Sync Failed` (an alarm) but not an error: running
/// again would not change it. A failed run (unreachable, authentication) is published and
/// returned as an error, so the event is retried when that may help.
pub async fn mirror_job<M, E>(
    config: &Config,
    mirror: &M,
    events: &E,
    inbound: Inbound,
) -> Result<DecisionRecord, JudgeError>
where
    M: RefMirror,
    E: EventSink,
{
    const F: &str = "mirror";
    let primary = config.primary();
    let mut record = DecisionRecord::new(F);
    record.region = Some(primary.name.clone());
    let (repository, reference, commit) = match inbound {
        Inbound::Ignored(why) => return Ok(record.ignore(why)),
        Inbound::Scheduled => {
            record.repository = Some(primary.repository.name());
            let outcome = mirror.mirror_selected(config.sync.selection()).await;
            return report(config, events, record, None, outcome).await;
        }
        Inbound::SyncRequested { request: s, id } => {
            record.event_id = id;
            let (reference, commit) = s.parsed()?;
            (s.repository, reference, commit)
        }
        Inbound::RefChanged(e) => {
            record = DecisionRecord::for_event(F, &e);
            record.region = Some(primary.name.clone());
            if region_of(config, &e).is_none_or(|r| r.name != primary.name) {
                return Ok(record.ignore("not a change to the primary's repository"));
            }
            if !matches!(e.change, RefChange::Deleted { .. }) {
                return Ok(record.ignore("pushes reach the mirror through the sync-judge"));
            }
            (e.repository, e.reference, None)
        }
    };
    record.repository = Some(repository.clone());
    record.reference = Some(reference.full());
    record.after = commit.clone();
    if repository != primary.repository.name() {
        return Ok(record.ignore(format!(
            "repository {repository} is not the primary's ({})",
            primary.repository.name()
        )));
    }
    let filter = config.sync.filter_for(&reference);
    if filter.first_match(reference.short()).is_none() {
        return Ok(record.ignore(format!(
            "{} {} is not mirrored",
            reference.kind(),
            reference.short()
        )));
    }
    let outcome = mirror.mirror_ref(&reference).await;
    report(config, events, record, commit, outcome).await
}

/// How much of a failed run's error `Sync Failed` and the record carry (cut with `…`).
const ERROR_BYTES: usize = 4096;

/// Publishes `Sync Completed` or `Sync Failed` for a mirror run and completes the record:
/// the run's [`MirrorSummary`](crate::mirror::MirrorSummary), so the event stays under
/// EventBridge's 256 KB whatever the number of refs.
async fn report<E: EventSink>(
    config: &Config,
    events: &E,
    mut record: DecisionRecord,
    commit: Option<CommitId>,
    outcome: Result<crate::mirror::MirrorOutcome, crate::ports::MirrorError>,
) -> Result<DecisionRecord, JudgeError> {
    let detail = |status: &str, extra: serde_json::Value| {
        let mut d = serde_json::json!({
            "repository": record.repository,
            "ref": record.reference,
            "commit": commit.as_ref().map(|c| c.to_string()),
            "from": config.primary().name,
            "to": config.standby().name,
            "status": status,
        });
        if let (Some(d), serde_json::Value::Object(extra)) = (d.as_object_mut(), extra) {
            d.extend(extra);
        }
        d
    };
    match outcome {
        Ok(outcome) => {
            let summary = serde_json::to_value(outcome.summary()).map_err(|err| {
                ServiceError::new(
                    "event bus",
                    format!("cannot encode the mirror's summary: {err}"),
                    false,
                )
            })?;
            let (kind, status) = if outcome.in_sync() {
                (SYNC_COMPLETED, "in_sync")
            } else {
                (SYNC_FAILED, "out_of_step")
            };
            events
                .publish(kind, &detail(status, summary.clone()))
                .await?;
            record.mirror = Some(summary);
            Ok(record)
        }
        Err(err) => {
            let message = crate::text::cut(&err.to_string(), ERROR_BYTES);
            let published = events
                .publish(
                    SYNC_FAILED,
                    &detail(
                        "error",
                        serde_json::json!({"error": message, "transient": err.is_transient()}),
                    ),
                )
                .await;
            if let Err(p) = published {
                tracing::error!(error = %p, "could not publish Sync Failed");
            }
            record.mirror = Some(serde_json::json!({ "error": message }));
            tracing::error!(record = %record.to_json(), "mirror failed");
            Err(err.into())
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
