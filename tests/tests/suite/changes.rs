//! `Git2Changes`, the git2 change source, on real repositories built with the git CLI. Each
//! case is checked against `git diff --name-status -z -M` on the same commits (the status
//! letter, the path bytes and the old path bytes), and against the changes a user expects.

use std::collections::BTreeSet;
use std::future::Future;
use std::task::{Context, Poll, Waker};

use tozai::adapters::git::Git2Changes;
use tozai::change::{Change, ChangeKind};
use tozai::ports::{ChangeError, ChangeSource};
use tozai::refs::{CommitId, RefName};
use tozai_tests::{EMPTY_TREE, GitRepo, NameStatus, git_name_status};

fn id(hex: &str) -> CommitId {
    hex.parse()
        .unwrap_or_else(|e| panic!("{hex:?} is not a commit id: {e}"))
}

fn source(repo: &GitRepo) -> Git2Changes {
    Git2Changes::open(repo.path()).expect("the test repository opens")
}

fn rows(changes: &[Change]) -> BTreeSet<NameStatus> {
    changes
        .iter()
        .map(|c| {
            (
                c.kind.letter(),
                c.path.as_bytes().to_vec(),
                c.old_path.as_ref().map(|p| p.as_bytes().to_vec()),
            )
        })
        .collect()
}

fn shown(rows: &BTreeSet<NameStatus>) -> Vec<String> {
    rows.iter()
        .map(|(k, path, old)| match old {
            Some(old) => format!(
                "{k} {:?} -> {:?}",
                String::from_utf8_lossy(old),
                String::from_utf8_lossy(path)
            ),
            None => format!("{k} {:?}", String::from_utf8_lossy(path)),
        })
        .collect()
}

/// A row as written in a test: letter, path, old path.
fn row(kind: char, path: &[u8], old: Option<&[u8]>) -> NameStatus {
    (kind, path.to_vec(), old.map(<[u8]>::to_vec))
}

/// The changes tozai lists from `before` (none: a root commit) to `after`, asserted equal
/// to what git lists for the same commits.
fn changes_as_git_sees_them(repo: &GitRepo, before: Option<&str>, after: &str) -> Vec<Change> {
    let changes = source(repo)
        .changes_between(before.map(id).as_ref(), &id(after))
        .expect("changes are listed");
    let ours = rows(&changes);
    assert_eq!(
        changes.len(),
        ours.len(),
        "a path listed twice: {changes:?}"
    );
    let git: BTreeSet<NameStatus> = git_name_status(repo, before.unwrap_or(EMPTY_TREE), after)
        .into_iter()
        .collect();
    if ours != git {
        let only_ours: BTreeSet<NameStatus> = ours.difference(&git).cloned().collect();
        let only_git: BTreeSet<NameStatus> = git.difference(&ours).cloned().collect();
        panic!(
            "tozai and git disagree on {before:?}..{after} ({} vs {} changes)\nonly tozai: {:?}\nonly git:   {:?}",
            ours.len(),
            git.len(),
            shown(&only_ours),
            shown(&only_git)
        );
    }
    changes
}

/// Polls a future once: the git2 source answers at once, so it must be ready.
fn ready<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("Git2Changes' future was not ready"),
    }
}

/// Text long enough that git and libgit2 both see a rename by similarity.
fn template(name: &str) -> String {
    let mut s =
        format!("AWSTemplateFormatVersion: '2010-09-09'\nDescription: {name}\nResources:\n");
    for i in 0..24 {
        s.push_str(&format!(
            "  Queue{i}:\n    Type: AWS::SQS::Queue\n    Properties:\n      QueueName: {name}-{i}\n"
        ));
    }
    s
}

