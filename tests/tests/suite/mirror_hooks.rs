//! A local standby behaves like a server: `tozai mirror` pushes to it through
//! `git receive-pack`, so its hooks run (`pre-receive`, `update`, `post-receive`), a refusal
//! is reported `REJECTED` with the hook's message, and `bytes_sent` is the size of the pack
//! the standby received. Run as the real binary on bare repositories, checked with the git
//! CLI.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tempfile::TempDir;
use tozai_tests::mirror::{commit_file, git, json_status, refs, rev, try_git};
use tozai_tests::{Run, Sandbox, tozai, tozai_command};

/// A source work tree (`src`, branch `main` with one commit) and an empty bare standby
/// (`dst.git`), side by side.
struct World {
    tmp: TempDir,
    sandbox: Sandbox,
}

impl World {
    fn new() -> Self {
        let tmp = TempDir::new().unwrap();
        let root = tmp.path();
        std::fs::create_dir(root.join("src")).unwrap();
        git(&root.join("src"), &["init", "-q", "-b", "main"]);
        git(root, &["init", "-q", "--bare", "-b", "main", "dst.git"]);
        let sandbox = Sandbox::new(&root.join("home"));
        let w = Self { tmp, sandbox };
        w.commit("common/vpc.yaml", "v1");
        w
    }

    fn root(&self) -> &Path {
        self.tmp.path()
    }

    fn src(&self) -> PathBuf {
        self.root().join("src")
    }

    fn dst(&self) -> PathBuf {
        self.root().join("dst.git")
    }

    fn commit(&self, file: &str, text: &str) -> String {
        commit_file(&self.src(), file, text)
    }

    /// Installs an executable `hooks/NAME` in the standby.
    fn hook(&self, name: &str, script: &str) {
        let path = self.dst().join("hooks").join(name);
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn args<'a>(&self, extra: &[&'a str]) -> Vec<&'a str> {
        let mut all = vec![
            "mirror",
            "--from",
            "./src",
            "--to",
            "./dst.git",
            "--cache",
            "cache",
        ];
        all.extend(extra);
        all
    }

    fn mirror(&self, extra: &[&str]) -> Run {
        let run = tozai(self.root(), &self.sandbox, self.args(extra));
        run.expect_no_panic();
        assert_no_receive_pack_left(&self.dst());
        run
    }
}

/// No `git receive-pack` of this standby is still running (the mirror waits for it, or
/// kills it, before it returns).
fn assert_no_receive_pack_left(standby: &Path) {
    let standby = standby.display().to_string();
    let mut left = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|&b| b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.iter().any(|a| a.contains("receive-pack"))
            && args.iter().any(|a| a.contains(&standby))
        {
            left.push(args.join(" "));
        }
    }
    assert_eq!(left, Vec::<String>::new(), "receive-pack processes left");
}

/// The one line of `run`'s standard output about `reference` (its second word), trimmed.
fn line_of<'r>(run: &'r Run, reference: &str) -> &'r str {
    let lines: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .nth(1)
                .is_some_and(|r| r.trim_end_matches(':') == reference)
        })
        .collect();
    assert_eq!(lines.len(), 1, "{reference} in:\n{}", run.stdout);
    lines[0].trim()
}

