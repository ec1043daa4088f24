//! Can we fail over now without losing anything that matters? Each mirrored branch and tag
//! compared across the two regions, and each difference judged: drift, or a lag the
//! reconciliation will bring by design.
//!
//! Built from a dry-run mirror's outcome (which compares the refs of both sides) and
//! [`Facts`] read from the source's history. Each ref is:
//!
//! | state | meaning | drift? |
//! |---|---|---|
//! | `in_sync` | the same commit on both sides | no |
//! | `behind` | the standby lacks commits the source has (a mirror fast-forwards it) | when they **matter** |
//! | `missing` | the source has the ref, the standby does not | a tag always; a branch when its commits since its birth base matter |
//! | `diverged` | neither side contains the other (or made on the standby) | yes |
//! | `stale` | deleted at the source, still on the standby | yes |
//!
//! Missing commits **matter** when they change a path the sync rule into the standby
//! selects, or one a standby target deploys for this ref: the same decision a push makes
//! ([`crate::plan::decide`], through [`selected_by`]), not a second rule engine. Commits that
//! do not matter are mirrored only by the mirror's scheduled reconciliation (the sync rule
//! skips them on purpose): the ref is `behind` (or `missing`) **by policy**, which is not
//! drift; the standby deploys the same thing either way. `strict` counts any lag as drift.
//!
//! **Reconciliation times.** The reconciliation runs at every multiple of
//! [`Reconciliation`] (`[sync] reconcile`, default one hour) from 00:00 UTC; the mirror's
//! schedule (the stacks' `MirrorSchedule`) must agree. The lag of a ref began no earlier than
//! the committer time of the first commit the standby lacks on the source's first-parent
//! chain ([`Lag::since`]). The first reconciliation after that time may have run before the
//! commits reached the source (a commit made at 12:55 and pushed at 13:02 misses the 13:00
//! run), so the **second** one should have brought them: once it fell at or before now less
//! [`GRACE`], the reconciliation is **overdue**, drift whatever the commits change. A
//! stopped reconciliation is so caught within two intervals. This is a heuristic: a
//! committer time is a lower bound set by whoever committed, so an old branch
//! fast-forwarded onto the source just now (or a commit dated in the past) can look overdue
//! until the next reconciliation.
//!
//! ```
//! use chrono::{DateTime, Utc};
//! use tozai::status::Reconciliation;
//! let every: Reconciliation = "6h".parse().unwrap();
//! let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
//! assert_eq!(every.next_after(at("2024-04-01T13:05:00Z")), at("2024-04-01T18:00:00Z"));
//! let hourly = Reconciliation::default();
//! // Committed at 12:55, pushed at 13:02: the 13:00 run may have missed it, the 14:00 one
//! // brings it. Not overdue at 13:15.
//! assert_eq!(hourly.missed(at("2024-04-01T12:55:00Z"), at("2024-04-01T13:15:00Z")), None);
//! // A lag that began at 10:55 was due at 12:00 at the latest: overdue by 13:05.
//! assert_eq!(hourly.missed(at("2024-04-01T10:55:00Z"), at("2024-04-01T13:05:00Z")), Some(at("2024-04-01T12:00:00Z")));
//! assert!("7h".parse::<Reconciliation>().is_err()); // hours must divide 24
//! assert!("45m".parse::<Reconciliation>().is_err()); // minutes must divide 60
//! ```

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use serde::Serialize;

use crate::config::{Config, sync_rule_name};
use crate::divergence::{Cause, LeftRight, LoggedCommit};
use crate::mirror::{Backup, MirrorOutcome, RefResult, RefStatus};
use crate::plan::{Plan, decide};
use crate::refs::{CommitId, RefName};

/// How long after a scheduled reconciliation its lag is not yet counted overdue (the run
/// takes a while, and clocks differ).
pub const GRACE: TimeDelta = TimeDelta::minutes(10);

/// How many of the commits a ref lacks are listed.
pub const LISTED: usize = 5;

const DAY: u32 = 24 * 60 * 60;

/// How often the mirror's reconciliation runs, the runs falling at its multiples from
/// 00:00 UTC as a cron schedule's do: a number of minutes that divides an hour (`"15m"`,
/// `"30m"`), of hours that divides a day (`"1h"`, `"6h"`), or `"1d"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reconciliation {
    seconds: u32,
}

impl Default for Reconciliation {
    /// Hourly, as the stacks' default `MirrorSchedule` (`cron(0 * * * ? *)`).
    fn default() -> Self {
        Self { seconds: 60 * 60 }
    }
}

