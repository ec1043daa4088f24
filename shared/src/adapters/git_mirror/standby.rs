//! The standby's side of a divergence, in the mirror's cache: its diverged refs fetched
//! into a private namespace, both sides' commits listed as `git log --left-right` would,
//! and the backup branches a `--force` pushes first.
//!
//! **The private namespaces.** The standby's diverged refs whose commits the cache lacks
//! are fetched (with the target's credentials, the authenticated fetch the source uses) to
//! `refs/tozai/standby/<SHA-256 of the full ref name, in hex>` ([`standby_ref`]): one flat
//! name per ref, so that `hotfix` fetched once never blocks `hotfix/a` later (a file where
//! a directory must go), and short enough for a file name whatever the ref's length. There
//! they also say which objects came from the standby rather than the source: a commit any
//! of them reaches, and no source ref does, is never taken for the source's
//! ([`from_the_source`]). (Caches of earlier versions hold them under
//! `refs/tozai/standby/heads/...` and `.../tags/...`: still read, never written again.) A
//! backup's commit is named locally by
//! `refs/tozai/heads/tozai-backup/...` while it is pushed. The mirror never plans, pushes
//! or prunes anything there: the source's refs are read ([`local_refs`](super::local_refs))
//! and pruned ([`prune_to`](super::prune_to)) under `refs/heads/` and `refs/tags/` only. The
//! pack-as-is push is never taken with them: it needs a standby with no ref at all (so
//! nothing diverged, nothing fetched), a cache this run filled from empty (so no earlier
//! run's refs), and every cache ref pushed ([`pack_push_plan`](super::pack_push_plan)).
//!
//! **Backups are branches**, `refs/heads/tozai-backup/<UTC yyyymmddThhmmssZ>/<heads|tags>/<short
//! name>` ([`BACKUP_PREFIX`]), because CodeCommit is not documented to accept refs outside
//! `refs/heads/` and `refs/tags/`. A backup points at the standby's old commit (a tag's
//! commit, peeled: a branch holds a commit). The mirror never plans them and its ledger
//! never owns them ([`plan_refs`](crate::mirror::plan_refs)).

use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

use git2::{Oid, Repository, Sort};

use super::{PushResult, RepoHistory, fetch_refspecs, push_steps, to_oid};
use crate::divergence::{LOG_COMMITS, LeftRight, Side};
use crate::mirror::{
    Backup, History, MirrorOptions, MirrorOutcome, RefAction, RefMap, RefResult, RefStatus,
    RefStep, plan_refs,
};
use crate::ports::{GitRemote, MirrorError, MirrorRequest};
use crate::refs::{BACKUP_PREFIX, CommitId, RefName};

/// True for a step that leaves the standby's value behind: a diverged ref, or one a
/// `--force` overwrites or deletes. Its commits are listed; a forced one is backed up.
fn discards(action: &RefAction) -> bool {
    matches!(
        action,
        RefAction::Diverged { .. }
            | RefAction::Update { forced: true, .. }
            | RefAction::Delete { forced: true, .. }
    )
}

fn forced(action: &RefAction) -> bool {
    matches!(
        action,
        RefAction::Update { forced: true, .. } | RefAction::Delete { forced: true, .. }
    )
}

/// Fetches the standby's refs that `steps` leave behind into the cache, plans again with
/// their commits known (the actions are the same; the causes may now be told: a rewind, a
/// tag's commit), and lists both sides' commits of each. A diverged ref's values are
/// returned peeled ([`peeled`]). A fetch that fails is logged:
/// the run goes on, without those lists (and a `--force` then cannot back them up).
pub(super) fn explain(
    repo: &Repository,
    request: &MirrorRequest,
    source_refs: &RefMap,
    target_refs: &RefMap,
    options: &MirrorOptions,
    steps: Vec<RefStep>,
) -> (Vec<RefStep>, BTreeMap<RefName, LeftRight>) {
    let wanted: Vec<&RefName> = (steps.iter())
        .filter(|s| discards(&s.action))
        .map(|s| &s.reference)
        .collect();
    let value = |r: &RefName| target_refs.get(r).map(to_oid);
    let seen = from_the_source(
        repo,
        source_refs,
        wanted.iter().filter_map(|r| target_refs.get(r)),
    );
    // Only what the cache lacks is fetched: a commit it holds comes with its history.
    let absent: Vec<&RefName> = (wanted.iter().copied())
        .filter(|r| value(r).is_some_and(|v| repo.find_object(v, None).is_err()))
        .collect();
    if let Err(e) = fetch_standby_refs(repo, &request.target, &absent) {
        tracing::warn!(standby = %request.target.shown, refs = wanted.len(), error = %crate::adapters::error_chain(&e), "cannot fetch the standby's diverged refs: their commits are not listed, and --force cannot back them up");
    }
    if wanted.is_empty() {
        return (steps, BTreeMap::new());
    }
    let history = SeenHistory {
        repo: RepoHistory(repo),
        seen,
    };
    let steps = plan_refs(
        source_refs,
        target_refs,
        &request.selection,
        &history,
        options,
    );
    let mut tips: Vec<CommitId> = (source_refs.values())
        .filter_map(|v| history.commit_of(v))
        .collect();
    tips.sort();
    tips.dedup();
    let logs = (steps.iter())
        .filter(|s| discards(&s.action))
        .filter_map(|s| {
            let standby = s.action.expected_old()?;
            let source = source_refs.get(&s.reference);
            let log = left_right(repo, &history, standby, source, &tips)?;
            Some((s.reference.clone(), log))
        })
        .collect();
    (
        steps.into_iter().map(|s| peeled(s, &history)).collect(),
        logs,
    )
}

