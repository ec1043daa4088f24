//! The checker: after a run has settled, the guarantees of issue 11 as the README's "The
//! service" states them, read off the world's history (the repositories' ref logs, the
//! checkpoint saves in the trace, the runs).
//!
//! 1. **Order.** Per (consumer, ref), the commits saved as its checkpoint and the commits
//!    started, in the order they happened, never go back in *epoch*: a commit's epoch at
//!    some moment is the latest push, at or before it, that made that commit the ref's
//!    head. A real rewind is a new push, so a new epoch: deploying it is in order. And each
//!    is a head of the ref during the invocation that acted on it (for a claimed start
//!    recorded by the invocation that took over its lapsed claim: during the claimer's).
//! 2. **Nothing missed.** For each ref that exists and each target that runs on it, the
//!    head's tree equals, in the paths the target selects (tozai's own rules:
//!    [`tozai::plan::decide`] on the diff), the tree of the last commit the target was
//!    started on for that ref. A ref the target never started on is judged from a base the
//!    README allows a first judgement ([`first_bases`]): the head when the run began for a
//!    ref the run was seeded with; for a tag its whole tree; for a branch the old commit of
//!    any of its events the judge received, or its birth base (its merge base with `main`,
//!    or its head's first parent when `main` holds its head) at any moment it existed. A
//!    judge may start more than that (from a nearer base), never less: only a head that
//!    differs from *every* allowed base is missed.
//!
//!    The sync, whose "start" is a `Sync Requested`: where the sync-judge handled the
//!    ref's last event, the head holds, in the paths the sync rule selects, what the last
//!    commit requested held (a selected tag is requested at its commit). And the mirror:
//!    after the settle's scheduled reconciliation, every ref the sync selects is on the
//!    standby at the primary's head, unless the standby's copy is diverged (a branch at a
//!    commit that is no ancestor of the head, a tag elsewhere, a ref last moved on the
//!    standby): the mirror never rewinds or force-moves the standby.
//!
//!    Events are lost, so a branch's last event may never be handled; the last event of a
//!    *tag* is (the settle delivers it until it is: no sweep lists tags, see
//!    [`crate::run`]), and the checker says so when it is not.
//! 3. **Once.** No two consecutive runs of a (target, ref) are at the same commit.
//! 4. **The mirror owns only what it made.** The mirror never moves a standby ref to a
//!    commit that does not descend from it (never moves a tag), never moves or deletes a
//!    ref last written by a push straight to the standby, and a branch deleted at the
//!    source is gone from the standby once deliveries settle.

use std::collections::BTreeMap;

use tozai::config::{Config, Target};
use tozai::refs::RefName;

use crate::model::{C, Graph, Repo, Side, Tree, Writer};
use crate::trace::{Action, Consumer};
use crate::world::{Function, World};

/// Which guarantee broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Guarantee {
    Order,
    NothingMissed,
    Once,
    Mirror,
}

impl std::fmt::Display for Guarantee {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Order => "1. order",
            Self::NothingMissed => "2. nothing missed",
            Self::Once => "3. once",
            Self::Mirror => "4. the mirror owns only what it made",
        })
    }
}

/// One broken guarantee, explained.
#[derive(Debug, Clone)]
pub struct Violation {
    pub guarantee: Guarantee,
    pub what: String,
    /// Lines that help to see why (the ref's history, the runs).
    pub context: Vec<String>,
    /// The same, as data (for [`crate::scenarios`]).
    pub facts: Facts,
}

/// What a violation is about, as data.
#[derive(Debug, Clone)]
pub enum Facts {
    /// A consumer acted on `older` after acting on `newer`, a later head of the ref.
    Back {
        consumer: Consumer,
        side: Side,
        reference: RefName,
        older: C,
        newer: C,
    },
    /// A consumer acted on a commit that was never the ref's head.
    NotAHead,
    /// An invocation acted on a commit that had stopped being the ref's head before the
    /// invocation began (and was not its head again by the time it acted).
    Stale {
        consumer: Consumer,
        side: Side,
        reference: RefName,
        commit: C,
        /// The ref's head when the invocation began.
        head: Option<C>,
    },
    /// A target never started at the ref's head.
    Missed {
        target: String,
        side: Side,
        reference: RefName,
        head: C,
    },
    /// The sync-judge never requested what the primary's head has.
    SyncMissed { reference: RefName },
    /// After the reconciliation, the standby's copy of a mirrored ref is behind the
    /// primary's head (and not diverged).
    OutOfStep,
    /// An event that was never handled.
    Unhandled,
    /// Two runs in a row at one commit; the trace positions of the two.
    Twice {
        /// The two runs, by index.
        runs: (usize, usize),
    },
    /// The mirror moved a standby ref backwards or sideways, or moved a tag.
    MirrorMoved,
    /// The mirror moved or deleted a ref made on the standby.
    MirrorTookStandbys,
    /// A branch deleted at the source is still on the standby.
    MirrorKept,
    /// The run never settled.
    Stuck,
}

