//! Mirroring: what to do with each branch and tag so the standby matches the source,
//! without ever silently rewinding it, and without touching what the mirror did not make.
//!
//! [`plan_refs`] is pure. It compares the source's refs with the standby's and decides,
//! ref by ref:
//!
//! | source | standby | decision |
//! |---|---|---|
//! | X | (none) | create X |
//! | X | X | unchanged |
//! | X (branch) | an ancestor of X | update (fast-forward) |
//! | X (branch) | not an ancestor of X | **diverged**: left alone, reported (`force`: overwritten) |
//! | X (tag) | Y | **diverged**: tags do not move (`force`: overwritten) |
//! | (none) | what the mirror last pushed there | delete: deleted at the source |
//! | (none) | anything else: made or moved on the standby | **diverged**: left alone (`force`: deleted) |
//! | (none) | the standby's default branch | kept: CodeCommit refuses to delete it |
//!
//! **The mirror owns only what it made.** What it may have left on each standby ref is
//! recorded (a [`PushLedger`](crate::ports::PushLedger)) and given to the plan as
//! [`MirrorOptions::owned`]: the value it last pushed there, and while a push is in flight
//! also the owned value that push replaces. The record is written before the push
//! ([`intent`]) and settled after it ([`settled`]), so a record lost after a push never
//! loses the mirror a ref it made. A ref is deleted only while the standby still holds
//! exactly one of those values, whether or not the source's history (the mirror's cache)
//! has the commit: a branch made on the standby at a mirrored commit is not the mirror's,
//! and a branch the mirror pushed is deleted with the source's even when the cache never
//! fetched its tip.
//! A fast-forward needs no record: it loses nothing, and the standby's value must be in
//! the source's history, so a commit made on the standby never is. Nothing moves a ref
//! backwards or sideways without `force`.
//!
//! A diverged ref carries its [`Cause`]: which side moved, whenever that can be known
//! ([`divergence`](crate::divergence)).
//!
//! Only `refs/heads/*` and `refs/tags/*` are considered, and of those only the ones the
//! [`RefSelection`] selects; refs outside the selection are never touched. The backups a
//! `--force` leaves (branches under [`BACKUP_PREFIX`](crate::refs::BACKUP_PREFIX)) are never
//! planned, whatever the selection and even with `force`: never created, moved or deleted. Each update
//! carries the standby value it was planned against, so a ref that moves between reading
//! and pushing is refused rather than clobbered.
//!
//! ```
//! use std::collections::BTreeMap;
//! use tozai::divergence::Cause;
//! use tozai::mirror::{plan_refs, History, RefAction, RefSelection, MirrorOptions};
//! use tozai::refs::{CommitId, RefName};
//!
//! struct Linear; // a history where "1" < "2" < "3"
//! impl History for Linear {
//!     fn is_ancestor(&self, a: &CommitId, d: &CommitId) -> bool { a.as_str() <= d.as_str() }
//! }
//! let id = |c: char| c.to_string().repeat(40).parse::<CommitId>().unwrap();
//! let (main, old, hotfix) = (
//!     RefName::branch("main").unwrap(),
//!     RefName::branch("old").unwrap(),
//!     RefName::branch("hotfix").unwrap(),
//! );
//! let source = BTreeMap::from([(main.clone(), id('3'))]);
//! let standby = BTreeMap::from([
//!     (main.clone(), id('1')),
//!     (old.clone(), id('2')),    // the mirror pushed it; deleted at the source since
//!     (hotfix.clone(), id('2')), // made on the standby
//! ]);
//! let options = MirrorOptions {
//!     owned: BTreeMap::from([(main.clone(), vec![id('1')]), (old.clone(), vec![id('2')])]),
//!     ..MirrorOptions::default()
//! };
//! let steps = plan_refs(&source, &standby, &RefSelection::all(), &Linear, &options);
//! let actions: Vec<_> = steps.into_iter().map(|s| (s.reference, s.action)).collect();
//! assert_eq!(actions, [
//!     (hotfix, RefAction::Diverged { source: None, standby: id('2'), cause: Cause::MadeOnStandby }),
//!     (main, RefAction::Update { old: id('1'), new: id('3'), forced: false }),
//!     (old, RefAction::Delete { old: id('2'), forced: false }),
//! ]);
//! ```

use std::cell::OnceCell;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Serialize;

use crate::divergence::{self, Cause, LeftRight};
use crate::refs::{CommitId, RefName};
use crate::rules::NameFilter;

/// The refs of one repository: name to object id (a commit, or an annotated tag object).
pub type RefMap = BTreeMap<RefName, CommitId>;

/// What the mirror's ledger records for standby refs: the values the mirror may have left
/// on each, which it owns. Normally one, what it last pushed there; two while a push is in
/// flight, the owned value the push replaces and the new one. A ref with no record is
/// absent.
pub type OwnedRefs = BTreeMap<RefName, Vec<CommitId>>;

/// One ref's new record in the mirror's ledger: the values it owns there (empty: the
/// record is forgotten).
pub type Record = (RefName, Vec<CommitId>);

