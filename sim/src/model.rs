//! The repositories, modelled on CodeCommit: one commit graph that both regions'
//! repositories draw on (a commit id is a content address, so a mirrored commit keeps its
//! id), and per repository its refs, moved by compare-and-swap, the commits it holds, and
//! the log of every ref update, which the checker reads.
//!
//! A commit's tree maps each path to a content number; the repository layout is the seed's
//! (`common/`, `primary/`, `secondary/`, `docs/`). Diffs compare any two trees, as
//! `GetDifferences` compares any two commits.

use std::collections::{BTreeMap, HashSet};

use tozai::change::Change;
use tozai::refs::{CommitId, RefName};

/// A commit, by its index in the [`Graph`].
pub type C = usize;
/// A file's content, by number.
pub type Content = u32;
/// A commit's files: path to content.
pub type Tree = BTreeMap<&'static str, Content>;

/// The files a push may touch: one per directory of the seed's layout.
pub const PATHS: [&str; 4] = [
    "primary/app.yaml",
    "secondary/app.yaml",
    "common/net.yaml",
    "docs/readme.md",
];

/// One commit.
#[derive(Debug, Clone)]
pub struct Commit {
    pub id: CommitId,
    pub parents: Vec<C>,
    pub tree: Tree,
    /// What it changed from its first parent, so a rebase can apply it again elsewhere.
    pub edits: Vec<(&'static str, Content)>,
    /// The length of its longest path to the root.
    pub depth: usize,
}

/// Every commit ever made, in either region.
#[derive(Debug, Default)]
pub struct Graph {
    commits: Vec<Commit>,
    by_id: std::collections::HashMap<CommitId, C>,
    contents: Content,
}

/// A commit id that looks like git's: 40 hexadecimal digits, unique per index.
fn commit_id(c: C) -> CommitId {
    let n = c as u64;
    let id = format!(
        "{:016x}{:016x}{:08x}",
        splitmix(n),
        splitmix(n ^ 0x5eed),
        splitmix(n.wrapping_add(7)) >> 32
    );
    id.parse().expect("40 hexadecimal digits")
}

/// splitmix64's finaliser: a bijection on u64, so distinct indices give distinct ids.
fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Graph {
    /// A fresh content number.
    pub fn fresh(&mut self) -> Content {
        self.contents += 1;
        self.contents
    }

    fn add(&mut self, parents: Vec<C>, tree: Tree, edits: Vec<(&'static str, Content)>) -> C {
        let c = self.commits.len();
        let depth = parents
            .iter()
            .map(|&p| self.commits[p].depth + 1)
            .max()
            .unwrap_or(0);
        let id = commit_id(c);
        self.by_id.insert(id.clone(), c);
        self.commits.push(Commit {
            id,
            parents,
            tree,
            edits,
            depth,
        });
        c
    }

    /// The first commit: every path of [`PATHS`], with fresh contents.
    pub fn root(&mut self) -> C {
        let tree = PATHS.iter().map(|&p| (p, self.fresh())).collect();
        self.add(Vec::new(), tree, Vec::new())
    }

    /// A commit on `parent` that writes `edits`.
    pub fn commit(&mut self, parent: C, edits: Vec<(&'static str, Content)>) -> C {
        let mut tree = self.commits[parent].tree.clone();
        for &(path, content) in &edits {
            tree.insert(path, content);
        }
        self.add(vec![parent], tree, edits)
    }

    pub fn get(&self, c: C) -> &Commit {
        &self.commits[c]
    }

    pub fn id(&self, c: C) -> &CommitId {
        &self.commits[c].id
    }

    /// The commit with this id, if it was ever made.
    pub fn find(&self, id: &CommitId) -> Option<C> {
        self.by_id.get(id).copied()
    }

    /// How a commit is shown in traces.
    pub fn label(c: C) -> String {
        format!("c{c}")
    }

    /// `c` and every commit it descends from.
    pub fn ancestors(&self, c: C) -> HashSet<C> {
        let mut seen = HashSet::new();
        let mut todo = vec![c];
        while let Some(n) = todo.pop() {
            if seen.insert(n) {
                todo.extend(&self.commits[n].parents);
            }
        }
        seen
    }

    /// True when `a` is `d` or one of its ancestors.
    pub fn is_ancestor(&self, a: C, d: C) -> bool {
        let floor = self.commits[a].depth;
        let mut seen = HashSet::new();
        let mut todo = vec![d];
        while let Some(n) = todo.pop() {
            if n == a {
                return true;
            }
            if self.commits[n].depth > floor && seen.insert(n) {
                todo.extend(&self.commits[n].parents);
            }
        }
        false
    }

    /// The best common ancestor: a common ancestor that no other common ancestor descends
    /// from (the deepest, when there are several).
    pub fn merge_base(&self, a: C, b: C) -> Option<C> {
        let ours = self.ancestors(a);
        let common: Vec<C> = self
            .ancestors(b)
            .into_iter()
            .filter(|c| ours.contains(c))
            .collect();
        common
            .into_iter()
            .max_by_key(|&c| (self.commits[c].depth, std::cmp::Reverse(c)))
    }

    /// The changes from one tree to another (no tree: every file of `after` is added).
    pub fn tree_diff(before: Option<&Tree>, after: &Tree) -> Vec<Change> {
        let empty = Tree::new();
        let before = before.unwrap_or(&empty);
        let mut out = Vec::new();
        for (path, content) in after {
            match before.get(path) {
                None => out.push(Change::added(path)),
                Some(old) if old != content => out.push(Change::modified(path)),
                Some(_) => {}
            }
        }
        for path in before.keys().filter(|p| !after.contains_key(*p)) {
            out.push(Change::deleted(path));
        }
        out
    }

    /// The changes between two commits, as `GetDifferences` lists them.
    pub fn diff(&self, before: Option<C>, after: C) -> Vec<Change> {
        Self::tree_diff(
            before.map(|b| &self.commits[b].tree),
            &self.commits[after].tree,
        )
    }

    /// Every commit reachable from these.
    pub fn reachable(&self, tips: impl IntoIterator<Item = C>) -> HashSet<C> {
        let mut seen = HashSet::new();
        let mut todo: Vec<C> = tips.into_iter().collect();
        while let Some(n) = todo.pop() {
            if seen.insert(n) {
                todo.extend(&self.commits[n].parents);
            }
        }
        seen
    }
}

/// Which region's repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Side {
    Primary,
    Standby,
}

impl Side {
    pub const BOTH: [Side; 2] = [Side::Primary, Side::Standby];
}

/// Who moved a ref.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writer {
    /// The repository as it was when the run began.
    Seed,
    /// An engineer's push (on the standby: a push straight to it).
    Developer,
    /// tozai's mirror.
    Mirror,
}

/// One ref update, as the repository applied it.
#[derive(Debug, Clone)]
pub struct RefUpdate {
    /// The trace sequence number of the push (total order of everything that happens).
    pub seq: u64,
    pub reference: RefName,
    pub old: Option<C>,
    pub new: Option<C>,
    pub by: Writer,
    /// What kind of push it was (`fast-forward`, `rewind`...), for traces.
    pub kind: &'static str,
    /// The event CodeCommit sent for it.
    pub event: usize,
}

/// One region's repository.
#[derive(Debug)]
pub struct Repo {
    pub side: Side,
    pub refs: BTreeMap<RefName, C>,
    /// The commits it holds.
    pub has: HashSet<C>,
    pub log: Vec<RefUpdate>,
}

impl Repo {
    pub fn new(side: Side) -> Self {
        Self {
            side,
            refs: BTreeMap::new(),
            has: HashSet::new(),
            log: Vec::new(),
        }
    }