/// A diverged step named by commits: an annotated tag's values peeled (when the cache
/// has them), so the report's sentence names what status names. A diverged step is never
/// pushed, so no lease checks these values.
fn peeled(step: RefStep, history: &impl History) -> RefStep {
    let RefAction::Diverged {
        source,
        standby,
        cause,
    } = step.action
    else {
        return step;
    };
    let peel = |id: CommitId| history.commit_of(&id).unwrap_or(id);
    RefStep {
        reference: step.reference,
        action: RefAction::Diverged {
            source: source.map(peel),
            standby: peel(standby),
            cause,
        },
    }
}

/// Of the standby's `values`, those the cache holds because the source sent them once (a
/// force-push may have left them behind): not those that runs fetched from the standby,
/// that is, no value any ref under `refs/tozai/standby/` (never pruned) reaches unless a
/// source ref reaches it too (then it is the source's anyway). One revwalk: the standby's
/// fetched tips pushed, the source's refs hidden.
fn from_the_source<'a>(
    repo: &Repository,
    source_refs: &RefMap,
    values: impl Iterator<Item = &'a CommitId>,
) -> BTreeSet<CommitId> {
    let fetched: BTreeSet<Oid> = repo
        .references_glob(&format!("{STANDBY_REFS}*"))
        .map(|refs| refs.flatten().filter_map(|r| r.target()).collect())
        .unwrap_or_default();
    let from_standby = standby_only(repo, &fetched, source_refs);
    let peeled = |v: Oid| {
        repo.find_object(v, None)
            .and_then(|o| o.peel_to_commit())
            .map(|c| c.id())
    };
    let sent_by_source = |v: &CommitId| {
        let Some(from_standby) = &from_standby else {
            return false;
        };
        let v = to_oid(v);
        !fetched.contains(&v) && peeled(v).is_ok_and(|c| !from_standby.contains(&c))
    };
    values.filter(|v| sent_by_source(v)).cloned().collect()
}

/// The commits the standby's fetched `tips` reach that no source ref reaches; `None` when
/// the walk fails (then nothing counts as the source's but what its refs reach).
fn standby_only(
    repo: &Repository,
    tips: &BTreeSet<Oid>,
    source_refs: &RefMap,
) -> Option<BTreeSet<Oid>> {
    let mut walk = repo.revwalk().ok()?;
    for tip in tips {
        // A fetched tag that is not a commit's is skipped: it reaches no commit.
        let _ = walk.push(*tip);
    }
    for source in source_refs.values() {
        // A source ref the cache cannot walk hides nothing.
        let _ = walk.hide(to_oid(source));
    }
    walk.collect::<Result<_, _>>().ok()
}

/// The cache's history, knowing which of the standby's values the source sent once.
struct SeenHistory<'r> {
    repo: RepoHistory<'r>,
    seen: BTreeSet<CommitId>,
}

impl History for SeenHistory<'_> {
    fn is_ancestor(&self, ancestor: &CommitId, descendant: &CommitId) -> bool {
        self.repo.is_ancestor(ancestor, descendant)
    }

    fn commit_of(&self, id: &CommitId) -> Option<CommitId> {
        self.repo.commit_of(id)
    }

    fn reachable_from_any(&self, commit: &CommitId, tips: &[CommitId]) -> bool {
        self.repo.reachable_from_any(commit, tips)
    }

    fn fetched_from_source(&self, id: &CommitId) -> bool {
        self.seen.contains(id)
    }
}

