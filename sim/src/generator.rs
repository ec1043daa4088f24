//! The seeded generator: what engineers push, and how EventBridge delivers the events.
//!
//! Pushes to the primary: fast-forwards of 1-3 commits (on `main` or another branch),
//! force-pushes to a sibling, rewinds to an ancestor, force-pushes back to an earlier head,
//! rebases onto `main`, new branches (0 or 1 commit on `main`'s head), deletions and
//! recreations, fast-forward and squash merges into `main`, and tags `v1.N` on existing
//! commits. Pushes straight to the standby: a hotfix on `main`, a branch
//! `release/osaka-fix`. And the schedules: the mirror's reconciliation and each region's
//! pipeline-judge's sweep.
//!
//! Deliveries: each CodeCommit event reaches each of its functions 0 to 5 times, each
//! after its own delay (mostly short, sometimes minutes), so events are lost, duplicated,
//! reordered and handled concurrently.

use tozai::refs::RefName;

use crate::model::{C, Content, Graph, PATHS, Side, Writer};
use crate::world::World;

/// How one run's events are delivered.
#[derive(Debug, Clone, Copy)]
pub struct Deliveries {
    /// The chance a CodeCommit event never reaches a function.
    pub lose: f64,
    /// The chance it reaches it more than once (2 to 5 times).
    pub duplicate: f64,
    /// The chance one delivery is late (30 seconds to 20 minutes).
    pub late: f64,
}

impl Deliveries {
    pub fn pick(rng: &mut fastrand::Rng) -> Self {
        Self {
            lose: [0.0, 0.1, 0.25][rng.usize(..3)],
            duplicate: [0.1, 0.3, 0.5][rng.usize(..3)],
            late: [0.05, 0.15, 0.3][rng.usize(..3)],
        }
    }
}

/// The delays of one event's deliveries to one function (empty: lost).
pub fn delays(rng: &mut fastrand::Rng, d: &Deliveries, at_least_once: bool) -> Vec<u64> {
    let copies = if !at_least_once && rng.f64() < d.lose {
        0
    } else if rng.f64() < d.duplicate {
        rng.usize(2..=5)
    } else {
        1
    };
    (0..copies)
        .map(|_| {
            let r = rng.f64();
            if r < d.late {
                rng.u64(30_000..1_200_000)
            } else if r < d.late + 0.3 {
                rng.u64(1_500..30_000)
            } else {
                rng.u64(..1_500)
            }
        })
        .collect()
}

/// The time from one push to the next: often under two seconds (so invocations overlap),
/// sometimes minutes (so leases run out and retries land in between).
pub fn gap(rng: &mut fastrand::Rng) -> u64 {
    match rng.usize(..10) {
        0..=3 => rng.u64(..2_000),
        4..=6 => rng.u64(2_000..60_000),
        _ => rng.u64(60_000..600_000),
    }
}

/// The branch names a run uses, besides `main`: few, so names are reused (a branch deleted
/// and created again).
const BRANCHES: [&str; 4] = ["feature/a", "feature/b", "release/1", "release/2"];
/// The branch made straight on the standby.
pub const STANDBY_BRANCH: &str = "release/osaka-fix";

/// What the generator can do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    MainForward,
    BranchForward,
    ForceSibling,
    Rewind,
    Restore,
    Rebase,
    NewBranch,
    Delete,
    MergeForward,
    SquashMerge,
    Tag,
    StandbyHotfix,
    StandbyBranch,
    Schedule,
}

const KINDS: [(Kind, u32); 14] = [
    (Kind::MainForward, 60),
    (Kind::BranchForward, 25),
    (Kind::ForceSibling, 15),
    (Kind::Rewind, 15),
    (Kind::Restore, 15),
    (Kind::Rebase, 15),
    (Kind::NewBranch, 25),
    (Kind::Delete, 12),
    (Kind::MergeForward, 15),
    (Kind::SquashMerge, 8),
    (Kind::Tag, 20),
    (Kind::StandbyHotfix, 6),
    (Kind::StandbyBranch, 6),
    (Kind::Schedule, 8),
];

/// The pushes of one run.
pub struct Generator {
    rng: fastrand::Rng,
    tags: u32,
}

fn main_ref() -> RefName {
    RefName::Branch("main".to_owned())
}

