//! The mirror over local repositories: what it does to each ref, checked with the real git
//! CLI (`git fsck` on the standby, `git for-each-ref` equal to the source's).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tempfile::TempDir;
use tozai::adapters::git_mirror::Git2Mirror;
use tozai::adapters::local::ledger::FileLedger;
use tozai::mirror::{MirrorOutcome, OwnedRefs, Record, RefSelection, RefStatus};
use tozai::ports::{Mirror, MirrorError, MirrorRequest, PushLedger, ServiceError};
use tozai::refs::RefName;
use tozai_tests::mirror::{
    assert_in_step, commit_file, git, local_remote, refs, rev, status, try_git,
};

struct World {
    tmp: TempDir,
    src: PathBuf,
    dst: PathBuf,
    cache: PathBuf,
    /// What the mirror pushed to the standby (`state/mirrored.json`).
    ledger: Arc<FileLedger>,
}

impl World {
    fn new() -> Self {
        let tmp = TempDir::new().unwrap();
        let src = tmp.path().join("src");
        let dst = tmp.path().join("dst.git");
        std::fs::create_dir(&src).unwrap();
        git(&src, &["init", "-q", "-b", "main"]);
        git(
            tmp.path(),
            &["init", "-q", "--bare", "-b", "main", "dst.git"],
        );
        let cache = tmp.path().join("cache");
        let ledger = FileLedger::open(tmp.path().join("state"), dst.display().to_string());
        Self {
            ledger: Arc::new(ledger.unwrap()),
            tmp,
            src,
            dst,
            cache,
        }
    }

    fn commit(&self, file: &str, text: &str) -> String {
        commit_file(&self.src, file, text)
    }

    fn request(&self, force: bool, dry_run: bool) -> MirrorRequest {
        MirrorRequest {
            source: local_remote(&self.src),
            target: local_remote(&self.dst),
            selection: RefSelection::all(),
            force,
            dry_run,
            ledger: Some(self.ledger.clone()),
        }
    }

    fn mirror_with(&self, request: &MirrorRequest) -> MirrorOutcome {
        Git2Mirror::new(&self.cache).mirror(request, None).unwrap()
    }

    fn mirror(&self) -> MirrorOutcome {
        self.mirror_with(&self.request(false, false))
    }

    /// The standby is sound and has exactly the source's branches and tags.
    fn assert_in_step(&self) {
        assert_in_step(&self.src, &self.dst);
    }
}

#[test]
fn first_mirror_then_incremental_then_nothing() {
    let w = World::new();
    let c1 = w.commit("common/a.yaml", "a");
    let o = w.mirror();
    assert!(
        matches!(status(&o, "refs/heads/main"), RefStatus::Created { new } if new.as_str() == c1)
    );
    w.assert_in_step();

    let c2 = w.commit("secondary/b.yaml", "b");
    let o = w.mirror();
    match status(&o, "refs/heads/main") {
        RefStatus::Updated { old, new, forced } => {
            assert_eq!(
                (old.as_str(), new.as_str(), *forced),
                (c1.as_str(), c2.as_str(), false)
            );
        }
        other => panic!("{other:?}"),
    }
    w.assert_in_step();

    let o = w.mirror();
    assert!(
        o.refs
            .iter()
            .all(|r| matches!(r.status, RefStatus::Unchanged { .. })),
        "{o:?}"
    );
    assert_eq!(o.objects_sent, 0, "a second run pushes nothing");
    assert!(o.in_sync());
}

#[test]
fn new_and_deleted_branches() {
    let w = World::new();
    w.commit("a", "a");
    git(&w.src, &["branch", "feature/x"]);
    w.mirror();
    w.assert_in_step();
    git(&w.src, &["branch", "-D", "feature/x"]);
    let o = w.mirror();
    assert!(matches!(
        status(&o, "refs/heads/feature/x"),
        RefStatus::Deleted { .. }
    ));
    w.assert_in_step();
}

