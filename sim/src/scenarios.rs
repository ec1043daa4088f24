//! Which scenario of issue 11 (item 1) a violation looks like, from its facts and the
//! run's history. A heuristic, to find and sort seeds; the trace is the proof.
//!
//! 1. two invocations at once: a commit started or saved after a descendant of it was,
//!    or once a descendant was the head already;
//! 2. a late event from an abandoned line: a commit started or saved after a newer head
//!    that does not descend from it, or once such a head was the head already;
//! 3. a rewind: a missed head on a ref that moved back to an ancestor since the commit
//!    last started became its head;
//! 4. a force-push back: since then, the ref moved back to a commit that was its head
//!    before (not to an ancestor: that is 3);
//! 5. a lost event, then a rebase: a missed head on a rebased branch with a lost event
//!    (one never delivered, or whose every attempt failed). 5b: a lost event, then any
//!    push, judged from its own old commit (a force-push, or the first push judged on a new
//!    branch);
//! 6. a tag on a deployed commit: a missed tag whose commit the target started for
//!    another ref. 6b: the same for a branch (say `main` fast-forwarded to a commit a
//!    feature branch or a tag deployed): the same cause, claims per commit, not per ref;
//! 7. a record that failed after a start: two runs in a row at one commit, the first
//!    one's invocation failing after it started it;
//! 8. a new branch whose base moved: a missed head on a branch whose creation a judge
//!    diffed from a merge base with `main` other than the one when it was made;
//! 9. the mirror: (a) a branch deleted at the source kept at the standby, (b) a ref made on
//!    the standby moved or deleted.
//!
//! R. (not in the list, but in its guarantee 2) a branch deleted and made again
//! elsewhere, judged against its new base instead of what was last deployed for it.
//!
//! A missed head that follows a violation of the order on the same ref is put with that
//! violation: the stale start or save is the cause.

use tozai::refs::RefName;

use crate::check::{Facts, Violation};
use crate::model::{C, Side, Writer};
use crate::trace::{Action, Consumer};
use crate::world::{Function, World};

/// A scenario: its number and a few words.
pub type Scenario = (&'static str, &'static str);

/// The scenario `v` looks like, if any (`all`: every violation of the run).
pub fn classify(w: &World, v: &Violation, all: &[Violation]) -> Option<Scenario> {
    match &v.facts {
        Facts::Back { older, newer, .. } => Some(back(w, *older, *newer)),
        Facts::Stale { commit, head, .. } => Some(match head {
            Some(head) => back(w, *commit, *head),
            // The branch was deleted when the invocation began.
            None => ("2", "a late event from an abandoned line"),
        }),
        Facts::Missed {
            target,
            side,
            reference,
            head,
            ..
        } => {
            let consumer = Consumer::Target(target.clone());
            earlier(w, all, &consumer, *side, reference).or_else(|| {
                let acted: Vec<(u64, C)> = w
                    .runs
                    .iter()
                    .filter(|r| &r.target == target && r.side == *side && &r.reference == reference)
                    .map(|r| (r.seq, r.commit))
                    .collect();
                missed(w, Some(target), &acted, *side, reference, *head)
            })
        }
        Facts::SyncMissed { reference } => {
            earlier(w, all, &Consumer::Sync, Side::Primary, reference).or_else(|| {
                // What the sync "acted on": the commits it asked the mirror for.
                let acted = crate::check::sync_requests(w, reference);
                let head = w.primary.head(reference)?;
                missed(w, None, &acted, Side::Primary, reference, head)
            })
        }
        Facts::Twice { runs: (first, _) } => {
            // The invocation that made the first run failed after it started it.
            let started = w.trace.iter().find_map(|e| match e.action {
                Action::Started {
                    invocation,
                    run,
                    real: true,
                } if run == *first => Some((e.seq, invocation)),
                _ => None,
            });
            let failed = started.is_some_and(|(at, by)| {
                w.trace.iter().any(|e| {
                    e.seq > at
                        && matches!(e.action, Action::Fault { invocation, .. } if invocation == by)
                })
            });
            failed.then_some(("7", "a record that failed after a start"))
        }
        Facts::MirrorKept => Some(("9a", "the mirror kept a branch deleted at the source")),
        Facts::MirrorTookStandbys => Some(("9b", "the mirror took a ref made on the standby")),
        _ => None,
    }
}