const REFUSE_RELEASE_PRE_RECEIVE: &str = r#"#!/bin/sh
while read old new ref; do
    case "$ref" in
    refs/heads/release/*) echo "release branches are frozen: $ref" >&2; exit 1 ;;
    esac
done
exit 0
"#;

#[test]
fn a_pre_receive_hook_refusal_is_reported_with_its_message_and_nothing_lands() {
    let w = World::new();
    git(&w.src(), &["branch", "release/x"]);
    w.hook("pre-receive", REFUSE_RELEASE_PRE_RECEIVE);

    let run = w.mirror(&[]);
    run.expect_code(1);
    // git runs pre-receive once for the whole push, and its refusal refuses every ref of
    // the push: both are rejected with the hook's message.
    assert_eq!(
        line_of(&run, "refs/heads/release/x"),
        "REJECTED  refs/heads/release/x: pre-receive hook declined: release branches are frozen: refs/heads/release/x"
    );
    assert_eq!(
        line_of(&run, "refs/heads/main"),
        "REJECTED  refs/heads/main: pre-receive hook declined: release branches are frozen: refs/heads/release/x"
    );
    assert!(
        run.stdout
            .contains("the standby is NOT in step: see DIVERGED/REJECTED above"),
        "{}",
        run.stdout
    );
    assert_eq!(refs(&w.dst()), "", "nothing landed");

    // Without the refused ref in the push, the rest lands.
    let run = w.mirror(&["--ref", "main"]);
    run.expect_code(0);
    assert_eq!(
        rev(&w.dst(), "refs/heads/main"),
        rev(&w.src(), "refs/heads/main")
    );
    assert_eq!(
        try_git(
            &w.dst(),
            &["rev-parse", "-q", "--verify", "refs/heads/release/x"]
        ),
        None
    );
}

#[test]
fn an_update_hook_refuses_one_ref_and_the_others_land() {
    let w = World::new();
    git(&w.src(), &["branch", "release/x"]);
    git(&w.src(), &["tag", "v1"]);
    w.hook(
        "update",
        "#!/bin/sh\ncase \"$1\" in\nrefs/heads/release/*) echo \"no release branches here: $1\" >&2; exit 1 ;;\nesac\nexit 0\n",
    );

    let run = w.mirror(&[]);
    run.expect_code(1);
    assert_eq!(
        line_of(&run, "refs/heads/release/x"),
        "REJECTED  refs/heads/release/x: hook declined: no release branches here: refs/heads/release/x; error: hook declined to update refs/heads/release/x"
    );
    let main = rev(&w.src(), "refs/heads/main");
    assert_eq!(
        line_of(&run, "refs/heads/main"),
        format!("created   refs/heads/main at {}", &main[..12])
    );
    assert_eq!(rev(&w.dst(), "refs/heads/main"), main);
    assert_eq!(rev(&w.dst(), "refs/tags/v1"), main);
    assert_eq!(
        try_git(
            &w.dst(),
            &["rev-parse", "-q", "--verify", "refs/heads/release/x"]
        ),
        None
    );

    let run = w.mirror(&["--json"]);
    run.expect_code(1);
    let v = run.json();
    assert_eq!(json_status(&v, "refs/heads/release/x"), "rejected");
    assert_eq!(json_status(&v, "refs/heads/main"), "unchanged");
}

#[test]
fn a_post_receive_hook_runs_and_sees_every_ref_pushed() {
    let w = World::new();
    git(&w.src(), &["branch", "dev"]);
    git(&w.src(), &["tag", "-a", "v1", "-m", "release 1"]);
    let seen = w.root().join("post-receive.seen");
    w.hook(
        "post-receive",
        &format!("#!/bin/sh\ncat >> '{}'\n", seen.display()),
    );

    w.mirror(&[]).expect_code(0);
    let zero = "0".repeat(40);
    let main = rev(&w.src(), "refs/heads/main");
    let tag = rev(&w.src(), "refs/tags/v1^{tag}");
    let mut lines: Vec<String> = std::fs::read_to_string(&seen)
        .expect("post-receive ran before tozai returned")
        .lines()
        .map(str::to_owned)
        .collect();
    lines.sort();
    let mut want = vec![
        format!("{zero} {main} refs/heads/dev"),
        format!("{zero} {main} refs/heads/main"),
        format!("{zero} {tag} refs/tags/v1"),
    ];
    want.sort();
    assert_eq!(lines, want);

    // An update: the hook sees the old and new values.
    let next = w.commit("common/vpc.yaml", "v2");
    std::fs::remove_file(&seen).unwrap();
    w.mirror(&[]).expect_code(0);
    assert_eq!(
        std::fs::read_to_string(&seen).unwrap(),
        format!("{main} {next} refs/heads/main\n")
    );
}

/// The one pack file in `standby`'s `objects/pack` made since `before` (a list of packs).
fn new_pack(standby: &Path, before: &[PathBuf]) -> PathBuf {
    let packs: Vec<PathBuf> = packs(standby)
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect();
    assert_eq!(packs.len(), 1, "{packs:?}");
    packs.into_iter().next().unwrap()
}

fn packs(standby: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(standby.join("objects/pack"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "pack"))
        .collect()
}

#[test]
fn bytes_sent_is_the_size_of_the_pack_the_standby_received() {
    let w = World::new();
    for i in 0..5 {
        w.commit(&format!("common/f{i}.yaml"), &format!("{i}\n").repeat(100));
    }
    // receive-pack keeps every pack it receives as it is (index-pack), instead of
    // unpacking small ones into loose objects: its size is what was sent.
    git(&w.dst(), &["config", "receive.unpackLimit", "1"]);

    let run = w.mirror(&["--json"]);
    run.expect_code(0);
    let v = run.json();
    let pack = new_pack(&w.dst(), &[]);
    let size = std::fs::metadata(&pack).unwrap().len();
    assert!(size > 0);
    assert_eq!(v["bytes_sent"], size, "{v:#}");
    // 6 commits, 6 trees for the root, 6 for common/ and 6 blobs.
    assert_eq!(v["objects_sent"], 24, "{v:#}");

    // An incremental push: its pack alone.
    let before = packs(&w.dst());
    w.commit("common/f0.yaml", "changed\n");
    let run = w.mirror(&[]);
    run.expect_code(0);
    let size = std::fs::metadata(new_pack(&w.dst(), &before))
        .unwrap()
        .len();
    let last = run.stdout.lines().last().unwrap().to_owned();
    assert!(
        last.starts_with(&format!("1 updated; sent 4 objects, {size} B in ")),
        "{}",
        run.stdout
    );
}

#[test]
fn git_missing_from_path_is_a_clear_error_and_changes_nothing() {
    let w = World::new();
    let no_git = w.root().join("no-git");
    std::fs::create_dir(&no_git).unwrap();
    let args = w.args(&[]);
    let mut cmd = tozai_command(w.root(), &w.sandbox, &args);
    cmd.env("PATH", &no_git);
    let run = Run::of(
        cmd,
        format!("tozai {args:?} with PATH={}", no_git.display()),
    );
    run.expect_code(3).expect_no_panic();
    assert_eq!(
        run.stderr,
        format!(
            "tozai: error: git failed on {} while listing the target's refs: cannot run `git receive-pack` for the local standby: git was not found on PATH\n",
            w.dst().display()
        )
    );
    assert_eq!(refs(&w.dst()), "", "nothing pushed");
    let ledger = tozai_tests::mirror::file_ledger(&w.root().join("cache/state"), "dst.git");
    assert!(!ledger.path().exists(), "nothing recorded in the ledger");
}

/// The git on `PATH`, by its absolute path.
fn real_git() -> PathBuf {
    std::env::split_paths(&std::env::var_os("PATH").expect("PATH is set"))
        .map(|dir| dir.join("git"))
        .find(|git| git.is_file())
        .expect("git is on PATH")
}

#[test]
fn a_standby_ref_moved_between_the_plan_and_the_push_is_seen_by_receive_pack_and_replanned() {
    let w = World::new();
    w.mirror(&[]).expect_code(0);
    let mirrored = rev(&w.dst(), "refs/heads/main");
    let next = w.commit("common/vpc.yaml", "v2");
    // A commit made on the standby, unknown to the source.
    let tree = format!("{mirrored}^{{tree}}");
    let moved = git(
        &w.dst(),
        &[
            "commit-tree",
            &tree,
            "-p",
            &mirrored,
            "-m",
            "made on the standby",
        ],
    )
    .trim()
    .to_owned();

    // A git that moves the standby's main just before the second receive-pack starts:
    // after the plan read the standby (the first), before the push (the second).
    let bin = w.root().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let count = w.root().join("receive-packs");
    let script = format!(
        "#!/bin/sh\nif [ \"$1\" = receive-pack ]; then\n  n=$(($(cat '{count}' 2>/dev/null || echo 0) + 1))\n  echo $n > '{count}'\n  if [ $n = 2 ]; then '{git}' -C \"$2\" update-ref refs/heads/main {moved}; fi\nfi\nexec '{git}' \"$@\"\n",
        count = count.display(),
        git = real_git().display(),
    );
    let wrapper = bin.join("git");
    std::fs::write(&wrapper, script).unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();

    let args = w.args(&["--json"]);
    let mut cmd = tozai_command(w.root(), &w.sandbox, &args);
    let path = std::env::var_os("PATH").unwrap();
    let path = std::env::join_paths(std::iter::once(bin).chain(std::env::split_paths(&path)));
    cmd.env("PATH", path.unwrap());
    let run = Run::of(cmd, format!("tozai {args:?} with a git that moves main"));
    run.expect_code(1).expect_no_panic();
    assert!(
        run.stderr
            .contains("standby refs moved since they were read; re-planning"),
        "{}",
        run.stderr
    );
    // The push named the value the plan read; receive-pack advertised another, so nothing
    // was sent, and the re-plan found the standby's own commit.
    assert_eq!(json_status(&run.json(), "refs/heads/main"), "diverged");
    assert_eq!(rev(&w.dst(), "refs/heads/main"), moved);
    assert_ne!(moved, next);
    assert_eq!(
        std::fs::read_to_string(&count).unwrap(),
        "3\n",
        "read, push (stopped), read again"
    );
    assert_no_receive_pack_left(&w.dst());
}

#[test]
fn a_ref_moved_after_the_negotiation_fails_receive_packs_lease_and_is_replanned() {
    let w = World::new();
    w.mirror(&[]).expect_code(0);
    let mirrored = rev(&w.dst(), "refs/heads/main");
    w.commit("common/vpc.yaml", "v2");
    let tree = format!("{mirrored}^{{tree}}");
    let moved = git(
        &w.dst(),
        &[
            "commit-tree",
            &tree,
            "-p",
            &mirrored,
            "-m",
            "made on the standby",
        ],
    )
    .trim()
    .to_owned();
    // Someone else's push wins main after tozai's push named main's old value: the update
    // hook runs just before receive-pack takes the ref's lock and checks that value.
    let once = w.root().join("moved-once");
    w.hook(
        "update",
        &format!(
            "#!/bin/sh\nif [ ! -e '{once}' ]; then touch '{once}'; git update-ref refs/heads/main {moved}; fi\n",
            once = once.display()
        ),
    );

    let run = w.mirror(&["--json"]);
    run.expect_code(1);
    assert!(
        run.stderr
            .contains("standby refs moved since they were read; re-planning"),
        "{}\n{}",
        run.stderr,
        run.stdout
    );
    // Not `rejected`: the re-plan found the standby's own commit there.
    assert_eq!(json_status(&run.json(), "refs/heads/main"), "diverged");
    assert_eq!(rev(&w.dst(), "refs/heads/main"), moved);
}

/// Regression (review of issue 12): a hook's output reached the terminal raw in the
/// `REJECTED` line, escape sequences and all. Its control characters are shown as their
/// pictures, in the report and in JSON.
#[test]
fn a_hooks_escape_sequences_are_shown_not_obeyed() {
    let w = World::new();
    w.hook(
        "pre-receive",
        "#!/bin/sh\nprintf '\\033[31mdenied\\033[0m\\a\\n' >&2\nexit 1\n",
    );
    let run = w.mirror(&[]);
    run.expect_code(1);
    for (stream, text) in [("stdout", &run.stdout), ("stderr", &run.stderr)] {
        assert!(
            !text.bytes().any(|b| b == 0x1b || b == 0x07),
            "{stream} holds a raw control character: {text:?}"
        );
    }
    assert_eq!(
        line_of(&run, "refs/heads/main"),
        "REJECTED  refs/heads/main: pre-receive hook declined: ␛[31mdenied␛[0m␇"
    );
    let run = tozai(w.root(), &w.sandbox, w.args(&["--json"]));
    run.expect_code(1).expect_no_panic();
    assert!(!run.stdout.contains('\u{1b}'), "{}", run.stdout);
    assert_eq!(
        run.json()["refs"][0]["reason"],
        "pre-receive hook declined: ␛[31mdenied␛[0m␇"
    );
}
