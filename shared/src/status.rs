//! Is the standby current? Each mirrored branch and tag compared across the two regions:
//! in sync, behind (by how many commits), diverged, missing on the standby, or left on the
//! standby after the source deleted it. Pure: built from a dry-run mirror's outcome (which
//! compares the refs of both sides) and a commit counter over the source's history.

use serde::Serialize;

use crate::divergence::{Cause, LeftRight};
use crate::mirror::{MirrorOutcome, RefStatus};
use crate::refs::{CommitId, RefName};

/// Where one ref stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Drift {
    /// The same commit on both sides.
    InSync { at: CommitId },
    /// The standby's commit is an ancestor of the source's: a mirror will fast-forward it.
    Behind {
        standby: CommitId,
        source: CommitId,
        /// Commits the standby lacks (unknown when they could not be counted).
        commits: Option<u64>,
    },
    /// Neither contains the other (or the ref exists only on the standby and was made
    /// there): a mirror leaves it alone; `--force` overwrites.
    Diverged {
        standby: CommitId,
        source: Option<CommitId>,
        /// Which side moved.
        cause: Cause,
        /// Both sides' commits, when the standby's could be fetched.
        #[serde(skip_serializing_if = "Option::is_none")]
        log: Option<LeftRight>,
    },
    /// The source has it, the standby does not.
    Missing { source: CommitId },
    /// The source deleted it; the standby still has it (its default branch is kept).
    Stale { standby: CommitId },
    /// Could not be compared.
    Unknown { reason: String },
}

impl Drift {
    /// True for anything but in sync.
    pub fn is_drift(&self) -> bool {
        !matches!(self, Self::InSync { .. })
    }

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
}

/// One ref's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RefState {
    #[serde(rename = "ref")]
    pub reference: RefName,
    #[serde(flatten)]
    pub drift: Drift,
}

/// Both regions compared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Status {
    pub primary: String,
    pub standby: String,
    pub refs: Vec<RefState>,
    /// True when every ref is in sync.
    pub in_sync: bool,
}

/// The status from a dry-run mirror's outcome; `count(old, new)` counts the commits of
/// `new` that `old` lacks (`None` when unknown).
pub fn from_outcome(
    outcome: &MirrorOutcome,
    count: impl Fn(&CommitId, &CommitId) -> Option<u64>,
) -> Status {
    let refs: Vec<RefState> = outcome
        .refs
        .iter()
        .map(|r| {
            let drift = match &r.status {
                RefStatus::Unchanged { at } => Drift::InSync { at: at.clone() },
                RefStatus::Created { new } => Drift::Missing {
                    source: new.clone(),
                },
                RefStatus::Updated { old, new, .. } => Drift::Behind {
                    commits: count(old, new),
                    standby: old.clone(),
                    source: new.clone(),
                },
                RefStatus::Deleted { old } => Drift::Stale {
                    standby: old.clone(),
                },
                RefStatus::Kept { standby, .. } => Drift::Stale {
                    standby: standby.clone(),
                },
                RefStatus::Diverged {
                    source,
                    standby,
                    cause,
                } => Drift::Diverged {
                    standby: standby.clone(),
                    source: source.clone(),
                    cause: *cause,
                    log: r.log.clone(),
                },
                // A dry run rejects nothing; should one appear, it is not in sync.
                RefStatus::Rejected { reason } => Drift::Unknown {
                    reason: reason.clone(),
                },
            };
            RefState {
                reference: r.reference.clone(),
                drift,
            }
        })
        .collect();
    Status {
        primary: outcome.source.clone(),
        standby: outcome.target.clone(),
        in_sync: refs.iter().all(|r| !r.drift.is_drift()),
        refs,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::mirror::RefResult;

    fn c(n: u8) -> CommitId {
        format!("{n:02x}").repeat(20).parse().unwrap()
    }

    #[test]
    fn each_mirror_status_maps_to_a_drift() {
        let r = |name: &str, status| RefResult::new(name.parse().unwrap(), status);
        let outcome = MirrorOutcome {
            source: "tokyo".into(),
            target: "osaka".into(),
            dry_run: true,
            refs: vec![
                r("refs/heads/main", RefStatus::Unchanged { at: c(1) }),
                r(
                    "refs/heads/release/1",
                    RefStatus::Updated {
                        old: c(2),
                        new: c(3),
                        forced: false,
                    },
                ),
                r("refs/tags/v1", RefStatus::Created { new: c(4) }),
                r(
                    "refs/heads/hotfix",
                    RefStatus::Diverged {
                        source: Some(c(5)),
                        standby: c(6),
                        cause: Cause::StandbyPushedTo,
                    },
                ),
                r("refs/tags/old", RefStatus::Deleted { old: c(7) }),
            ],
            objects_sent: 0,
            bytes_sent: 0,
            elapsed: Duration::ZERO,
            backups: Vec::new(),
        };
        let status = from_outcome(&outcome, |old, new| {
            assert_eq!((old, new), (&c(2), &c(3)));
            Some(4)
        });
        let words: Vec<&str> = status.refs.iter().map(|r| r.drift.word()).collect();
        assert_eq!(words, ["in sync", "behind", "missing", "diverged", "stale"]);
        assert!(!status.in_sync);
        assert!(matches!(
            status.refs[1].drift,
            Drift::Behind {
                commits: Some(4),
                ..
            }
        ));
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(json["refs"][1]["state"], "behind");
        assert_eq!(json["refs"][1]["commits"], 4);
        assert_eq!(json["refs"][0]["ref"], "refs/heads/main");

        let quiet = MirrorOutcome {
            refs: vec![r("refs/heads/main", RefStatus::Unchanged { at: c(1) })],
            ..outcome
        };
        assert!(from_outcome(&quiet, |_, _| None).in_sync);
    }
}