/// Every violation of the run.
pub fn check(w: &World, config: &Config) -> Vec<Violation> {
    let mut out = Vec::new();
    order(w, &mut out);
    missed(w, config, &mut out);
    sync_missed(w, config, &mut out);
    in_step(w, config, &mut out);
    unhandled(w, &mut out);
    once(w, &mut out);
    mirror(w, config, &mut out);
    out
}

fn side_of(config: &Config, region: &str) -> Side {
    if region == config.primary {
        Side::Primary
    } else {
        Side::Standby
    }
}

fn region_of(config: &Config, side: Side) -> &str {
    match side {
        Side::Primary => &config.primary().name,
        Side::Standby => &config.standby().name,
    }
}

fn label(c: Option<C>) -> String {
    c.map_or_else(|| "-".to_owned(), Graph::label)
}

/// The ref's pushes, as `c0 -(fast-forward @12)-> c3 -(rewind @40)-> c1`.
fn history(repo: &Repo, r: &RefName) -> String {
    let mut out = String::new();
    for (i, u) in repo.history(r).enumerate() {
        if i == 0 {
            out.push_str(&label(u.old));
        }
        out.push_str(&format!(" -({} @{})-> {}", u.kind, u.seq, label(u.new)));
    }
    format!("{:?} {}: {out}", repo.side, r.full())
}

// ---------------------------------------------------------------- 1. order