/// True when a judge diffed the branch's creation from a merge base with `main` other than
/// the one it had when the branch was made (`main` moved before the event was judged).
fn base_moved(w: &World, pipeline: bool, side: Side, reference: &RefName) -> bool {
    let repo = w.repo(side);
    let Some(made) = repo.creation(reference).filter(|u| u.by != Writer::Seed) else {
        return false;
    };
    let main = RefName::Branch("main".to_owned());
    let then = repo
        .head_at(&main, made.seq)
        .zip(made.new)
        .and_then(|(m, b)| w.graph.merge_base(m, b));
    let function = if pipeline {
        Function::PipelineJudge(side)
    } else {
        Function::SyncJudge
    };
    // The invocations that judged the creation, and the merge bases they diffed from.
    let judged: Vec<u64> = w
        .trace
        .iter()
        .filter_map(|e| match e.action {
            Action::Invoked {
                invocation,
                function: f,
                event,
                ..
            } if f == function && event == made.event => Some(invocation),
            _ => None,
        })
        .collect();
    w.trace.iter().any(|e| {
        matches!(&e.action, Action::Diffed { invocation, base, why }
            if judged.contains(invocation) && why == "merge_base" && *base != then)
    })
}

fn back(w: &World, older: C, newer: C) -> Scenario {
    if w.graph.is_ancestor(older, newer) {
        ("1", "two invocations at once")
    } else {
        ("2", "a late event from an abandoned line")
    }
}

/// The scenario of an order violation (a step back, or a stale action) of the same
/// consumer on the same ref, if any.
fn earlier(
    w: &World,
    all: &[Violation],
    consumer: &Consumer,
    side: Side,
    reference: &RefName,
) -> Option<Scenario> {
    all.iter().find_map(|v| match &v.facts {
        Facts::Back {
            consumer: c,
            side: s,
            reference: r,
            older,
            newer,
            ..
        } if c == consumer && *s == side && r == reference => Some(back(w, *older, *newer)),
        Facts::Stale {
            consumer: c,
            side: s,
            reference: r,
            commit,
            head: Some(head),
        } if c == consumer && *s == side && r == reference => Some(back(w, *commit, *head)),
        _ => None,
    })
}

/// A head missed by a consumer that `acted` (started, or saved for the sync) on these
/// commits of the ref.
fn missed(
    w: &World,
    target: Option<&str>,
    acted: &[(u64, C)],
    side: Side,
    reference: &RefName,
    head: C,
) -> Option<Scenario> {
    let repo = w.repo(side);
    let history: Vec<_> = repo.history(reference).collect();
    let last = acted.iter().max_by_key(|(seq, _)| *seq).copied();
    // Where the ref moved since the commit last acted on became its head.
    let epoch = last
        .and_then(|(seq, c)| repo.epoch(reference, c, seq))
        .map(|i| repo.log[i].seq);
    let moved: Vec<_> = history
        .iter()
        .filter(|u| epoch.is_none_or(|e| u.seq > e))
        .collect();
    let rewound = moved.iter().any(
        |u| matches!((u.old, u.new), (Some(o), Some(n)) if o != n && w.graph.is_ancestor(n, o)),
    );
    // ... or back to a commit that was its head before then.
    let back_to_earlier = moved.iter().any(|u| {
        u.new.is_some_and(|n| {
            Some(n) != last.map(|l| l.1)
                && history
                    .iter()
                    .any(|p| p.new == Some(n) && p.seq < u.seq && epoch.is_none_or(|e| p.seq <= e))
        })
    });
    // The last action came after the head was pushed, on another commit: a stale one.
    let head_since = history
        .iter()
        .rev()
        .find(|u| u.new == Some(head))
        .map(|u| u.seq);
    if let (Some((at, c)), Some(pushed)) = (last, head_since)
        && at > pushed
        && c != head
    {
        return Some(back(w, c, head));
    }
    let elsewhere = |c: C| {
        target.is_some_and(|t| {
            w.runs
                .iter()
                .any(|r| r.target == t && r.commit == c && &r.reference != reference)
        })
    };
    if reference.is_tag() {
        return elsewhere(head).then_some(("6", "a tag on a deployed commit"));
    }
    if rewound {
        return Some(("3", "a rewind"));
    }
    if back_to_earlier {
        return Some(("4", "a force-push back"));
    }
    if base_moved(w, target.is_some(), side, reference) {
        return Some(("8", "a new branch whose base moved"));
    }
    let judge = match target {
        Some(_) => Function::PipelineJudge(side),
        None => Function::SyncJudge,
    };
    // An event of the ref this judge never handled: lost, or failed every attempt.
    let lost = history.iter().any(|u| {
        u.event != usize::MAX && u.new.is_some() && !w.handled.contains(&(u.event, judge))
    });
    if lost && history.iter().any(|u| u.kind == "rebase") {
        return Some(("5", "a lost event, then a rebase"));
    }
    if lost {
        return Some((
            "5b",
            "a lost event, then a push judged from its own old commit",
        ));
    }
    if moved.iter().any(|u| u.new.is_some_and(elsewhere)) {
        return Some(("6b", "a branch reaching a commit deployed for another ref"));
    }
    if history.iter().any(|u| u.new.is_none()) {
        return Some(("R", "a branch deleted and made again elsewhere"));
    }
    None
}