#[test]
fn added_modified_and_deleted_files_match_git() {
    let repo = GitRepo::new();
    repo.write("common/vpc.yaml", "a: 1\n")
        .write("primary/root.yaml", "b: 1\n")
        .write("secondary/old.yaml", "c: 1\n");
    let a = repo.commit("seed");
    repo.write("common/vpc.yaml", "a: 2\n")
        .write("secondary/new.yaml", "d: 1\n")
        .rm("secondary/old.yaml");
    let b = repo.commit("change");

    let changes = changes_as_git_sees_them(&repo, Some(&a), &b);
    assert_eq!(
        rows(&changes),
        BTreeSet::from([
            row('M', b"common/vpc.yaml", None),
            row('A', b"secondary/new.yaml", None),
            row('D', b"secondary/old.yaml", None),
        ])
    );
}

#[test]
fn rename_counts_old_and_new_path() {
    let repo = GitRepo::new();
    repo.write("primary/templates/queue.yaml", template("queue"));
    let a = repo.commit("seed");
    repo.mv(
        "primary/templates/queue.yaml",
        "common/templates/queue.yaml",
    );
    let b = repo.commit("share the queue");

    let changes = changes_as_git_sees_them(&repo, Some(&a), &b);
    assert_eq!(
        changes,
        [Change::renamed(
            "primary/templates/queue.yaml",
            "common/templates/queue.yaml"
        )]
    );
    let judged: Vec<String> = changes[0].judged_paths().map(|p| p.to_string()).collect();
    assert_eq!(
        judged,
        [
            "common/templates/queue.yaml",
            "primary/templates/queue.yaml"
        ]
    );
}

#[test]
fn rename_with_edits_is_still_a_rename() {
    let repo = GitRepo::new();
    repo.write("primary/queue.yaml", template("queue"));
    let a = repo.commit("seed");
    repo.mv("primary/queue.yaml", "common/queue.yaml");
    repo.write(
        "common/queue.yaml",
        template("queue").replace("QueueName: queue-3\n", "QueueName: shared-3\n")
            + "Outputs: {}\n",
    );
    let b = repo.commit("move and edit");

    let changes = changes_as_git_sees_them(&repo, Some(&a), &b);
    assert_eq!(
        changes,
        [Change::renamed("primary/queue.yaml", "common/queue.yaml")]
    );
}

#[test]
fn paths_with_spaces_are_exact() {
    let repo = GitRepo::new();
    repo.write("common/my template.yaml", "a: 1\n");
    let a = repo.commit("seed");
    repo.write("common/my template.yaml", "a: 2\n")
        .write("secondary/ two  spaces .yaml", "b: 1\n");
    let b = repo.commit("spaces");

    let changes = changes_as_git_sees_them(&repo, Some(&a), &b);
    assert_eq!(
        rows(&changes),
        BTreeSet::from([
            row('M', b"common/my template.yaml", None),
            row('A', b"secondary/ two  spaces .yaml", None),
        ])
    );
}

#[test]
fn japanese_names_are_exact_bytes() {
    let repo = GitRepo::new();
    repo.write("共通/テンプレート/東京.yaml", template("東京"));
    let a = repo.commit("seed");
    repo.write("共通/テンプレート/大阪.yaml", "region: 大阪\n");
    repo.mv("共通/テンプレート/東京.yaml", "共通/テンプレート/首都.yaml");
    let b = repo.commit("日本語");

    let changes = changes_as_git_sees_them(&repo, Some(&a), &b);
    assert_eq!(
        rows(&changes),
        BTreeSet::from([
            row('A', "共通/テンプレート/大阪.yaml".as_bytes(), None),
            row(
                'R',
                "共通/テンプレート/首都.yaml".as_bytes(),
                Some("共通/テンプレート/東京.yaml".as_bytes())
            ),
        ])
    );
    let added = changes
        .iter()
        .find(|c| c.kind == ChangeKind::Added)
        .unwrap();
    assert_eq!(added.path.to_str(), Some("共通/テンプレート/大阪.yaml"));
}

