//! [`Git2Mirror`]: the [`Mirror`] port with git2.
//!
//! Each run:
//! 1. locks this source's cache (one bare repository per source location under the cache
//!    directory; a missing or corrupt cache is rebuilt, never fatal);
//! 2. fetches the source's branches and tags into it, explicitly (CodeCommit does not
//!    auto-follow tags), pruning what the source deleted, so only new objects travel;
//! 3. lists the target's refs, reads what the mirror may have left there (the request's
//!    [`PushLedger`](crate::ports::PushLedger): a ledger that cannot be read fails the run,
//!    before anything is pushed) and plans every selected ref ([`plan_refs`]): fast-forward
//!    only unless forced, and deleting only what the mirror pushed. When the plan may
//!    delete a branch, it first reads the target's default branch, which is never deleted
//!    (receive-pack's advertisement has no `HEAD`): from the target's `GetRepository`
//!    source (CodeCommit), a local repository's `HEAD`, or upload-pack's `symref=HEAD:`.
//!    The standby's diverged refs (and those a `--force` overwrites or deletes) are then
//!    fetched into the cache, in a namespace of their own (the `standby` module), so that
//!    each says which side moved and lists both sides' commits; a fetch that fails (the
//!    mirror Lambda has no `GitPull` on the standby) is logged, and the run goes on
//!    without the lists. Backup branches on the standby
//!    ([`BACKUP_PREFIX`](crate::refs::BACKUP_PREFIX)) are listed in the outcome and never
//!    planned;
//! 4. with `--force`, first pushes a backup branch at the standby's old commit of each ref
//!    it will overwrite or delete: a ref whose backup is refused is not forced, and is
//!    reported rejected with the reason (see the `standby` module); a dry run makes the
//!    same checks, short of the push (the standby's commit is in the cache, no branch has
//!    the backup's name), and reports those refs rejected too. Then records in the
//!    ledger the intent of the push ([`intent`]): each ref it creates or updates owns its
//!    new value, and an updated ref also the old value when the mirror owned it. An
//!    intent that cannot be recorded fails the run before anything is pushed, so a record
//!    lost after the push never loses the mirror a ref it made;
//! 5. pushes explicit refspecs (git2 takes no globs), at most 4,000 per push (fewer with
//!    [`Git2Mirror::with_refs_per_push`]), checking in
//!    `push_negotiation` that each target ref still has the value the plan read. A ref
//!    that moved aborts the push before anything is sent, and the run re-reads and
//!    re-plans (bounded);
//! 6. reads every ref's result from `push_update_reference` (git2's `push` returns `Ok`
//!    even when the server refuses a ref): a refusal is reported `rejected` with the
//!    server's reason, and the other refs still land. A server checks each ref's old value
//!    again under the ref's lock: a ref refused because a concurrent push moved it after
//!    the negotiation (the standby, read again, no longer has the value the push named) is
//!    re-planned as in step 5, not reported;
//! 7. settles the ledger ([`settled`]): what it created or updated owns its new value only,
//!    what it deleted is forgotten, a rejected ref keeps its intent, and the unchanged refs
//!    whose record differs (equal to the source's, so the mirror's) are adopted. A record
//!    that fails is logged and undoes nothing: the intent still owns what was pushed, and
//!    the next run adopts the refs left in step.
//!
//! The first mirror into an empty standby takes a shorter way when it is exactly
//! equivalent: the cache's pack goes to the standby as it is, over git's smart HTTP
//! ([`receive_pack`]), instead of a pack libgit2 would build again (libgit2's packbuilder
//! cannot reuse deltas: on a large repository that rebuild is most of the run). It is taken
//! only when every one of these holds, and otherwise the run goes the usual way:
//! - the standby is an `http(s)://` URL, and advertises no ref at all (no branch, no tag,
//!   nothing else) both when the plan reads it and just before the push;
//! - every step of the plan is a creation, at most one push's worth of them, and they
//!   are every ref of the cache: refs the selection leaves out are never sent, and neither
//!   are their objects;
//! - this run filled an empty cache (a cold cache), so its objects are exactly one pack, as
//!   the source sent it, holding exactly what the refs reach: no loose object, no other
//!   pack, no alternates. A warm cache's single pack may hold objects of refs the source
//!   has since deleted or moved, which the standby must not receive;
//! - the server offers `report-status` and `ofs-delta`, and speaks SHA-1.
//!
//! The standby then receives the very pack the cache holds, so its result is the same as
//! libgit2's: the same refs, the same objects. Per-ref results map onto the same statuses
//! (created, or rejected with the server's reason and what it printed). The login goes
//! with each request and a 401 gets a fresh one (3 logins at most), a 403 fails at once;
//! network errors before the upload are retried as below; a push that fails once the
//! upload started is not retried this way: the run reads the standby again and plans from
//! what landed, the usual way.
//!
//! **Local standbys** are pushed through `git receive-pack` ([`local_push`], a libgit2
//! transport for [`local_push::server_url`]), as git itself pushes to a `file://` URL: the
//! standby's hooks run and its `receive.*` settings apply, a refusal is `rejected` with the
//! hook's message (its side-band output, as over HTTPS), and `bytes_sent` is the pack's
//! size. The standby's refs for the plan are read from the same `receive-pack`
//! advertisement as the push's negotiation; a local source is fetched directly by libgit2.
//!
//! Credentials come from the remote's [`GitCredentials`](crate::ports::GitCredentials) on each request, through git2's
//! credentials callback, which gives up after a bounded number of attempts. Nothing is put
//! in URLs, logs or on disk. Network failures are retried with backoff; others are not.
//!
//! **TLS.** libgit2 is built with OpenSSL, both vendored and linked statically (the `git`
//! feature), so `https://` works in the Lambda's bare runtime. Certificates are always
//! verified: against the system's roots (found by `openssl-probe`), or the files named by
//! `SSL_CERT_FILE` / `SSL_CERT_DIR` when set, the convention OpenSSL, rustls-native-certs
//! and the AWS SDK share; the pack-as-is push ([`receive_pack`], rustls) reads the same
//! variables. There is no way to turn verification off. A refused certificate is
//! [`MirrorError::Certificate`], naming the host and the reason, and is not retried.
//!
//! **Proxies.** libgit2 finds them as git does (`http.proxy` in git's config, then
//! `https_proxy` / `HTTPS_PROXY`, `http_proxy`, with `no_proxy` / `NO_PROXY`). The pack-as-is
//! push connects directly, so it is not taken when `http.proxy` or a proxy variable for the
//! standby's scheme is set: the run pushes through libgit2 instead. A certificate rustls
//! refuses there (it is stricter than OpenSSL: it ignores a certificate's common name) is
//! a [`MirrorError::Certificate`] too.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use git2::{
    AutotagOption, Cred, Direction, ErrorClass, ErrorCode, FetchOptions, Oid, ProxyOptions,
    PushOptions, RemoteCallbacks, Repository,
};

mod standby;

use standby::{backup_names, backups_on, explain, finish, push_backups, refuse_unbackable};

use super::git::to_id;
use super::local_push;
use super::receive_pack::{self, MAX_AUTH_ATTEMPTS, PackPush, PushFailure, RefUpdate};
use crate::mirror::{
    History, MirrorOptions, MirrorOutcome, OwnedRefs, Record, RefAction, RefMap, RefResult,
    RefSelection, RefStatus, RefStep, intent, plan_refs, settled,
};
use crate::ports::{GitRemote, Mirror, MirrorError, MirrorRequest, ServiceError, TransferProgress};
use crate::refs::{CommitId, RefName};

/// At most this many ref updates go in one push (CodeCommit's limit per push).
pub const MAX_REFS_PER_PUSH: usize = 4000;
/// Attempts for an operation that fails on the network.
const NETWORK_ATTEMPTS: u32 = 4;
/// Re-plans when the standby moved under us.
const PLAN_ATTEMPTS: u32 = 4;

/// Mirrors with git2, keeping a cache of each source under `cache_root`.
#[derive(Debug, Clone)]
pub struct Git2Mirror {
    cache_root: PathBuf,
    refs_per_push: usize,
}