/// The backup branches on the standby, from its refs as the plan read them.
pub(super) fn backups_on(target_refs: &RefMap) -> Vec<Backup> {
    (target_refs.iter())
        .filter(|(r, _)| r.is_backup())
        .map(|(r, c)| Backup {
            reference: r.clone(),
            commit: c.clone(),
        })
        .collect()
}

/// The backup branch of each ref `steps` force, for a run stamped `stamp`.
pub(super) fn backup_names(steps: &[RefStep], stamp: &str) -> BTreeMap<RefName, RefName> {
    (steps.iter())
        .filter(|s| forced(&s.action))
        .map(|s| (s.reference.clone(), backup_name(&s.reference, stamp)))
        .collect()
}

/// Gives each result its commits (`logs`) and, when it was forced, its backup.
fn annotate(
    refs: &mut [RefResult],
    logs: &BTreeMap<RefName, LeftRight>,
    backups: &BTreeMap<RefName, RefName>,
) {
    for r in refs {
        r.log = logs.get(&r.reference).cloned();
        if matches!(
            r.status,
            RefStatus::Updated { forced: true, .. } | RefStatus::Deleted { .. }
        ) {
            r.backup = backups.get(&r.reference).cloned();
        }
    }
}

/// Completes a run's outcome: the refs refused for want of a backup, in name order, and
/// every ref's commits and backup.
pub(super) fn finish(
    outcome: &mut MirrorOutcome,
    refused: Vec<RefResult>,
    logs: &BTreeMap<RefName, LeftRight>,
    backed_up: &BTreeMap<RefName, RefName>,
) {
    if !refused.is_empty() {
        outcome.refs.extend(refused);
        outcome.refs.sort_by(|a, b| a.reference.cmp(&b.reference));
    }
    annotate(&mut outcome.refs, logs, backed_up);
    outcome
        .backups
        .sort_by(|a, b| a.reference.cmp(&b.reference));
    outcome.backups.dedup();
}

/// Before a `--force` overwrites or deletes a standby ref, pushes a backup branch at its
/// old commit ([`backup_name`]; one this run pushed already, in an earlier attempt, is
/// kept). A ref whose backup is not on the standby after this is not forced: its step is
/// taken out of `steps` and it is returned, rejected with the reason. The backups pushed go
/// in `outcome.backups` and `backed_up` (ref to backup).
#[allow(clippy::too_many_arguments)]
pub(super) fn push_backups(
    repo: &Repository,
    target: &GitRemote,
    target_refs: &RefMap,
    steps: &mut Vec<RefStep>,
    stamp: &str,
    per_push: usize,
    outcome: &mut MirrorOutcome,
    backed_up: &mut BTreeMap<RefName, RefName>,
) -> Result<Vec<RefResult>, MirrorError> {
    let mut plan = plan_backups(repo, target_refs, steps, stamp, backed_up);
    if !plan.pushes.is_empty() {
        let backup_steps: Vec<RefStep> = plan.pushes.iter().map(|(_, s)| s.clone()).collect();
        let mut pushed = MirrorOutcome {
            refs: Vec::new(),
            objects_sent: 0,
            bytes_sent: 0,
            backups: Vec::new(),
            ..outcome.clone()
        };
        let result = push_steps(repo, target, &backup_steps, per_push, None, &mut pushed);
        let _ = drop_refs_under(repo, "refs/tozai/heads/");
        let moved = match result? {
            PushResult::Moved(refs) => Some(refs),
            PushResult::Done => None,
        };
        outcome.objects_sent += pushed.objects_sent;
        outcome.bytes_sent += pushed.bytes_sent;
        for (reference, step) in plan.pushes {
            let result = pushed.refs.iter().find(|r| r.reference == step.reference);
            let why = match (&moved, result.map(|r| &r.status)) {
                (None, Some(RefStatus::Created { new })) => {
                    outcome.backups.push(Backup {
                        reference: step.reference.clone(),
                        commit: new.clone(),
                    });
                    backed_up.insert(reference, step.reference);
                    continue;
                }
                (None, Some(RefStatus::Rejected { reason })) => reason.clone(),
                (Some(refs), _) => format!("the standby moved meanwhile ({refs})"),
                (None, _) => "the server reported no result".into(),
            };
            plan.failed.insert(reference, why);
        }
    }
    Ok(refuse(steps, plan.failed, stamp))
}

/// The backups a run must push, and the refs whose backup cannot be.
struct BackupPlan {
    /// Each forced ref, and its backup branch's creation.
    pushes: Vec<(RefName, RefStep)>,
    /// The forced refs whose backup cannot be pushed, and why.
    failed: BTreeMap<RefName, String>,
}

