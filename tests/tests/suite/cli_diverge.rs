//! Divergence explained, and `--force` that never loses work silently: `tozai mirror` and
//! `tozai status` run as the real binary on two local "regions" (bare repositories), checked
//! with the git CLI. Which side moved (the standby pushed to, the source force-pushed or
//! rewound, a tag moved), both sides' commits as `git log --left-right` lists them, and the
//! backup branch a `--force` pushes before it overwrites or deletes a diverged ref. The
//! backup refused by the server is at the end, over the git stand-in (its hooks run).

use std::ops::Deref;
use std::path::Path;

use serde_json::Value;
use tempfile::TempDir;
use tozai_tests::Run;
use tozai_tests::mirror::{git, rev, try_git};
use tozai_tests::two_regions::TwoRegions;

const CONFIG: &str = r#"
primary = "tokyo"
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
paths = ["**"]
[sync.to.tokyo]
paths = ["**"]
"#;

/// Two bare "regions" (`tokyo.git` the primary, `osaka.git` the standby) and a work tree
/// whose `origin` is tokyo ([`TwoRegions`]), with `main` at one commit pushed. `commit`
/// and `push` are this module's own: a line added to one log file, and a forced push.
struct World(TwoRegions);

impl World {
    fn new() -> Self {
        let w = Self(TwoRegions::unborn(CONFIG));
        w.commit("first");
        w.push("main");
        w
    }

    /// Commits a change with `subject` as its message; returns its id.
    fn commit(&self, subject: &str) -> String {
        let file = self.work().join("common/log.txt");
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        let before = std::fs::read_to_string(&file).unwrap_or_default();
        std::fs::write(&file, format!("{before}{subject}\n")).unwrap();
        git(self.work(), &["add", "-A"]);
        git(self.work(), &["commit", "-q", "-m", subject]);
        rev(self.work(), "HEAD")
    }

    fn push(&self, refspec: &str) {
        git(self.work(), &["push", "-q", "--force", "origin", refspec]);
    }

    /// Pushes `refspec` straight to the standby, as someone in osaka would.
    fn push_to_standby(&self, refspec: &str) {
        git(
            self.work(),
            &["push", "-q", "--force", "../osaka.git", refspec],
        );
    }

    fn mirror(&self, extra: &[&str]) -> Run {
        let mut args = vec!["mirror", "-c", "tozai.toml"];
        args.extend_from_slice(extra);
        self.tozai(&args)
    }

    /// The standby's backup branches, `(name, commit)`.
    fn backups(&self) -> Vec<(String, String)> {
        let out = git(
            &self.root().join("osaka.git"),
            &[
                "for-each-ref",
                "--format=%(refname) %(objectname)",
                "refs/heads/tozai-backup/",
            ],
        );
        out.lines()
            .map(|l| {
                let (name, id) = l.split_once(' ').unwrap();
                (name.to_owned(), id.to_owned())
            })
            .collect()
    }
}

impl Deref for World {
    type Target = TwoRegions;

    fn deref(&self) -> &TwoRegions {
        &self.0
    }
}

/// The 12-digit id reports show.
fn short(id: &str) -> &str {
    &id[..12]
}

/// Asserts that `run`'s standard output has every one of `lines` as a whole line.
fn has_lines(run: &Run, lines: &[String]) {
    for want in lines {
        assert!(
            run.stdout.lines().any(|l| l == want),
            "no line {want:?} in\n{}\n--- stderr\n{}",
            run.stdout,
            run.stderr
        );
    }
}

