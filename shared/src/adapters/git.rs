//! [`Git2Changes`]: the [`ChangeSource`] port over a local git repository, with git2.
//!
//! Changes are a tree-to-tree diff with rename detection (git's defaults: 50% similarity
//! among up to 1,000 candidates; beyond that, exact renames only, up to 20,000), so a
//! rename reports both paths. Submodule (gitlink) updates
//! and mode-only changes are modifications; paths are raw bytes, so names that are not
//! UTF-8 never panic.

use std::path::{Path, PathBuf};

use git2::{Delta, DiffFindOptions, DiffOptions, ErrorCode, Oid, Repository};

use crate::change::{Change, ChangeKind, RepoPath};
use crate::divergence::{LoggedCommit, Side};
use crate::ports::{ChangeError, ChangeSource};
use crate::refs::{CommitId, RefName};

/// git's `diff.renameLimit`: content-similarity rename detection among this many files.
const INEXACT_RENAME_LIMIT: usize = 1000;
/// Exact (same content) rename detection among this many files at most.
const EXACT_RENAME_LIMIT: usize = 20_000;

/// A local git repository as a source of changes.
#[derive(Debug, Clone)]
pub struct Git2Changes {
    dir: PathBuf,
}

impl Git2Changes {
    /// Opens the repository at (or above) `dir`.
    pub fn open(dir: &Path) -> Result<Self, ChangeError> {
        let repo = Repository::discover(dir).map_err(|e| ChangeError::NotARepository {
            repository: dir.display().to_string(),
            source: Box::new(e),
        })?;
        let dir = repo.path().to_owned();
        Ok(Self { dir })
    }

    fn repo(&self) -> Result<Repository, ChangeError> {
        Repository::open(&self.dir).map_err(|e| self.backend("cannot open the repository", e))
    }

    fn name(&self) -> String {
        self.dir.display().to_string()
    }

    fn backend(&self, context: &str, e: git2::Error) -> ChangeError {
        ChangeError::Backend {
            repository: self.name(),
            context: context.to_owned(),
            transient: false,
            source: Box::new(e),
        }
    }

    fn unknown(&self, spec: &str) -> ChangeError {
        ChangeError::UnknownRevision {
            repository: self.name(),
            spec: spec.to_owned(),
        }
    }

    /// Resolves `A..B` to (A, B), or one commit C to (C's first parent, C); a root
    /// commit has no base.
    pub fn resolve_range(&self, spec: &str) -> Result<(Option<CommitId>, CommitId), ChangeError> {
        let repo = self.repo()?;
        let commit = |s: &str| -> Result<Oid, ChangeError> {
            let obj = repo.revparse_single(s).map_err(|_| self.unknown(s))?;
            let c = obj.peel_to_commit().map_err(|_| self.unknown(s))?;
            Ok(c.id())
        };
        if spec.contains("...") {
            return Err(self.unknown(spec));
        }
        if let Some((a, b)) = spec.split_once("..") {
            let a = if a.is_empty() { "HEAD" } else { a };
            let b = if b.is_empty() { "HEAD" } else { b };
            return Ok((Some(to_id(commit(a)?)), to_id(commit(b)?)));
        }
        let after = commit(spec)?;
        let c = repo.find_commit(after).map_err(|_| self.unknown(spec))?;
        let before = c.parent_ids().next();
        Ok((before.map(to_id), to_id(after)))
    }

    /// The branch checked out, if any.
    pub fn current_branch(&self) -> Result<Option<RefName>, ChangeError> {
        let repo = self.repo()?;
        let head = match repo.head() {
            Ok(h) => h,
            Err(e) if matches!(e.code(), ErrorCode::UnbornBranch | ErrorCode::NotFound) => {
                return Ok(None);
            }
            Err(e) => return Err(self.backend("cannot read HEAD", e)),
        };
        if !head.is_branch() {
            return Ok(None);
        }
        Ok(head.name().ok().and_then(|n| n.parse().ok()))
    }

