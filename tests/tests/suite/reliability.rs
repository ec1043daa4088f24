//! Racing pushes and mirrors: ten engineers push to the primary's main at once, each push
//! followed by its own mirror run with its own cache (as ten Sync Requested events would
//! start ten mirror invocations in separate containers). A watcher samples the standby's main throughout: it must never move
//! backwards, and must end at the primary's main. Checked with the git CLI.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;
use tozai::adapters::git_mirror::Git2Mirror;
use tozai::mirror::RefSelection;
use tozai::ports::{Mirror, MirrorRequest};
use tozai_tests::mirror::{file_ledger, git, local_remote, try_git};

const PUSHERS: usize = 10;

fn is_ancestor(repo: &Path, a: &str, b: &str) -> bool {
    try_git(repo, &["merge-base", "--is-ancestor", a, b]).is_some()
}

fn head(repo: &Path) -> Option<String> {
    try_git(repo, &["rev-parse", "--verify", "-q", "refs/heads/main"])
}

/// Commits a file of its own and pushes to the primary, rebasing until the push lands.
fn push_one(work: &Path, n: usize) -> usize {
    let mut attempts = 0;
    loop {
        attempts += 1;
        git(work, &["fetch", "-q", "origin"]);
        git(work, &["reset", "-q", "--hard", "origin/main"]);
        std::fs::write(
            work.join(format!("common/pusher-{n}.yaml")),
            format!("{attempts}\n"),
        )
        .unwrap();
        git(work, &["add", "-A"]);
        git(
            work,
            &[
                "commit",
                "-q",
                "-m",
                &format!("pusher {n} attempt {attempts}"),
            ],
        );
        let pushed = try_git(work, &["push", "-q", "origin", "HEAD:refs/heads/main"]);
        if pushed.is_some() {
            return attempts;
        }
        assert!(attempts < 50, "pusher {n} never landed");
    }
}

#[test]
fn ten_racing_pushes_never_move_the_standby_backwards_and_converge() {
    let tmp = TempDir::new().unwrap();
    let root = tmp.path();
    let primary = root.join("tokyo.git");
    let standby = root.join("osaka.git");
    for bare in [&primary, &standby] {
        git(
            root,
            &["init", "-q", "--bare", "-b", "main", bare.to_str().unwrap()],
        );
    }
    let seed = root.join("seed");
    std::fs::create_dir_all(seed.join("common")).unwrap();
    git(&seed, &["init", "-q", "-b", "main"]);
    std::fs::write(seed.join("common/vpc.yaml"), "v1\n").unwrap();
    git(&seed, &["add", "-A"]);
    git(&seed, &["commit", "-q", "-m", "seed"]);
    git(&seed, &["push", "-q", primary.to_str().unwrap(), "main"]);
    // Each run has a cache of its own, as separate Lambda containers would: nothing but the
    // standby's expected-old-value check keeps an older run from pushing over a newer one.
    // One ledger for every run, as every mirror invocation shares the table.
    let ledger = file_ledger(&root.join("state"), "standby");
    let mirror_in = |cache: PathBuf, dry_run: bool| {
        let request = MirrorRequest {
            source: local_remote(&primary),
            target: local_remote(&standby),
            selection: RefSelection::all(),
            force: false,
            dry_run,
            ledger: Some(ledger.clone()),
        };
        Git2Mirror::new(cache).mirror(&request, None)
    };
    let mirror = |dry_run: bool| mirror_in(root.join("cache"), dry_run);
    mirror(false).unwrap();

    let works: Vec<PathBuf> = (0..PUSHERS)
        .map(|n| {
            let work = root.join(format!("work-{n}"));
            git(
                root,
                &[
                    "clone",
                    "-q",
                    primary.to_str().unwrap(),
                    work.to_str().unwrap(),
                ],
            );
            std::fs::create_dir_all(work.join("common")).unwrap();
            work
        })
        .collect();

    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let done = done.clone();
        let standby = standby.clone();
        thread::spawn(move || {
            let mut seen: Vec<String> = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(300);
            while !done.load(Ordering::SeqCst) && Instant::now() < deadline {
                if let Some(h) = head(&standby)
                    && seen.last() != Some(&h)
                {
                    seen.push(h);
                }
                thread::sleep(Duration::from_millis(5));
            }
            seen
        })
    };

    let started = Instant::now();
    let results: Vec<(usize, Result<bool, String>)> = thread::scope(|s| {
        let handles: Vec<_> = works
            .iter()
            .enumerate()
            .map(|(n, work)| {
                let mirror_in = &mirror_in;
                let cache = root.join(format!("cache-{n}"));
                s.spawn(move || {
                    let attempts = push_one(work, n);
                    let outcome = mirror_in(cache, false)
                        .map(|o| o.in_sync())
                        .map_err(|e| e.to_string());
                    (attempts, outcome)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    done.store(true, Ordering::SeqCst);
    let seen = watcher.join().unwrap();

    for (n, (_, outcome)) in results.iter().enumerate() {
        assert_eq!(outcome, &Ok(true), "mirror run {n}");
    }
    // Converged: the last run saw the last push.
    let source_head = head(&primary).unwrap();
    assert_eq!(head(&standby).as_deref(), Some(source_head.as_str()));
    assert!(
        !mirror(true)
            .unwrap()
            .refs
            .iter()
            .any(|r| r.status.is_problem())
    );
    // Never backwards: every value the standby showed is an ancestor of the next.
    for pair in seen.windows(2) {
        assert!(
            is_ancestor(&standby, &pair[0], &pair[1]),
            "the standby moved from {} to {}, which is not a fast-forward",
            pair[0],
            pair[1]
        );
    }
    let pushes: usize = results.iter().map(|(a, _)| a).sum();
    let log = git(&primary, &["rev-list", "--count", "main"]);
    assert_eq!(
        log.trim(),
        (PUSHERS + 1).to_string(),
        "every pusher landed once"
    );
    println!(
        "{PUSHERS} racing pushes ({pushes} push attempts), {PUSHERS} mirror runs in {:.1} s: \
         the standby showed {} distinct commits, each a fast-forward of the last, and ended at the primary's",
        started.elapsed().as_secs_f64(),
        seen.len()
    );
}