impl Reconciliation {
    /// The first run strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> DateTime<Utc> {
        // A day is 86,400 seconds in Unix time and the interval divides it, so its
        // multiples from the epoch are its multiples from each day's 00:00 UTC.
        let every = i64::from(self.seconds);
        let next = (t.timestamp().div_euclid(every) + 1) * every;
        DateTime::from_timestamp(next, 0).unwrap_or(t)
    }

    /// The run that should have brought a lag that began at `since`, when it fell at or
    /// before `now` less [`GRACE`]: the reconciliation is overdue. That is the second run
    /// after `since`: the first may have started before the commits were pushed.
    pub fn missed(&self, since: DateTime<Utc>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let due = self.next_after(self.next_after(since));
        (due <= now - GRACE).then_some(due)
    }
}

impl FromStr for Reconciliation {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let usage = "a number of minutes that divides 60 (\"15m\", \"30m\"), of hours that \
                     divides 24 hours (\"1h\", \"6h\", \"12h\"), or \"1d\"";
        let (unit, whole): (u32, u32) = match text.chars().last() {
            Some('m') => (60, 60),
            Some('h') => (60 * 60, 24),
            Some('d') => (DAY, 1),
            _ => return Err(format!("expected {usage}")),
        };
        let digits = &text[..text.len() - 1];
        let count: u32 = match digits.parse() {
            Ok(n) if digits.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => return Err(format!("expected {usage}")),
        };
        // A cron schedule runs at the minutes of an hour or the hours of a day: "90m" or
        // "7h" has multiples from 00:00 UTC that no schedule matches.
        if count == 0 || !whole.is_multiple_of(count) {
            return Err(format!(
                "the reconciliations run at its multiples from 00:00 UTC, as a cron schedule \
                 does, so it must be {usage}"
            ));
        }
        Ok(Self {
            seconds: count * unit,
        })
    }
}

impl fmt::Display for Reconciliation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.seconds {
            s if s.is_multiple_of(DAY) => write!(f, "{}d", s / DAY),
            s if s.is_multiple_of(3600) => write!(f, "{}h", s / 3600),
            s => write!(f, "{}m", s / 60),
        }
    }
}

/// A time in UTC: RFC 3339 in JSON, `2024-04-01 13:00 UTC` in text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct UtcTime(pub DateTime<Utc>);

impl fmt::Display for UtcTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.format("%Y-%m-%d %H:%M UTC"))
    }
}

impl Serialize for UtcTime {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.to_rfc3339_opts(SecondsFormat::Secs, true))
    }
}

/// What the source's history says of the commits a standby ref lacks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lag {
    /// How many commits it lacks.
    pub behind: u64,
    /// The first [`LISTED`] of them, newest first.
    pub commits: Vec<LoggedCommit>,
    /// What selects a path they change: the sync rule (`sync.to.STANDBY`) and the standby's
    /// targets for this ref ([`selected_by`]). Empty: they do not matter.
    pub selected_by: Vec<String>,
    /// The committer time of the first commit lacked on the source's first-parent chain: a
    /// lower bound of when the lag began.
    pub since: Option<DateTime<Utc>>,
}

/// What status reads from the source's history (the mirror's cache holds every commit a
/// standby that is behind lacks).
pub trait Facts {
    type Error;
    /// The commit `id` names (an annotated tag peeled); `id` itself when unknown.
    fn peel(&self, id: &CommitId) -> CommitId;
    /// How many commits `new` has that `old` lacks; `None` when either is unknown.
    fn count(&self, old: &CommitId, new: &CommitId) -> Option<u64>;
    /// The commits the standby's `reference` lacks: since its commit `standby`, or, for a
    /// ref missing there, since the ref's birth base.
    fn lag(
        &self,
        reference: &RefName,
        standby: Option<&CommitId>,
        source: &CommitId,
    ) -> Result<Lag, Self::Error>;
}

/// What is drift, and when.
#[derive(Debug, Clone)]
pub struct Policy {
    pub reconcile: Reconciliation,
    pub now: DateTime<Utc>,
    /// Any lag is drift, by policy too.
    pub strict: bool,
}

/// What selects the paths a plan's push changed, on the standby's side: the sync rule into
/// the standby when the plan mirrors, and the standby's targets that start for this ref
/// on these changes (what `after_mirror` holds when the plan mirrors; judged here whether
/// or not it does).
pub fn selected_by(config: &Config, plan: &Plan) -> Vec<String> {
    let standby = &config.standby().name;
    let mut out = Vec::new();
    if plan.decisions.sync.mirror {
        out.push(sync_rule_name(standby));
    }
    if let Ok(d) = decide(config, standby, &plan.push.reference, &plan.changed) {
        out.extend(
            d.pipelines
                .into_iter()
                .filter(|t| t.start)
                .map(|t| t.target),
        );
    }
    out
}