    /// The changes from `before` to `after`, synchronously.
    pub fn changes_between(
        &self,
        before: Option<&CommitId>,
        after: &CommitId,
    ) -> Result<Vec<Change>, ChangeError> {
        let repo = self.repo()?;
        let tree = |c: &CommitId| -> Result<git2::Tree<'_>, ChangeError> {
            repo.find_commit(self.oid(c)?)
                .and_then(|commit| commit.tree())
                .map_err(|_| self.unknown(c.as_str()))
        };
        let new = tree(after)?;
        let old = before.map(tree).transpose()?;
        let mut opts = DiffOptions::new();
        opts.include_typechange(true);
        let mut diff = repo
            .diff_tree_to_tree(old.as_ref(), Some(&new), Some(&mut opts))
            .map_err(|e| self.backend("cannot diff the commits", e))?;
        // Like git: similar-content renames among up to 1,000 candidates; past that, exact
        // renames only (cheap: ids are compared), so a large move is still paired.
        let (added, deleted) =
            diff.deltas()
                .fold((0usize, 0usize), |(a, d), delta| match delta.status() {
                    Delta::Added => (a + 1, d),
                    Delta::Deleted => (a, d + 1),
                    _ => (a, d),
                });
        let candidates = added.max(deleted);
        let mut find = DiffFindOptions::new();
        find.renames(true).rename_threshold(50);
        if candidates <= INEXACT_RENAME_LIMIT {
            find.rename_limit(INEXACT_RENAME_LIMIT);
        } else {
            find.exact_match_only(true)
                .rename_limit(candidates.min(EXACT_RENAME_LIMIT));
        }
        diff.find_similar(Some(&mut find))
            .map_err(|e| self.backend("cannot detect renames", e))?;
        let mut out = Vec::with_capacity(diff.deltas().len());
        for delta in diff.deltas() {
            let old_path = delta.old_file().path_bytes().map(RepoPath::from_bytes);
            let new_path = delta.new_file().path_bytes().map(RepoPath::from_bytes);
            let (kind, path, old) = match delta.status() {
                Delta::Added => (ChangeKind::Added, new_path, None),
                Delta::Deleted => (ChangeKind::Deleted, old_path, None),
                Delta::Renamed => (ChangeKind::Renamed, new_path, old_path),
                Delta::Copied => (ChangeKind::Copied, new_path, old_path),
                Delta::Modified | Delta::Typechange => (ChangeKind::Modified, new_path, None),
                // Unmodified, ignored, untracked, unreadable and conflicted do not occur
                // in a tree-to-tree diff.
                _ => continue,
            };
            let Some(path) = path else { continue };
            out.push(Change {
                path,
                old_path: old,
                kind,
            });
        }
        Ok(out)
    }
}

impl ChangeSource for Git2Changes {
    fn changes(
        &self,
        before: Option<&CommitId>,
        after: &CommitId,
    ) -> impl Future<Output = Result<Vec<Change>, ChangeError>> + Send {
        std::future::ready(self.changes_between(before, after))
    }
}

impl Git2Changes {
    fn oid(&self, id: &CommitId) -> Result<Oid, ChangeError> {
        Oid::from_str(id.as_str()).map_err(|_| self.unknown(id.as_str()))
    }

    /// The best common ancestor of two commits, `None` when unrelated.
    pub fn merge_base_of(
        &self,
        a: &CommitId,
        b: &CommitId,
    ) -> Result<Option<CommitId>, ChangeError> {
        let repo = self.repo()?;
        let (oa, ob) = (self.oid(a)?, self.oid(b)?);
        for (id, oid) in [(a, oa), (b, ob)] {
            repo.find_commit(oid)
                .map_err(|_| self.unknown(id.as_str()))?;
        }
        match repo.merge_base(oa, ob) {
            Ok(base) => Ok(Some(to_id(base))),
            Err(e) if e.code() == ErrorCode::NotFound => Ok(None),
            Err(e) => Err(self.backend("cannot compute a merge base", e)),
        }
    }