/// The backup of each ref `steps` force: at the standby's old commit, named locally for the
/// push (`refs/tozai/heads/...`). One already on the standby at that commit (pushed by an
/// earlier attempt of this run) goes in `backed_up`; one [`check_backup`] refuses fails it.
fn plan_backups(
    repo: &Repository,
    target_refs: &RefMap,
    steps: &[RefStep],
    stamp: &str,
    backed_up: &mut BTreeMap<RefName, RefName>,
) -> BackupPlan {
    let history = RepoHistory(repo);
    let mut plan = BackupPlan {
        pushes: Vec::new(),
        failed: BTreeMap::new(),
    };
    for (reference, backup) in backup_names(steps, stamp) {
        let why = match check_backup(&history, target_refs, steps, &reference, &backup) {
            Err(why) => why,
            Ok(None) => {
                backed_up.insert(reference, backup);
                continue;
            }
            Ok(Some(commit)) => {
                let local = backup_source_ref(&backup);
                match repo.reference(&local, to_oid(&commit), true, "tozai backup") {
                    Ok(_) => {
                        let action = RefAction::Create { new: commit };
                        let step = RefStep {
                            reference: backup,
                            action,
                        };
                        plan.pushes.push((reference, step));
                        continue;
                    }
                    Err(e) => format!("cannot name it in the cache: {e}"),
                }
            }
        };
        plan.failed.insert(reference, why);
    }
    plan
}

/// Whether the forced `reference` can be backed up to `backup`, before anything is
/// created: `Ok(Some(commit))` to push at the standby's old commit, `Ok(None)` when it is
/// there already, or why not (the cache lacks that commit, or another branch has the name).
fn check_backup(
    history: &RepoHistory<'_>,
    target_refs: &RefMap,
    steps: &[RefStep],
    reference: &RefName,
    backup: &RefName,
) -> Result<Option<CommitId>, String> {
    let step = steps.iter().find(|s| &s.reference == reference);
    let old = step.and_then(|s| s.action.expected_old());
    match (
        old.and_then(|o| history.commit_of(o)),
        target_refs.get(backup),
    ) {
        (None, _) => Err("the standby's commit could not be fetched".to_owned()),
        (Some(commit), Some(there)) if *there == commit => Ok(None),
        (Some(_), Some(_)) => Err("a branch of that name is already there".to_owned()),
        (Some(commit), None) => Ok(Some(commit)),
    }
}

/// For a dry run: the forced refs whose backup the real run would refuse before pushing
/// anything ([`check_backup`]), taken out of `steps` and returned rejected, as
/// [`push_backups`] does. Nothing is created, in the cache or on the standby (a refusal by
/// the server itself cannot be foreseen).
pub(super) fn refuse_unbackable(
    repo: &Repository,
    target_refs: &RefMap,
    steps: &mut Vec<RefStep>,
    stamp: &str,
) -> Vec<RefResult> {
    let history = RepoHistory(repo);
    let failed = (backup_names(steps, stamp).into_iter())
        .filter_map(|(reference, backup)| {
            let why = check_backup(&history, target_refs, steps, &reference, &backup).err()?;
            Some((reference, why))
        })
        .collect();
    refuse(steps, failed, stamp)
}

/// Takes the steps whose backup failed out of `steps`, as rejected results.
fn refuse(
    steps: &mut Vec<RefStep>,
    mut failed: BTreeMap<RefName, String>,
    stamp: &str,
) -> Vec<RefResult> {
    let mut refused = Vec::new();
    steps.retain(|s| {
        let Some(why) = failed.remove(&s.reference) else {
            return true;
        };
        let backup = backup_name(&s.reference, stamp).full();
        tracing::info!(reference = %s.reference, backup = %backup, reason = %why, "the backup was refused: not forcing this ref");
        let reason = format!("not forced: its backup {backup} could not be pushed first: {why}");
        refused.push(RefResult::new(
            s.reference.clone(),
            RefStatus::Rejected { reason },
        ));
        false
    });
    refused
}

/// Where the standby's diverged refs are fetched in the cache.
const STANDBY_REFS: &str = "refs/tozai/standby/";

/// The cache ref holding the standby's `reference`: `refs/tozai/standby/` and the SHA-256
/// of its full name in hex. A flat name cannot collide with another ref's (`hotfix` and
/// `hotfix/a`), and stays 64 characters however long the ref's name (a ref's name in hex
/// could pass the 255 bytes a file name may have).
pub(super) fn standby_ref(reference: &RefName) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(reference.full().as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("{STANDBY_REFS}{hex}")
}

/// The cache ref a backup branch is pushed from: `refs/tozai/heads/tozai-backup/...`.
pub(super) fn backup_source_ref(backup: &RefName) -> String {
    let full = backup.full();
    format!("refs/tozai/{}", &full["refs/".len()..])
}