/// Where one ref stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Drift {
    /// The same commit on both sides.
    InSync { at: CommitId },
    /// The standby's commit is an ancestor of the source's: a mirror will fast-forward it.
    Behind { standby: CommitId, source: CommitId },
    /// Neither contains the other (or the ref exists only on the standby and was made
    /// there): a mirror leaves it alone; `--force` overwrites.
    Diverged {
        standby: CommitId,
        source: Option<CommitId>,
        /// Which side moved.
        cause: Cause,
    },
    /// The source has it, the standby does not.
    Missing { source: CommitId },
    /// The source deleted it; the standby still has it (its default branch is kept).
    Stale { standby: CommitId },
    /// Could not be compared.
    Unknown { reason: String },
}

impl Drift {
    /// One word for reports.
    pub fn word(&self) -> &'static str {
        match self {
            Self::InSync { .. } => "in sync",
            Self::Behind { .. } => "behind",
            Self::Diverged { .. } => "diverged",
            Self::Missing { .. } => "missing",
            Self::Stale { .. } => "stale",
            Self::Unknown { .. } => "unknown",
        }
    }

    /// The state's name in JSON.
    pub fn key(&self) -> &'static str {
        match self {
            Self::InSync { .. } => "in_sync",
            other => other.word(),
        }
    }

    /// The (source, standby) commits.
    pub fn sides(&self) -> (Option<&CommitId>, Option<&CommitId>) {
        match self {
            Self::InSync { at } => (Some(at), Some(at)),
            Self::Behind { standby, source } => (Some(source), Some(standby)),
            Self::Diverged {
                standby, source, ..
            } => (source.as_ref(), Some(standby)),
            Self::Missing { source } => (Some(source), None),
            Self::Stale { standby } => (None, Some(standby)),
            Self::Unknown { .. } => (None, None),
        }
    }

    /// Behind or missing: the standby lacks commits a mirror would bring.
    pub fn lags(&self) -> bool {
        matches!(self, Self::Behind { .. } | Self::Missing { .. })
    }
}

fn state_key<S: serde::Serializer>(d: &Drift, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(d.key())
}

/// One ref's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RefState {
    #[serde(rename = "ref")]
    pub reference: RefName,
    #[serde(serialize_with = "state_key")]
    pub state: Drift,
    /// The source's commit (an annotated tag's, peeled).
    pub source: Option<CommitId>,
    /// The standby's commit (an annotated tag's, peeled).
    pub standby: Option<CommitId>,
    /// Commits the standby has that the source lacks (`None`: unknown).
    pub ahead: Option<u64>,
    /// Commits the source has that the standby lacks (`None`: unknown).
    pub behind: Option<u64>,
    /// The first of the commits the standby lacks, newest first.
    pub commits: Vec<LoggedCommit>,
    /// The commits the standby lacks change a path the sync rule or a standby target
    /// selects (a missing tag always matters).
    pub matters: bool,
    /// What selects them: `sync.to.STANDBY`, target names.
    pub selected_by: Vec<String>,
    /// It lags, and only the reconciliation will bring what it lacks, by design.
    pub policy: bool,
    /// When the lag began at the latest (see the module doc).
    pub lag_since: Option<UtcTime>,
    /// The next reconciliation, for a ref that lags.
    pub next_reconciliation: Option<UtcTime>,
    /// The second reconciliation since the lag began fell (and [`GRACE`] passed): it is
    /// overdue.
    pub overdue: bool,
    /// The reconciliation that should have brought it.
    pub missed_reconciliation: Option<UtcTime>,
    /// This ref stops a failover (always, in strict mode, when it lags).
    pub drift: bool,
    /// A diverged ref: which side moved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause: Option<Cause>,
    /// A diverged ref: both sides' commits, when the standby's could be fetched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log: Option<LeftRight>,
}

impl RefState {
    fn new(reference: RefName, state: Drift) -> Self {
        let (source, standby) = state.sides();
        let (source, standby) = (source.cloned(), standby.cloned());
        let in_sync = matches!(state, Drift::InSync { .. });
        Self {
            reference,
            source,
            standby,
            ahead: in_sync.then_some(0),
            behind: in_sync.then_some(0),
            commits: Vec::new(),
            matters: false,
            selected_by: Vec::new(),
            policy: false,
            lag_since: None,
            next_reconciliation: None,
            overdue: false,
            missed_reconciliation: None,
            drift: !in_sync,
            cause: match &state {
                Drift::Diverged { cause, .. } => Some(*cause),
                _ => None,
            },
            log: None,
            state,
        }
    }