#[test]
fn names_that_are_not_utf8_keep_their_bytes() {
    let repo = GitRepo::new();
    repo.write("common/readme.txt", "x\n");
    let a = repo.commit("seed");
    repo.write(b"common/caf\xe9.yaml", "latin-1 name\n")
        .write(b"secondary/\xff\xfe/x.yaml", "not utf-8 at all\n");
    let b = repo.commit("latin-1");

    let changes = changes_as_git_sees_them(&repo, Some(&a), &b);
    assert_eq!(
        rows(&changes),
        BTreeSet::from([
            row('A', b"common/caf\xe9.yaml", None),
            row('A', b"secondary/\xff\xfe/x.yaml", None),
        ])
    );
    let cafe = changes
        .iter()
        .find(|c| c.path.as_bytes() == b"common/caf\xe9.yaml")
        .unwrap();
    assert_eq!(cafe.path.to_str(), None);
    // shown lossily, never a panic
    assert_eq!(cafe.path.to_string(), "common/caf\u{fffd}.yaml");
    assert_eq!(cafe.to_string(), "A common/caf\u{fffd}.yaml");
}

#[test]
fn mode_only_change_is_a_modification() {
    let repo = GitRepo::new();
    repo.write("scripts/deploy.sh", "#!/bin/sh\necho deploy\n");
    let a = repo.commit("seed");
    repo.chmod_x("scripts/deploy.sh");
    let b = repo.commit("make it executable");
    assert_eq!(
        repo.git(&["ls-tree", &b, "scripts/deploy.sh"])
            .split_whitespace()
            .next(),
        Some("100755"),
        "the commit records the mode change"
    );

    let changes = changes_as_git_sees_them(&repo, Some(&a), &b);
    assert_eq!(changes, [Change::modified("scripts/deploy.sh")]);
}

#[test]
fn submodule_update_is_a_modification_at_its_path() {
    let repo = GitRepo::new();
    repo.write("common/vpc.yaml", "a: 1\n");
    let a = repo.commit("seed");
    repo.gitlink("vendor/lib", "1111111111111111111111111111111111111111");
    let b = repo.commit("add the submodule");
    repo.gitlink("vendor/lib", "2222222222222222222222222222222222222222");
    let c = repo.commit("bump the submodule");
    assert_eq!(
        repo.git(&["ls-tree", &c, "vendor/lib"])
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>(),
        [
            "160000",
            "commit",
            "2222222222222222222222222222222222222222"
        ]
    );

    let added = changes_as_git_sees_them(&repo, Some(&a), &b);
    assert_eq!(added, [Change::added("vendor/lib")]);
    let bumped = changes_as_git_sees_them(&repo, Some(&b), &c);
    assert_eq!(bumped, [Change::modified("vendor/lib")]);
}

#[test]
fn merge_commit_is_compared_with_its_first_parent() {
    let repo = GitRepo::new();
    repo.write("common/vpc.yaml", "a: 1\n");
    repo.commit("seed");
    repo.branch("feature/queue");
    repo.write("secondary/queue.yaml", "q: 1\n");
    let feature = repo.commit("queue for osaka");
    repo.switch("main");
    repo.write("primary/root.yaml", "r: 1\n");
    let main_before = repo.commit("tokyo root");
    let merge = repo.merge_no_ff("feature/queue", "merge feature/queue");
    assert_eq!(repo.rev_parse(&format!("{merge}^1")), main_before);
    assert_eq!(repo.rev_parse(&format!("{merge}^2")), feature);

    let (before, after) = source(&repo).resolve_range(&merge).unwrap();
    assert_eq!(
        before,
        Some(id(&main_before)),
        "the first parent is the base"
    );
    assert_eq!(after, id(&merge));
    let changes = changes_as_git_sees_them(&repo, Some(&main_before), &merge);
    assert_eq!(changes, [Change::added("secondary/queue.yaml")]);
    // the same by name
    let (before, after) = source(&repo).resolve_range("HEAD").unwrap();
    assert_eq!((before, after), (Some(id(&main_before)), id(&merge)));
}