    /// How many commits `new` has that `old` lacks (`git rev-list --count old..new`).
    pub fn count_between(&self, old: &CommitId, new: &CommitId) -> Result<u64, ChangeError> {
        let repo = self.repo()?;
        let mut walk = repo
            .revwalk()
            .map_err(|e| self.backend("cannot walk history", e))?;
        walk.push(self.oid(new)?)
            .map_err(|_| self.unknown(new.as_str()))?;
        walk.hide(self.oid(old)?)
            .map_err(|_| self.unknown(old.as_str()))?;
        let mut n = 0;
        for step in walk {
            step.map_err(|e| self.backend("cannot walk history", e))?;
            n += 1;
        }
        Ok(n)
    }

    /// The commit `branch` points at, `None` when there is no such branch.
    pub fn branch_head_of(&self, branch: &str) -> Result<Option<CommitId>, ChangeError> {
        let repo = self.repo()?;
        let name = format!("refs/heads/{branch}");
        match repo.refname_to_id(&name) {
            Ok(oid) => Ok(Some(to_id(oid))),
            Err(e) if e.code() == ErrorCode::NotFound => Ok(None),
            Err(e) => Err(self.backend("cannot read a branch", e)),
        }
    }

    /// Every local branch's short name.
    pub fn branch_names(&self) -> Result<Vec<String>, ChangeError> {
        let repo = self.repo()?;
        let branches = repo
            .branches(Some(git2::BranchType::Local))
            .map_err(|e| self.backend("cannot list branches", e))?;
        let mut names = Vec::new();
        for branch in branches {
            let (branch, _) = branch.map_err(|e| self.backend("cannot list branches", e))?;
            if let Ok(Some(name)) = branch.name() {
                names.push(name.to_owned());
            }
        }
        Ok(names)
    }

    /// The first parent of `commit`; `None` for a root commit.
    pub fn first_parent_of(&self, commit: &CommitId) -> Result<Option<CommitId>, ChangeError> {
        let repo = self.repo()?;
        let found = repo
            .find_commit(self.oid(commit)?)
            .map_err(|_| self.unknown(commit.as_str()))?;
        Ok(found.parent_ids().next().map(to_id))
    }
}

/// What `tozai status` reads of the source's history (in the mirror's cache).
impl Git2Changes {
    /// The commit `id` names: itself, or what an annotated tag points at (peeled).
    pub fn peel_to_commit(&self, id: &CommitId) -> Result<CommitId, ChangeError> {
        let repo = self.repo()?;
        let object = repo
            .find_object(self.oid(id)?, None)
            .and_then(|o| o.peel_to_commit())
            .map_err(|_| self.unknown(id.as_str()))?;
        Ok(to_id(object.id()))
    }

    /// The commits `new` has that `old` lacks (`git log old..new`; without `old`, every
    /// commit of `new`): how many, and the first `limit` of them, newest first.
    pub fn log_between(
        &self,
        old: Option<&CommitId>,
        new: &CommitId,
        limit: usize,
    ) -> Result<Side, ChangeError> {
        let repo = self.repo()?;
        let exists = |id: &CommitId| {
            let oid = self.oid(id)?;
            repo.find_object(oid, None)
                .map(|_| oid)
                .map_err(|_| self.unknown(id.as_str()))
        };
        let from = exists(new)?;
        let hidden: Vec<Oid> = old.map(exists).transpose()?.into_iter().collect();
        let sorting = git2::Sort::TOPOLOGICAL | git2::Sort::TIME;
        log_side(&repo, from, &hidden, sorting, limit)
            .map_err(|e| self.backend("cannot walk history", e))
    }

