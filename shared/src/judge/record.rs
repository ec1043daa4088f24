//! The one structured record every judge invocation logs and returns: what it was asked,
//! each diff it made, and what came of each consumer.

use serde::Serialize;

use super::base::BaseWhy;
use crate::event::RefChanged;
use crate::plan::{Reason, SyncDecision};
use crate::ports::RunKind;
use crate::refs::CommitId;

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
    /// The ref's head when it was judged (read from the repository for a branch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub head: Option<CommitId>,
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
    /// A scheduled sweep's records of the branches that needed a decision.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub swept: Vec<DecisionRecord>,
}

impl DecisionRecord {
    pub(super) fn new(function: &'static str) -> Self {
        Self {
            function,
            ..Self::default()
        }
    }

    pub(super) fn ignore(mut self, why: impl Into<String>) -> Self {
        self.ignored = Some(why.into());
        self
    }

    pub(super) fn for_event(function: &'static str, e: &RefChanged) -> Self {
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

pub(super) fn cut<T>(mut items: Vec<T>) -> (Vec<T>, usize) {
    let total = items.len();
    items.truncate(RECORD_MATCHES);
    (items, total)
}

/// One target's decision and what came of it.
#[derive(Debug, Clone, Serialize)]
pub struct TargetRecord {
    pub target: String,
    pub kind: RunKind,
    pub name: String,
    pub start: bool,
    pub reason: Reason,
    /// The first [`RECORD_MATCHES`] matches.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<crate::rules::Match>,
    /// How many matches there were in all.
    pub matches_total: usize,
    /// What happened.
    pub result: TargetResult,
    /// The commit started, or found started by an earlier invocation: the ref's head.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<CommitId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

pub(super) fn note_diff(
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

/// What came of one target on one invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetResult {
    /// Started at the ref's head.
    Started,
    /// An earlier invocation started it and could not record it; the run was found and
    /// recorded now, not started again.
    AlreadyStarted,
    /// Another invocation holds the (target, ref) lease: the event is retried.
    InProgress,
    /// The start failed (see `error`).
    Failed,
    /// The target has already judged the ref's head.
    AlreadyHandled,
    /// Judged: nothing it selects changed.
    NotStarted,
    /// The ref no longer exists: nothing to start.
    RefGone,
}
