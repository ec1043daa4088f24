//! The judges' use cases: what the sync-judge, the pipeline-judge and the mirror Lambdas do
//! with one event, over the ports. The Lambdas are thin wrappers around these functions,
//! and `tozai demo` and `tozai replay` call the same ones.
//!
//! The judges are level-triggered. CodeCommit's events are best effort, unordered and
//! delivered at least once, so an event only wakes a judge for one (repository, ref); what
//! it acts on is the state now:
//!
//! 1. it reads its own checkpoint for (consumer, ref): the head it last judged, and any
//!    start another invocation has claimed;
//! 2. then the ref's head ([`base::head_of`]: `GetBranch` for a branch);
//! 3. it diffs the tree it last judged against the head's tree ([`base`]), so lost events,
//!    rewinds, force-pushes and rebases are all one diff;
//! 4. it moves its checkpoint with a compare-and-swap before it starts anything. A start
//!    first claims the (target, ref) with a lease, then starts, then records the run and
//!    the new head ([`pipeline`]); an invocation that loses a swap reads both again.
//!
//! Where each guarantee is kept:
//! - **order**: a target's starts on one ref are serialised by its lease, and each is at
//!   the head read after the checkpoint it swapped from, so an older head is never started
//!   after a newer one ([`pipeline`]);
//! - **nothing missed**: the base is the last judged head, not the event's old commit;
//! - **once**: the claim is on (target, ref); a claim whose lease ran out is taken over
//!   only after looking for the run it may have started ([`crate::ports::Starter::find_run`]);
//! - the mirror's ownership is in [`crate::mirror`] and its adapters.

pub mod base;
mod mirror;
mod pipeline;
pub mod record;
mod sync;

use std::collections::BTreeMap;
use std::time::Duration;

pub use self::base::BaseWhy;
pub use self::mirror::{SYNC_COMPLETED, SYNC_FAILED, mirror_job};
pub use self::pipeline::pipeline_judge;
pub use self::record::{
    DecisionRecord, DiffRecord, RECORD_MATCHES, SyncRecord, TargetRecord, TargetResult,
};
pub use self::sync::{request_sync, sync_judge};
pub use crate::ports::RefMirror;

use crate::config::{Config, Region};
use crate::event::{Inbound, RefChanged};
use crate::location::Location;
use crate::plan::decide;
use crate::ports::{Ancestry, ChangeError, ChangeSource, ServiceError};
use crate::refs::{CommitId, RefName};

/// The checkpoint consumer name of the sync.
pub const SYNC_CONSUMER: &str = "sync";
/// How long a claimed start may stay unrecorded before another invocation takes it over.
/// The judges' Lambda timeout is shorter (the templates cap it), so a holder is gone
/// before its lease can be taken.
pub const START_LEASE: Duration = Duration::from_secs(120);
/// Attempts at judging a consumer whose checkpoint other invocations keep moving.
const SAVE_ATTEMPTS: u32 = 5;

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
    /// Some targets failed to start or were being started by another invocation; the
    /// others were judged and recorded.
    #[error("{failed} of {total} targets did not finish: {details}")]
    Starts {
        failed: usize,
        total: usize,
        details: String,
        transient: bool,
    },
    #[error(transparent)]
    Mirror(#[from] crate::ports::MirrorError),
    /// Other invocations kept moving a checkpoint.
    #[error(
        "checkpoint {consumer} of {repository} {reference} kept moving; gave up after {attempts} attempts"
    )]
    Contended {
        consumer: String,
        repository: String,
        reference: String,
        attempts: u32,
    },
}

impl JudgeError {
    /// True when a retry may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Changes(e) => e.is_transient(),
            Self::Service(e) => e.transient,
            Self::Starts { transient, .. } => *transient,
            Self::Mirror(e) => e.is_transient(),
            Self::Contended { .. } => true,
            Self::Event(_) | Self::Config(_) => false,
        }
    }

    fn contended(consumer: &str, e: &RefChanged) -> Self {
        Self::Contended {
            consumer: consumer.to_owned(),
            repository: e.repository.clone(),
            reference: e.reference.full(),
            attempts: SAVE_ATTEMPTS,
        }
    }
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
pub(super) fn region_of<'c>(config: &'c Config, e: &RefChanged) -> Option<&'c Region> {
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
pub(super) fn locate<'c>(
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
/// One push's diffs and their judgements, once per base: targets whose checkpoints agree
/// share one diff and one pass of the rules.
pub(super) struct Diffs<'a, C> {
    repo: &'a C,
    config: &'a Config,
    region: &'a str,
    reference: &'a RefName,
    /// The event's old commit: the base of a consumer with no checkpoint yet.
    before: Option<CommitId>,
    by_base: BTreeMap<(Option<CommitId>, CommitId), Judged>,
}

/// The number of paths a diff changed, and what the rules decided of them.
pub(super) struct Judged {
    pub changed: usize,
    pub decisions: crate::plan::Decisions,
}

impl<'a, C: ChangeSource + Ancestry> Diffs<'a, C> {
    pub(super) fn new(repo: &'a C, config: &'a Config, region: &'a str, e: &'a RefChanged) -> Self {
        Self {
            repo,
            config,
            region,
            reference: &e.reference,
            before: e.change.before().cloned(),
            by_base: BTreeMap::new(),
        }
    }

    /// The base a consumer that last judged `last` diffs `head` against, and why: `last`
    /// itself; with none, the event's old commit; else, or when the repository no longer
    /// has them, the ref's birth base. The diff is made (and cached) here.
    pub(super) async fn base(
        &mut self,
        last: Option<&CommitId>,
        head: &CommitId,
    ) -> Result<(Option<CommitId>, BaseWhy), JudgeError> {
        let tries = match last {
            Some(last) => Some((last.clone(), BaseWhy::Checkpoint)),
            None => self.before.clone().map(|b| (b, BaseWhy::EventBefore)),
        };
        if let Some((commit, why)) = tries {
            let base = Some(commit.clone());
            let commit = &commit;
            match self.judged(&base, head).await {
                Ok(_) => return Ok((base, why)),
                Err(JudgeError::Changes(ChangeError::UnknownRevision { spec, .. })) => {
                    tracing::warn!(%commit, spec, "the base commit is gone: judging from the ref's birth base");
                }
                Err(other) => return Err(other),
            }
        }
        let (base, why) =
            base::birth_base(self.repo, self.reference, head, &self.config.base_branch).await?;
        self.judged(&base, head).await?;
        Ok((base, why))
    }

    /// The diff from `base` to `head` and the rules' decisions on it.
    pub(super) async fn judged(
        &mut self,
        base: &Option<CommitId>,
        after: &CommitId,
    ) -> Result<&Judged, JudgeError> {
        let key = (base.clone(), after.clone());
        if !self.by_base.contains_key(&key) {
            let changes = self.repo.changes(base.as_ref(), after).await?;
            let decisions = decide(self.config, self.region, self.reference, &changes)
                .map_err(|u| JudgeError::Config(u.to_string()))?;
            let judged = Judged {
                changed: changes.len(),
                decisions,
            };
            self.by_base.insert(key.clone(), judged);
        }
        Ok(&self.by_base[&key])
    }
}

#[cfg(test)]
pub(crate) mod tests;