impl Git2Mirror {
    /// A mirror caching sources under `cache_root`. It registers the transport for local
    /// standbys ([`local_push::register`]) unless [`init_tls`] did: a program that did not
    /// call `init_tls` first must make its first `Git2Mirror` before other threads use
    /// libgit2 remotes.
    pub fn new(cache_root: impl Into<PathBuf>) -> Self {
        // Before the first remote operation (see its safety note).
        super::local_push::register();
        Self {
            cache_root: cache_root.into(),
            refs_per_push: MAX_REFS_PER_PUSH,
        }
    }

    /// At most `n` ref updates per push (1 to [`MAX_REFS_PER_PUSH`], the default), for a
    /// git server whose limit is lower than CodeCommit's.
    pub fn with_refs_per_push(mut self, n: usize) -> Self {
        self.refs_per_push = n.clamp(1, MAX_REFS_PER_PUSH);
        self
    }

    /// `$XDG_CACHE_HOME/tozai`, else `$HOME/.cache/tozai`, else a directory under the
    /// system's temporary directory.
    pub fn default_cache_root() -> PathBuf {
        let env = |k| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        env("XDG_CACHE_HOME")
            .or_else(|| env("HOME").map(|h| h.join(".cache")))
            .unwrap_or_else(std::env::temp_dir)
            .join("tozai")
    }

    /// The cache repository of a source, named after its canonical location
    /// ([`cache_key`]): the same source has one cache whatever the working directory, and
    /// two sources never share one.
    pub fn cache_dir(&self, source: &GitRemote) -> PathBuf {
        let key = cache_key(&source.url);
        // Readable from the URL without its query string or fragment, which may hold a
        // token; the hash of the whole key keeps two such URLs' caches apart.
        let plain = key.split(['?', '#']).next().unwrap_or(&key);
        let readable: String = plain
            .chars()
            .rev()
            .take(48)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.cache_root
            .join(format!("{readable}-{:016x}.git", fnv1a(key.as_bytes())))
    }
}