/// What the planner needs to know about the source's history (the mirror's cache).
pub trait History {
    /// True when `ancestor` is `descendant` or one of its ancestors (false when either is
    /// unknown).
    fn is_ancestor(&self, ancestor: &CommitId, descendant: &CommitId) -> bool;

    /// The commit `id` names (an annotated tag peeled); `None` when it is unknown.
    fn commit_of(&self, id: &CommitId) -> Option<CommitId> {
        Some(id.clone())
    }

    /// True when `commit` is one of `tips` or an ancestor of one.
    fn reachable_from_any(&self, commit: &CommitId, tips: &[CommitId]) -> bool {
        tips.iter().any(|t| self.is_ancestor(commit, t))
    }

    /// True when the object `id` came from the source once, though no source ref may reach
    /// it now (the mirror's cache held it before anything was fetched from the standby).
    fn fetched_from_source(&self, id: &CommitId) -> bool {
        let _ = id;
        false
    }
}

/// Which refs a mirror touches.
#[derive(Debug, Clone, Default)]
pub struct RefSelection {
    /// Branch short names; `None` selects every branch.
    pub branches: Option<NameFilter>,
    /// Tag short names; `None` selects every tag.
    pub tags: Option<NameFilter>,
}

impl RefSelection {
    /// Every branch and every tag.
    pub fn all() -> Self {
        Self::default()
    }

    /// Exactly one branch or tag (its name taken literally, not as a glob).
    pub fn exactly(reference: &RefName) -> Self {
        Self::exactly_these([reference])
    }

    /// Exactly these branches and tags (their names taken literally, not as globs); none
    /// selects nothing.
    pub fn exactly_these<'a>(refs: impl IntoIterator<Item = &'a RefName>) -> Self {
        let (mut branches, mut tags) = (Vec::new(), Vec::new());
        for r in refs {
            let names = if r.is_tag() { &mut tags } else { &mut branches };
            names.push(globset::escape(r.short()));
        }
        let filter = |names: &[String]| {
            NameFilter::new("ref", names).expect("escaped names are valid globs")
        };
        Self {
            branches: Some(filter(&branches)),
            tags: Some(filter(&tags)),
        }
    }

    pub fn selects(&self, r: &RefName) -> bool {
        let filter = match r {
            RefName::Branch(_) => &self.branches,
            RefName::Tag(_) => &self.tags,
        };
        filter
            .as_ref()
            .is_none_or(|f| f.first_match(r.short()).is_some())
    }
}

/// Options that change what the planner may do.
#[derive(Debug, Clone, Default)]
pub struct MirrorOptions {
    /// Overwrite diverged refs (and delete refs the mirror did not push).
    pub force: bool,
    /// The standby's default branch, which is never deleted.
    pub standby_default: Option<RefName>,
    /// What the mirror may have left on the standby's refs (its [`PushLedger`] records), for
    /// the standby refs that matter: a ref is deleted only while the standby still holds
    /// one of these values.
    ///
    /// [`PushLedger`]: crate::ports::PushLedger
    pub owned: OwnedRefs,
}

/// What to do with one ref.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum RefAction {
    Create {
        new: CommitId,
    },
    Update {
        old: CommitId,
        new: CommitId,
        forced: bool,
    },
    Delete {
        old: CommitId,
        forced: bool,
    },
    Unchanged {
        at: CommitId,
    },
    /// Left alone: the standby has something the source does not lead to, or a ref the
    /// source deleted that the mirror did not push (made or moved on the standby).
    Diverged {
        source: Option<CommitId>,
        standby: CommitId,
        /// Which side moved.
        cause: Cause,
    },
    /// Left alone: the standby's default branch cannot be deleted.
    Kept {
        standby: CommitId,
    },
}

impl RefAction {
    /// True when the action pushes something.
    pub fn pushes(&self) -> bool {
        matches!(
            self,
            Self::Create { .. } | Self::Update { .. } | Self::Delete { .. }
        )
    }

    /// The standby value this action was planned against (`None`: the ref must not exist).
    pub fn expected_old(&self) -> Option<&CommitId> {
        match self {
            Self::Create { .. } => None,
            Self::Update { old, .. } | Self::Delete { old, .. } => Some(old),
            Self::Unchanged { at } => Some(at),
            Self::Diverged { standby, .. } | Self::Kept { standby } => Some(standby),
        }
    }
}

/// One ref and what to do with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RefStep {
    #[serde(rename = "ref")]
    pub reference: RefName,
    #[serde(flatten)]
    pub action: RefAction,
}

/// Plans every selected ref, in name order; never a backup branch.
pub fn plan_refs(
    source: &RefMap,
    standby: &RefMap,
    selection: &RefSelection,
    history: &impl History,
    options: &MirrorOptions,
) -> Vec<RefStep> {
    let names: BTreeSet<&RefName> = source.keys().chain(standby.keys()).collect();
    let tips = SourceTips {
        source,
        peeled: OnceCell::new(),
    };
    names
        .into_iter()
        .filter(|r| selection.selects(r) && !r.is_backup())
        .map(|r| {
            let action = decide_ref(r, source.get(r), standby.get(r), history, options, &tips);
            RefStep {
                reference: r.clone(),
                action,
            }
        })
        .collect()
}