#[test]
fn a_to_b_range_spans_every_commit_between() {
    let repo = GitRepo::new();
    repo.write("common/vpc.yaml", "a: 1\n");
    let a = repo.commit("seed");
    repo.write("primary/root.yaml", "r: 1\n");
    repo.commit("tokyo");
    repo.write("secondary/root.yaml", "s: 1\n")
        .write("common/vpc.yaml", "a: 2\n");
    let b = repo.commit("osaka");

    let git = source(&repo);
    let (before, after) = git.resolve_range(&format!("{a}..{b}")).unwrap();
    assert_eq!((before.clone(), after.clone()), (Some(id(&a)), id(&b)));
    let changes = changes_as_git_sees_them(&repo, Some(&a), &b);
    assert_eq!(
        rows(&changes),
        BTreeSet::from([
            row('M', b"common/vpc.yaml", None),
            row('A', b"primary/root.yaml", None),
            row('A', b"secondary/root.yaml", None),
        ])
    );
    // names work as well as ids, and an empty side means HEAD
    assert_eq!(
        git.resolve_range("HEAD~2..main").unwrap(),
        (Some(id(&a)), id(&b))
    );
    assert_eq!(
        git.resolve_range(&format!("{a}..")).unwrap(),
        (Some(id(&a)), id(&b))
    );
}

#[test]
fn root_commit_has_no_base_and_every_file_is_added() {
    let repo = GitRepo::new();
    repo.write("common/vpc.yaml", "a: 1\n")
        .write("primary/root.yaml", "r: 1\n")
        .write("secondary/テンプレート.yaml", "s: 1\n");
    let root = repo.commit("root");

    let (before, after) = source(&repo).resolve_range(&root).unwrap();
    assert_eq!(before, None);
    assert_eq!(after, id(&root));
    let changes = changes_as_git_sees_them(&repo, None, &root);
    assert_eq!(changes.len(), 3);
    assert!(
        changes.iter().all(|c| c.kind == ChangeKind::Added),
        "{changes:?}"
    );
}

#[test]
fn a_large_push_is_not_truncated() {
    let repo = GitRepo::new();
    repo.write("README.md", "seed\n");
    let a = repo.commit("seed");
    for i in 0..1500 {
        repo.write(format!("common/many/file-{i:04}.yaml"), format!("n: {i}\n"));
    }
    let b = repo.commit("many files");

    let changes = changes_as_git_sees_them(&repo, Some(&a), &b);
    assert_eq!(changes.len(), 1500);
}

#[test]
fn unknown_commit_is_an_unknown_revision_naming_it() {
    let repo = GitRepo::new();
    repo.write("a.yaml", "a\n");
    let a = repo.commit("seed");
    let git = source(&repo);

    let range = format!("{a}..nope");
    for (spec, named) in [
        ("no-such-branch", "no-such-branch"),
        (
            "deadbeef00000000000000000000000000000000",
            "deadbeef00000000000000000000000000000000",
        ),
        (range.as_str(), "nope"),
        ("nope..HEAD", "nope"),
    ] {
        let e = match git.resolve_range(spec) {
            Err(e) => e,
            Ok(found) => panic!("{spec}: resolved to {found:?}"),
        };
        let ChangeError::UnknownRevision { spec: got, .. } = &e else {
            panic!("{spec}: expected UnknownRevision, got {e:?}");
        };
        assert_eq!(got, named, "{spec}");
        assert!(e.to_string().contains(named), "{spec}: {e}");
        assert!(!e.is_transient(), "{spec}");
    }

    // a well-formed id of a commit this repository does not have
    let missing = id("0123456789abcdef0123456789abcdef01234567");
    match git.changes_between(Some(&id(&a)), &missing) {
        Err(ChangeError::UnknownRevision { spec, .. }) => assert_eq!(spec, missing.as_str()),
        other => panic!("expected UnknownRevision, got {other:?}"),
    }
    match git.changes_between(Some(&missing), &id(&a)) {
        Err(ChangeError::UnknownRevision { spec, .. }) => assert_eq!(spec, missing.as_str()),
        other => panic!("expected UnknownRevision, got {other:?}"),
    }
}