    /// The oldest commit on `new`'s first-parent chain that `old` does not contain (walking
    /// first parents from `new` until a commit `old` contains, or the root), with its
    /// committer time in seconds since the epoch; `None` when `old` contains `new`.
    pub fn first_lacking(
        &self,
        old: Option<&CommitId>,
        new: &CommitId,
    ) -> Result<Option<(CommitId, i64)>, ChangeError> {
        let repo = self.repo()?;
        let old = old.map(|o| self.oid(o)).transpose()?;
        let contains = |c: Oid| match old {
            Some(o) => o == c || repo.graph_descendant_of(o, c).unwrap_or(false),
            None => false,
        };
        let mut last = None;
        let mut at = Some(
            repo.find_commit(self.oid(new)?)
                .map_err(|_| self.unknown(new.as_str()))?,
        );
        while let Some(commit) = at.take() {
            if contains(commit.id()) {
                break;
            }
            at = commit.parent(0).ok();
            last = Some(commit);
        }
        Ok(last.map(|c| (to_id(c.id()), c.committer().when().seconds())))
    }
}

/// The commits `from` reaches and none of `hidden` does (`git log ^HIDDEN... FROM`), in
/// `sorting`'s order: how many, and the first `limit` of them, each with its subject (cut
/// to a bounded size by [`LoggedCommit::new`]). `tozai status`'s lists of what a standby
/// lacks and both sides of a divergence are read this way.
pub(super) fn log_side(
    repo: &Repository,
    from: Oid,
    hidden: &[Oid],
    sorting: git2::Sort,
    limit: usize,
) -> Result<Side, git2::Error> {
    let mut walk = repo.revwalk()?;
    walk.set_sorting(sorting)?;
    walk.push(from)?;
    for h in hidden {
        walk.hide(*h)?;
    }
    let mut side = Side::default();
    for oid in walk {
        let oid = oid?;
        side.total += 1;
        if side.commits.len() < limit {
            let commit = repo.find_commit(oid)?;
            let subject = String::from_utf8_lossy(commit.summary_bytes().unwrap_or_default());
            side.commits.push(LoggedCommit::new(to_id(oid), &subject));
        }
    }
    Ok(side)
}

/// git2's id as a [`CommitId`]: infallible, git2 writes ids in hexadecimal.
pub(super) fn to_id(oid: Oid) -> CommitId {
    oid.to_string().parse().expect("git2 ids are hexadecimal")
}

impl crate::ports::Ancestry for Git2Changes {
    fn merge_base(
        &self,
        a: &CommitId,
        b: &CommitId,
    ) -> impl Future<Output = Result<Option<CommitId>, ChangeError>> + Send {
        std::future::ready(self.merge_base_of(a, b))
    }

    fn branch_head(
        &self,
        branch: &str,
    ) -> impl Future<Output = Result<Option<CommitId>, ChangeError>> + Send {
        std::future::ready(self.branch_head_of(branch))
    }

    fn first_parent(
        &self,
        commit: &CommitId,
    ) -> impl Future<Output = Result<Option<CommitId>, ChangeError>> + Send {
        std::future::ready(self.first_parent_of(commit))
    }