/// The commits of the source's refs, peeled once, when a diverged ref needs them.
struct SourceTips<'a> {
    source: &'a RefMap,
    peeled: OnceCell<Vec<CommitId>>,
}

impl SourceTips<'_> {
    fn get(&self, history: &impl History) -> &[CommitId] {
        self.peeled.get_or_init(|| {
            let mut tips: Vec<CommitId> = (self.source.values())
                .filter_map(|v| history.commit_of(v))
                .collect();
            tips.sort();
            tips.dedup();
            tips
        })
    }
}

/// A diverged ref, with which side moved.
fn diverged(
    r: &RefName,
    source: Option<&CommitId>,
    standby: &CommitId,
    history: &impl History,
    options: &MirrorOptions,
    tips: &SourceTips<'_>,
) -> RefAction {
    let d = divergence::Diverged {
        reference: r,
        source,
        standby,
        owned: options.owned.get(r).map_or(&[], Vec::as_slice),
    };
    RefAction::Diverged {
        source: source.cloned(),
        standby: standby.clone(),
        cause: divergence::cause(&d, history, tips.get(history)),
    }
}

fn decide_ref(
    r: &RefName,
    source: Option<&CommitId>,
    standby: Option<&CommitId>,
    history: &impl History,
    options: &MirrorOptions,
    tips: &SourceTips<'_>,
) -> RefAction {
    match (source, standby) {
        (Some(s), None) => RefAction::Create { new: s.clone() },
        (Some(s), Some(t)) if s == t => RefAction::Unchanged { at: t.clone() },
        (Some(s), Some(t)) => {
            let fast_forward = !r.is_tag() && history.is_ancestor(t, s);
            if fast_forward || options.force {
                RefAction::Update {
                    old: t.clone(),
                    new: s.clone(),
                    forced: !fast_forward,
                }
            } else {
                diverged(r, Some(s), t, history, options, tips)
            }
        }
        (None, Some(t)) => {
            let owned = owns(&options.owned, r, t);
            if options.standby_default.as_ref() == Some(r) {
                RefAction::Kept { standby: t.clone() }
            } else if owned || options.force {
                RefAction::Delete {
                    old: t.clone(),
                    forced: !owned,
                }
            } else {
                diverged(r, None, t, history, options, tips)
            }
        }
        (None, None) => unreachable!("names come from the two maps"),
    }
}

/// True when the mirror owns `value` on the standby's `r`: it is one of the recorded values.
fn owns(owned: &OwnedRefs, r: &RefName, value: &CommitId) -> bool {
    owned.get(r).is_some_and(|values| values.contains(value))
}

/// What the ledger must record before `steps` are pushed, so that losing the record written
/// after the push never loses the mirror a ref it made: a created ref owns its new value; an
/// updated ref its new value, and its old one too when the mirror owns it (the push may not
/// land, and the standby then still holds it). Deletions need nothing first (the record
/// already owns the value deleted), nor does a ref already recorded so. `owned` is what the
/// plan read.
pub fn intent(steps: &[RefStep], owned: &OwnedRefs) -> Vec<Record> {
    steps
        .iter()
        .filter_map(|s| {
            let values = match &s.action {
                RefAction::Create { new } => vec![new.clone()],
                RefAction::Update { old, new, .. } if owns(owned, &s.reference, old) => {
                    vec![old.clone(), new.clone()]
                }
                RefAction::Update { new, .. } => vec![new.clone()],
                _ => return None,
            };
            (owned.get(&s.reference) != Some(&values)).then(|| (s.reference.clone(), values))
        })
        .collect()
}

/// What the ledger must record once the push is over, given its results and what the
/// ledger holds (the plan's records with the [`intent`] applied): a created or updated ref
/// owns its new value only; a deleted ref's record is forgotten; an unchanged ref (equal to
/// the source's, so the mirror's) owns its value, which adopts a ref pushed before the
/// ledger existed or whose record was lost. Only records that differ are written, but for a
/// deletion's, which is always forgotten (it may not have been read). A rejected ref keeps
/// its intent: the standby still holds its old value, owned if the mirror owned it (or the
/// push landed after all). Diverged and kept refs keep their records.
pub fn settled(results: &[RefResult], recorded: &OwnedRefs) -> Vec<Record> {
    results
        .iter()
        .filter_map(|r| {
            let values = match &r.status {
                RefStatus::Created { new } | RefStatus::Updated { new, .. } => vec![new.clone()],
                RefStatus::Unchanged { at } => vec![at.clone()],
                RefStatus::Deleted { .. } => return Some((r.reference.clone(), Vec::new())),
                _ => return None,
            };
            (recorded.get(&r.reference) != Some(&values)).then(|| (r.reference.clone(), values))
        })
        .collect()
}

/// What happened to one ref.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum RefStatus {
    Created {
        new: CommitId,
    },
    Updated {
        old: CommitId,
        new: CommitId,
        forced: bool,
    },
    Deleted {
        old: CommitId,
    },
    Unchanged {
        at: CommitId,
    },
    Diverged {
        source: Option<CommitId>,
        standby: CommitId,
        /// Which side moved.
        cause: Cause,
    },
    Kept {
        standby: CommitId,
        reason: String,
    },
    Rejected {
        reason: String,
    },
}