fn order(w: &World, out: &mut Vec<Violation>) {
    type Key = (Consumer, Side, RefName);
    let mut acts: BTreeMap<Key, Vec<(u64, C, &'static str, u64)>> = BTreeMap::new();
    let mut began = BTreeMap::new();
    for e in &w.trace {
        match &e.action {
            Action::Invoked { invocation, .. } => {
                began.insert(*invocation, e.seq);
            }
            Action::Saved {
                invocation,
                consumer,
                side,
                reference,
                commit,
                claimed_by,
            } => acts
                .entry((consumer.clone(), *side, reference.clone()))
                .or_default()
                .push((e.seq, *commit, "saved", claimed_by.unwrap_or(*invocation))),
            _ => {}
        }
    }
    for run in w.runs.iter().filter(|r| r.seq > 0) {
        acts.entry((
            Consumer::Target(run.target.clone()),
            run.side,
            run.reference.clone(),
        ))
        .or_default()
        .push((run.seq, run.commit, "started", run.invocation));
    }
    for list in acts.values_mut() {
        list.sort();
    }
    for ((consumer, side, r), list) in &acts {
        stale(w, &began, consumer, *side, r, list, out);
    }
    for ((consumer, side, r), list) in acts {
        let repo = w.repo(side);
        let mut newest: Option<(usize, C, &str, u64)> = None;
        for (seq, c, what, _) in list {
            let Some(epoch) = repo.epoch(&r, c, seq) else {
                out.push(Violation {
                    guarantee: Guarantee::Order,
                    what: format!(
                        "{consumer:?} {what} {} on {:?} {} @{seq}, never its head by then",
                        Graph::label(c),
                        side,
                        r.full()
                    ),
                    context: vec![history(repo, &r)],
                    facts: Facts::NotAHead,
                });
                break;
            };
            match newest {
                Some((top, top_c, top_what, top_seq)) if epoch < top => {
                    out.push(Violation {
                        guarantee: Guarantee::Order,
                        what: format!(
                            "{consumer:?} {what} {} @{seq} (its head since @{}) after it {top_what} {} @{top_seq} (its head since @{}) on {:?} {}",
                            Graph::label(c),
                            repo.log[epoch].seq,
                            Graph::label(top_c),
                            repo.log[top].seq,
                            side,
                            r.full()
                        ),
                        context: vec![history(repo, &r)],
                        facts: Facts::Back {
                            consumer: consumer.clone(),
                            side,
                            reference: r.clone(),
                            older: c,
                            newer: top_c,
                        },
                    });
                    break;
                }
                Some((top, ..)) if epoch == top => {}
                _ => newest = Some((epoch, c, what, seq)),
            }
        }
    }
}

/// Each action of an invocation is on a commit that was the ref's head at some moment of
/// that invocation: a judge that reads the head acts on nothing older. The first stale
/// action per (consumer, ref) is reported.
fn stale(
    w: &World,
    began: &BTreeMap<u64, u64>,
    consumer: &Consumer,
    side: Side,
    r: &RefName,
    list: &[(u64, C, &'static str, u64)],
    out: &mut Vec<Violation>,
) {
    let repo = w.repo(side);
    for &(seq, c, what, invocation) in list {
        let Some(&start) = began.get(&invocation) else {
            continue;
        };
        let head = repo.head_at(r, start);
        let current = head == Some(c)
            || repo
                .history(r)
                .any(|u| u.seq > start && u.seq <= seq && u.new == Some(c));
        if !current {
            out.push(Violation {
                guarantee: Guarantee::Order,
                what: format!(
                    "{consumer:?} {what} {} @{seq} on {side:?} {}, but invocation #{invocation} began @{start} with the head at {}",
                    Graph::label(c),
                    r.full(),
                    label(head)
                ),
                context: vec![history(repo, r)],
                facts: Facts::Stale {
                    consumer: consumer.clone(),
                    side,
                    reference: r.clone(),
                    commit: c,
                    head,
                },
            });
            return;
        }
    }
}

// ---------------------------------------------------------------- 2. nothing missed

fn eligible(target: &Target, r: &RefName) -> bool {
    let filter = match r {
        RefName::Branch(_) => &target.branches,
        RefName::Tag(_) => &target.tags,
    };
    filter.first_match(r.short()).is_some()
}

/// The bases a judge may diff a ref from the first time it judges it (README, "The
/// service": with no checkpoint yet, the event's old commit; a new branch from its merge
/// base with `main`, or from its tip commit's parent when `main` already holds its head; a
/// new tag, its whole tree), for `function`, with what each is:
/// - a ref the run was seeded with: its head when the run began (its checkpoint);
/// - a tag: nothing (the empty tree);
/// - a branch: the old commit of each of its updates whose event `function` received, and
///   its birth base at each moment it existed (the merge base of its head and `main`'s
///   then, or its head's first parent when that is the head itself). The checkpoint
///   outlives a deletion, so every time the branch existed counts.
pub fn first_bases(
    w: &World,
    config: &Config,
    side: Side,
    r: &RefName,
    function: Function,
) -> Vec<(Option<C>, String)> {
    let repo = w.repo(side);
    let Some(first) = repo.history(r).next() else {
        return Vec::new();
    };
    if first.by == Writer::Seed {
        return vec![(
            first.new,
            format!("the head when the run began, {}", label(first.new)),
        )];
    }
    if r.is_tag() {
        return vec![(None, "a tag: the empty tree".into())];
    }
    let mut bases: Vec<(Option<C>, String)> = Vec::new();
    let mut add = |c: Option<C>, why: String| {
        if !bases.iter().any(|(b, _)| *b == c) {
            bases.push((c, why));
        }
    };
    for u in repo.history(r) {
        if let (Some(old), Some(_)) = (u.old, u.new)
            && w.planned.get(&(u.event, function)).is_some_and(|&n| n > 0)
        {
            add(
                Some(old),
                format!("e{}'s old commit {}", u.event, Graph::label(old)),
            );
        }
    }
    let main = RefName::Branch(config.base_branch.clone());
    for u in repo.log.iter().filter(|u| u.seq >= first.seq) {
        let (Some(head), Some(m)) = (repo.head_at(r, u.seq), repo.head_at(&main, u.seq)) else {
            continue;
        };
        match w.graph.merge_base(m, head) {
            Some(b) if b == head => {
                let parent = w.graph.get(head).parents.first().copied();
                add(
                    parent,
                    format!(
                        "@{}: main held its head {}: its parent {}",
                        u.seq,
                        Graph::label(head),
                        label(parent)
                    ),
                );
            }
            b => add(
                b,
                format!(
                    "@{}: the merge base of {} and main's {}, {}",
                    u.seq,
                    Graph::label(head),
                    Graph::label(m),
                    label(b)
                ),
            ),
        }
    }
    bases
}

fn tree(w: &World, c: Option<C>) -> Option<&Tree> {
    c.map(|c| &w.graph.get(c).tree)
}

/// The paths that differ from `from` to `head`, when the target's rules would start it on
/// them.
fn starts(
    w: &World,
    config: &Config,
    target: &Target,
    r: &RefName,
    from: Option<C>,
    head: C,
) -> Option<Vec<String>> {
    let changes = Graph::tree_diff(tree(w, from), &w.graph.get(head).tree);
    if changes.is_empty() {
        return None;
    }
    let decisions = tozai::plan::decide(config, &target.region, r, &changes).ok()?;
    decisions
        .pipelines
        .iter()
        .any(|d| d.target == target.name && d.start)
        .then(|| {
            changes
                .iter()
                .flat_map(|c| c.judged_paths())
                .map(|p| p.to_string())
                .collect()
        })
}

fn missed(w: &World, config: &Config, out: &mut Vec<Violation>) {
    for target in &config.targets {
        let side = side_of(config, &target.region);
        let repo = w.repo(side);
        for (r, &head) in &repo.refs {
            if !eligible(target, r) {
                continue;
            }
            let runs: Vec<&crate::world::Run> = w
                .runs
                .iter()
                .filter(|run| run.target == target.name && run.side == side && &run.reference == r)
                .collect();
            let (paths, why) = match runs.last() {
                Some(run) => (
                    starts(w, config, target, r, Some(run.commit), head),
                    format!("last started at {}", Graph::label(run.commit)),
                ),
                None => {
                    // Missed only when every base a first judgement may use starts it.
                    let bases = first_bases(w, config, side, r, Function::PipelineJudge(side));
                    let mut paths = None;
                    for (base, _) in &bases {
                        match starts(w, config, target, r, *base, head) {
                            Some(p) => paths = paths.or(Some(p)),
                            None => {
                                paths = None;
                                break;
                            }
                        }
                    }
                    let shown: Vec<&str> = bases.iter().map(|(_, why)| why.as_str()).collect();
                    (
                        paths,
                        format!("never started; from each of: {}", shown.join("; ")),
                    )
                }
            };
            let Some(paths) = paths else {
                continue;
            };
            let started: Vec<String> = runs
                .iter()
                .map(|run| format!("{} @{}", Graph::label(run.commit), run.seq))
                .collect();
            out.push(Violation {
                guarantee: Guarantee::NothingMissed,
                what: format!(
                    "{} never started at {:?} {}'s head {} ({why}; {} differs in its paths)",
                    target.name,
                    side,
                    r.full(),
                    Graph::label(head),
                    paths.join(", ")
                ),
                context: vec![
                    history(repo, r),
                    format!("runs of {} on it: {}", target.name, started.join(", ")),
                    lost(w, side, r),
                ],
                facts: Facts::Missed {
                    target: target.name.clone(),
                    side,
                    reference: r.clone(),
                    head,
                },
            });
        }
    }
}

/// Which of the ref's events were never delivered to some function.
fn lost(w: &World, side: Side, r: &RefName) -> String {
    let mut lines = Vec::new();
    for u in w.repo(side).history(r).filter(|u| u.event != usize::MAX) {
        for f in w.route(u.event) {
            if w.planned.get(&(u.event, f)) == Some(&0) {
                lines.push(format!("e{} to {f}", u.event));
            }
        }
    }
    format!(
        "events lost: {}",
        if lines.is_empty() {
            "none".into()
        } else {
            lines.join(", ")
        }
    )
}

/// The sync-judge: where it handled a mirrored ref's last event, it asked the mirror for
/// what the head has in the sync rule's paths. Requests are not ordered (one is published
/// before its checkpoint moves, the swap may then be lost to a newer head's, and the mirror
/// mirrors the source as it is when it runs), so the last one published is not the last
/// one made: the head counts as requested when a request for the ref was published since it
/// became the head, or when some commit requested holds what the head holds (a selected
/// tag: when its commit was requested).
fn sync_missed(w: &World, config: &Config, out: &mut Vec<Violation>) {
    let primary = region_of(config, Side::Primary);
    for (r, &head) in &w.primary.refs {
        if config.sync.filter_for(r).first_match(r.short()).is_none() {
            continue;
        }
        let Some(last) = w.primary.last_update(r) else {
            continue;
        };
        if !w.handled.contains(&(last.event, Function::SyncJudge)) {
            // Lost for good: the mirror's reconciliation catches it ([`in_step`]).
            continue;
        }
        let requested = sync_requests(w, r);
        let selects = |from: Option<C>| {
            let changes = Graph::tree_diff(tree(w, from), &w.graph.get(head).tree);
            !changes.is_empty()
                && tozai::plan::decide(config, primary, r, &changes).is_ok_and(|d| d.sync.mirror)
        };
        let since_head = requested.iter().any(|&(seq, _)| seq > last.seq);
        let shown: Vec<String> = requested
            .iter()
            .map(|&(seq, c)| format!("{} @{seq}", Graph::label(c)))
            .collect();
        let (missed, why) = match r {
            RefName::Tag(_) => (
                !requested.iter().any(|&(_, c)| c == head),
                "a tag is requested at its commit".to_owned(),
            ),
            RefName::Branch(_) if !requested.is_empty() => (
                !since_head && requested.iter().all(|&(_, c)| selects(Some(c))),
                format!("requested: {}", shown.join(", ")),
            ),
            RefName::Branch(_) => {
                let bases = first_bases(w, config, Side::Primary, r, Function::SyncJudge);
                let shown: Vec<&str> = bases.iter().map(|(_, why)| why.as_str()).collect();
                (
                    !bases.is_empty() && bases.iter().all(|&(b, _)| selects(b)),
                    format!("never requested; from each of: {}", shown.join("; ")),
                )
            }
        };
        if missed {
            out.push(Violation {
                guarantee: Guarantee::NothingMissed,
                what: format!(
                    "the sync-judge handled the last event of the primary's {} but never requested its head {} ({why}), which its sync rule selects",
                    r.full(),
                    Graph::label(head)
                ),
                context: vec![history(&w.primary, r), history(&w.standby, r)],
                facts: Facts::SyncMissed {
                    reference: r.clone(),
                },
            });
        }
    }
}

/// The mirror, after the settle's reconciliation: every ref the sync selects is on the
/// standby at the primary's head, or its standby copy is diverged (a branch at a commit
/// that is no ancestor of the head, a tag elsewhere, a ref last moved on the standby).
fn in_step(w: &World, config: &Config, out: &mut Vec<Violation>) {
    for (r, &head) in &w.primary.refs {
        if config.sync.filter_for(r).first_match(r.short()).is_none() {
            continue;
        }
        let standby = w.standby.head(r);
        let diverged = standby.is_some_and(|s| {
            r.is_tag()
                || !w.graph.is_ancestor(s, head)
                || w.standby
                    .last_update(r)
                    .is_some_and(|u| u.by == Writer::Developer)
        });
        if standby == Some(head) || diverged {
            continue;
        }
        out.push(Violation {
            guarantee: Guarantee::NothingMissed,
            what: format!(
                "the standby's {} is at {}, behind the primary's head {}, after the mirror's reconciliation",
                r.full(),
                label(standby),
                Graph::label(head)
            ),
            context: vec![history(&w.primary, r), history(&w.standby, r)],
            facts: Facts::OutOfStep,
        });
    }
}

/// The commits the sync asked the mirror for on `r` (its `Sync Requested` events), in
/// order, with their trace positions.
pub fn sync_requests(w: &World, r: &RefName) -> Vec<(u64, C)> {
    w.trace
        .iter()
        .filter_map(|e| match &e.action {
            Action::Published {
                detail_type,
                detail,
                ..
            } if detail_type == tozai::event::SYNC_REQUESTED => {
                let detail: serde_json::Value = serde_json::from_str(detail).ok()?;
                if detail.get("ref")?.as_str()? != r.full() {
                    return None;
                }
                let id = detail.get("commit")?.as_str()?.parse().ok()?;
                Some((e.seq, w.graph.find(&id)?))
            }
            _ => None,
        })
        .collect()
}

/// The last event of every tag was handled by each function it goes to: the settle
/// delivers it until it is, since no sweep lists tags (a known limit: CodeCommit cannot
/// list tags, so a tag event lost for good is caught up only by the mirror's
/// reconciliation, for the mirror).
fn unhandled(w: &World, out: &mut Vec<Violation>) {
    for side in Side::BOTH {
        for (r, event) in last_tag_events(w, side) {
            for f in w.route(event) {
                if !w.handled.contains(&(event, f)) {
                    out.push(Violation {
                        guarantee: Guarantee::NothingMissed,
                        what: format!(
                            "{side:?} {}'s last event e{event} was never handled by {f}",
                            r.full()
                        ),
                        context: Vec::new(),
                        facts: Facts::Unhandled,
                    });
                }
            }
        }
    }
}

/// The last event of each tag of `side`'s repository.
pub fn last_tag_events(w: &World, side: Side) -> BTreeMap<RefName, usize> {
    let mut last = BTreeMap::new();
    for u in w.repo(side).log.iter() {
        if u.event != usize::MAX && u.reference.is_tag() {
            last.insert(u.reference.clone(), u.event);
        }
    }
    last
}

// ---------------------------------------------------------------- 3. once

fn once(w: &World, out: &mut Vec<Violation>) {
    let mut last: BTreeMap<(String, Side, RefName), (usize, &crate::world::Run)> = BTreeMap::new();
    for (index, run) in w.runs.iter().enumerate() {
        let key = (run.target.clone(), run.side, run.reference.clone());
        if let Some(&(before, previous)) = last.get(&key)
            && previous.commit == run.commit
        {
            out.push(Violation {
                guarantee: Guarantee::Once,
                what: format!(
                    "{} started twice in a row at {} on {:?} {}: {} @{} then {} @{}",
                    run.target,
                    Graph::label(run.commit),
                    run.side,
                    run.reference.full(),
                    previous.id,
                    previous.seq,
                    run.id,
                    run.seq
                ),
                context: vec![history(w.repo(run.side), &run.reference)],
                facts: Facts::Twice {
                    runs: (before, index),
                },
            });
        }
        last.insert(key, (index, run));
    }
}

// ---------------------------------------------------------------- 4. the mirror

fn mirror(w: &World, config: &Config, out: &mut Vec<Violation>) {
    let standby = &w.standby;
    for (i, u) in standby.log.iter().enumerate() {
        if u.by != Writer::Mirror {
            continue;
        }
        let mut broke = |what: String, facts: Facts| {
            out.push(Violation {
                guarantee: Guarantee::Mirror,
                what,
                context: vec![history(standby, &u.reference)],
                facts,
            })
        };
        let moved = || Facts::MirrorMoved;
        if let (Some(old), Some(new)) = (u.old, u.new) {
            if u.reference.is_tag() {
                broke(
                    format!(
                        "moved tag {} from {} to {} @{}",
                        u.reference.full(),
                        Graph::label(old),
                        Graph::label(new),
                        u.seq
                    ),
                    moved(),
                );
            } else if !w.graph.is_ancestor(old, new) {
                broke(
                    format!(
                        "moved {} from {} to {}, not a descendant, @{}",
                        u.reference.full(),
                        Graph::label(old),
                        Graph::label(new),
                        u.seq
                    ),
                    moved(),
                );
            }
        }
        if u.old.is_some() {
            let made_here = standby.log[..i]
                .iter()
                .rev()
                .find(|p| p.reference == u.reference)
                .is_some_and(|p| p.by == Writer::Developer);
            if made_here {
                broke(
                    format!(
                        "{} {} made on the standby @{} ({} -> {})",
                        if u.new.is_some() { "moved" } else { "deleted" },
                        u.reference.full(),
                        u.seq,
                        label(u.old),
                        label(u.new)
                    ),
                    Facts::MirrorTookStandbys,
                );
            }
        }
    }
    for (r, &c) in &standby.refs {
        let mirrored = standby
            .last_update(r)
            .is_some_and(|u| u.by == Writer::Mirror);
        let selected = config.sync.filter_for(r).first_match(r.short()).is_some();
        if mirrored && selected && w.primary.head(r).is_none() {
            out.push(Violation {
                guarantee: Guarantee::Mirror,
                what: format!(
                    "{} was deleted at the source but the standby still has it at {}",
                    r.full(),
                    Graph::label(c)
                ),
                context: vec![history(&w.primary, r), history(standby, r)],
                facts: Facts::MirrorKept,
            });
        }
    }
}