    fn branches(&self) -> impl Future<Output = Result<Vec<String>, ChangeError>> + Send {
        std::future::ready(self.branch_names())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::Ancestry;

    /// `git ARGS` in `dir`, its trimmed standard output.
    fn git(dir: &Path, args: &[&str]) -> String {
        let out = std::process::Command::new("git")
            .current_dir(dir)
            .args(["-c", "user.name=t", "-c", "user.email=t@tozai.invalid"])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    fn commit_file(dir: &Path, name: &str, message: &str) -> CommitId {
        std::fs::write(dir.join(name), message).unwrap();
        git(dir, &["add", name]);
        git(dir, &["commit", "-q", "-m", message]);
        git(dir, &["rev-parse", "HEAD"]).parse().unwrap()
    }

    /// The first parent, as `git rev-parse C^1` says: a merge's is the branch merged into,
    /// a root commit has none, an unknown commit is named.
    #[tokio::test]
    async fn first_parent_is_gits_first_parent() {
        let tmp = tempfile::TempDir::new().unwrap();
        let dir = tmp.path();
        git(dir, &["init", "-q", "-b", "main"]);
        let root = commit_file(dir, "a", "root");
        let main1 = commit_file(dir, "a", "main 1");
        git(dir, &["switch", "-q", "-c", "feature", root.as_str()]);
        let feature = commit_file(dir, "b", "feature");
        git(dir, &["switch", "-q", "main"]);
        git(dir, &["merge", "-q", "--no-ff", "-m", "merge", "feature"]);
        let merge: CommitId = git(dir, &["rev-parse", "HEAD"]).parse().unwrap();

        let repo = Git2Changes::open(dir).unwrap();
        assert_eq!(repo.first_parent(&root).await.unwrap(), None);
        assert_eq!(repo.first_parent(&main1).await.unwrap(), Some(root.clone()));
        assert_eq!(repo.first_parent(&feature).await.unwrap(), Some(root));
        let expected: CommitId = git(dir, &["rev-parse", "HEAD^1"]).parse().unwrap();
        assert_eq!(expected, main1);
        assert_eq!(repo.first_parent(&merge).await.unwrap(), Some(main1));
        let missing: CommitId = "0123456789abcdef0123456789abcdef01234567".parse().unwrap();
        let err = repo.first_parent(&missing).await.unwrap_err();
        assert!(matches!(err, ChangeError::UnknownRevision { .. }), "{err}");
        assert!(err.to_string().contains(missing.as_str()), "{err}");
    }

    /// What `tozai status` reads, as git says it: `rev-parse TAG^{commit}`,
    /// `rev-list --count old..new` and `log --format=%s`, and the first-parent walk from a
    /// merge that stops at the first commit the old head contains.
    #[test]
    fn status_reads_peeled_tags_logs_and_where_a_lag_began() {
        let tmp = tempfile::TempDir::new().unwrap();
        let dir = tmp.path();
        git(dir, &["init", "-q", "-b", "main"]);
        let standby = commit_file(dir, "a", "standby has this");
        git(dir, &["switch", "-q", "-c", "feature"]);
        commit_file(dir, "b", "feature 1");
        commit_file(dir, "b", "feature 2");
        git(dir, &["switch", "-q", "main"]);
        let main1 = commit_file(dir, "a", "main 1");
        git(
            dir,
            &["merge", "-q", "--no-ff", "-m", "merge feature", "feature"],
        );
        git(dir, &["tag", "-a", "v1", "-m", "release"]);
        let head: CommitId = git(dir, &["rev-parse", "HEAD"]).parse().unwrap();
        let tag: CommitId = git(dir, &["rev-parse", "v1"]).parse().unwrap();
        assert_ne!(tag, head);

        let repo = Git2Changes::open(dir).unwrap();
        assert_eq!(repo.peel_to_commit(&tag).unwrap(), head);
        assert_eq!(repo.peel_to_commit(&head).unwrap(), head);
        let side = repo.log_between(Some(&standby), &head, 2).unwrap();
        let (count, lines) = (side.total, side.commits);
        let git_count: u64 = git(dir, &["rev-list", "--count", &format!("{standby}..{head}")])
            .parse()
            .unwrap();
        assert_eq!(count, git_count);
        assert_eq!(count, 4);
        // Newest first (the rest tie on their dates here): the merge, then one parent.
        assert_eq!(lines.len(), 2);
        assert_eq!(
            (&lines[0].commit, lines[0].subject.as_str()),
            (&head, "merge feature")
        );
        assert!(["main 1", "feature 2"].contains(&lines[1].subject.as_str()));
        assert_eq!(repo.log_between(None, &standby, 5).unwrap().total, 1);
        // main 1 is the first commit on the first-parent chain the standby lacks.
        let (first, time) = repo.first_lacking(Some(&standby), &head).unwrap().unwrap();
        assert_eq!(first, main1);
        let git_time: i64 = git(dir, &["log", "-1", "--format=%ct", main1.as_str()])
            .parse()
            .unwrap();
        assert_eq!(time, git_time);
        assert_eq!(repo.first_lacking(Some(&head), &head).unwrap(), None);
        assert_eq!(
            repo.first_lacking(None, &main1).unwrap().unwrap().0,
            standby
        );
    }
}