/// The JSON object of `reference` in a mirror's or status's `refs`.
fn json_ref(v: &Value, reference: &str) -> Value {
    v["refs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["ref"] == reference)
        .unwrap_or_else(|| panic!("no {reference} in {v:#}"))
        .clone()
}

/// `[(commit, subject)]` of one side of a JSON `log`.
fn side(log: &Value, which: &str) -> Vec<(String, String)> {
    log[which]["commits"]
        .as_array()
        .unwrap_or_else(|| panic!("no {which} in {log:#}"))
        .iter()
        .map(|c| {
            (
                c["commit"].as_str().unwrap().to_owned(),
                c["subject"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// A commit pushed straight to the standby, and the source moved on: main diverged.
fn standby_pushed_to(w: &World) -> (String, String) {
    w.mirror(&[]).expect_code(0);
    let hotfix = w.commit("osaka hotfix");
    w.push_to_standby("HEAD:refs/heads/main");
    git(w.work(), &["reset", "-q", "--hard", "HEAD~1"]);
    let feature = w.commit("tokyo feature");
    w.push("main");
    (hotfix, feature)
}

#[test]
fn a_commit_pushed_straight_to_the_standby_is_said_so_with_both_sides() {
    let w = World::new();
    let (hotfix, feature) = standby_pushed_to(&w);

    let run = w.mirror(&[]);
    run.expect_code(1).expect_no_panic();
    has_lines(
        &run,
        &[
            format!(
                "  DIVERGED  refs/heads/main: the standby was pushed to: its {} is unknown to the source (at {}); left alone (--force backs it up, then overwrites it)",
                short(&hotfix),
                short(&feature)
            ),
            format!("            < {} osaka hotfix", short(&hotfix)),
            format!("            > {} tokyo feature", short(&feature)),
        ],
    );
    assert!(
        !run.stdout.contains("pushed to directly?"),
        "{}",
        run.stdout
    );
    assert_eq!(w.head("osaka.git", "main"), hotfix, "left alone");

    let status = w.tozai(&["status", "-c", "tozai.toml"]);
    status.expect_code(1);
    assert!(
        status.stdout.contains(&format!(
            "DIVERGED  the standby was pushed to: its {} is unknown to the source (at {})",
            short(&hotfix),
            short(&feature)
        )),
        "{}",
        status.stdout
    );
    // The verdict says what to do about a diverged ref: a plain mirror leaves it alone.
    assert!(
        status.stdout.lines().last().is_some_and(|l| l.ends_with(
            "a diverged or stale ref is left alone until you decide: `tozai mirror -c \
             tozai.toml --force` backs up the standby's commits, then overwrites or deletes it)"
        )),
        "{}",
        status.stdout
    );
    for line in [
        format!("< {} osaka hotfix", short(&hotfix)),
        format!("> {} tokyo feature", short(&feature)),
    ] {
        assert!(
            status.stdout.lines().any(|l| l.trim() == line),
            "no {line:?} in\n{}",
            status.stdout
        );
    }

    // Again: what the first run fetched from the standby is not taken for the source's.
    let json = w.tozai(&["status", "-c", "tozai.toml", "--json"]);
    json.expect_code(1);
    let main = json_ref(&json.json(), "refs/heads/main");
    assert_eq!(main["state"], "diverged", "{main:#}");
    assert_eq!(main["cause"], "standby_pushed_to", "{main:#}");
    assert_eq!(
        side(&main["log"], "standby_only"),
        [(hotfix.clone(), "osaka hotfix".to_owned())]
    );
    assert_eq!(
        side(&main["log"], "source_only"),
        [(feature.clone(), "tokyo feature".to_owned())]
    );
    // The standby's commits were fetched into the cache, in a namespace never pushed.
    let standby_refs = git(
        &w.root().join("osaka.git"),
        &["for-each-ref", "--format=%(refname)"],
    );
    assert_eq!(standby_refs, "refs/heads/main\n");
}

#[test]
fn a_force_pushed_or_rewound_source_is_said_so_with_both_sides() {
    let w = World::new();
    let first = w.head("tokyo.git", "main");
    let second = w.commit("second");
    w.push("main");
    w.push("main:refs/heads/release/1");
    w.mirror(&[]).expect_code(0);

    // main rewritten at the source; release/1 rewound to its first commit.
    git(w.work(), &["reset", "-q", "--hard", &first]);
    let rewrite = w.commit("second, rewritten");
    w.push("main");
    w.push(&format!("{first}:refs/heads/release/1"));

    let run = w.mirror(&[]);
    run.expect_code(1).expect_no_panic();
    has_lines(
        &run,
        &[
            format!(
                "  DIVERGED  refs/heads/main: the source was force-pushed: its {} does not contain the standby's {}; left alone (--force backs it up, then overwrites it)",
                short(&rewrite),
                short(&second)
            ),
            format!("            < {} second", short(&second)),
            format!("            > {} second, rewritten", short(&rewrite)),
            format!(
                "  DIVERGED  refs/heads/release/1: the source was rewound: its {} is an ancestor of the standby's {}; left alone (--force backs it up, then overwrites it)",
                short(&first),
                short(&second)
            ),
        ],
    );
    assert!(!run.stdout.contains("pushed to"), "{}", run.stdout);
    let release: Vec<&str> = run
        .stdout
        .lines()
        .skip_while(|l| !l.contains("refs/heads/release/1"))
        .skip(1)
        .take_while(|l| l.starts_with("            "))
        .collect();
    assert_eq!(
        release,
        [format!("            < {} second", short(&second))]
    );

    let json = w.tozai(&["status", "-c", "tozai.toml", "--json"]);
    json.expect_code(1);
    let v = json.json();
    assert_eq!(
        json_ref(&v, "refs/heads/main")["cause"],
        "source_force_pushed"
    );
    assert_eq!(
        json_ref(&v, "refs/heads/release/1")["cause"],
        "source_rewound"
    );
}

/// The mirror Lambda keeps its records in DynamoDB, so `tozai status` has none: a
/// force-pushed source is still told from a standby pushed to, by the commit the cache
/// fetched from the source before the force-push.
#[test]
fn a_force_pushed_source_is_told_without_the_mirrors_records() {
    let w = World::new();
    let first = w.head("tokyo.git", "main");
    let second = w.commit("second");
    w.push("main");
    // Mirrored with records kept elsewhere, as the Lambda's are.
    w.mirror(&["--state", "lambda-records"]).expect_code(0);
    w.tozai(&["status", "-c", "tozai.toml"]).expect_code(0);
    git(w.work(), &["reset", "-q", "--hard", &first]);
    let rewrite = w.commit("second, rewritten");
    w.push("main");

    let status = w.tozai(&["status", "-c", "tozai.toml"]);
    status.expect_code(1);
    assert!(
        status.stdout.contains(&format!(
            "DIVERGED  the source was force-pushed: its {} does not contain the standby's {}",
            short(&rewrite),
            short(&second)
        )),
        "{}",
        status.stdout
    );
    // Twice: what the first status fetched from the standby is not taken for the source's.
    let again = w.tozai(&["status", "-c", "tozai.toml"]);
    assert_eq!(again.stdout, status.stdout);
}

#[test]
fn a_tag_moved_forward_at_the_source_is_not_called_a_non_ancestor() {
    let w = World::new();
    let first = w.head("tokyo.git", "main");
    git(w.work(), &["tag", "v1"]);
    git(w.work(), &["tag", "-a", "-m", "release 2", "v2"]);
    w.push("refs/tags/*:refs/tags/*");
    w.mirror(&[]).expect_code(0);

    let next = w.commit("next");
    w.push("main");
    git(w.work(), &["tag", "-f", "v1"]);
    git(
        w.work(),
        &["tag", "-f", "-a", "-m", "release 2, again", "v2"],
    );
    w.push("refs/tags/*:refs/tags/*");
    let v2_before = w.head("osaka.git", "refs/tags/v2");

    let run = w.mirror(&[]);
    run.expect_code(1).expect_no_panic();
    has_lines(
        &run,
        &[
            format!(
                "  DIVERGED  refs/tags/v1: the tag moved forward at the source: the standby's {} is an ancestor of the source's {}, and the mirror does not move tags; left alone (--force backs it up, then overwrites it)",
                short(&first),
                short(&next)
            ),
            format!("            > {} next", short(&next)),
        ],
    );
    // An annotated tag is named by its commit, as status names it, not by the tag object.
    has_lines(
        &run,
        &[format!(
            "  DIVERGED  refs/tags/v2: the tag moved forward at the source: the standby's {} is an ancestor of the source's {}, and the mirror does not move tags; left alone (--force backs it up, then overwrites it)",
            short(&first),
            short(&next)
        )],
    );
    assert!(!run.stdout.contains("is not an ancestor"), "{}", run.stdout);
    assert_eq!(w.head("osaka.git", "refs/tags/v1"), first, "left alone");
    assert_eq!(w.head("osaka.git", "refs/tags/v2"), v2_before, "left alone");

    let status = w.tozai(&["status", "-c", "tozai.toml"]);
    status.expect_code(1);
    assert!(
        status.stdout.contains(&format!(
            "DIVERGED  the tag moved forward at the source: the standby's {} is an ancestor of the source's {}",
            short(&first),
            short(&next)
        )),
        "{}",
        status.stdout
    );
    assert!(
        !status.stdout.contains("is not an ancestor"),
        "{}",
        status.stdout
    );
}

/// The standby moved, not the source: release/1, release/2 and v1 as the mirror pushed them
/// (its records own them) and still so at the source; someone in osaka force-pushes them to
/// `second`, a commit on the source's main (a descendant of release/1's, not of release/2's).
/// Not "the source was rewound", "force-pushed" or "the tag moved at the source".
#[test]
fn a_standby_moved_to_a_commit_the_source_knows_is_not_blamed_on_the_source() {
    let w = World::new();
    let first = w.head("tokyo.git", "main");
    git(w.work(), &["switch", "-q", "-c", "release/2"]);
    let release2 = w.commit("release 2");
    w.push("release/2");
    git(w.work(), &["switch", "-q", "main"]);
    let second = w.commit("second");
    w.push("main");
    w.push(&format!("{first}:refs/heads/release/1"));
    w.push(&format!("{first}:refs/tags/v1"));
    w.mirror(&[]).expect_code(0);

    for r in [
        "refs/heads/release/1",
        "refs/heads/release/2",
        "refs/tags/v1",
    ] {
        w.push_to_standby(&format!("{second}:{r}"));
    }
    let run = w.mirror(&[]);
    run.expect_code(1).expect_no_panic();
    let moved = |r: &str, pushed: &str| {
        format!(
            "  DIVERGED  {r}: the standby was moved (to {}) since the mirror pushed {}, which the source still has; left alone (--force backs it up, then overwrites it)",
            short(&second),
            short(pushed)
        )
    };
    has_lines(
        &run,
        &[
            moved("refs/heads/release/1", &first),
            format!("            < {} second", short(&second)),
            moved("refs/heads/release/2", &release2),
            moved("refs/tags/v1", &first),
        ],
    );
    for wrong in [
        "rewound",
        "force-pushed",
        "moved at the source",
        "moved forward",
    ] {
        assert!(!run.stdout.contains(wrong), "{wrong}: {}", run.stdout);
    }
    assert_eq!(w.head("osaka.git", "release/1"), second, "left alone");

    let status = w.tozai(&["status", "-c", "tozai.toml"]);
    status.expect_code(1);
    assert!(
        status.stdout.contains(&format!(
            "DIVERGED  the standby was moved (to {}) since the mirror pushed {}, which the source still has",
            short(&second),
            short(&first)
        )),
        "{}",
        status.stdout
    );
    let json = w.tozai(&["status", "-c", "tozai.toml", "--json"]);
    json.expect_code(1);
    let v = json.json();
    for r in [
        "refs/heads/release/1",
        "refs/heads/release/2",
        "refs/tags/v1",
    ] {
        assert_eq!(json_ref(&v, r)["cause"], "moved_on_standby", "{r}");
    }
}

/// The standby's diverged refs are fetched into the cache under names that cannot collide:
/// `hotfix` fetched once, then `hotfix/a` (a directory where a file was) is fetched too,
/// and its commits listed.
#[test]
fn a_standby_branch_under_one_fetched_before_is_fetched_and_listed() {
    let w = World::new();
    std::fs::write(
        w.root().join("tozai.toml"),
        CONFIG.replace(
            "branches = [\"main\", \"release/*\"]",
            "branches = [\"**\"]",
        ),
    )
    .unwrap();
    w.mirror(&[]).expect_code(0);
    git(w.work(), &["switch", "-q", "-c", "osaka"]);
    let one = w.commit("osaka one");
    w.push_to_standby("HEAD:refs/heads/hotfix");
    let first = w.mirror(&[]);
    first.expect_code(1);
    has_lines(
        &first,
        &[format!("            < {} osaka one", short(&one))],
    );

    let two = w.commit("osaka two");
    w.push_to_standby(":refs/heads/hotfix");
    w.push_to_standby("HEAD:refs/heads/hotfix/a");
    let run = w.mirror(&[]);
    run.expect_code(1).expect_no_panic();
    has_lines(
        &run,
        &[
            format!(
                "  DIVERGED  refs/heads/hotfix/a: not on the source, and the mirror never pushed the standby's {} (made on the standby?); left alone (--force backs it up, then deletes it)",
                short(&two)
            ),
            format!("            < {} osaka two", short(&two)),
            format!("            < {} osaka one", short(&one)),
        ],
    );
    assert!(!run.stderr.contains("cannot fetch"), "{}", run.stderr);
}

/// A commit fetched from the standby is never taken for the source's, even once the
/// standby's ref is reset to an older one of them: main pushed to twice on the standby
/// (fetched by a first run), then reset to the first of those commits.
#[test]
fn an_older_standby_commit_fetched_before_is_not_taken_for_the_sources() {
    let w = World::new();
    w.mirror(&[]).expect_code(0);
    let base = w.head("tokyo.git", "main");
    let one = w.commit("osaka one");
    w.commit("osaka two");
    w.push_to_standby("HEAD:refs/heads/main");
    git(w.work(), &["reset", "-q", "--hard", &base]);
    let feature = w.commit("tokyo feature");
    w.push("main");
    w.mirror(&[]).expect_code(1);

    w.push_to_standby(&format!("{one}:refs/heads/main"));
    let run = w.mirror(&[]);
    run.expect_code(1).expect_no_panic();
    has_lines(
        &run,
        &[format!(
            "  DIVERGED  refs/heads/main: the standby was pushed to: its {} is unknown to the source (at {}); left alone (--force backs it up, then overwrites it)",
            short(&one),
            short(&feature)
        )],
    );
    let json = w.tozai(&["status", "-c", "tozai.toml", "--json"]);
    assert_eq!(
        json_ref(&json.json(), "refs/heads/main")["cause"],
        "standby_pushed_to"
    );
}

#[test]
fn force_backs_up_and_lists_what_it_discards() {
    let w = World::new();
    let (hotfix, feature) = standby_pushed_to(&w);
    // And a release branch made on the standby only.
    git(w.work(), &["switch", "-q", "-c", "direct"]);
    let direct = w.commit("made in osaka");
    w.push_to_standby("HEAD:refs/heads/release/direct");
    git(w.work(), &["switch", "-q", "main"]);

    let dry = w.mirror(&["--force", "--dry-run"]);
    dry.expect_code(0).expect_no_panic();
    assert!(dry.stdout.contains("would send"), "{}", dry.stdout);
    assert!(!dry.stdout.contains("sent "), "{}", dry.stdout);
    assert!(w.backups().is_empty(), "a dry run pushes nothing");
    assert_eq!(w.head("osaka.git", "main"), hotfix);

    let run = w.mirror(&["--force"]);
    run.expect_code(0).expect_no_panic();
    let backups = w.backups();
    assert_eq!(backups.len(), 2, "{backups:?}\n{}", run.stdout);
    let (main_backup, main_kept) = &backups[0];
    let (direct_backup, direct_kept) = &backups[1];
    assert_eq!(main_kept, &hotfix, "the standby's old main is kept");
    assert_eq!(direct_kept, &direct);
    let stamp = main_backup
        .strip_prefix("refs/heads/tozai-backup/")
        .and_then(|s| s.strip_suffix("/heads/main"))
        .unwrap_or_else(|| panic!("{main_backup}"));
    assert!(
        stamp.len() == 16
            && stamp.as_bytes()[8] == b'T'
            && stamp.ends_with('Z')
            && stamp[..8]
                .bytes()
                .chain(stamp[9..15].bytes())
                .all(|b| b.is_ascii_digit()),
        "{stamp}"
    );
    assert_eq!(
        direct_backup,
        &format!("refs/heads/tozai-backup/{stamp}/heads/release/direct")
    );
    has_lines(
        &run,
        &[
            format!(
                "  updated   refs/heads/main {}..{} (forced; discarded 1 commit, kept in {main_backup})",
                short(&hotfix),
                short(&feature)
            ),
            format!("            < {} osaka hotfix", short(&hotfix)),
            format!(
                "  deleted   refs/heads/release/direct (was {}; forced; discarded 1 commit, kept in {direct_backup})",
                short(&direct)
            ),
            format!("            < {} made in osaka", short(&direct)),
        ],
    );
    assert_eq!(
        w.head("osaka.git", "main"),
        feature,
        "the standby ref moved"
    );
    assert!(
        try_git(
            &w.root().join("osaka.git"),
            &["rev-parse", "--verify", "-q", "refs/heads/release/direct"]
        )
        .is_none()
    );
    assert_eq!(w.head("osaka.git", main_backup), hotfix);

    // The next run leaves the backups alone and does not report them.
    let again = w.mirror(&[]);
    again.expect_code(0).expect_no_panic();
    assert!(!again.stdout.contains("tozai-backup"), "{}", again.stdout);
    assert_eq!(w.backups(), backups);
    let forced_again = w.tozai(&[
        "mirror",
        "--from",
        "./tokyo.git",
        "--to",
        "./osaka.git",
        "--force",
    ]);
    forced_again.expect_code(0);
    assert!(
        !forced_again.stdout.contains("tozai-backup"),
        "{}",
        forced_again.stdout
    );
    assert_eq!(
        w.backups(),
        backups,
        "not even --force with every branch selected"
    );

    // Every run lists them in its JSON, a dry run too.
    let json = w.mirror(&["--dry-run", "--json"]);
    json.expect_code(0);
    let listed: Vec<(String, String)> = json.json()["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["ref"].as_str().unwrap().to_owned(),
                b["commit"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(listed, backups);
}

#[test]
fn forced_runs_say_in_json_what_they_discarded_and_where_it_is_kept() {
    let w = World::new();
    let (hotfix, _) = standby_pushed_to(&w);
    let run = w.mirror(&["--force", "--json"]);
    run.expect_code(0);
    let main = json_ref(&run.json(), "refs/heads/main");
    assert_eq!(main["status"], "updated");
    assert_eq!(main["forced"], true);
    let backup = main["backup"].as_str().unwrap().to_owned();
    assert!(backup.starts_with("refs/heads/tozai-backup/"), "{main:#}");
    assert_eq!(w.head("osaka.git", &backup), hotfix);
    assert_eq!(
        side(&main["log"], "standby_only"),
        [(hotfix, "osaka hotfix".to_owned())]
    );
}

/// A dry run checks the backups the real run pushes first: a standby commit the mirror
/// cannot fetch (its object is corrupt on the standby) cannot be backed up, so the dry run
/// says the ref would not be forced, as the real run then does. Not "backed up first".
#[test]
fn a_dry_run_reports_a_backup_the_real_run_would_refuse() {
    let w = World::new();
    let (hotfix, _) = standby_pushed_to(&w);
    let object = w
        .root()
        .join("osaka.git/objects")
        .join(&hotfix[..2])
        .join(&hotfix[2..]);
    std::fs::remove_file(&object).expect("the standby's commit is a loose object");
    std::fs::write(&object, "not a git object").unwrap();

    let refused = |run: &Run| {
        // A dry run's column is wider ("would update").
        let (_, why) = (run.stdout.lines())
            .filter(|l| l.trim_start().starts_with("REJECTED "))
            .find_map(|l| l.split_once(" refs/heads/main: "))
            .unwrap_or_else(|| panic!("{}\n{}", run.stdout, run.stderr));
        assert!(
            why.starts_with("not forced: its backup refs/heads/tozai-backup/")
                && why.ends_with("/heads/main could not be pushed first: the standby's commit could not be fetched"),
            "{why}"
        );
    };
    let dry = w.mirror(&["--force", "--dry-run"]);
    dry.expect_code(1).expect_no_panic();
    refused(&dry);
    assert!(!dry.stdout.contains("backed up first"), "{}", dry.stdout);
    let real = w.mirror(&["--force"]);
    real.expect_code(1).expect_no_panic();
    refused(&real);
    assert_eq!(w.head("osaka.git", "main"), hotfix, "not forced");
    assert!(w.backups().is_empty());
}

#[test]
fn a_dry_run_says_what_it_would_do() {
    let w = World::new();
    let run = w.mirror(&["--dry-run"]);
    run.expect_code(0);
    let main = w.head("tokyo.git", "main");
    has_lines(
        &run,
        &[format!(
            "  would create  refs/heads/main at {}",
            short(&main)
        )],
    );
    let last = run.stdout.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("1 to create; would send the objects the standby lacks"),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("sent "), "{}", run.stdout);
    assert!(
        try_git(
            &w.root().join("osaka.git"),
            &["rev-parse", "--verify", "-q", "main"]
        )
        .is_none()
    );
}

// ---- a backup the standby refuses (over the git stand-in, whose hooks run) ----

/// `--force` with a standby whose `update` hook refuses `refs/heads/tozai-backup/*`: the
/// ref is not forced, and is reported rejected with the hook's reason. Over the CodeCommit
/// git stand-in (`tozai_tests::server::GitServer`, needs lighttpd in the tests' virtualenv:
/// missing, it fails), since a push to a local path runs no hook.
#[test]
fn a_refused_backup_leaves_the_ref_unforced() {
    use tozai::adapters::git_mirror::Git2Mirror;
    use tozai::git_auth::Credentials;
    use tozai::location::Location;
    use tozai::mirror::{RefSelection, RefStatus};
    use tozai::ports::{Mirror, MirrorRequest};
    use tozai_tests::server::GitServer;

    let key = Credentials {
        access_key_id: "AKIDDIVERGETEST".into(),
        secret_access_key: "diverge/test+SECRET".into(),
        session_token: None,
    };
    let repos = TempDir::new().unwrap();
    let server = GitServer::start(repos.path(), std::slice::from_ref(&key));
    let (src, dst) = (server.create_repo("src"), server.create_repo("dst"));
    let w = World::new();
    let remote = |name: &str| {
        let at = Location::CodeCommit {
            region: "us-east-1".into(),
            name: name.into(),
        };
        tozai::remote::codecommit(&at, key.clone(), Some(&server.url_prefix())).unwrap()
    };
    let scratch = TempDir::new().unwrap();
    let mirror = |force: bool| {
        let request = MirrorRequest {
            source: remote("src"),
            target: remote("dst"),
            selection: RefSelection::all(),
            force,
            dry_run: false,
            ledger: Some(tozai_tests::mirror::file_ledger(
                &scratch.path().join("state"),
                "dst",
            )),
        };
        Git2Mirror::new(scratch.path().join("cache"))
            .mirror(&request, None)
            .unwrap_or_else(|e| panic!("{e}\n{}", server.log()))
    };
    let publish = |to: &Path, refspec: &str| {
        git(
            w.work(),
            &["push", "-q", "--force", to.to_str().unwrap(), refspec],
        );
    };
    publish(&src, "main");
    assert!(mirror(false).in_sync());
    let hotfix = w.commit("osaka hotfix");
    publish(&dst, "HEAD:refs/heads/main");
    git(w.work(), &["reset", "-q", "--hard", "HEAD~1"]);
    w.commit("tokyo feature");
    publish(&src, "main");
    {
        use std::os::unix::fs::PermissionsExt;
        let hook = dst.join("hooks/update");
        let script = "#!/bin/sh\ncase \"$1\" in refs/heads/tozai-backup/*) echo 'no backups here' >&2; exit 1;; esac\n";
        std::fs::write(&hook, script).unwrap();
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    let o = mirror(true);
    let main = o
        .refs
        .iter()
        .find(|r| r.reference.full() == "refs/heads/main")
        .unwrap();
    match &main.status {
        RefStatus::Rejected { reason } => {
            assert!(
                reason.starts_with("not forced: its backup refs/heads/tozai-backup/")
                    && reason.contains("no backups here"),
                "{reason}"
            );
        }
        other => panic!("{other:?}\n{o:#?}"),
    }
    assert!(main.backup.is_none(), "{main:?}");
    let lost = &main
        .log
        .as_ref()
        .expect("its commits are listed")
        .standby_only;
    assert_eq!(lost.commits[0].commit.as_str(), hotfix);
    assert!(!o.in_sync());
    assert!(o.backups.is_empty(), "{o:#?}");
    assert_eq!(rev(&dst, "main"), hotfix, "not forced");
    assert!(tozai_tests::mirror::backups(&dst).is_empty());
}

/// The same through the binary, on a local standby (pushed through `git receive-pack`, so
/// its hooks run): exit 1, the ref reported rejected with the hook's reason, not forced.
#[test]
fn a_refused_backup_on_a_local_standby_is_reported_and_nothing_is_forced() {
    use std::os::unix::fs::PermissionsExt;
    let w = World::new();
    let (hotfix, _) = standby_pushed_to(&w);
    let hook = w.root().join("osaka.git/hooks/update");
    let script = "#!/bin/sh\ncase \"$1\" in refs/heads/tozai-backup/*) echo 'no backups here' >&2; exit 1;; esac\n";
    std::fs::write(&hook, script).unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();

    let run = w.mirror(&["--force"]);
    run.expect_code(1).expect_no_panic();
    let line = run
        .stdout
        .lines()
        .find(|l| {
            l.starts_with(
                "  REJECTED  refs/heads/main: not forced: its backup refs/heads/tozai-backup/",
            )
        })
        .unwrap_or_else(|| panic!("{}", run.stdout));
    assert!(line.contains("no backups here"), "{line}");
    has_lines(
        &run,
        &[format!("            < {} osaka hotfix", short(&hotfix))],
    );
    assert_eq!(w.head("osaka.git", "main"), hotfix, "not forced");
    assert!(w.backups().is_empty());
}