impl Generator {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: fastrand::Rng::with_seed(seed ^ 0x9e4e),
            tags: 0,
        }
    }

    /// The times of `steps` pushes.
    pub fn times(&mut self, steps: usize) -> Vec<u64> {
        let mut at = 0;
        (0..steps)
            .map(|_| {
                at += gap(&mut self.rng);
                at
            })
            .collect()
    }

    /// 1 or 2 edits of random paths, with fresh contents.
    fn edits(&mut self, graph: &mut Graph) -> Vec<(&'static str, Content)> {
        let mut paths = PATHS.to_vec();
        self.rng.shuffle(&mut paths);
        let n = self.rng.usize(1..=2);
        paths[..n].iter().map(|&p| (p, graph.fresh())).collect()
    }

    /// `n` new commits on `base`; the last one.
    fn commits(&mut self, graph: &mut Graph, base: C, n: usize) -> C {
        (0..n).fold(base, |at, _| {
            let edits = self.edits(graph);
            graph.commit(at, edits)
        })
    }

    fn other_branches(w: &World) -> Vec<(RefName, C)> {
        w.primary
            .refs
            .iter()
            .filter(|(r, _)| matches!(r, RefName::Branch(b) if b != "main"))
            .map(|(r, &c)| (r.clone(), c))
            .collect()
    }

    fn branches(w: &World) -> Vec<(RefName, C)> {
        w.primary
            .refs
            .iter()
            .filter(|(r, _)| !r.is_tag())
            .map(|(r, &c)| (r.clone(), c))
            .collect()
    }

    fn pick<T: Clone>(&mut self, items: &[T]) -> Option<T> {
        (!items.is_empty()).then(|| items[self.rng.usize(..items.len())].clone())
    }

    /// Makes the next push (or fires the schedule). Kinds that cannot apply now are
    /// drawn again.
    pub fn step(&mut self, w: &mut World) {
        let total: u32 = KINDS.iter().map(|(_, weight)| weight).sum();
        for _ in 0..50 {
            let mut roll = self.rng.u32(..total);
            let kind = KINDS
                .iter()
                .find(|(_, weight)| {
                    if roll < *weight {
                        true
                    } else {
                        roll -= weight;
                        false
                    }
                })
                .map_or(Kind::MainForward, |(k, _)| *k);
            if self.apply(w, kind) {
                return;
            }
        }
    }

    /// Makes one push of `kind` if it applies now; `false` when it does not.
    fn apply(&mut self, w: &mut World, kind: Kind) -> bool {
        let Some(main_head) = w.primary.head(&main_ref()) else {
            return false;
        };
        match kind {
            Kind::MainForward => self.forward(w, main_ref(), main_head),
            Kind::BranchForward => match self.pick(&Self::other_branches(w)) {
                Some((r, head)) => self.forward(w, r, head),
                None => false,
            },
            Kind::ForceSibling => self.force_sibling(w),
            Kind::Rewind => self.rewind(w),
            Kind::Restore => self.restore(w),
            Kind::Rebase => self.rebase(w, main_head),
            Kind::NewBranch => self.new_branch(w, main_head),
            Kind::Delete => match self.pick(&Self::other_branches(w)) {
                Some((r, head)) => dev(w, &r, Some(head), None, "branch deleted"),
                None => false,
            },
            Kind::MergeForward => self.merge_forward(w, main_head),
            Kind::SquashMerge => self.squash_merge(w, main_head),
            Kind::Tag => self.tag(w, main_head),
            Kind::StandbyHotfix => standby_hotfix(w),
            Kind::StandbyBranch => standby_branch(w),
            Kind::Schedule => {
                w.tick_all();
                true
            }
        }
    }

    /// 1 to 3 new commits on `r`.
    fn forward(&mut self, w: &mut World, r: RefName, head: C) -> bool {
        let n = self.rng.usize(1..=3);
        let new = self.commits(&mut w.graph, head, n);
        dev(w, &r, Some(head), Some(new), "fast-forward")
    }

    /// 1 or 2 new commits on the head's parent, force-pushed.
    fn force_sibling(&mut self, w: &mut World) -> bool {
        let Some((r, head)) = self.pick(&Self::branches(w)) else {
            return false;
        };
        let Some(&parent) = w.graph.get(head).parents.first() else {
            return false;
        };
        let n = self.rng.usize(1..=2);
        let new = self.commits(&mut w.graph, parent, n);
        dev(w, &r, Some(head), Some(new), "force-push to a sibling")
    }

    /// `push -f` to an ancestor 1 to 3 commits back.
    fn rewind(&mut self, w: &mut World) -> bool {
        let Some((r, head)) = self.pick(&Self::branches(w)) else {
            return false;
        };
        let mut to = head;
        for _ in 0..self.rng.usize(1..=3) {
            if let Some(&p) = w.graph.get(to).parents.first() {
                to = p;
            }
        }
        to != head && dev(w, &r, Some(head), Some(to), "rewind")
    }

    /// `push -f` back to a commit the branch had before.
    fn restore(&mut self, w: &mut World) -> bool {
        let Some((r, head)) = self.pick(&Self::branches(w)) else {
            return false;
        };
        let earlier: Vec<C> = w
            .primary
            .history(&r)
            .filter_map(|u| u.new)
            .filter(|&c| c != head)
            .collect();
        match self.pick(&earlier) {
            Some(to) => dev(w, &r, Some(head), Some(to), "force-push back"),
            None => false,
        }
    }

    /// The branch's own commits applied again on `main`'s head, force-pushed.
    fn rebase(&mut self, w: &mut World, main_head: C) -> bool {
        let Some((r, head)) = self.pick(&Self::other_branches(w)) else {
            return false;
        };
        let Some(base) = w.graph.merge_base(head, main_head) else {
            return false;
        };
        if base == main_head {
            return false;
        }
        let mut own = Vec::new();
        let mut at = head;
        while at != base {
            own.push(at);
            match w.graph.get(at).parents.first() {
                Some(&p) => at = p,
                None => break,
            }
        }
        let mut new = main_head;
        for &c in own.iter().rev() {
            let edits = w.graph.get(c).edits.clone();
            new = w.graph.commit(new, edits);
        }
        dev(w, &r, Some(head), Some(new), "rebase")
    }

    /// A branch (new, or made again after a deletion) with 0 or 1 commit on `main`.
    fn new_branch(&mut self, w: &mut World, main_head: C) -> bool {
        let free: Vec<&str> = BRANCHES
            .iter()
            .copied()
            .filter(|b| w.primary.branch(b).is_none())
            .collect();
        let Some(name) = self.pick(&free) else {
            return false;
        };
        let r = RefName::branch(name).expect("a valid name");
        let n = self.rng.usize(..=1);
        let new = self.commits(&mut w.graph, main_head, n);
        let what = if w.primary.history(&r).next().is_some() {
            "branch recreated"
        } else {
            "new branch"
        };
        dev(w, &r, None, Some(new), what)
    }

    /// `main` fast-forwarded to a branch ahead of it.
    fn merge_forward(&mut self, w: &mut World, main_head: C) -> bool {
        let ahead: Vec<(RefName, C)> = Self::other_branches(w)
            .into_iter()
            .filter(|&(_, c)| c != main_head && w.graph.is_ancestor(main_head, c))
            .collect();
        match self.pick(&ahead) {
            Some((_, head)) => dev(
                w,
                &main_ref(),
                Some(main_head),
                Some(head),
                "fast-forward merge of a branch",
            ),
            None => false,
        }
    }

    /// One commit on `main` with a branch's changes, then the branch deleted.
    fn squash_merge(&mut self, w: &mut World, main_head: C) -> bool {
        let Some((r, head)) = self.pick(&Self::other_branches(w)) else {
            return false;
        };
        let Some(base) = w.graph.merge_base(head, main_head) else {
            return false;
        };
        let (from, to) = (&w.graph.get(base).tree, &w.graph.get(head).tree);
        let edits: Vec<(&'static str, Content)> = to
            .iter()
            .filter(|(p, c)| from.get(*p) != Some(c))
            .map(|(&p, &c)| (p, c))
            .collect();
        if edits.is_empty() {
            return false;
        }
        let squashed = w.graph.commit(main_head, edits);
        dev(
            w,
            &main_ref(),
            Some(main_head),
            Some(squashed),
            "squash merge",
        ) && dev(
            w,
            &r,
            Some(head),
            None,
            "branch deleted after a squash merge",
        )
    }

    /// `v1.N` on `main`'s head, or on a commit `main` had before.
    fn tag(&mut self, w: &mut World, main_head: C) -> bool {
        self.tags += 1;
        let r = RefName::tag(&format!("v1.{}", self.tags)).expect("a valid name");
        let on = if self.rng.bool() {
            main_head
        } else {
            let history: Vec<C> = w
                .primary
                .history(&main_ref())
                .filter_map(|u| u.new)
                .collect();
            self.pick(&history).unwrap_or(main_head)
        };
        dev(w, &r, None, Some(on), "tag")
    }
}

/// A push by an engineer to the primary.
fn dev(w: &mut World, r: &RefName, old: Option<C>, new: Option<C>, what: &'static str) -> bool {
    w.push(Side::Primary, r, old, new, Writer::Developer, what)
        .is_some()
}

/// A hotfix (a `secondary/` change) pushed straight to the standby's `main`.
fn standby_hotfix(w: &mut World) -> bool {
    let main = main_ref();
    let Some(head) = w.standby.head(&main) else {
        return false;
    };
    let content = w.graph.fresh();
    let new = w.graph.commit(head, vec![("secondary/app.yaml", content)]);
    w.push(
        Side::Standby,
        &main,
        Some(head),
        Some(new),
        Writer::Developer,
        "hotfix pushed straight to the standby",
    )
    .is_some()
}

/// `release/osaka-fix` made straight on the standby, at its `main`.
fn standby_branch(w: &mut World) -> bool {
    let r = RefName::branch(STANDBY_BRANCH).expect("a valid name");
    let Some(head) = w.standby.head(&main_ref()) else {
        return false;
    };
    w.standby.head(&r).is_none()
        && w.push(
            Side::Standby,
            &r,
            None,
            Some(head),
            Writer::Developer,
            "branch made straight on the standby",
        )
        .is_some()
}