/// A source's canonical location: a local path made absolute with its symbolic links and
/// `..` resolved (as given, made absolute, when it cannot be resolved); a URL with its
/// scheme and host in lower case, without the scheme's default port or trailing slashes.
fn cache_key(url: &str) -> String {
    if !url.contains("://") {
        let path = Path::new(url);
        return std::fs::canonicalize(path)
            .or_else(|_| std::path::absolute(path))
            .unwrap_or_else(|_| path.to_owned())
            .display()
            .to_string();
    }
    crate::location::normal_url(url)
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl Mirror for Git2Mirror {
    fn mirror(
        &self,
        request: &MirrorRequest,
        progress: Option<&dyn Fn(TransferProgress)>,
    ) -> Result<MirrorOutcome, MirrorError> {
        let started = Instant::now();
        // One stamp for every backup this run pushes, whatever its attempts.
        let stamp = standby::backup_stamp(std::time::SystemTime::now());
        let mut backed_up = BTreeMap::new();
        check_local(&request.source, "source")?;
        check_local(&request.target, "target")?;
        let dir = self.cache_dir(&request.source);
        let _lock = lock_cache(&dir)?;
        let (mut repo, cold) = fetch_into_cache(&dir, &request.source, progress)?;
        // Only a cache this run filled from empty holds exactly what its refs reach, in one
        // pack that may go to an empty standby as it is (see the module documentation).
        let mut pack_as_is = cold;

        // Read once, and only when the plan may delete a branch.
        let mut standby_default: Option<Option<RefName>> = None;
        let mut moved = String::new();
        // What earlier attempts pushed before a later batch found the standby moved: a
        // re-plan sees those refs already in step, and must still report what it did.
        let mut landed = Landed::default();
        let per_push = self.refs_per_push;
        let mut attempt = 0;
        while attempt < PLAN_ATTEMPTS {
            if attempt > 0 {
                // The standby moved under us, perhaps by a concurrent mirror of a newer
                // source state: read both sides again, never planning from a stale source.
                repo = fetch_into_cache(&dir, &request.source, progress)?.0;
            }
            let source_refs = local_refs(&repo, &dir)?;
            let history = RepoHistory(&repo);
            let (target_refs, mut options) =
                read_target(&repo, request, &source_refs, &mut standby_default)?;
            let steps = plan_refs(
                &source_refs,
                &target_refs,
                &request.selection,
                &history,
                &options,
            );
            let (mut steps, logs) =
                explain(&repo, request, &source_refs, &target_refs, &options, steps);
            let mut outcome = MirrorOutcome {
                source: request.source.shown.clone(),
                target: request.target.shown.clone(),
                dry_run: request.dry_run,
                refs: Vec::new(),
                objects_sent: 0,
                bytes_sent: 0,
                elapsed: Duration::ZERO,
                backups: backups_on(&target_refs),
            };
            if request.dry_run {
                // A backup the real run would refuse first: that ref would not be forced.
                let refused = refuse_unbackable(&repo, &target_refs, &mut steps, &stamp);
                outcome.refs = steps
                    .iter()
                    .map(|s| RefResult::new(s.reference.clone(), RefStatus::from_action(&s.action)))
                    .collect();
                finish(&mut outcome, refused, &logs, &backup_names(&steps, &stamp));
                outcome.elapsed = started.elapsed();
                return Ok(outcome);
            }
            let refused = push_backups(
                &repo,
                &request.target,
                &target_refs,
                &mut steps,
                &stamp,
                per_push,
                &mut outcome,
                &mut backed_up,
            )?;
            record_intent(request, &steps, &mut options.owned)?;
            if std::mem::take(&mut pack_as_is) {
                match push_cache_pack(
                    &repo,
                    &dir,
                    &request.target,
                    &steps,
                    per_push,
                    progress,
                    &mut outcome,
                )? {
                    PackResult::Done => {
                        record_pushed(request, &outcome.refs, &options.owned);
                        finish(&mut outcome, refused, &logs, &backed_up);
                        outcome.elapsed = started.elapsed();
                        log_outcome(&outcome);
                        return Ok(outcome);
                    }
                    // The usual push, from the same plan.
                    PackResult::Declined => {}
                    // Some refs may have landed: read the standby again and plan from it
                    // (not counted as a re-plan: the standby did not move under us).
                    PackResult::Interrupted => continue,
                }
            }
            match push_steps(
                &repo,
                &request.target,
                &steps,
                per_push,
                progress,
                &mut outcome,
            )? {
                PushResult::Done => {
                    landed.report_in(&mut outcome);
                    record_pushed(request, &outcome.refs, &options.owned);
                    finish(&mut outcome, refused, &logs, &backed_up);
                    outcome.elapsed = started.elapsed();
                    log_outcome(&outcome);
                    return Ok(outcome);
                }
                PushResult::Moved(refs) => {
                    landed.keep(&outcome);
                    tracing::warn!(standby = %request.target.shown, refs = %refs, "standby refs moved since they were read; re-planning");
                    moved = refs;
                    attempt += 1;
                }
            }
        }
        // What earlier attempts pushed is the mirror's all the same.
        let pushed: Vec<RefResult> = (landed.refs.into_iter())
            .map(|(reference, status)| RefResult::new(reference, status))
            .collect();
        record_pushed(request, &pushed, &OwnedRefs::new());
        Err(MirrorError::Contended {
            refs: moved,
            attempts: PLAN_ATTEMPTS,
        })
    }
}

/// The target's refs and what the plan may do with them: its default branch (read once a
/// run, and only when a branch may be deleted) and what the mirror pushed there before
/// (the ledger's records of the selected refs the target has; none without a ledger).
fn read_target(
    repo: &Repository,
    request: &MirrorRequest,
    source_refs: &RefMap,
    standby_default: &mut Option<Option<RefName>>,
) -> Result<(RefMap, MirrorOptions), MirrorError> {
    let target_refs = list_remote(repo, &request.target)?;
    if standby_default.is_none() && deletes_a_branch(source_refs, &target_refs, &request.selection)
    {
        *standby_default = Some(read_default_branch(repo, &request.target)?);
    }
    let owned = match &request.ledger {
        None => OwnedRefs::new(),
        Some(ledger) => {
            // Backups are never planned, so never owned: their records are not read.
            let selected: Vec<RefName> = (target_refs.keys())
                .filter(|r| request.selection.selects(r) && !r.is_backup())
                .cloned()
                .collect();
            ledger
                .recorded(&selected)
                .map_err(|e| ledger_error(request, "read what the mirror pushed there before", e))?
        }
    };
    let options = MirrorOptions {
        force: request.force,
        standby_default: standby_default.clone().flatten(),
        owned,
    };
    Ok((target_refs, options))
}

/// A ledger that failed before a push: the run stops before pushing.
fn ledger_error(request: &MirrorRequest, context: &'static str, e: ServiceError) -> MirrorError {
    let error = super::error_chain(&e);
    tracing::error!(standby = %request.target.shown, error = %error, transient = e.transient, "cannot {context} (the mirror's ledger); stopped before pushing");
    MirrorError::Ledger {
        location: request.target.shown.clone(),
        context,
        source: e,
    }
}

/// Records in the ledger, before the push, the values the mirror may leave on the refs it
/// creates or updates ([`intent`]), and keeps `owned` what the ledger now holds. A failure
/// fails the run before this push.
fn record_intent(
    request: &MirrorRequest,
    steps: &[RefStep],
    owned: &mut OwnedRefs,
) -> Result<(), MirrorError> {
    let Some(ledger) = &request.ledger else {
        return Ok(());
    };
    let records = intent(steps, owned);
    if records.is_empty() {
        return Ok(());
    }
    ledger
        .record(&records)
        .map_err(|e| ledger_error(request, "record the intent of a push", e))?;
    for (reference, values) in records {
        owned.insert(reference, values);
    }
    Ok(())
}

/// Settles the ledger once the push is over ([`settled`]): what the run created or updated
/// owns its new value only, what it deleted is forgotten, and the unchanged refs (equal to
/// the source's) whose record differs are adopted. `recorded` is what the ledger holds (the
/// plan's records with the intent). A failure is logged and undoes nothing: the intent
/// still owns what was pushed, and the next run adopts what is in step.
fn record_pushed(request: &MirrorRequest, results: &[RefResult], recorded: &OwnedRefs) {
    let Some(ledger) = &request.ledger else {
        return;
    };
    let records: Vec<Record> = settled(results, recorded);
    if records.is_empty() {
        return;
    }
    if let Err(e) = ledger.record(&records) {
        tracing::error!(standby = %request.target.shown, refs = records.len(), error = %super::error_chain(&e), transient = e.transient, "pushed, but cannot settle the mirror's ledger; its intent still owns what was pushed");
    }
}

/// The refs earlier attempts of a run pushed, and what they sent.
#[derive(Default)]
struct Landed {
    refs: BTreeMap<RefName, RefStatus>,
    objects: u64,
    bytes: u64,
}

impl Landed {
    /// Keeps what an attempt that stopped midway had pushed (its outcome's refs are the
    /// batches that landed).
    fn keep(&mut self, attempt: &MirrorOutcome) {
        for r in &attempt.refs {
            if landed_value(&r.status).is_some() {
                self.refs.insert(r.reference.clone(), r.status.clone());
            }
        }
        self.objects += attempt.objects_sent;
        self.bytes += attempt.bytes_sent;
    }

    /// The final outcome, with what earlier attempts did: a ref they pushed that the last
    /// plan found in step is reported as pushed (created, updated or deleted), not
    /// unchanged.
    fn report_in(self, outcome: &mut MirrorOutcome) {
        outcome.objects_sent += self.objects;
        outcome.bytes_sent += self.bytes;
        let mut deleted = Vec::new();
        for (reference, status) in self.refs {
            match outcome.refs.iter_mut().find(|r| r.reference == reference) {
                Some(r) => {
                    if let RefStatus::Unchanged { at } = &r.status
                        && landed_value(&status) == Some(Some(at))
                    {
                        r.status = status;
                    }
                }
                // Deleted on both sides since: the last plan did not see it at all.
                None if landed_value(&status) == Some(None) => {
                    deleted.push(RefResult::new(reference, status));
                }
                None => {}
            }
        }
        if !deleted.is_empty() {
            outcome.refs.extend(deleted);
            outcome.refs.sort_by(|a, b| a.reference.cmp(&b.reference));
        }
    }
}

/// The standby's value after a pushed ref landed (`Some(None)`: deleted); `None` for a
/// status that pushed nothing.
fn landed_value(status: &RefStatus) -> Option<Option<&CommitId>> {
    match status {
        RefStatus::Created { new } | RefStatus::Updated { new, .. } => Some(Some(new)),
        RefStatus::Deleted { .. } => Some(None),
        _ => None,
    }
}

/// A local location must be a git repository: libgit2 would otherwise report a missing
/// path as an unsupported URL (a network error, retried) and a directory that is not a
/// repository like a damaged cache.
fn check_local(remote: &GitRemote, role: &'static str) -> Result<(), MirrorError> {
    if remote.url.contains("://") {
        return Ok(());
    }
    let path = Path::new(&remote.url);
    let problem = if !path.exists() {
        "it does not exist".to_owned()
    } else {
        match Repository::open_ext(
            path,
            git2::RepositoryOpenFlags::NO_SEARCH,
            std::iter::empty::<&std::ffi::OsStr>(),
        ) {
            Ok(_) => return Ok(()),
            Err(e) => e.message().to_owned(),
        }
    };
    Err(MirrorError::NotARepository {
        location: remote.shown.clone(),
        role,
        detail: problem,
    })
}

fn log_outcome(outcome: &MirrorOutcome) {
    for r in &outcome.refs {
        if !matches!(r.status, RefStatus::Unchanged { .. }) {
            tracing::info!(standby = %outcome.target, reference = %r.reference, status = ?r.status, "mirrored ref");
        }
    }
}

// ---- the cache ----

/// An exclusive lock on a cache, released when dropped.
struct CacheLock(#[allow(dead_code)] File);

fn lock_cache(dir: &Path) -> Result<CacheLock, MirrorError> {
    let cache_err = |context, e: std::io::Error| MirrorError::Cache {
        path: dir.to_owned(),
        context,
        source: Box::new(e),
    };
    let parent = dir.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)
        .map_err(|e| cache_err("cannot create the cache directory", e))?;
    let file = File::create(dir.with_extension("lock"))
        .map_err(|e| cache_err("cannot create the lock file", e))?;
    file.lock()
        .map_err(|e| cache_err("cannot lock the cache", e))?;
    Ok(CacheLock(file))
}

fn open_or_init(dir: &Path) -> Result<Repository, MirrorError> {
    if let Ok(repo) = Repository::open_bare(dir)
        && repo.is_bare()
        && repo.references().is_ok()
    {
        return Ok(repo);
    }
    rebuild(dir)
}

fn rebuild(dir: &Path) -> Result<Repository, MirrorError> {
    if dir.exists() {
        tracing::warn!(cache = %dir.display(), "cache unusable; rebuilding it");
        std::fs::remove_dir_all(dir).map_err(|e| MirrorError::Cache {
            path: dir.to_owned(),
            context: "cannot remove the unusable cache",
            source: Box::new(e),
        })?;
    }
    Repository::init_bare(dir).map_err(|e| MirrorError::Cache {
        path: dir.to_owned(),
        context: "cannot create the cache repository",
        source: Box::new(e),
    })
}

/// Fetches every branch and tag of the source into the cache and prunes what the source
/// no longer has. A cache that turns out to be corrupt is rebuilt once. Also says whether
/// the cache was empty before this fetch (new, rebuilt, or without a ref or a pack).
fn fetch_into_cache(
    dir: &Path,
    source: &GitRemote,
    progress: Option<&dyn Fn(TransferProgress)>,
) -> Result<(Repository, bool), MirrorError> {
    let repo = open_or_init(dir)?;
    let cold = has_no_refs(&repo) && has_no_pack(dir);
    match fetch(&repo, source, progress) {
        Err(e) if is_cache_corruption(&e) => {
            tracing::warn!(cache = %dir.display(), error = %e, "cache corrupt; rebuilding it");
            drop(repo);
            let repo = rebuild(dir)?;
            fetch(&repo, source, progress)?;
            Ok((repo, true))
        }
        Err(e) => Err(e),
        Ok(()) => Ok((repo, cold)),
    }
}

fn has_no_refs(repo: &Repository) -> bool {
    repo.references().is_ok_and(|mut r| r.next().is_none())
}

/// True when the cache holds no pack (one may be left by a run that stopped between
/// fetching and updating its refs).
fn has_no_pack(dir: &Path) -> bool {
    std::fs::read_dir(dir.join("objects/pack")).is_ok_and(|mut entries| {
        !entries.any(|e| e.is_ok_and(|e| e.path().extension().is_some_and(|x| x == "pack")))
    })
}

/// True when a fetch failed because the local cache is damaged (not the network, not the
/// remote): only then is the cache thrown away.
fn is_cache_corruption(e: &MirrorError) -> bool {
    let MirrorError::Git { source, .. } = e else {
        return false;
    };
    source.downcast_ref::<git2::Error>().is_some_and(|g| {
        matches!(
            g.class(),
            ErrorClass::Odb
                | ErrorClass::Object
                | ErrorClass::Reference
                | ErrorClass::Repository
                | ErrorClass::Index
                | ErrorClass::Zlib
                | ErrorClass::Indexer
                | ErrorClass::Filesystem
        )
    })
}

fn fetch(
    repo: &Repository,
    source: &GitRemote,
    progress: Option<&dyn Fn(TransferProgress)>,
) -> Result<(), MirrorError> {
    let refspecs = ["+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"];
    fetch_refspecs(
        repo,
        source,
        "fetching from the source",
        &refspecs,
        progress,
        |remote| {
            // Prune: the cache keeps exactly the source's branches and tags.
            let advertised: Vec<String> = (remote.list()?.iter())
                .map(|h| h.name().to_owned())
                .collect();
            prune_to(repo, &advertised)
        },
    )
}

/// Fetches `refspecs` from `from` into the cache: its credentials on each request, the
/// proxy git would use, no tag followed, network failures retried; then `after` reads the
/// still-connected remote (the source's advertisement, to prune by).
fn fetch_refspecs<S: AsRef<str> + git2::IntoCString + Clone>(
    repo: &Repository,
    from: &GitRemote,
    context: &'static str,
    refspecs: &[S],
    progress: Option<&dyn Fn(TransferProgress)>,
    after: impl Fn(&git2::Remote<'_>) -> Result<(), git2::Error>,
) -> Result<(), MirrorError> {
    with_network_retries(from, context, || {
        let auth = AuthState::default();
        let mut callbacks = RemoteCallbacks::new();
        auth.install(&mut callbacks, from);
        if let Some(p) = progress {
            callbacks.transfer_progress(move |s| {
                p(TransferProgress::Fetch {
                    objects: s.received_objects() as u64,
                    total: s.total_objects() as u64,
                    bytes: s.received_bytes() as u64,
                });
                true
            });
        }
        let mut options = FetchOptions::new();
        options
            .remote_callbacks(callbacks)
            .proxy_options(proxy_options())
            .download_tags(AutotagOption::None)
            .update_fetchhead(false);
        let mut remote = repo
            .remote_anonymous(&from.url)
            .map_err(|e| (e, auth.failed()))?;
        remote
            .fetch(refspecs, Some(&mut options), None)
            .map_err(|e| (e, auth.failed()))?;
        after(&remote).map_err(|e| (e, false))
    })
}

fn prune_to(repo: &Repository, advertised: &[String]) -> Result<(), git2::Error> {
    let mut stale = Vec::new();
    for r in repo.references()? {
        let r = r?;
        if let Ok(name) = r.name()
            && (name.starts_with("refs/heads/") || name.starts_with("refs/tags/"))
            && !advertised.iter().any(|a| a == name)
        {
            stale.push(name.to_owned());
        }
    }
    for name in stale {
        repo.find_reference(&name)?.delete()?;
    }
    Ok(())
}

/// The cache's branches and tags (which are the source's, after a fetch).
fn local_refs(repo: &Repository, dir: &Path) -> Result<RefMap, MirrorError> {
    let err = |e: git2::Error| MirrorError::Cache {
        path: dir.to_owned(),
        context: "cannot read the cache's refs",
        source: Box::new(e),
    };
    let mut out = RefMap::new();
    for r in repo.references().map_err(err)? {
        let r = r.map_err(err)?;
        let (Ok(name), Some(oid)) = (r.name(), r.target()) else {
            continue;
        };
        if let Some(parsed) = parse_ref(name) {
            out.insert(parsed, to_id(oid));
        }
    }
    Ok(out)
}

/// A branch or tag name as tozai accepts it; other refs (and names git would refuse) are
/// skipped with a warning.
fn parse_ref(name: &str) -> Option<RefName> {
    if !(name.starts_with("refs/heads/") || name.starts_with("refs/tags/")) || name.ends_with("^{}")
    {
        return None;
    }
    match name.parse() {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::warn!(reference = name, error = %e, "skipping a ref tozai cannot mirror");
            None
        }
    }
}

fn to_oid(id: &CommitId) -> Oid {
    Oid::from_str(id.as_str()).expect("CommitId is hexadecimal")
}

struct RepoHistory<'r>(&'r Repository);