#[test]
fn a_directory_that_is_not_a_repository_is_refused() {
    let dir = tempfile::TempDir::new().unwrap();
    match Git2Changes::open(dir.path()) {
        Err(e @ ChangeError::NotARepository { .. }) => {
            assert!(
                e.to_string().contains(&dir.path().display().to_string()),
                "{e}"
            );
        }
        other => panic!("expected NotARepository, got {other:?}"),
    }
}

#[test]
fn a_subdirectory_of_a_work_tree_opens_its_repository() {
    let repo = GitRepo::new();
    repo.write("common/templates/vpc.yaml", "a\n");
    let a = repo.commit("seed");
    let inner = Git2Changes::open(&repo.path().join("common/templates")).unwrap();
    assert_eq!(inner.resolve_range("HEAD").unwrap(), (None, id(&a)));
}

#[test]
fn current_branch_is_the_checked_out_branch_or_none_when_detached() {
    let repo = GitRepo::new();
    assert_eq!(
        source(&repo).current_branch().unwrap(),
        None,
        "an unborn branch has no commit to plan"
    );
    repo.write("a.yaml", "a\n");
    let a = repo.commit("seed");
    repo.branch("release/2024-04");
    assert_eq!(
        source(&repo).current_branch().unwrap(),
        Some(RefName::branch("release/2024-04").unwrap())
    );
    repo.git(&["switch", "-q", "--detach", &a]);
    assert_eq!(source(&repo).current_branch().unwrap(), None);
}

#[test]
fn the_change_source_port_gives_the_same_changes() {
    let repo = GitRepo::new();
    repo.write("primary/templates/queue.yaml", template("queue"))
        .write("secondary/root.yaml", "s: 1\n");
    let a = repo.commit("seed");
    repo.mv(
        "primary/templates/queue.yaml",
        "common/templates/queue.yaml",
    );
    repo.write("secondary/root.yaml", "s: 2\n");
    let b = repo.commit("change");

    let git = source(&repo);
    let direct = changes_as_git_sees_them(&repo, Some(&a), &b);
    let through_port = ready(ChangeSource::changes(&git, Some(&id(&a)), &id(&b))).unwrap();
    assert_eq!(through_port, direct);
    let root = ready(ChangeSource::changes(&git, None, &id(&a))).unwrap();
    assert_eq!(
        rows(&root),
        rows(&changes_as_git_sees_them(&repo, None, &a))
    );
    let err = ready(ChangeSource::changes(
        &git,
        None,
        &id("0123456789abcdef0123456789abcdef01234567"),
    ));
    assert!(
        matches!(err, Err(ChangeError::UnknownRevision { .. })),
        "{err:?}"
    );
}

#[test]
fn moving_small_and_empty_files_matches_git() {
    let repo = GitRepo::new();
    repo.write("common/.gitkeep", "")
        .write("common/a.yaml", "a: 1\n");
    let a = repo.commit("seed");
    repo.mv("common/.gitkeep", "secondary/.gitkeep")
        .mv("common/a.yaml", "secondary/a.yaml");
    let b = repo.commit("move");

    let changes = changes_as_git_sees_them(&repo, Some(&a), &b);
    let judged: BTreeSet<String> = changes
        .iter()
        .flat_map(|c| c.judged_paths().map(|p| p.to_string()))
        .collect();
    assert_eq!(
        judged,
        BTreeSet::from(
            [
                "common/.gitkeep",
                "common/a.yaml",
                "secondary/.gitkeep",
                "secondary/a.yaml"
            ]
            .map(String::from)
        )
    );
}