impl RefStatus {
    /// The status an action has once the server accepted it (or when nothing was pushed).
    pub fn from_action(action: &RefAction) -> Self {
        match action.clone() {
            RefAction::Create { new } => Self::Created { new },
            RefAction::Update { old, new, forced } => Self::Updated { old, new, forced },
            RefAction::Delete { old, .. } => Self::Deleted { old },
            RefAction::Unchanged { at } => Self::Unchanged { at },
            RefAction::Diverged {
                source,
                standby,
                cause,
            } => Self::Diverged {
                source,
                standby,
                cause,
            },
            RefAction::Kept { standby } => Self::Kept {
                standby,
                reason: "the standby's default branch is never deleted".into(),
            },
        }
    }

    /// Diverged or rejected: the standby is not in step for this ref.
    pub fn is_problem(&self) -> bool {
        matches!(self, Self::Diverged { .. } | Self::Rejected { .. })
    }

    /// Created, updated or deleted: the run changed the standby's ref.
    pub fn is_change(&self) -> bool {
        matches!(
            self,
            Self::Created { .. } | Self::Updated { .. } | Self::Deleted { .. }
        )
    }

    /// The status's name, as serialized.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Created { .. } => "created",
            Self::Updated { .. } => "updated",
            Self::Deleted { .. } => "deleted",
            Self::Unchanged { .. } => "unchanged",
            Self::Diverged { .. } => "diverged",
            Self::Kept { .. } => "kept",
            Self::Rejected { .. } => "rejected",
        }
    }
}

/// One ref's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RefResult {
    #[serde(rename = "ref")]
    pub reference: RefName,
    #[serde(flatten)]
    pub status: RefStatus,
    /// For a diverged ref, and one `--force` overwrote or deleted (or refused to, its
    /// backup refused): both sides' commits. `standby_only` is what a `--force` discards.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log: Option<LeftRight>,
    /// The backup branch a `--force` pushed (a dry run: would push) before it overwrote
    /// or deleted this ref, at the standby's old commit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup: Option<RefName>,
}

impl RefResult {
    /// A result with no log and no backup.
    pub fn new(reference: RefName, status: RefStatus) -> Self {
        Self {
            reference,
            status,
            log: None,
            backup: None,
        }
    }
}

/// The result of one mirror run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MirrorOutcome {
    pub source: String,
    pub target: String,
    pub dry_run: bool,
    pub refs: Vec<RefResult>,
    pub objects_sent: u64,
    pub bytes_sent: u64,
    #[serde(serialize_with = "millis")]
    pub elapsed: Duration,
    /// The backups `--force` has left on the standby (branches under
    /// [`BACKUP_PREFIX`](crate::refs::BACKUP_PREFIX)), whatever the selection.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub backups: Vec<Backup>,
}

/// A standby branch under [`BACKUP_PREFIX`](crate::refs::BACKUP_PREFIX): what a `--force`
/// overwrote or deleted, kept recoverable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Backup {
    #[serde(rename = "ref")]
    pub reference: RefName,
    pub commit: CommitId,
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

impl MirrorOutcome {
    /// True when every selected ref is in step (nothing diverged or rejected).
    pub fn in_sync(&self) -> bool {
        !self.refs.iter().any(|r| r.status.is_problem())
    }

    /// How many refs have each status, for a one-line summary.
    pub fn counts(&self) -> BTreeMap<&'static str, usize> {
        let mut out = BTreeMap::new();
        for r in &self.refs {
            *out.entry(r.status.label()).or_default() += 1;
        }
        out
    }

    /// The run in a bounded size, for events and logs (see [`MirrorSummary`]).
    pub fn summary(&self) -> MirrorSummary {
        let mut notable: Vec<&RefResult> = self
            .refs
            .iter()
            .filter(|r| r.status.is_problem() || r.status.is_change())
            .collect();
        // Failures first (a stable sort keeps name order within each group).
        notable.sort_by_key(|r| !r.status.is_problem());
        let mut refs = Vec::new();
        let mut bytes = 0;
        for r in &notable {
            if refs.len() == SUMMARY_REFS {
                break;
            }
            // The commits are left out: a diverged ref is listed with its cause.
            let r = RefResult {
                reference: r.reference.clone(),
                status: match &r.status {
                    RefStatus::Rejected { reason } => RefStatus::Rejected {
                        reason: crate::text::cut(reason, SUMMARY_REASON_BYTES),
                    },
                    other => other.clone(),
                },
                log: None,
                backup: r.backup.clone(),
            };
            let size = serde_json::to_string(&r).map_or(usize::MAX, |j| j.len() + 1);
            if bytes + size <= SUMMARY_REF_BYTES {
                bytes += size;
                refs.push(r);
            }
        }
        MirrorSummary {
            counts: self.counts(),
            refs_total: self.refs.len(),
            refs_not_listed: notable.len() - refs.len(),
            refs,
            objects_sent: self.objects_sent,
            bytes_sent: self.bytes_sent,
            elapsed_ms: self.elapsed.as_millis() as u64,
        }
    }
}