impl History for RepoHistory<'_> {
    fn is_ancestor(&self, ancestor: &CommitId, descendant: &CommitId) -> bool {
        let (a, d) = (to_oid(ancestor), to_oid(descendant));
        a == d || self.0.graph_descendant_of(d, a).unwrap_or(false)
    }

    fn commit_of(&self, id: &CommitId) -> Option<CommitId> {
        let object = self.0.find_object(to_oid(id), None).ok()?;
        object.peel_to_commit().ok().map(|c| to_id(c.id()))
    }

    /// One walk of the history of every tip (not one per tip). The standby's fetched refs
    /// are not tips: their objects being in the cache does not make them the source's.
    fn reachable_from_any(&self, commit: &CommitId, tips: &[CommitId]) -> bool {
        if tips.contains(commit) {
            return true;
        }
        let Ok(mut walk) = self.0.revwalk() else {
            return false;
        };
        for tip in tips {
            // A tip the cache lacks reaches nothing here.
            let _ = walk.push(to_oid(tip));
        }
        let target = to_oid(commit);
        walk.any(|oid| oid.is_ok_and(|oid| oid == target))
    }
}

// ---- the target ----

/// The target's branches and tags, as its push advertisement lists them (which says
/// nothing of its default branch: see [`read_default_branch`]).
fn list_remote(repo: &Repository, target: &GitRemote) -> Result<RefMap, MirrorError> {
    with_network_retries(target, "listing the target's refs", || {
        let auth = AuthState::default();
        let mut callbacks = RemoteCallbacks::new();
        auth.install(&mut callbacks, target);
        let url = local_push::server_url(&target.url).map_err(|e| (e, false))?;
        let mut remote = repo.remote_anonymous(&url).map_err(|e| (e, false))?;
        let connection = remote
            .connect_auth(Direction::Push, Some(callbacks), Some(proxy_options()))
            .map_err(|e| (e, auth.failed()))?;
        let mut refs = RefMap::new();
        for head in connection.list().map_err(|e| (e, false))? {
            if let Some(r) = parse_ref(head.name()) {
                refs.insert(r, to_id(head.oid()));
            }
        }
        Ok(refs)
    })
}

/// True when the plan may delete a branch: a selected branch the standby has and the
/// source does not. Only then does the standby's default branch matter.
fn deletes_a_branch(source: &RefMap, target: &RefMap, selection: &RefSelection) -> bool {
    target
        .keys()
        .any(|r| !r.is_tag() && !r.is_backup() && !source.contains_key(r) && selection.selects(r))
}