#[test]
fn a_file_replaced_by_a_directory_matches_git() {
    let repo = GitRepo::new();
    repo.write("common/network", "a: 1\n");
    let a = repo.commit("seed");
    repo.rm("common/network")
        .write("common/network/vpc.yaml", "b: 1\n");
    let b = repo.commit("a directory now");

    let changes = changes_as_git_sees_them(&repo, Some(&a), &b);
    assert_eq!(
        rows(&changes),
        BTreeSet::from([
            row('D', b"common/network", None),
            row('A', b"common/network/vpc.yaml", None),
        ])
    );
}

#[test]
fn a_file_replaced_by_a_symlink_is_a_modification() {
    let repo = GitRepo::new();
    repo.write("common/params.yaml", "a: 1\n");
    let a = repo.commit("seed");
    let link = repo.path().join("common/params.yaml");
    std::fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink("../shared/params.yaml", &link).unwrap();
    let b = repo.commit("link it");

    // git calls it a type change (T); tozai has no such kind and reports a modification
    assert_eq!(
        git_name_status(&repo, &a, &b),
        [row('T', b"common/params.yaml", None)]
    );
    let changes = source(&repo)
        .changes_between(Some(&id(&a)), &id(&b))
        .unwrap();
    assert_eq!(changes, [Change::modified("common/params.yaml")]);
}

/// Past the content-similarity limit (1,000 candidates) git still pairs every exact
/// rename, and so does tozai: the plan shows 1,200 renames, as `git diff -M` does.
#[test]
fn renaming_a_big_directory_pairs_every_rename_like_git() {
    const FILES: usize = 1200;
    let repo = GitRepo::new();
    for i in 0..FILES {
        repo.write(
            format!("primary/stacks/s{i:04}.yaml"),
            format!("stack: {i}\n"),
        );
    }
    let a = repo.commit("seed");
    repo.mv("primary/stacks", "common/stacks");
    let b = repo.commit("share every stack");

    let changes = source(&repo)
        .changes_between(Some(&id(&a)), &id(&b))
        .unwrap();
    let judged: BTreeSet<String> = changes
        .iter()
        .flat_map(|c| c.judged_paths().map(|p| p.to_string()))
        .collect();
    let expected: BTreeSet<String> = (0..FILES)
        .flat_map(|i| {
            [
                format!("primary/stacks/s{i:04}.yaml"),
                format!("common/stacks/s{i:04}.yaml"),
            ]
        })
        .collect();
    assert_eq!(judged.len(), 2 * FILES);
    assert_eq!(judged, expected);
    for c in &changes {
        match c.kind {
            ChangeKind::Renamed => {
                assert!(c.path.to_string().starts_with("common/stacks/"), "{c}");
                assert!(
                    c.old_path
                        .as_ref()
                        .unwrap()
                        .to_string()
                        .starts_with("primary/stacks/"),
                    "{c}"
                );
            }
            _ => panic!("not paired as a rename: {c}"),
        }
    }
    // exactly what git reports
    let git: BTreeSet<(char, Vec<u8>, Option<Vec<u8>>)> =
        git_name_status(&repo, &a, &b).into_iter().collect();
    let ours: BTreeSet<(char, Vec<u8>, Option<Vec<u8>>)> = changes
        .iter()
        .map(|c| {
            let old = c.old_path.as_ref().map(|p| p.as_bytes().to_vec());
            (c.kind.letter(), c.path.as_bytes().to_vec(), old)
        })
        .collect();
    assert_eq!(ours, git);
    // git agrees on the paths, whatever it pairs
    let git_paths: BTreeSet<String> = git_name_status(&repo, &a, &b)
        .into_iter()
        .flat_map(|(_, path, old)| std::iter::once(path).chain(old))
        .map(|p| String::from_utf8(p).unwrap())
        .collect();
    assert_eq!(git_paths, expected);
}