/// How many refs a [`MirrorSummary`] lists at most.
pub const SUMMARY_REFS: usize = 100;
/// How many bytes (as JSON) the refs a [`MirrorSummary`] lists take at most: with the other
/// fields, an event stays far under EventBridge's and SNS's 256 KB.
pub const SUMMARY_REF_BYTES: usize = 64 * 1024;
/// A rejection's reason is cut (with `…`) at this many bytes in a summary.
const SUMMARY_REASON_BYTES: usize = 1000;

/// A mirror run in a bounded size whatever the number of refs, as `Sync Completed`,
/// `Sync Failed` and the mirror's decision record carry it: how many refs had each status,
/// and the refs that changed or failed (diverged and rejected first, then created, updated
/// and deleted, each in name order), at most [`SUMMARY_REFS`] of them in at most
/// [`SUMMARY_REF_BYTES`]. Unchanged and kept refs are only counted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MirrorSummary {
    /// How many refs had each status (every ref counts).
    pub counts: BTreeMap<&'static str, usize>,
    /// How many refs the run considered.
    pub refs_total: usize,
    /// The refs that changed or failed, as far as they fit.
    pub refs: Vec<RefResult>,
    /// How many refs changed or failed but are not listed.
    pub refs_not_listed: usize,
    pub objects_sent: u64,
    pub bytes_sent: u64,
    pub elapsed_ms: u64,
}

#[cfg(test)]
mod tests {
    #[test]
    fn exactly_takes_the_name_literally() {
        // Glob syntax git allows in names: braces, commas, `!`.
        for name in ["main", "feature/{a,b}", "fix!now", "release/1.0"] {
            let b = RefName::branch(name).unwrap();
            let only = RefSelection::exactly(&b);
            assert!(only.selects(&b), "{name}");
            assert!(!only.selects(&RefName::tag(name).unwrap()), "{name}");
            for other in ["feature/a", "feature/b", "mainline", "fix!nowx"] {
                let other = RefName::branch(other).unwrap();
                assert!(!only.selects(&other), "{name} {other:?}");
            }
        }
    }

    use super::*;

    /// A history given as (ancestor, descendant) pairs over one-letter commits, and the
    /// commits it has.
    struct Pairs(&'static [(char, char)], &'static str);
    impl History for Pairs {
        fn is_ancestor(&self, a: &CommitId, d: &CommitId) -> bool {
            let (a, d) = (first(a), first(d));
            self.1.contains(a) && self.1.contains(d) && (a == d || self.0.contains(&(a, d)))
        }
    }
    fn first(id: &CommitId) -> char {
        id.as_str().chars().next().unwrap()
    }
    fn id(c: char) -> CommitId {
        c.to_string().repeat(40).parse().unwrap()
    }
    fn map(refs: &[(&str, char)]) -> RefMap {
        refs.iter()
            .map(|(r, c)| (r.parse().unwrap(), id(*c)))
            .collect()
    }

    /// Ledger records: a ref named twice has both values, in order.
    fn owned(refs: &[(&str, char)]) -> OwnedRefs {
        let mut out = OwnedRefs::new();
        for (r, c) in refs {
            out.entry(r.parse().unwrap()).or_default().push(id(*c));
        }
        out
    }

    // a <- b <- c on main; d is a rewrite of b (force-push); e exists only on the standby
    const H: Pairs = Pairs(&[('a', 'b'), ('a', 'c'), ('b', 'c'), ('a', 'd')], "abcd");

    fn plan(
        src: &[(&str, char)],
        stb: &[(&str, char)],
        opts: MirrorOptions,
    ) -> Vec<(String, RefAction)> {
        plan_refs(&map(src), &map(stb), &RefSelection::all(), &H, &opts)
            .into_iter()
            .map(|s| (s.reference.full(), s.action))
            .collect()
    }

    // Shorthands for the expected actions.
    fn create(c: char) -> RefAction {
        RefAction::Create { new: id(c) }
    }
    fn unchanged(c: char) -> RefAction {
        RefAction::Unchanged { at: id(c) }
    }
    fn update(old: char, new: char, forced: bool) -> RefAction {
        RefAction::Update {
            old: id(old),
            new: id(new),
            forced,
        }
    }
    fn delete(old: char, forced: bool) -> RefAction {
        RefAction::Delete {
            old: id(old),
            forced,
        }
    }
    fn diverged(source: Option<char>, standby: char, cause: Cause) -> RefAction {
        RefAction::Diverged {
            source: source.map(id),
            standby: id(standby),
            cause,
        }
    }