/// The standby's default branch, which the mirror never deletes (CodeCommit refuses to).
/// receive-pack's advertisement has no `HEAD`, so it is read elsewhere: from the target's
/// own [`DefaultBranchSource`](crate::ports::DefaultBranchSource) (CodeCommit's
/// `GetRepository`), a local repository's `HEAD`, or upload-pack's `symref=HEAD:`
/// capability. `None` when the standby has none or does not say.
fn read_default_branch(
    repo: &Repository,
    target: &GitRemote,
) -> Result<Option<RefName>, MirrorError> {
    const CONTEXT: &str = "reading the target's default branch";
    let full_name = if let Some(source) = &target.default_branch {
        let short = source.default_branch().map_err(|e| {
            let (location, transient) = (target.shown.clone(), e.transient);
            let source = Box::new(e);
            if transient {
                MirrorError::Unreachable {
                    location,
                    context: CONTEXT,
                    source,
                }
            } else {
                MirrorError::Git {
                    location,
                    context: CONTEXT,
                    source,
                }
            }
        })?;
        short.map(|b| format!("refs/heads/{b}"))
    } else if !target.url.contains("://") {
        local_head(target).map_err(|e| MirrorError::Git {
            location: target.shown.clone(),
            context: CONTEXT,
            source: Box::new(e),
        })?
    } else {
        advertised_head(repo, target)?
    };
    let default = full_name.and_then(|n| n.parse::<RefName>().ok().filter(|r| !r.is_tag()));
    tracing::debug!(standby = %target.shown, default_branch = ?default.as_ref().map(RefName::full), "read the standby's default branch");
    Ok(default)
}

/// The branch a local repository's `HEAD` names (born or not).
fn local_head(target: &GitRemote) -> Result<Option<String>, git2::Error> {
    let repo = Repository::open(&target.url)?;
    let head = repo.find_reference("HEAD")?;
    Ok(head.symbolic_target()?.map(str::to_owned))
}

/// The branch upload-pack's advertisement names as `HEAD` (`symref=HEAD:refs/heads/main`);
/// `None` when it names none (an empty repository, an old server). libgit2's guess from
/// commit ids is not used.
fn advertised_head(repo: &Repository, target: &GitRemote) -> Result<Option<String>, MirrorError> {
    with_network_retries(target, "reading the target's default branch", || {
        let auth = AuthState::default();
        let mut callbacks = RemoteCallbacks::new();
        auth.install(&mut callbacks, target);
        let mut remote = repo.remote_anonymous(&target.url).map_err(|e| (e, false))?;
        let connection = remote
            .connect_auth(Direction::Fetch, Some(callbacks), Some(proxy_options()))
            .map_err(|e| (e, auth.failed()))?;
        let heads = connection.list().map_err(|e| (e, false))?;
        Ok(heads
            .iter()
            .find(|h| h.name() == "HEAD")
            .and_then(|h| h.symref_target().map(str::to_owned)))
    })
}

enum PushResult {
    Done,
    /// These standby refs no longer had the values the plan read: nothing was pushed.
    Moved(String),
}

fn push_steps(
    repo: &Repository,
    target: &GitRemote,
    steps: &[RefStep],
    per_push: usize,
    progress: Option<&dyn Fn(TransferProgress)>,
    outcome: &mut MirrorOutcome,
) -> Result<PushResult, MirrorError> {
    let pushing: Vec<&RefStep> = steps.iter().filter(|s| s.action.pushes()).collect();
    let mut statuses: BTreeMap<String, Option<String>> = BTreeMap::new();
    for batch in pushing.chunks(per_push) {
        let refspecs: Vec<String> = batch
            .iter()
            .map(|s| {
                let name = s.reference.full();
                // A backup is pushed from the cache ref that holds its commit; the others
                // from the cache's ref of the same name (the source's).
                let src = if s.reference.is_backup() {
                    standby::backup_source_ref(&s.reference)
                } else {
                    name.clone()
                };
                match s.action {
                    RefAction::Delete { .. } => format!(":{name}"),
                    _ => format!("+{src}:{name}"),
                }
            })
            .collect();
        let expected: BTreeMap<String, Oid> = batch
            .iter()
            .map(|s| {
                let old = s.action.expected_old().map_or(Oid::ZERO_SHA1, to_oid);
                (s.reference.full(), old)
            })
            .collect();
        let moved = RefCell::new(Vec::<String>::new());
        let reported = RefCell::new(BTreeMap::<String, Option<String>>::new());
        // What the server printed (`remote: ...`): a hook's reason for refusing a ref.
        let server_said = RefCell::new(String::new());
        let sent = Cell::new((0u64, 0u64));
        let result = with_network_retries(target, "pushing to the target", || {
            moved.borrow_mut().clear();
            reported.borrow_mut().clear();
            server_said.borrow_mut().clear();
            let auth = AuthState::default();
            let mut callbacks = RemoteCallbacks::new();
            auth.install(&mut callbacks, target);
            callbacks.push_negotiation(|updates| {
                // `src` is the value the target has now; it must be what the plan read.
                for u in updates {
                    let name = String::from_utf8_lossy(u.dst_refname_bytes()).into_owned();
                    if expected.get(&name).is_some_and(|&want| want != u.src()) {
                        moved.borrow_mut().push(name);
                    }
                }
                if moved.borrow().is_empty() {
                    Ok(())
                } else {
                    Err(git2::Error::from_str(
                        "standby refs moved since they were read",
                    ))
                }
            });
            callbacks.sideband_progress(|text| {
                let mut said = server_said.borrow_mut();
                if said.len() < MAX_SERVER_MESSAGE {
                    said.push_str(&String::from_utf8_lossy(text));
                }
                true
            });
            callbacks.push_update_reference(|name, status| {
                reported
                    .borrow_mut()
                    .insert(name.to_owned(), status.map(str::to_owned));
                Ok(())
            });
            callbacks.push_transfer_progress(|current, total, bytes| {
                sent.set((total as u64, bytes as u64));
                if let Some(p) = progress {
                    p(TransferProgress::Push {
                        objects: current as u64,
                        total: total as u64,
                        bytes: bytes as u64,
                    });
                }
            });
            let mut options = PushOptions::new();
            // Delta search for the pack uses every core (git2's default is one thread).
            // libgit2 connects, builds the whole pack, then posts it on the same connection;
            // a server that drops idle connections meanwhile would fail the push, so each
            // request gets a connection of its own.
            options
                .remote_callbacks(callbacks)
                .proxy_options(proxy_options())
                .packbuilder_parallelism(0)
                .custom_headers(&["Connection: close"]);
            // A local standby through `git receive-pack`, so that its hooks run.
            let url = local_push::server_url(&target.url).map_err(|e| (e, false))?;
            let mut remote = repo.remote_anonymous(&url).map_err(|e| (e, false))?;
            match remote.push(&refspecs, Some(&mut options)) {
                Ok(()) => Ok(()),
                // A veto from our own negotiation check is not a network error: stop here.
                Err(_) if !moved.borrow().is_empty() => Ok(()),
                Err(e) => Err((e, auth.failed())),
            }
        });
        result?;
        let mut moved = moved.into_inner();
        if moved.is_empty() {
            let (objects, bytes) = sent.get();
            outcome.objects_sent += objects;
            outcome.bytes_sent += bytes;
            let said = server_message(&server_said.into_inner());
            let batch: BTreeMap<String, Option<String>> =
                with_server_message(reported.into_inner(), said.as_deref()).collect();
            moved = refused_as_moved(repo, target, &expected, &batch)?;
            statuses.extend(batch.into_iter().filter(|(name, _)| !moved.contains(name)));
        }
        if !moved.is_empty() {
            // The earlier batches (and this one's other refs) landed: the outcome says what
            // they did.
            outcome.refs = results(steps, &statuses)
                .into_iter()
                .filter(|r| statuses.contains_key(&r.reference.full()))
                .collect();
            return Ok(PushResult::Moved(moved.join(", ")));
        }
    }
    outcome.refs = results(steps, &statuses);
    Ok(PushResult::Done)
}