#[test]
fn lightweight_and_annotated_tags() {
    let w = World::new();
    w.commit("a", "a");
    git(&w.src, &["tag", "v1"]);
    git(&w.src, &["tag", "-a", "v2", "-m", "release 2"]);
    let o = w.mirror();
    assert!(matches!(
        status(&o, "refs/tags/v1"),
        RefStatus::Created { .. }
    ));
    assert!(matches!(
        status(&o, "refs/tags/v2"),
        RefStatus::Created { .. }
    ));
    w.assert_in_step();
    assert_eq!(
        git(&w.dst, &["cat-file", "-t", "v2"]).trim(),
        "tag",
        "annotated tag kept"
    );
    git(&w.src, &["tag", "-d", "v1"]);
    let o = w.mirror();
    assert!(matches!(
        status(&o, "refs/tags/v1"),
        RefStatus::Deleted { .. }
    ));
    w.assert_in_step();
}

#[test]
fn a_force_pushed_source_leaves_the_standby_alone_unless_forced() {
    let w = World::new();
    w.commit("a", "a");
    let before = w.commit("b", "b");
    w.mirror();
    git(&w.src, &["reset", "-q", "--hard", "HEAD~1"]);
    let rewritten = w.commit("c", "c");
    let o = w.mirror();
    assert!(!o.in_sync());
    match status(&o, "refs/heads/main") {
        RefStatus::Diverged {
            source, standby, ..
        } => {
            assert_eq!(source.as_ref().unwrap().as_str(), rewritten);
            assert_eq!(standby.as_str(), before);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(rev(&w.dst, "main"), before, "not rewound");

    let o = w.mirror_with(&w.request(true, false));
    assert!(matches!(
        status(&o, "refs/heads/main"),
        RefStatus::Updated { forced: true, .. }
    ));
    w.assert_in_step();
    // What it overwrote is kept in a backup branch.
    let backups = tozai_tests::mirror::backups(&w.dst);
    assert_eq!(backups.len(), 1, "{backups:?}");
    assert!(
        backups[0].starts_with(&format!("{before} refs/heads/tozai-backup/")),
        "{backups:?}"
    );
}

#[test]
fn a_moved_tag_is_diverged() {
    let w = World::new();
    w.commit("a", "a");
    git(&w.src, &["tag", "v1"]);
    w.mirror();
    w.commit("b", "b");
    git(&w.src, &["tag", "-f", "v1"]);
    let o = w.mirror();
    assert!(matches!(
        status(&o, "refs/tags/v1"),
        RefStatus::Diverged { .. }
    ));
    assert!(
        matches!(status(&o, "refs/heads/main"), RefStatus::Updated { .. }),
        "others still sync"
    );
}

#[test]
fn a_branch_made_on_the_standby_is_reported_not_deleted() {
    let w = World::new();
    w.commit("a", "a");
    w.mirror();
    let tmp = TempDir::new().unwrap();
    let clone = tmp.path().join("w");
    git(tmp.path(), &["clone", "-q", w.dst.to_str().unwrap(), "w"]);
    git(&clone, &["checkout", "-q", "-b", "hotfix"]);
    git(
        &clone,
        &["commit", "-q", "--allow-empty", "-m", "made on the standby"],
    );
    git(&clone, &["push", "-q", "origin", "hotfix"]);
    let o = w.mirror();
    assert!(matches!(
        status(&o, "refs/heads/hotfix"),
        RefStatus::Diverged { source: None, .. }
    ));
    git(&w.dst, &["rev-parse", "--verify", "hotfix"]);
}

#[test]
fn dry_run_changes_nothing() {
    let w = World::new();
    w.commit("a", "a");
    let o = w.mirror_with(&w.request(false, true));
    assert!(o.dry_run);
    assert!(matches!(
        status(&o, "refs/heads/main"),
        RefStatus::Created { .. }
    ));
    assert_eq!(refs(&w.dst), "", "nothing pushed");
}

#[test]
fn selection_limits_what_is_touched() {
    let w = World::new();
    w.commit("a", "a");
    git(&w.src, &["branch", "feature"]);
    git(&w.src, &["tag", "v1"]);
    let mut req = w.request(false, false);
    req.selection = RefSelection::exactly(&"refs/heads/main".parse().unwrap());
    let o = w.mirror_with(&req);
    assert_eq!(o.refs.len(), 1);
    let got = refs(&w.dst);
    assert!(
        got.contains("refs/heads/main") && !got.contains("feature") && !got.contains("v1"),
        "{got}"
    );
}

#[test]
fn unicode_and_non_utf8_file_names_survive() {
    let w = World::new();
    w.commit("共通/テンプレート/東京.yaml", "a");
    w.commit("common/with space.yaml", "b");
    use std::os::unix::ffi::OsStrExt;
    let raw = w.src.join(std::ffi::OsStr::from_bytes(b"caf\xe9.yaml"));
    std::fs::write(raw, "c").unwrap();
    git(&w.src, &["add", "-A"]);
    git(&w.src, &["commit", "-q", "-m", "latin-1 name"]);
    w.mirror();
    w.assert_in_step();
}

#[test]
fn a_corrupt_cache_is_rebuilt() {
    let w = World::new();
    w.commit("a", "a");
    w.mirror();
    let mirror = Git2Mirror::new(&w.cache);
    let dir = mirror.cache_dir(&w.request(false, false).source);
    assert!(dir.exists(), "the cache is where cache_dir says");
    std::fs::write(dir.join("HEAD"), "garbage").unwrap();
    std::fs::remove_dir_all(dir.join("objects")).unwrap();
    w.commit("b", "b");
    let o = w.mirror();
    assert!(
        matches!(status(&o, "refs/heads/main"), RefStatus::Updated { .. }),
        "{o:?}"
    );
    w.assert_in_step();
}

#[test]
fn two_mirrors_on_one_cache_take_turns_and_converge() {
    let w = World::new();
    for i in 0..5 {
        w.commit(&format!("f{i}"), "x");
    }
    let request = w.request(false, false);
    let outcomes: Vec<MirrorOutcome> = std::thread::scope(|s| {
        let a = s.spawn(|| Git2Mirror::new(&w.cache).mirror(&request, None).unwrap());
        let b = s.spawn(|| Git2Mirror::new(&w.cache).mirror(&request, None).unwrap());
        vec![a.join().unwrap(), b.join().unwrap()]
    });
    // One created main, the other found it already there.
    let created = outcomes
        .iter()
        .filter(|o| matches!(status(o, "refs/heads/main"), RefStatus::Created { .. }))
        .count();
    assert_eq!(created, 1, "{outcomes:?}");
    assert!(outcomes.iter().all(MirrorOutcome::in_sync));
    w.assert_in_step();
}

#[test]
fn many_refs_are_pushed_in_batches_and_all_arrive() {
    let w = World::new();
    w.commit("a", "a");
    let head = rev(&w.src, "HEAD");
    let mut stdin = String::new();
    for i in 0..4500 {
        stdin.push_str(&format!("create refs/heads/b/{i:04} {head}\n"));
    }
    let mut child = Command::new("git")
        .arg("-C")
        .arg(&w.src)
        .args(["update-ref", "--stdin"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
    let o = w.mirror();
    assert_eq!(o.counts().get("created"), Some(&4501));
    w.assert_in_step();
}

#[test]
fn an_unreachable_source_fails_clearly_and_keeps_the_cache() {
    let w = World::new();
    w.commit("a", "a");
    w.mirror();
    let req = w.request(false, false);
    let cache_dir = Git2Mirror::new(&w.cache).cache_dir(&req.source);
    let objects = || git(&cache_dir, &["count-objects", "-v"]);
    let before = objects();
    let away = w.src.with_extension("away");
    std::fs::rename(&w.src, &away).unwrap();
    let err = Git2Mirror::new(&w.cache).mirror(&req, None).unwrap_err();
    std::fs::rename(&away, &w.src).unwrap();
    let text = format!("{err}");
    assert!(text.contains(&req.source.shown), "{text}");
    assert!(
        matches!(err, MirrorError::NotARepository { role: "source", .. }),
        "{err:?}"
    );
    assert_eq!(objects(), before, "the cache was not thrown away");
    w.mirror();
    w.assert_in_step();
}

/// A local path that is no repository is bad input, named as such: not a network error
/// retried with backoff (libgit2 calls a missing path an unsupported URL), and not a
/// damaged cache to rebuild (libgit2's error for a plain directory).
#[test]
fn a_local_path_that_is_no_repository_is_named_and_nothing_is_touched() {
    let w = World::new();
    w.commit("a", "a");
    let plain = w.src.parent().unwrap().join("plain");
    std::fs::create_dir(&plain).unwrap();
    let missing = w.src.parent().unwrap().join("missing.git");
    let cases = [
        (local_remote(&plain), local_remote(&w.dst), "source", &plain),
        (
            local_remote(&missing),
            local_remote(&w.dst),
            "source",
            &missing,
        ),
        (local_remote(&w.src), local_remote(&plain), "target", &plain),
        (
            local_remote(&w.src),
            local_remote(&missing),
            "target",
            &missing,
        ),
    ];
    for (source, target, role, path) in cases {
        let request = MirrorRequest {
            source,
            target,
            ..w.request(false, false)
        };
        let err = Git2Mirror::new(&w.cache)
            .mirror(&request, None)
            .unwrap_err();
        match &err {
            MirrorError::NotARepository {
                location, role: r, ..
            } => {
                assert_eq!((location.as_str(), *r), (path.to_str().unwrap(), role));
            }
            other => panic!("{other:?}"),
        }
        assert!(!err.is_transient(), "{err}");
        assert!(
            !w.cache.exists(),
            "no cache made for a run that cannot start"
        );
        assert!(
            !missing.exists(),
            "nothing created at {}",
            missing.display()
        );
        assert_eq!(std::fs::read_dir(&plain).unwrap().count(), 0);
    }
    assert!(refs(&w.dst).is_empty(), "the standby is untouched");
}

// ---- the mirror owns only what it made (issue 11) ----

/// True when the cache `Git2Mirror` keeps for `w`'s source under `root` has object `id`.
fn cache_has(w: &World, root: &std::path::Path, id: &str) -> bool {
    let dir = Git2Mirror::new(root).cache_dir(&local_remote(&w.src));
    try_git(&dir, &["cat-file", "-e", id]).is_some()
}

/// Issue 11, scenario 9a: a branch squash-merged and deleted at the source is deleted at
/// the standby by a run whose cache never fetched the branch's tip (a new Lambda
/// instance's empty /tmp): the ledger says the mirror pushed that value there.
#[test]
fn a_squash_merged_branch_deleted_at_the_source_is_deleted_by_a_cold_cache() {
    let w = World::new();
    w.commit("common/a.yaml", "a");
    git(&w.src, &["checkout", "-q", "-b", "feature/squash"]);
    w.commit("common/b.yaml", "b");
    let tip = w.commit("common/c.yaml", "c");
    git(&w.src, &["checkout", "-q", "main"]);
    w.mirror();
    assert_eq!(rev(&w.dst, "feature/squash"), tip);

    git(&w.src, &["merge", "-q", "--squash", "feature/squash"]);
    git(&w.src, &["commit", "-q", "-m", "feature/squash, squashed"]);
    git(&w.src, &["branch", "-q", "-D", "feature/squash"]);
    let cold = w.tmp.path().join("cold-cache");
    let o = Git2Mirror::new(&cold)
        .mirror(&w.request(false, false), None)
        .unwrap();
    assert!(
        !cache_has(&w, &cold, &tip),
        "the cold cache never fetched the branch's tip"
    );
    assert!(
        matches!(status(&o, "refs/heads/feature/squash"), RefStatus::Deleted { old } if old.as_str() == tip),
        "{o:#?}"
    );
    assert!(o.in_sync(), "{o:#?}");
    w.assert_in_step();
}

/// 9a, the other cold cache: one that fetched before the branch existed, while another
/// cache (another instance) pushed it.
#[test]
fn a_branch_another_cache_pushed_is_deleted_when_the_source_deletes_it() {
    let w = World::new();
    w.commit("a", "a");
    w.mirror();
    git(&w.src, &["checkout", "-q", "-b", "feature/elsewhere"]);
    let tip = w.commit("b", "b");
    git(&w.src, &["checkout", "-q", "main"]);
    let other = w.tmp.path().join("other-cache");
    Git2Mirror::new(&other)
        .mirror(&w.request(false, false), None)
        .unwrap();
    git(&w.src, &["branch", "-q", "-D", "feature/elsewhere"]);
    let o = w.mirror();
    assert!(!cache_has(&w, &w.cache, &tip));
    assert!(
        matches!(
            status(&o, "refs/heads/feature/elsewhere"),
            RefStatus::Deleted { .. }
        ),
        "{o:#?}"
    );
    w.assert_in_step();
}

/// A config mirroring `main` and `release/*` from `tokyo.git` to `osaka.git` in `dir`.
fn local_config(dir: &std::path::Path) -> tozai::config::Config {
    let path = dir.join("tozai.toml");
    std::fs::write(
        &path,
        r#"primary = "tokyo"

[regions.tokyo]
aws_region = "ap-northeast-1"
repository = "./tokyo.git"

[regions.osaka]
aws_region = "ap-northeast-3"
repository = "./osaka.git"

[sync]
branches = ["main", "release/*"]
tags = ["v*"]

[sync.to.osaka]
paths = ["common/**"]

[sync.to.tokyo]
paths = ["common/**"]
"#,
    )
    .unwrap();
    tozai::config::Config::load(&path).unwrap()
}

/// Issue 11, scenario 9b: `release/osaka-fix`, made directly on the standby at a commit
/// that was mirrored (so the cache has it), is kept by the scheduled reconciliation and
/// reported `diverged`.
#[test]
fn a_branch_made_on_the_standby_at_a_mirrored_commit_is_kept_by_the_reconciliation() {
    use tozai::judge::RefMirror;
    let tmp = TempDir::new().unwrap();
    let config = local_config(tmp.path());
    let (tokyo, osaka) = (tmp.path().join("tokyo.git"), tmp.path().join("osaka.git"));
    for bare in [&tokyo, &osaka] {
        git(
            tmp.path(),
            &["init", "-q", "--bare", "-b", "main", bare.to_str().unwrap()],
        );
    }
    let work = tmp.path().join("work");
    git(
        tmp.path(),
        &["clone", "-q", tokyo.to_str().unwrap(), "work"],
    );
    let c1 = commit_file(&work, "common/a.yaml", "a");
    git(&work, &["push", "-q", "origin", "main", "main:release/1.0"]);
    let target = config.standby().repository.clone();
    let mirror = tozai::lambda::LiveMirror {
        access: None,
        source: config.primary().repository.clone(),
        target: target.clone(),
        cache: tmp.path().join("cache"),
        force: false,
        dry_run: false,
        ledger: Some(Arc::new(
            FileLedger::open(tmp.path().join("state"), target.to_string()).unwrap(),
        )),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let reconcile = || {
        runtime
            .block_on(mirror.mirror_selected(config.sync.selection()))
            .unwrap()
    };
    assert!(reconcile().in_sync());

    // Made on the standby, at the commit the mirror pushed.
    git(&osaka, &["branch", "release/osaka-fix", &c1]);
    let o = reconcile();
    let dir = Git2Mirror::new(tmp.path().join("cache")).cache_dir(&local_remote(&tokyo));
    assert!(
        try_git(&dir, &["cat-file", "-e", &c1]).is_some(),
        "the cache has the commit"
    );
    match status(&o, "refs/heads/release/osaka-fix") {
        RefStatus::Diverged {
            source: None,
            standby,
            ..
        } => assert_eq!(standby.as_str(), c1),
        other => panic!("{other:?} in {o:#?}"),
    }
    assert!(!o.in_sync());
    assert_eq!(rev(&osaka, "release/osaka-fix"), c1, "kept");
    assert!(matches!(
        status(&o, "refs/heads/release/1.0"),
        RefStatus::Unchanged { .. }
    ));
}

/// A branch the mirror pushed and then someone moved on the standby (here rewound, to a
/// commit the source has) is not the mirror's any more: deleted at the source, it is
/// reported, not deleted.
#[test]
fn a_branch_moved_on_the_standby_since_the_mirror_pushed_it_is_not_deleted() {
    let w = World::new();
    let c1 = w.commit("a", "a");
    git(&w.src, &["branch", "feature/x"]);
    git(&w.src, &["checkout", "-q", "feature/x"]);
    w.commit("b", "b");
    git(&w.src, &["checkout", "-q", "main"]);
    w.mirror();
    git(&w.dst, &["update-ref", "refs/heads/feature/x", &c1]);
    git(&w.src, &["branch", "-q", "-D", "feature/x"]);
    let o = w.mirror();
    assert!(
        matches!(status(&o, "refs/heads/feature/x"), RefStatus::Diverged { source: None, standby, .. } if standby.as_str() == c1),
        "{o:#?}"
    );
    assert_eq!(rev(&w.dst, "feature/x"), c1);
}

/// Refs pushed before the ledger existed (or by another machine) are adopted once they
/// equal the source's: a later deletion at the source then deletes them.
#[test]
fn refs_in_step_with_the_source_are_adopted_then_deleted_with_it() {
    let w = World::new();
    w.commit("a", "a");
    git(&w.src, &["branch", "feature/old"]);
    git(&w.src, &["tag", "v0"]);
    let mut before = w.request(false, false);
    before.ledger = None;
    w.mirror_with(&before);
    let all = [
        "refs/heads/main".parse().unwrap(),
        "refs/heads/feature/old".parse().unwrap(),
        "refs/tags/v0".parse().unwrap(),
    ];
    assert!(w.ledger.recorded(&all).unwrap().is_empty());

    let o = w.mirror();
    assert!(
        o.refs
            .iter()
            .all(|r| matches!(r.status, RefStatus::Unchanged { .. }))
    );
    assert_eq!(w.ledger.recorded(&all).unwrap().len(), 3, "adopted");
    git(&w.src, &["branch", "-q", "-D", "feature/old"]);
    git(&w.src, &["tag", "-d", "v0"]);
    let o = w.mirror();
    assert!(matches!(
        status(&o, "refs/heads/feature/old"),
        RefStatus::Deleted { .. }
    ));
    assert!(matches!(
        status(&o, "refs/tags/v0"),
        RefStatus::Deleted { .. }
    ));
    w.assert_in_step();
    assert_eq!(
        w.ledger.recorded(&all).unwrap().len(),
        1,
        "deletions forgotten"
    );
}

/// Without a ledger nothing is known to be the mirror's: nothing is deleted unless forced.
#[test]
fn without_a_ledger_nothing_is_deleted_unless_forced() {
    let w = World::new();
    w.commit("a", "a");
    git(&w.src, &["branch", "feature/x"]);
    w.mirror();
    git(&w.src, &["branch", "-q", "-D", "feature/x"]);
    let mut request = w.request(false, false);
    request.ledger = None;
    let o = w.mirror_with(&request);
    assert!(matches!(
        status(&o, "refs/heads/feature/x"),
        RefStatus::Diverged { source: None, .. }
    ));
    request.force = true;
    let o = w.mirror_with(&request);
    assert!(matches!(
        status(&o, "refs/heads/feature/x"),
        RefStatus::Deleted { .. }
    ));
    w.assert_in_step();
}

/// A ledger whose reads or writes fail, as a throttled store's may.
#[derive(Debug)]
struct FlakyLedger {
    inner: Arc<FileLedger>,
    /// Reads fail (transient or not).
    reads_fail: Option<bool>,
    writes_fail: Writes,
    /// The writes that failed.
    failed_writes: AtomicUsize,
}

#[derive(Debug)]
enum Writes {
    Succeed,
    /// Every write fails (transient or not).
    Fail {
        transient: bool,
    },
    /// The writes made once the standby no longer has the refs it had when the ledger was
    /// made fail: a record written after a push, lost (sim seed 2271's throttled
    /// BatchWriteItem).
    FailOnceTheStandbyMoved {
        standby: PathBuf,
        before: String,
    },
}

impl FlakyLedger {
    fn new(inner: &Arc<FileLedger>, reads_fail: Option<bool>, writes_fail: Writes) -> Self {
        Self {
            inner: inner.clone(),
            reads_fail,
            writes_fail,
            failed_writes: AtomicUsize::new(0),
        }
    }

    /// Writes fail once `standby` differs from what it is now.
    fn losing_records_after_a_push(inner: &Arc<FileLedger>, standby: &Path) -> Self {
        let writes = Writes::FailOnceTheStandbyMoved {
            standby: standby.to_owned(),
            before: refs(standby),
        };
        Self::new(inner, None, writes)
    }
}

impl PushLedger for FlakyLedger {
    fn recorded(&self, refs: &[RefName]) -> Result<OwnedRefs, ServiceError> {
        if let Some(transient) = self.reads_fail {
            return Err(ServiceError::new("test ledger", "throttled", transient));
        }
        self.inner.recorded(refs)
    }

    fn record(&self, records: &[Record]) -> Result<(), ServiceError> {
        let fails = match &self.writes_fail {
            Writes::Succeed => None,
            Writes::Fail { transient } => Some(*transient),
            Writes::FailOnceTheStandbyMoved { standby, before } => {
                (refs(standby) != *before).then_some(true)
            }
        };
        if let Some(transient) = fails {
            self.failed_writes.fetch_add(1, Ordering::SeqCst);
            return Err(ServiceError::new("test ledger", "throttled", transient));
        }
        self.inner.record(records)
    }
}

/// A ledger that cannot be read fails the run before anything is pushed (transient when
/// the store's error is), and so does one that cannot take the intent of the push.
#[test]
fn a_ledger_that_cannot_be_read_or_take_the_intent_stops_the_run_before_any_push() {
    let w = World::new();
    let c1 = w.commit("a", "a");
    w.mirror();
    w.commit("b", "b");
    git(&w.src, &["branch", "feature/y"]);
    let before = refs(&w.dst);
    for transient in [true, false] {
        for ledger in [
            FlakyLedger::new(&w.ledger, Some(transient), Writes::Succeed),
            FlakyLedger::new(&w.ledger, None, Writes::Fail { transient }),
        ] {
            let ledger = Arc::new(ledger);
            let mut request = w.request(false, false);
            request.ledger = Some(ledger.clone());
            let err = Git2Mirror::new(&w.cache)
                .mirror(&request, None)
                .unwrap_err();
            assert!(matches!(err, MirrorError::Ledger { .. }), "{err:?}");
            assert_eq!(err.is_transient(), transient, "{err:?}");
            assert!(err.to_string().contains(&request.target.shown), "{err}");
            assert_eq!(refs(&w.dst), before, "nothing pushed: {ledger:?}");
            assert_eq!(rev(&w.dst, "main"), c1);
        }
    }
    let o = w.mirror();
    assert!(o.in_sync(), "{o:#?}");
    w.assert_in_step();
}

/// Sim seed 2271: the mirror created release/1 and its record was lost (a throttled
/// BatchWriteItem); the source then deleted release/1, and every later run reported it
/// diverged. The intent recorded before the push owns what the push left: a branch the
/// run created, and one it moved from a value it owned.
#[test]
fn a_record_lost_after_the_push_still_owns_what_the_push_left() {
    let w = World::new();
    let c1 = w.commit("a", "a");
    git(&w.src, &["branch", "feature/x"]);
    w.mirror();
    git(&w.src, &["checkout", "-q", "feature/x"]);
    let c2 = w.commit("b", "b");
    git(&w.src, &["checkout", "-q", "main"]);
    git(&w.src, &["branch", "release/1", &c1]);
    let lossy = Arc::new(FlakyLedger::losing_records_after_a_push(&w.ledger, &w.dst));
    let mut request = w.request(false, false);
    request.ledger = Some(lossy.clone());
    let o = w.mirror_with(&request);
    assert!(
        matches!(
            status(&o, "refs/heads/release/1"),
            RefStatus::Created { .. }
        ),
        "{o:#?}"
    );
    assert!(
        matches!(status(&o, "refs/heads/feature/x"), RefStatus::Updated { new, .. } if new.as_str() == c2),
        "{o:#?}"
    );
    w.assert_in_step();
    assert!(
        lossy.failed_writes.load(Ordering::SeqCst) > 0,
        "the record after the push was lost"
    );

    git(&w.src, &["branch", "-q", "-D", "release/1", "feature/x"]);
    for run in ["the next run", "the scheduled reconciliation"] {
        let o = w.mirror();
        assert!(o.in_sync(), "{run}: {o:#?}");
        w.assert_in_step();
    }
    let gone: Vec<RefName> = ["refs/heads/release/1", "refs/heads/feature/x"]
        .map(|r| r.parse().unwrap())
        .into();
    assert!(
        w.ledger.recorded(&gone).unwrap().is_empty(),
        "deletions forgotten"
    );
}

/// A push whose settling record was lost leaves the ledger at its intent (the value it
/// replaced and the new one); the next run finds the ref in step and settles the record at
/// the standby's value.
#[test]
fn a_push_in_flight_settles_at_the_value_the_standby_holds() {
    let w = World::new();
    w.commit("a", "a");
    git(&w.src, &["branch", "feature/x"]);
    w.mirror();
    let c2 = w.commit("b", "b");
    let lossy = Arc::new(FlakyLedger::losing_records_after_a_push(&w.ledger, &w.dst));
    let mut request = w.request(false, false);
    request.ledger = Some(lossy);
    w.mirror_with(&request);
    let main: RefName = "refs/heads/main".parse().unwrap();
    let recorded = || w.ledger.recorded(std::slice::from_ref(&main)).unwrap()[&main].clone();
    assert_eq!(recorded().len(), 2, "the intent: the old value and the new");
    w.mirror();
    assert_eq!(recorded(), [c2.parse().unwrap()], "settled by the next run");
}

/// A dry run reads the ledger and records nothing.
#[test]
fn a_dry_run_records_nothing() {
    let w = World::new();
    w.commit("a", "a");
    let o = w.mirror_with(&w.request(false, true));
    assert!(matches!(
        status(&o, "refs/heads/main"),
        RefStatus::Created { .. }
    ));
    let main: tozai::refs::RefName = "refs/heads/main".parse().unwrap();
    assert!(w.ledger.recorded(&[main]).unwrap().is_empty());
}