    pub fn head(&self, r: &RefName) -> Option<C> {
        self.refs.get(r).copied()
    }

    pub fn branch(&self, name: &str) -> Option<C> {
        self.refs.get(&RefName::Branch(name.to_owned())).copied()
    }

    /// Moves `r` from `expected` to `new` (`None`: absent), as git's push with a lease
    /// does: `false`, and nothing changes, when `r` is not at `expected`.
    pub fn swap(&mut self, r: &RefName, expected: Option<C>, new: Option<C>) -> bool {
        if self.head(r) != expected {
            return false;
        }
        match new {
            Some(c) => self.refs.insert(r.clone(), c),
            None => self.refs.remove(r),
        };
        true
    }

    /// The head of `r` just after the trace step `seq`.
    pub fn head_at(&self, r: &RefName, seq: u64) -> Option<C> {
        self.log
            .iter()
            .rev()
            .find(|u| &u.reference == r && u.seq <= seq)
            .and_then(|u| u.new)
    }

    /// The position in the log of the latest update at or before `seq` that made `c` the
    /// head of `r`: the "epoch" of `c` on `r` at that moment.
    pub fn epoch(&self, r: &RefName, c: C, seq: u64) -> Option<usize> {
        self.log
            .iter()
            .enumerate()
            .rev()
            .find(|(_, u)| &u.reference == r && u.seq <= seq && u.new == Some(c))
            .map(|(i, _)| i)
    }

    /// The updates of one ref, oldest first.
    pub fn history<'a>(&'a self, r: &'a RefName) -> impl Iterator<Item = &'a RefUpdate> + 'a {
        self.log.iter().filter(move |u| &u.reference == r)
    }

    /// The update that last created `r` (it did not exist before it).
    pub fn creation(&self, r: &RefName) -> Option<&RefUpdate> {
        self.log
            .iter()
            .rev()
            .find(|u| &u.reference == r && u.old.is_none())
    }

    /// The update that last moved `r`.
    pub fn last_update(&self, r: &RefName) -> Option<&RefUpdate> {
        self.log.iter().rev().find(|u| &u.reference == r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_base_of_siblings_is_their_parent() {
        let mut g = Graph::default();
        let root = g.root();
        let a = g.commit(root, vec![]);
        let content = g.fresh();
        let b = g.commit(a, vec![("docs/readme.md", content)]);
        let c = g.commit(a, vec![]);
        assert_eq!(g.merge_base(b, c), Some(a));
        assert_eq!(g.merge_base(b, a), Some(a));
        assert!(g.is_ancestor(root, b));
        assert!(!g.is_ancestor(b, c));
        assert_eq!(g.diff(Some(a), b), vec![Change::modified("docs/readme.md")]);
        assert_eq!(g.diff(None, root).len(), PATHS.len());
    }

    #[test]
    fn commit_ids_are_distinct_and_found_again() {
        let mut g = Graph::default();
        let root = g.root();
        let next = g.commit(root, vec![]);
        assert_ne!(g.id(root), g.id(next));
        assert_eq!(g.find(g.id(next)), Some(next));
    }
}