/// The refs of a pushed batch the server refused because they moved after the
/// negotiation: a server checks each ref's old value again under its lock (git's
/// receive-pack does, and refuses with "failed to update ref" when a concurrent push won
/// it). Read from the standby once more, only when a ref was refused: a refused ref no
/// longer at the value the push named moved under us, and is re-planned like one the
/// negotiation caught; one still there was refused for another reason (a hook).
fn refused_as_moved(
    repo: &Repository,
    target: &GitRemote,
    expected: &BTreeMap<String, Oid>,
    batch: &BTreeMap<String, Option<String>>,
) -> Result<Vec<String>, MirrorError> {
    if batch.values().all(Option::is_none) {
        return Ok(Vec::new());
    }
    let now = list_remote(repo, target)?;
    Ok(batch
        .iter()
        .filter(|(_, refused)| refused.is_some())
        .filter_map(|(name, _)| {
            let named = expected.get(name)?;
            let value = (name.parse::<RefName>().ok())
                .and_then(|r| now.get(&r).map(to_oid))
                .unwrap_or(Oid::ZERO_SHA1);
            (value != *named).then(|| name.clone())
        })
        .collect())
}

/// Each refused ref's reason, followed by what the server printed.
fn with_server_message(
    reported: BTreeMap<String, Option<String>>,
    said: Option<&str>,
) -> impl Iterator<Item = (String, Option<String>)> {
    reported.into_iter().map(move |(name, status)| {
        let status = status.map(|s| match said {
            Some(said) => format!("{s}: {said}"),
            None => s,
        });
        (name, status)
    })
}

/// Every step's result, from what the server reported for the refs pushed (`None`: done,
/// else the reason it refused).
fn results(steps: &[RefStep], statuses: &BTreeMap<String, Option<String>>) -> Vec<RefResult> {
    steps
        .iter()
        .map(|s| {
            let status = if s.action.pushes() {
                match statuses.get(&s.reference.full()) {
                    Some(None) => RefStatus::from_action(&s.action),
                    Some(Some(reason)) => RefStatus::Rejected {
                        reason: reason.clone(),
                    },
                    None => RefStatus::Rejected {
                        reason: "the server reported no result for this ref".into(),
                    },
                }
            } else {
                RefStatus::from_action(&s.action)
            };
            RefResult::new(s.reference.clone(), status)
        })
        .collect()
}

/// At most this much of what the server prints is kept, for rejected refs' reasons.
const MAX_SERVER_MESSAGE: usize = 2048;

/// The server's printed lines, trimmed and joined; progress chatter ("Resolving deltas")
/// and carriage-return updates are dropped, and control characters (a hook's colour
/// codes) are shown as their [pictures](crate::text::printable), in the text report and
/// in JSON alike: a rejected ref's reason is one safe line wherever it goes.
fn server_message(raw: &str) -> Option<String> {
    let lines: Vec<&str> = raw
        .split(['\n', '\r'])
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .filter(|l| !l.contains("Resolving deltas") && !l.contains("Counting objects"))
        .collect();
    (!lines.is_empty()).then(|| {
        // A hook's colours and cursor moves are shown, not obeyed.
        let mut joined = crate::text::printable(&lines.join("; "));
        if joined.len() > MAX_SERVER_MESSAGE {
            let mut cut = MAX_SERVER_MESSAGE;
            while !joined.is_char_boundary(cut) {
                cut -= 1;
            }
            joined.truncate(cut);
        }
        joined
    })
}

// ---- the first mirror: the cache's pack as it is ----

enum PackResult {
    Done,
    /// Nothing was sent: push the usual way.
    Declined,
    /// The upload started and then failed: the standby must be read again.
    Interrupted,
}

/// The cache's one pack.
#[derive(Debug)]
struct CachePack {
    path: PathBuf,
    len: u64,
    objects: u32,
}

/// Pushes the cache's pack to the standby as it is when that is exactly equivalent to the
/// usual push (see the module documentation); the caller has checked that this run
/// filled an empty cache.
fn push_cache_pack(
    repo: &Repository,
    dir: &Path,
    target: &GitRemote,
    steps: &[RefStep],
    per_push: usize,
    progress: Option<&dyn Fn(TransferProgress)>,
    outcome: &mut MirrorOutcome,
) -> Result<PackResult, MirrorError> {
    let declined = |why: &str| {
        tracing::trace!(standby = %target.shown, reason = why, "not sending the cache's pack as it is");
        Ok(PackResult::Declined)
    };
    if proxy_configured(repo, &target.url) {
        return declined("a proxy is configured: libgit2 connects through it");
    }
    let (updates, pack) = match pack_push_plan(repo, dir, target, steps, per_push) {
        Ok(plan) => plan,
        Err(why) => return declined(&why),
    };
    let total = u64::from(pack.objects);
    // The objects are estimated from the bytes sent: a pack is sent as bytes.
    let on_bytes = progress.map(|p| {
        move |bytes: u64| {
            let objects =
                (u128::from(total) * u128::from(bytes) / u128::from(pack.len.max(1))) as u64;
            p(TransferProgress::Push {
                objects,
                total,
                bytes,
            })
        }
    });
    tracing::debug!(standby = %target.shown, method = "pack", objects = total, bytes = pack.len, refs = updates.len(), "sending the cache's pack as it is");
    let push = PackPush {
        url: &target.url,
        credentials: target.credentials.as_deref(),
        updates: &updates,
        pack: &pack.path,
    };
    let mut delay = Duration::from_millis(250);
    for attempt in 1..=NETWORK_ATTEMPTS {
        let on_bytes = on_bytes.as_ref().map(|f| f as &dyn Fn(u64));
        let e = match receive_pack::push_pack(push, on_bytes) {
            Ok(report) => {
                let said = server_message(&report.messages);
                let statuses: BTreeMap<String, Option<String>> =
                    with_server_message(report.refs, said.as_deref()).collect();
                outcome.objects_sent += total;
                outcome.bytes_sent += pack.len;
                outcome.refs = results(steps, &statuses);
                if let Some(p) = progress {
                    p(TransferProgress::Push {
                        objects: total,
                        total,
                        bytes: pack.len,
                    });
                }
                tracing::info!(standby = %target.shown, method = "pack", objects = total, bytes = pack.len, "sent the cache's pack as it is");
                return Ok(PackResult::Done);
            }
            Err(PushFailure::Declined(why)) => return declined(&why),
            Err(PushFailure::Certificate(reason)) => {
                return Err(MirrorError::Certificate {
                    location: target.shown.clone(),
                    host: url_host(&target.url).unwrap_or("the server").to_owned(),
                    context: "sending the cache's pack to the target",
                    reason: format!("{reason} (rustls, which ignores a certificate's common name)"),
                });
            }
            Err(PushFailure::Auth(detail)) => {
                return Err(MirrorError::AuthenticationFailed {
                    location: target.shown.clone(),
                    detail,
                });
            }
            Err(PushFailure::Interrupted(why)) => {
                tracing::warn!(standby = %target.shown, error = %why, "the push of the cache's pack failed once under way; reading the standby again");
                return Ok(PackResult::Interrupted);
            }
            Err(PushFailure::Transient(e)) => e,
        };
        if attempt == NETWORK_ATTEMPTS {
            return Err(MirrorError::Unreachable {
                location: target.shown.clone(),
                context: "pushing to the target",
                source: e,
            });
        }
        tracing::warn!(location = %target.shown, attempt, error = %e, "network error; retrying");
        std::thread::sleep(delay);
        delay *= 2;
    }
    unreachable!("the loop returns")
}

/// The ref updates and the pack when the plan and the cache allow sending the pack as it
/// is; otherwise why not.
fn pack_push_plan(
    repo: &Repository,
    dir: &Path,
    target: &GitRemote,
    steps: &[RefStep],
    per_push: usize,
) -> Result<(Vec<RefUpdate>, CachePack), String> {
    let url = &target.url;
    let Some(rest) = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
    else {
        return Err("the standby is not an http(s) URL".into());
    };
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.contains('@') || url.contains(['?', '#']) {
        return Err("the standby's URL has a login, a query or a fragment".into());
    }
    if steps.is_empty() || steps.len() > per_push {
        return Err(format!("{} refs to push", steps.len()));
    }
    let mut updates = Vec::with_capacity(steps.len());
    for s in steps {
        let RefAction::Create { new } = &s.action else {
            return Err(format!("{} is not a creation", s.reference.full()));
        };
        updates.push(RefUpdate {
            old: receive_pack::ZERO_ID.to_owned(),
            new: new.as_str().to_owned(),
            name: s.reference.full(),
        });
    }
    let pushed: BTreeSet<&str> = updates.iter().map(|u| u.name.as_str()).collect();
    let references = repo
        .references()
        .map_err(|e| format!("cannot list the cache's refs: {e}"))?;
    for r in references {
        let r = r.map_err(|e| format!("cannot read a cache ref: {e}"))?;
        let name = String::from_utf8_lossy(r.name_bytes()).into_owned();
        if !pushed.contains(name.as_str()) {
            return Err(format!("the cache's {name} is not pushed"));
        }
    }
    Ok((updates, cache_pack(dir)?))
}