    type Refs = Vec<(&'static str, char)>;

    /// `name` at commit `c` (a branch, or a full `refs/tags/...` name).
    fn at(name: &'static str, c: char) -> Refs {
        vec![(name, c)]
    }

    /// Each row: (what, source, standby, owned (the ledger's records), expected).
    fn check(rows: &[(&str, Refs, Refs, Refs, RefAction)], force: bool) {
        for (what, src, stb, owned_refs, want) in rows {
            let opts = MirrorOptions {
                force,
                owned: owned(owned_refs),
                ..MirrorOptions::default()
            };
            let got = plan(src, stb, opts);
            assert_eq!(got.len(), 1, "{what}");
            assert_eq!(&got[0].1, want, "{what}");
        }
    }

    #[test]
    fn decisions_table() {
        let (m, no) = (|c| at("main", c), Refs::new);
        #[rustfmt::skip]
        let rows = [
            ("create", m('c'), no(), no(), create('c')),
            ("unchanged", m('c'), m('c'), no(), unchanged('c')),
            ("fast-forward of what the mirror pushed", m('c'), m('a'), m('a'), update('a', 'c', false)),
            ("fast-forward with no record (pushed before the ledger)", m('c'), m('a'), no(), update('a', 'c', false)),
            ("fast-forward of a ref moved on the standby along the source's history", m('c'), m('b'), m('a'), update('b', 'c', false)),
            ("source rewound", m('a'), m('c'), m('c'), diverged(Some('a'), 'c', Cause::SourceRewound)),
            ("source force-pushed", m('d'), m('c'), m('c'), diverged(Some('d'), 'c', Cause::SourceForcePushed)),
            ("standby pushed to", m('c'), m('e'), m('c'), diverged(Some('c'), 'e', Cause::StandbyPushedTo)),
            ("standby pushed to, no record", m('c'), m('e'), no(), diverged(Some('c'), 'e', Cause::StandbyPushedTo)),
        ];
        check(&rows, false);
    }

    #[test]
    fn a_ref_the_source_deleted_is_deleted_only_while_the_standby_holds_what_the_mirror_pushed() {
        let (f, t, no) = (|c| at("feature", c), |c| at("refs/tags/v1", c), Refs::new);
        #[rustfmt::skip]
        let rows = [
            ("deleted at the source", no(), f('b'), f('b'), delete('b', false)),
            // 9a: a squash-merged branch whose tip a cold cache never fetched.
            ("deleted at the source, its tip not in the cache", no(), f('e'), f('e'), delete('e', false)),
            // 9b: release/osaka-fix made on the standby at a commit that was mirrored.
            ("made on the standby at a mirrored commit", no(), f('b'), no(), diverged(None, 'b', Cause::MadeOnStandby)),
            ("made on the standby", no(), f('e'), no(), diverged(None, 'e', Cause::MadeOnStandby)),
            ("moved on the standby since the mirror pushed it", no(), f('b'), f('a'), diverged(None, 'b', Cause::MovedOnStandby)),
            ("tag deleted at the source", no(), t('a'), t('a'), delete('a', false)),
            ("tag made on the standby", no(), t('a'), no(), diverged(None, 'a', Cause::MadeOnStandby)),
        ];
        check(&rows, false);
    }

    /// Sim seed 2271: the record written after a push was lost (a throttled
    /// BatchWriteItem), so the ledger still holds the intent written before it: both the
    /// value the push replaced and the one it pushed are the mirror's.
    #[test]
    fn a_ref_is_owned_at_any_of_its_recorded_values() {
        let (f, no) = (|c| at("feature", c), Refs::new);
        let both = || [f('a'), f('b')].concat();
        #[rustfmt::skip]
        let rows = [
            ("the push landed, its record lost", no(), f('b'), both(), delete('b', false)),
            ("the push never landed", no(), f('a'), both(), delete('a', false)),
            ("neither value: moved on the standby", no(), f('e'), both(), diverged(None, 'e', Cause::MovedOnStandby)),
            ("a fast-forward from either", at("feature", 'c'), f('b'), both(), update('b', 'c', false)),
        ];
        check(&rows, false);
    }

    fn step(name: &str, action: RefAction) -> RefStep {
        RefStep {
            reference: name.parse().unwrap(),
            action,
        }
    }

    fn records(rows: &[(&str, &str)]) -> Vec<Record> {
        rows.iter()
            .map(|(r, values)| (r.parse().unwrap(), values.chars().map(id).collect()))
            .collect()
    }

    #[test]
    fn the_intent_owns_both_the_old_value_it_owned_and_the_new_one() {
        // Each row: (what, the step on `main`, its records before, the intent written).
        #[rustfmt::skip]
        let rows = [
            ("create", create('c'), no_record(), Some("c")),
            ("update of an owned value", update('a', 'c', false), "a", Some("ac")),
            ("update of a value not owned (no record)", update('a', 'c', false), no_record(), Some("c")),
            ("update of a value not owned (moved on the standby)", update('b', 'c', false), "a", Some("c")),
            ("forced update of an owned value", update('a', 'd', true), "a", Some("ad")),
            ("already recorded so (a re-plan)", update('a', 'c', false), "ac", None),
            ("delete: its record already owns it", delete('b', false), "b", None),
            ("unchanged", unchanged('c'), "c", None),
            ("diverged", diverged(Some('d'), 'c', Cause::SourceForcePushed), "c", None),
        ];
        for (what, action, before, want) in rows {
            let before = records(&[("main", before)])
                .into_iter()
                .filter(|(_, v)| !v.is_empty());
            let got = intent(&[step("main", action)], &before.collect());
            let want = want.map_or_else(Vec::new, |w| records(&[("main", w)]));
            assert_eq!(got, want, "{what}");
        }
    }

    #[test]
    fn once_pushed_a_ref_owns_what_the_standby_holds() {
        let rejected = RefStatus::Rejected {
            reason: "hook declined".into(),
        };
        // Each row: (what, the result for `main`, its records with the intent, written).
        #[rustfmt::skip]
        let rows = [
            ("created: the intent is the record", RefStatus::Created { new: id('c') }, "c", None),
            ("updated from an owned value", RefStatus::Updated { old: id('a'), new: id('c'), forced: false }, "ac", Some("c")),
            ("deleted", RefStatus::Deleted { old: id('b') }, "b", Some("")),
            ("deleted, no record read", RefStatus::Deleted { old: id('b') }, no_record(), Some("")),
            ("unchanged, recorded", RefStatus::Unchanged { at: id('c') }, "c", None),
            ("unchanged, no record: adopted", RefStatus::Unchanged { at: id('c') }, no_record(), Some("c")),
            ("unchanged, a push in flight landed: adopted", RefStatus::Unchanged { at: id('c') }, "ac", Some("c")),
            ("rejected: keeps its intent", rejected, "ac", None),
            ("diverged", RefStatus::Diverged { source: None, standby: id('e'), cause: Cause::MovedOnStandby }, "a", None),
        ];
        for (what, status, before, want) in rows {
            let before = records(&[("main", before)])
                .into_iter()
                .filter(|(_, v)| !v.is_empty());
            let result = RefResult::new("main".parse().unwrap(), status);
            let got = settled(&[result], &before.collect());
            assert_eq!(
                got,
                want.map_or_else(Vec::new, |w| records(&[("main", w)])),
                "{what}"
            );
        }
    }

    /// No record: an empty list of values.
    fn no_record() -> &'static str {
        ""
    }