/// The time stamp of a run's backups: `20260102T030405Z` (UTC).
pub(super) fn backup_stamp(now: SystemTime) -> String {
    format!("{}Z", crate::git_auth::timestamp(now))
}

/// The backup branch of `reference` for a run stamped `stamp`:
/// `tozai-backup/<stamp>/heads/main`, `tozai-backup/<stamp>/tags/v1`.
pub(super) fn backup_name(reference: &RefName, stamp: &str) -> RefName {
    let kind = if reference.is_tag() { "tags" } else { "heads" };
    RefName::Branch(format!(
        "{BACKUP_PREFIX}{stamp}/{kind}/{}",
        reference.short()
    ))
}

/// Fetches the standby's `refs` from `target` to `refs/tozai/standby/` ([`standby_ref`]):
/// their commits are then in the cache, to list and to back up. Nothing there is ever
/// pruned: each value says that its objects came from the standby, not the source
/// ([`from_the_source`]).
pub(super) fn fetch_standby_refs(
    repo: &Repository,
    target: &GitRemote,
    refs: &[&RefName],
) -> Result<(), MirrorError> {
    if refs.is_empty() {
        return Ok(());
    }
    let refspecs: Vec<String> = (refs.iter())
        .map(|r| format!("+{}:{}", r.full(), standby_ref(r)))
        .collect();
    let context = "fetching the standby's diverged refs";
    fetch_refspecs(repo, target, context, &refspecs, None, |_| Ok(()))
}

/// Deletes the cache's refs under `prefix`.
fn drop_refs_under(repo: &Repository, prefix: &str) -> Result<(), git2::Error> {
    let mut stale = Vec::new();
    for r in repo.references_glob(&format!("{prefix}*"))? {
        let r = r?;
        stale.push(String::from_utf8_lossy(r.name_bytes()).into_owned());
    }
    for name in stale {
        repo.find_reference(&name)?.delete()?;
    }
    Ok(())
}

/// Both sides' commits: the standby's (`standby`, peeled) that the source's `source` lacks,
/// and the reverse; with no source value, the standby's commits no source ref reaches
/// (`source_tips`). `None` when the standby's commit is not in the cache.
pub(super) fn left_right(
    repo: &Repository,
    history: &impl History,
    standby: &CommitId,
    source: Option<&CommitId>,
    source_tips: &[CommitId],
) -> Option<LeftRight> {
    let standby = to_oid(&history.commit_of(standby)?);
    let source = source
        .and_then(|s| history.commit_of(s))
        .map(|s| to_oid(&s));
    let hidden: Vec<Oid> = match source {
        Some(s) => vec![s],
        None => source_tips.iter().map(to_oid).collect(),
    };
    let standby_only = side(repo, standby, &hidden).ok()?;
    let source_only = match source {
        Some(s) => side(repo, s, &[standby]).ok()?,
        None => Side::default(),
    };
    Some(LeftRight {
        standby_only,
        source_only,
    })
}

/// The commits of `from` that none of `hidden` reaches, newest first: the first
/// [`LOG_COMMITS`] with their subjects, and how many there are.
fn side(repo: &Repository, from: Oid, hidden: &[Oid]) -> Result<Side, git2::Error> {
    crate::adapters::git::log_side(repo, from, hidden, Sort::TIME, LOG_COMMITS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_names_say_when_and_what() {
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_704_164_645);
        let stamp = backup_stamp(at);
        assert_eq!(stamp, "20240102T030405Z");
        let rows = [
            (
                RefName::branch("main").unwrap(),
                "tozai-backup/20240102T030405Z/heads/main",
            ),
            (
                RefName::branch("release/1").unwrap(),
                "tozai-backup/20240102T030405Z/heads/release/1",
            ),
            (
                RefName::tag("v1.0").unwrap(),
                "tozai-backup/20240102T030405Z/tags/v1.0",
            ),
        ];
        for (reference, want) in rows {
            let backup = backup_name(&reference, &stamp);
            assert_eq!(backup, RefName::branch(want).unwrap());
            assert!(backup.is_backup());
            assert_eq!(
                backup_source_ref(&backup),
                format!("refs/tozai/heads/{want}")
            );
        }
        // printf %s refs/tags/v1.0 | sha256sum
        assert_eq!(
            standby_ref(&RefName::tag("v1.0").unwrap()),
            "refs/tozai/standby/9c00a1ce4a9c499fa4cd2f11fca0d82863bd9b3228ca4df2c63f657a32ba3787"
        );
    }
}