/// The cache's objects as exactly one pack with its index: no loose object, no
/// alternates, no other pack.
fn cache_pack(dir: &Path) -> Result<CachePack, String> {
    let objects = dir.join("objects");
    let io = |what: &str, e: std::io::Error| format!("cannot read the cache's {what}: {e}");
    if objects.join("info/alternates").exists() {
        return Err("the cache has alternates".into());
    }
    for entry in std::fs::read_dir(&objects).map_err(|e| io("objects", e))? {
        let entry = entry.map_err(|e| io("objects", e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.len() == 2 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
            let mut loose = std::fs::read_dir(entry.path()).map_err(|e| io("objects", e))?;
            if loose.next().is_some() {
                return Err("the cache has loose objects".into());
            }
        }
    }
    let mut packs = Vec::new();
    for entry in std::fs::read_dir(objects.join("pack")).map_err(|e| io("packs", e))? {
        let path = entry.map_err(|e| io("packs", e))?.path();
        if path.extension().is_some_and(|x| x == "pack") {
            packs.push(path);
        }
    }
    let [path] = <[PathBuf; 1]>::try_from(packs)
        .map_err(|packs| format!("the cache has {} packs", packs.len()))?;
    if !path.with_extension("idx").is_file() {
        return Err("the cache's pack has no index".into());
    }
    if path.with_extension("promisor").exists() {
        return Err("the cache's pack is a promisor pack".into());
    }
    let mut file = File::open(&path).map_err(|e| io("pack", e))?;
    let len = file.metadata().map_err(|e| io("pack", e))?.len();
    let mut header = [0u8; 12];
    std::io::Read::read_exact(&mut file, &mut header).map_err(|e| io("pack", e))?;
    let objects = receive_pack::pack_object_count(&header).map_err(|e| e.to_string())?;
    // The header and the trailing checksum.
    if len < 32 || objects == 0 {
        return Err("the cache's pack is empty".into());
    }
    Ok(CachePack { path, len, objects })
}

// ---- credentials and retries ----

/// Counts credential requests for one operation and gives up after a few.
#[derive(Default)]
struct AuthState {
    calls: std::rc::Rc<Cell<u32>>,
    gave_up: std::rc::Rc<Cell<bool>>,
}

impl AuthState {
    fn install(&self, callbacks: &mut RemoteCallbacks<'_>, remote: &GitRemote) {
        let calls = self.calls.clone();
        let gave_up = self.gave_up.clone();
        let provider = remote.credentials.clone();
        callbacks.credentials(move |_url, _user, _allowed| {
            let n = calls.get() + 1;
            calls.set(n);
            let Some(provider) = provider.as_ref() else {
                gave_up.set(true);
                return Err(git2::Error::from_str(
                    "the server asked for credentials and this location has none",
                ));
            };
            if n > MAX_AUTH_ATTEMPTS {
                gave_up.set(true);
                return Err(git2::Error::from_str("credentials refused"));
            }
            let login = provider.login().map_err(|e| {
                gave_up.set(true);
                git2::Error::from_str(&e)
            })?;
            Cred::userpass_plaintext(&login.username, &login.password)
        });
    }

    fn failed(&self) -> bool {
        self.gave_up.get()
    }
}

/// Runs `op`, retrying network failures with backoff; maps errors to [`MirrorError`].
/// `op` returns the git2 error and whether authentication gave up.
fn with_network_retries<T>(
    remote: &GitRemote,
    context: &'static str,
    mut op: impl FnMut() -> Result<T, (git2::Error, bool)>,
) -> Result<T, MirrorError> {
    let mut delay = Duration::from_millis(250);
    for attempt in 1..=NETWORK_ATTEMPTS {
        let (e, auth_failed) = match op() {
            Ok(v) => return Ok(v),
            Err(failure) => failure,
        };
        if auth_failed || is_auth_error(&e) {
            return Err(MirrorError::AuthenticationFailed {
                location: remote.shown.clone(),
                detail: e.message().to_owned(),
            });
        }
        if is_certificate_error(&e) {
            return Err(MirrorError::Certificate {
                location: remote.shown.clone(),
                host: url_host(&remote.url).unwrap_or("the server").to_owned(),
                context,
                reason: certificate_reason(&e),
            });
        }
        if !is_transient(&e) {
            return Err(MirrorError::Git {
                location: remote.shown.clone(),
                context,
                source: Box::new(e),
            });
        }
        if attempt == NETWORK_ATTEMPTS {
            return Err(MirrorError::Unreachable {
                location: remote.shown.clone(),
                context,
                source: Box::new(e),
            });
        }
        tracing::warn!(location = %remote.shown, attempt, error = %e, "network error; retrying");
        std::thread::sleep(delay);
        delay *= 2;
    }
    unreachable!("the loop returns")
}

fn is_auth_error(e: &git2::Error) -> bool {
    e.code() == ErrorCode::Auth
        || e.message().contains("status code: 401")
        || e.message().contains("status code: 403")
}

fn is_transient(e: &git2::Error) -> bool {
    !is_certificate_error(e)
        && (matches!(
            e.class(),
            ErrorClass::Net | ErrorClass::Os | ErrorClass::Ssl
        ) || e.message().contains("status code: 5"))
}

/// libgit2 refused the server's certificate (OpenSSL verified it against the system's
/// roots or `SSL_CERT_FILE` / `SSL_CERT_DIR`, and libgit2 checked the host name).
fn is_certificate_error(e: &git2::Error) -> bool {
    e.code() == ErrorCode::Certificate
}

/// What libgit2 says of a refused certificate, in words an operator can act on.
fn certificate_reason(e: &git2::Error) -> String {
    let said = e.message();
    if said.contains("hostname does not match") {
        format!("{said} (it was issued for another host name)")
    } else {
        format!(
            "{said} (not signed by a trusted CA, or expired: tozai trusts the system's roots, \
             or SSL_CERT_FILE / SSL_CERT_DIR when set)"
        )
    }
}

/// The host of an `http(s)://` URL, without user info or port.
fn url_host(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match host_port.strip_prefix('[') {
        Some(v6) => v6.split(']').next()?,
        None => host_port.split(':').next()?,
    };
    (!host.is_empty()).then_some(host)
}

/// A proxy may apply to `url`, as libgit2 finds one: git's `http.proxy` (the cache's
/// config, the user's and the system's), or the environment (`https_proxy` /
/// `HTTPS_PROXY` for https, `http_proxy` / `HTTP_PROXY` for http; `no_proxy` is left to
/// libgit2). Used only to keep the pack-as-is push, which connects directly, away from a
/// standby behind a proxy.
fn proxy_configured(repo: &Repository, url: &str) -> bool {
    let configured = repo
        .config()
        .and_then(|c| c.get_string("http.proxy"))
        .is_ok_and(|p| !p.is_empty());
    configured || proxy_in_env(url)
}

fn proxy_in_env(url: &str) -> bool {
    let names: &[&str] = if url.starts_with("https://") {
        &["https_proxy", "HTTPS_PROXY"]
    } else if url.starts_with("http://") {
        &["http_proxy", "HTTP_PROXY"]
    } else {
        &[]
    };
    names
        .iter()
        .any(|n| std::env::var_os(n).is_some_and(|v| !v.is_empty()))
}

/// Initialises libgit2 now. Its first use sets `SSL_CERT_FILE` / `SSL_CERT_DIR` to the
/// system's store where they are unset (git2 runs `openssl-probe`), and changing the
/// environment once threads run is unsound: the binaries call this first thing in `main`.
/// It also registers the transport that pushes local standbys through `git receive-pack`
/// ([`local_push`]), which must happen before other threads use libgit2 too.
pub fn init_tls() {
    // Any git2 call initialises it; this one sets what is already the default.
    git2::opts::strict_hash_verification(true);
    local_push::register();
}

/// Proxy settings for every connection: libgit2 finds them itself, in git's config
/// (`http.proxy`) and the environment (`https_proxy`, `no_proxy`...), as git does.
fn proxy_options() -> ProxyOptions<'static> {
    let mut proxy = ProxyOptions::new();
    proxy.auto();
    proxy
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> CommitId {
        format!("{n:040x}").parse().unwrap()
    }

    fn result(name: &str, status: RefStatus) -> RefResult {
        RefResult::new(name.parse().unwrap(), status)
    }

    fn outcome(refs: Vec<RefResult>, objects: u64) -> MirrorOutcome {
        MirrorOutcome {
            source: "src".into(),
            target: "dst".into(),
            dry_run: false,
            refs,
            objects_sent: objects,
            bytes_sent: objects * 100,
            elapsed: Duration::ZERO,
            backups: Vec::new(),
        }
    }

    #[test]
    fn url_hosts_for_certificate_errors() {
        let rows = [
            (
                "https://git-codecommit.ap-northeast-3.amazonaws.com/v1/repos/r",
                Some("git-codecommit.ap-northeast-3.amazonaws.com"),
            ),
            ("https://127.0.0.1:8443/v1/repos/r", Some("127.0.0.1")),
            ("https://user@host.example:443/x", Some("host.example")),
            ("https://[::1]:9000/v1/repos/r", Some("::1")),
            ("https://host.example?x=1", Some("host.example")),
            ("/srv/git/r.git", None),
            ("https:///x", None),
        ];
        for (url, want) in rows {
            assert_eq!(url_host(url), want, "{url}");
        }
    }

    #[test]
    fn a_refused_certificate_is_not_transient() {
        let refused = git2::Error::new(
            ErrorCode::Certificate,
            ErrorClass::Ssl,
            "the SSL certificate is invalid",
        );
        assert!(is_certificate_error(&refused));
        assert!(!is_transient(&refused));
        assert!(certificate_reason(&refused).contains("SSL_CERT_FILE"));
        let reset = git2::Error::new(
            ErrorCode::GenericError,
            ErrorClass::Ssl,
            "SSL error: syscall failure",
        );
        assert!(
            is_transient(&reset),
            "other TLS failures are network errors"
        );
    }

    #[test]
    fn a_local_source_has_one_cache_key_however_its_path_is_written() {
        let dir = tempfile::TempDir::new().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let repo = root.join("regions/virginia.git");
        std::fs::create_dir_all(&repo).unwrap();
        std::fs::create_dir(root.join("sub")).unwrap();
        std::os::unix::fs::symlink(&repo, root.join("link.git")).unwrap();
        let want = repo.display().to_string();
        for written in [
            repo.clone(),
            root.join("sub/../regions/virginia.git"),
            root.join("./regions/./virginia.git/"),
            root.join("link.git"),
        ] {
            assert_eq!(
                cache_key(&written.display().to_string()),
                want,
                "{written:?}"
            );
        }
        // A relative path is the working directory's: never the same key as another
        // directory's path of the same spelling.
        let relative = cache_key("regions/virginia.git");
        assert!(Path::new(&relative).is_absolute(), "{relative}");
        assert_ne!(relative, want);
    }

    #[test]
    fn urls_are_normalised_for_their_cache_key() {
        let rows = [
            (
                "https://Git.Example.com:443/infra/x.git/",
                "https://git.example.com/infra/x.git",
            ),
            (
                "HTTPS://git.example.com/infra/x.git",
                "https://git.example.com/infra/x.git",
            ),
            (
                "http://127.0.0.1:80/v1/repos/r",
                "http://127.0.0.1/v1/repos/r",
            ),
            (
                "http://127.0.0.1:8080/v1/repos/r",
                "http://127.0.0.1:8080/v1/repos/r",
            ),
            ("https://host:8443/r", "https://host:8443/r"),
            ("https://host/R", "https://host/R"),
            ("https://host", "https://host"),
        ];
        for (url, want) in rows {
            assert_eq!(cache_key(url), want, "{url}");
        }
        let mirror = Git2Mirror::new("/cache");
        let remote = |url: &str| GitRemote {
            url: url.into(),
            shown: "shown".into(),
            credentials: None,
            default_branch: None,
        };
        assert_eq!(
            mirror.cache_dir(&remote("https://HOST:443/x/")),
            mirror.cache_dir(&remote("https://host/x"))
        );
        assert_ne!(
            mirror.cache_dir(&remote("https://host/x")),
            mirror.cache_dir(&remote("https://host/y"))
        );
    }

    #[test]
    fn a_hooks_control_characters_are_shown_not_obeyed() {
        let said = server_message("remote: \u{1b}[31mdenied\u{1b}[0m\r\nremote: bye\u{7}\n");
        assert_eq!(
            said.as_deref(),
            Some("remote: ␛[31mdenied␛[0m; remote: bye␇")
        );
    }

    /// A token in a source URL's query string (or fragment) is not written into the
    /// cache directory's name, yet two tokens keep two caches.
    #[test]
    fn a_cache_name_holds_no_query_string() {
        let mirror = Git2Mirror::new("/cache");
        let dir = |url: &str| {
            let remote = GitRemote {
                url: url.into(),
                shown: "shown".into(),
                credentials: None,
                default_branch: None,
            };
            mirror.cache_dir(&remote).display().to_string()
        };
        let with_token = dir("https://host/infra/x.git?token=s3cr3t");
        assert!(!with_token.contains("s3cr3t"), "{with_token}");
        assert!(!with_token.contains("token"), "{with_token}");
        assert!(
            with_token.starts_with("/cache/https___host_infra_x_git-"),
            "{with_token}"
        );
        let fragment = dir("https://host/infra/x.git#s3cr3t");
        assert!(!fragment.contains("s3cr3t"), "{fragment}");
        assert_ne!(with_token, dir("https://host/infra/x.git?token=other"));
        assert_ne!(with_token, dir("https://host/infra/x.git"));
    }

    #[test]
    fn what_earlier_attempts_pushed_is_reported_by_the_last_one() {
        let mut landed = Landed::default();
        landed.keep(&outcome(
            vec![
                result("refs/heads/a", RefStatus::Created { new: id(1) }),
                result("refs/heads/b", RefStatus::Deleted { old: id(2) }),
                result("refs/heads/c", RefStatus::Created { new: id(3) }),
                result(
                    "refs/heads/r",
                    RefStatus::Rejected {
                        reason: "no".into(),
                    },
                ),
            ],
            3,
        ));
        let mut last = outcome(
            vec![
                // In step at what the earlier attempt pushed: reported as created.
                result("refs/heads/a", RefStatus::Unchanged { at: id(1) }),
                // Moved since by someone else: the last plan's word stands.
                result("refs/heads/c", RefStatus::Unchanged { at: id(4) }),
                result(
                    "refs/heads/main",
                    RefStatus::Updated {
                        old: id(5),
                        new: id(6),
                        forced: false,
                    },
                ),
                result("refs/heads/r", RefStatus::Unchanged { at: id(7) }),
            ],
            2,
        );
        landed.report_in(&mut last);
        let statuses: Vec<(String, RefStatus)> = last
            .refs
            .iter()
            .map(|r| (r.reference.full(), r.status.clone()))
            .collect();
        assert_eq!(
            statuses,
            vec![
                ("refs/heads/a".into(), RefStatus::Created { new: id(1) }),
                // Gone from both sides, so absent from the last plan: still reported.
                ("refs/heads/b".into(), RefStatus::Deleted { old: id(2) }),
                ("refs/heads/c".into(), RefStatus::Unchanged { at: id(4) }),
                (
                    "refs/heads/main".into(),
                    RefStatus::Updated {
                        old: id(5),
                        new: id(6),
                        forced: false
                    }
                ),
                ("refs/heads/r".into(), RefStatus::Unchanged { at: id(7) }),
            ]
        );
        assert_eq!((last.objects_sent, last.bytes_sent), (5, 500));
    }
}