    #[test]
    fn tags_never_move_even_when_the_mirror_pushed_them() {
        let (t, no) = (|c| at("refs/tags/v1", c), Refs::new);
        #[rustfmt::skip]
        let rows = [
            ("tag moved", t('c'), t('a'), t('a'), diverged(Some('c'), 'a', Cause::TagMovedForward)),
            ("tag moved, no record", t('c'), t('a'), no(), diverged(Some('c'), 'a', Cause::TagMovedForward)),
        ];
        check(&rows, false);
    }

    #[test]
    fn force_overwrites_and_deletes_what_the_mirror_does_not_own() {
        let (m, h, no) = (|c| at("main", c), |c| at("hotfix", c), Refs::new);
        #[rustfmt::skip]
        let rows = [
            ("force-pushed", m('d'), m('c'), no(), update('c', 'd', true)),
            ("made on the standby", no(), h('e'), no(), delete('e', true)),
            ("deleted at the source, owned", no(), h('e'), h('e'), delete('e', false)),
            ("a fast-forward stays a fast-forward", m('c'), m('a'), no(), update('a', 'c', false)),
        ];
        check(&rows, true);
    }

    #[test]
    fn no_ledger_means_nothing_is_deleted_unless_forced() {
        let got = plan(&[], &[("feature", 'b')], MirrorOptions::default());
        assert_eq!(got[0].1, diverged(None, 'b', Cause::MadeOnStandby));
    }

    #[test]
    fn the_standby_default_branch_is_never_deleted() {
        let opts = MirrorOptions {
            force: true,
            standby_default: Some(RefName::branch("main").unwrap()),
            ..MirrorOptions::default()
        };
        assert_eq!(
            plan(&[], &[("main", 'c')], opts.clone())[0].1,
            RefAction::Kept { standby: id('c') }
        );
        let owned = MirrorOptions {
            force: false,
            owned: owned(&[("main", 'c')]),
            ..opts
        };
        assert_eq!(
            plan(&[], &[("main", 'c')], owned)[0].1,
            RefAction::Kept { standby: id('c') },
            "even when the mirror pushed it"
        );
    }

    #[test]
    fn backup_branches_are_never_planned_even_forced_or_selected() {
        let backup = "tozai-backup/20260102T030405Z/heads/main";
        let sel = selection(&["**"], &[]);
        for (selection, force) in [(RefSelection::all(), false), (sel, true)] {
            let opts = MirrorOptions {
                force,
                owned: owned(&[(backup, 'c')]),
                ..MirrorOptions::default()
            };
            // On the standby only (deleted at the source?), and on both sides, moved.
            for src in [vec![], vec![(backup, 'a')]] {
                let steps = plan_refs(&map(&src), &map(&[(backup, 'c')]), &selection, &H, &opts);
                assert_eq!(steps, [], "force {force}, source {src:?}");
            }
        }
    }

    #[test]
    fn unselected_refs_are_never_touched() {
        let sel = selection(&["main"], &["v*"]);
        let steps = plan_refs(
            &map(&[
                ("main", 'c'),
                ("feature", 'c'),
                ("refs/tags/v1", 'a'),
                ("refs/tags/x", 'a'),
            ]),
            &map(&[("old", 'b')]),
            &sel,
            &H,
            &MirrorOptions::default(),
        );
        let names: Vec<String> = steps.iter().map(|s| s.reference.full()).collect();
        assert_eq!(names, ["refs/heads/main", "refs/tags/v1"]);
    }