    /// Judges a ref that lags from what it lacks.
    fn judge_lag(&mut self, lag: Lag, policy: &Policy) {
        self.ahead = Some(0);
        self.behind = Some(lag.behind);
        self.matters = !lag.selected_by.is_empty() || self.reference.is_tag();
        self.policy = !self.matters;
        self.commits = lag.commits;
        self.selected_by = lag.selected_by;
        self.lag_since = lag.since.map(UtcTime);
        self.next_reconciliation = Some(UtcTime(policy.reconcile.next_after(policy.now)));
        let missed = lag
            .since
            .and_then(|s| policy.reconcile.missed(s, policy.now));
        self.overdue = missed.is_some();
        self.missed_reconciliation = missed.map(UtcTime);
        self.drift = self.matters || self.overdue || policy.strict;
    }
}

/// A region: its name in the config and where its repository is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Side {
    pub name: String,
    pub location: String,
}

/// Both regions compared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Status {
    pub primary: Side,
    pub standby: Side,
    /// `[sync] reconcile`.
    pub reconcile: String,
    pub next_reconciliation: UtcTime,
    pub strict: bool,
    pub refs: Vec<RefState>,
    /// True when every ref is in sync.
    pub in_sync: bool,
    /// True when any ref is drift: the standby is not ready to fail over.
    pub drift: bool,
    /// Backups `--force` left on the standby.
    pub backups: Vec<Backup>,
}

impl Status {
    /// The refs that are drift.
    pub fn drifted(&self) -> usize {
        self.refs.iter().filter(|r| r.drift).count()
    }

    /// The refs that lag by policy only (not drift).
    pub fn by_policy(&self) -> usize {
        self.refs.iter().filter(|r| r.policy && !r.drift).count()
    }
}

/// The status from a dry-run mirror's outcome; `names` are the (primary, standby) regions'
/// names.
pub fn from_outcome<F: Facts>(
    outcome: &MirrorOutcome,
    names: (&str, &str),
    facts: &F,
    policy: &Policy,
) -> Result<Status, F::Error> {
    let refs = outcome
        .refs
        .iter()
        .map(|r| judge(r, facts, policy))
        .collect::<Result<Vec<_>, _>>()?;
    let side = |name: &str, location: &str| Side {
        name: name.to_owned(),
        location: location.to_owned(),
    };
    Ok(Status {
        primary: side(names.0, &outcome.source),
        standby: side(names.1, &outcome.target),
        reconcile: policy.reconcile.to_string(),
        next_reconciliation: UtcTime(policy.reconcile.next_after(policy.now)),
        strict: policy.strict,
        in_sync: refs.iter().all(|r| matches!(r.state, Drift::InSync { .. })),
        drift: refs.iter().any(|r| r.drift),
        refs,
        backups: outcome.backups.clone(),
    })
}

/// One ref judged.
fn judge<F: Facts>(r: &RefResult, facts: &F, policy: &Policy) -> Result<RefState, F::Error> {
    let mut state = RefState::new(r.reference.clone(), drift_of(&r.status, facts));
    match &state.state {
        Drift::Behind { standby, source } => {
            let lag = facts.lag(&r.reference, Some(standby), source)?;
            state.judge_lag(lag, policy);
        }
        Drift::Missing { source } => {
            let lag = facts.lag(&r.reference, None, source)?;
            state.judge_lag(lag, policy);
        }
        Drift::Diverged {
            standby,
            source: Some(source),
            ..
        } => {
            state.ahead = facts.count(source, standby);
            state.behind = facts.count(standby, source);
            state.log = r.log.clone();
        }
        Drift::Diverged { .. } => state.log = r.log.clone(),
        _ => {}
    }
    Ok(state)
}

/// A mirror status as a drift, commits peeled.
fn drift_of(status: &RefStatus, facts: &impl Facts) -> Drift {
    let peel = |id: &CommitId| facts.peel(id);
    match status {
        RefStatus::Unchanged { at } => Drift::InSync { at: peel(at) },
        RefStatus::Created { new } => Drift::Missing { source: peel(new) },
        RefStatus::Updated { old, new, .. } => Drift::Behind {
            standby: peel(old),
            source: peel(new),
        },
        RefStatus::Deleted { old } => Drift::Stale { standby: peel(old) },
        RefStatus::Kept { standby, .. } => Drift::Stale {
            standby: peel(standby),
        },
        RefStatus::Diverged {
            source,
            standby,
            cause,
        } => Drift::Diverged {
            standby: peel(standby),
            source: source.as_ref().map(peel),
            cause: *cause,
        },
        // A dry run rejects nothing; should one appear, it is not in sync.
        RefStatus::Rejected { reason } => Drift::Unknown {
            reason: reason.clone(),
        },
    }
}

#[cfg(test)]
mod tests;
