//! The level a consumer is judged on: the ref's head now, and the commit to diff it
//! against.
//!
//! A branch's head is read from the repository (`GetBranch`), never taken from the event,
//! so a late, duplicated or reordered event judges what is there now. A tag's commit comes
//! from the event (CodeCommit has no API that reads a tag; tags move only when forced).
//!
//! The base is the commit the consumer last judged on this ref, whatever its relation to
//! the head: a fast-forward, a rewind, a force-push and a rebase are all one tree diff
//! (CodeCommit's `GetDifferences` compares any two commits). A ref the consumer never
//! judged starts from the event's old commit when there is one (a consumer added to a
//! branch that already existed), else from the ref's birth base ([`birth_base`]).

use serde::Serialize;

use crate::event::RefChange;
use crate::ports::{Ancestry, ChangeError};
use crate::refs::{CommitId, RefName};

/// Why a diff base was chosen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "why")]
pub enum BaseWhy {
    /// The commit the consumer last judged on this ref.
    Checkpoint,
    /// The consumer has no checkpoint on this ref yet: the event's old commit (so a
    /// consumer new to an old branch judges what was pushed, not the whole tree).
    EventBefore,
    /// A new branch: its merge base with the base branch.
    MergeBase { branch: String },
    /// A new branch whose head is already on the base branch (the base branch moved up
    /// to it before the branch was judged): its tip commit's own changes.
    TipCommit { branch: String },
    /// No usable base: every file counts as changed.
    WholeTree { because: &'static str },
}

/// The ref's head now: a branch's from the repository, a tag's from the event. `None`:
/// the ref does not exist (deleted, or deleted since the event).
pub async fn head_of(
    repo: &impl Ancestry,
    reference: &RefName,
    change: &RefChange,
) -> Result<Option<CommitId>, ChangeError> {
    match reference {
        RefName::Branch(branch) => repo.branch_head(branch).await,
        RefName::Tag(_) => Ok(change.after().cloned()),
    }
}

/// The base of a ref its consumer never judged:
/// - a tag: nothing (its whole tree is judged);
/// - the base branch itself: nothing;
/// - another branch: its merge base with the base branch's head, or, when that is the
///   branch's own head (the base branch already contains it), its head's first parent;
/// - unrelated histories, or no base branch: nothing.
pub async fn birth_base(
    repo: &impl Ancestry,
    reference: &RefName,
    head: &CommitId,
    base_branch: &str,
) -> Result<(Option<CommitId>, BaseWhy), ChangeError> {
    let whole = |because| Ok((None, BaseWhy::WholeTree { because }));
    let branch = match reference {
        RefName::Tag(_) => return whole("a new tag is judged on its whole tree"),
        RefName::Branch(b) if b == base_branch => return whole("the base branch itself is new"),
        RefName::Branch(b) => b,
    };
    let Some(base_head) = repo.branch_head(base_branch).await? else {
        return whole("the base branch does not exist");
    };
    let named = base_branch.to_owned();
    match repo.merge_base(&base_head, head).await? {
        Some(base) if &base == head => match repo.first_parent(head).await? {
            Some(parent) => Ok((Some(parent), BaseWhy::TipCommit { branch: named })),
            None => whole("the new branch is a root commit"),
        },
        Some(base) => Ok((Some(base), BaseWhy::MergeBase { branch: named })),
        None => {
            tracing::debug!(
                branch,
                "the new branch shares no history with the base branch"
            );
            whole("the new branch shares no history with the base branch")
        }
    }
}