    #[test]
    fn exactly_these_takes_names_literally() {
        let refs: Vec<RefName> = ["refs/heads/release/{a,b}", "refs/tags/v1"]
            .iter()
            .map(|r| r.parse().unwrap())
            .collect();
        let sel = RefSelection::exactly_these(&refs);
        let selects = |r: &str| sel.selects(&r.parse().unwrap());
        assert!(selects("refs/heads/release/{a,b}"));
        assert!(
            !selects("refs/heads/release/a"),
            "a glob character is a character"
        );
        assert!(selects("refs/tags/v1"));
        assert!(
            !selects("refs/heads/v1"),
            "a tag's name does not select a branch"
        );
        assert!(!RefSelection::exactly_these([]).selects(&"refs/heads/main".parse().unwrap()));
    }

    /// The branches and tags these globs select, and nothing else.
    fn selection(branches: &[&str], tags: &[&str]) -> RefSelection {
        let filter = |globs: &[&str]| {
            let globs: Vec<String> = globs.iter().map(|g| (*g).to_owned()).collect();
            Some(NameFilter::new("test", &globs).unwrap())
        };
        RefSelection {
            branches: filter(branches),
            tags: filter(tags),
        }
    }

    fn outcome_of(refs: Vec<(String, RefStatus)>) -> MirrorOutcome {
        MirrorOutcome {
            source: "a".into(),
            target: "b".into(),
            dry_run: false,
            refs: refs
                .into_iter()
                .map(|(r, status)| RefResult::new(r.parse().unwrap(), status))
                .collect(),
            objects_sent: 1,
            bytes_sent: 2,
            elapsed: Duration::from_millis(3),
            backups: Vec::new(),
        }
    }

    #[test]
    fn a_summary_lists_failures_first_then_changes_and_only_counts_the_rest() {
        let refs = vec![
            ("a".into(), RefStatus::Unchanged { at: id('a') }),
            ("b".into(), RefStatus::Created { new: id('b') }),
            (
                "c".into(),
                RefStatus::Kept {
                    standby: id('c'),
                    reason: "default".into(),
                },
            ),
            (
                "d".into(),
                RefStatus::Rejected {
                    reason: "r".repeat(5000),
                },
            ),
            ("e".into(), RefStatus::Deleted { old: id('e') }),
            (
                "f".into(),
                RefStatus::Diverged {
                    source: None,
                    standby: id('f'),
                    cause: Cause::MadeOnStandby,
                },
            ),
        ];
        let s = outcome_of(refs).summary();
        let listed: Vec<(String, &str)> = s
            .refs
            .iter()
            .map(|r| (r.reference.short().to_owned(), r.status.label()))
            .collect();
        assert_eq!(
            listed,
            [
                ("d".into(), "rejected"),
                ("f".into(), "diverged"),
                ("b".into(), "created"),
                ("e".into(), "deleted")
            ]
        );
        let RefStatus::Rejected { reason } = &s.refs[0].status else {
            panic!()
        };
        assert!(
            reason.len() <= 1000 && reason.ends_with('…'),
            "{}",
            reason.len()
        );
        assert_eq!((s.refs_total, s.refs_not_listed), (6, 0));
        assert_eq!(s.counts["unchanged"], 1);
        assert_eq!(s.counts["kept"], 1);
        assert_eq!(s.elapsed_ms, 3);
    }

    #[test]
    fn a_summary_keeps_a_refs_cause_and_backup_but_not_its_commits() {
        let mut o = outcome_of(vec![(
            "main".into(),
            RefStatus::Updated {
                old: id('a'),
                new: id('b'),
                forced: true,
            },
        )]);
        o.refs[0].log = Some(LeftRight::default());
        o.refs[0].backup =
            Some(RefName::branch("tozai-backup/20260102T030405Z/heads/main").unwrap());
        let s = o.summary();
        assert_eq!(s.refs[0].log, None);
        assert_eq!(s.refs[0].backup, o.refs[0].backup);
    }

    #[test]
    fn a_summary_stays_within_its_byte_budget_with_the_longest_ref_names() {
        // 100 created refs of 1,024-byte names would take about 110 KB.
        let refs = (0..100)
            .map(|i| {
                (
                    format!("{i:03}{}", "n".repeat(1021)),
                    RefStatus::Created { new: id('a') },
                )
            })
            .collect();
        let s = outcome_of(refs).summary();
        let bytes = serde_json::to_string(&s.refs).unwrap().len();
        assert!(bytes <= SUMMARY_REF_BYTES, "{bytes}");
        assert!(!s.refs.is_empty());
        assert_eq!(s.refs.len() + s.refs_not_listed, 100);
        assert_eq!(s.counts["created"], 100);
    }

    #[test]
    fn expected_old_is_what_the_plan_read() {
        assert_eq!(RefAction::Create { new: id('a') }.expected_old(), None);
        let u = RefAction::Update {
            old: id('a'),
            new: id('b'),
            forced: false,
        };
        assert_eq!(u.expected_old(), Some(&id('a')));
    }
}
