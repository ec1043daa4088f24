//! `tozai replay` checks its premises and says what really happened; `tozai mirror -c`
//! stays inside the config's selection; `--cache` must be a directory. Run as the real
//! binary on two local "regions" (bare repositories), checked with the git CLI; the
//! CodeCommit primary against the CodeCommit API stand-in; `--publish` with no AWS
//! credentials at all.

use std::ops::Deref;
use std::process::Command;

use tozai::git_auth::Credentials;
use tozai_tests::mirror::{git, rev};
use tozai_tests::server::GitServer;
use tozai_tests::stand_ins::CodeCommitApi;
use tozai_tests::two_regions::TwoRegions;
use tozai_tests::{Run, tozai_command};

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
paths = ["common/**", "secondary/**"]
[sync.to.tokyo]
paths = ["common/**", "primary/**"]
[[pipeline]]
name = "osaka-core"
region = "osaka"
codepipeline = "core-deploy"
branches = ["main", "release/*"]
paths = ["common/**", "secondary/**"]
"#;

/// Two local regions, tokyo (the primary) and osaka, and a work tree pushing to tokyo
/// ([`TwoRegions`]); here `head` is `None` for a ref the repository does not have.
struct World(TwoRegions);

impl World {
    fn new() -> Self {
        Self::with_config(CONFIG)
    }

    fn with_config(config: &str) -> Self {
        Self(TwoRegions::new(config))
    }

    /// The commit `reference` names in the bare repository `bare`, `None` when it has no
    /// such ref.
    fn head(&self, bare: &str, reference: &str) -> Option<String> {
        self.0.try_head(bare, reference)
    }

    /// A bare repository as tozai shows it: its path as the config (or --from/--to) gives
    /// it, normalised.
    fn shown(&self, bare: &str) -> String {
        bare.to_owned()
    }
}

impl Deref for World {
    type Target = TwoRegions;

    fn deref(&self) -> &TwoRegions {
        &self.0
    }
}

fn short(id: &str) -> &str {
    &id[..12]
}

/// The last `n` lines of `text`.
fn last_lines(text: &str, n: usize) -> Vec<&str> {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].to_vec()
}

// ---- replay checks its premises ----

#[test]
fn replay_of_a_ref_that_does_not_exist_is_an_error_naming_it() {
    let w = World::new();
    let run = w.tozai(&[
        "replay",
        "-c",
        "tozai.toml",
        "--commit",
        "HEAD",
        "--ref",
        "release/none",
        "--execute",
    ]);
    run.expect_code(2).expect_no_panic();
    assert_eq!(
        run.stderr,
        format!(
            "tozai: error: refs/heads/release/none does not exist on the primary tokyo ({})\n",
            w.shown("tokyo.git")
        )
    );
    assert_eq!(run.stdout, "", "no plan, no MIRROR, no judge");
    assert_eq!(w.head("osaka.git", "refs/heads/release/none"), None);
    assert_eq!(w.head("osaka.git", "main"), None, "nothing was pushed");
}

#[test]
fn replay_of_a_commit_not_on_the_ref_is_an_error_naming_both() {
    let w = World::new();
    git(w.work(), &["switch", "-q", "-c", "release/1"]);
    let release = w.commit("secondary/release.yaml", "r1");
    w.push("release/1");
    git(w.work(), &["switch", "-q", "main"]);
    let on_main = w.commit("secondary/root.yaml", "main only");
    w.push("main");

    let run = w.tozai(&[
        "replay",
        "-c",
        "tozai.toml",
        "--commit",
        &on_main,
        "--ref",
        "release/1",
        "--execute",
    ]);
    run.expect_code(2).expect_no_panic();
    assert_eq!(
        run.stderr,
        format!(
            "tozai: error: commit {} is not on refs/heads/release/1 (its head is {}): replay a commit of the ref\n",
            short(&on_main),
            short(&release)
        )
    );
    assert_eq!(w.head("osaka.git", "refs/heads/release/1"), None);

    // A commit of the ref, behind its head, is one: the mirror moves the standby to the
    // head, and says so.
    let run = w.tozai(&[
        "replay",
        "-c",
        "tozai.toml",
        "--commit",
        &format!("{on_main}~1"),
        "--execute",
    ]);
    run.expect_code(0);
    assert_eq!(w.head("osaka.git", "main").unwrap(), on_main);
    assert_eq!(
        last_lines(&run.stdout, 1),
        [format!(
            "osaka's refs/heads/main moved to {}, the head of the ref, past {}: osaka's judge judges that push, not this commit",
            short(&on_main),
            short(&rev(w.work(), "main~1"))
        )]
    );
}

#[test]
fn replay_with_a_clone_checks_its_branches_and_remote_tracking_ones() {
    let w = World::new();
    git(w.work(), &["switch", "-q", "-c", "release/1"]);
    let release = w.commit("secondary/release.yaml", "r1");
    w.push("release/1");
    git(w.work(), &["switch", "-q", "main"]);
    git(w.work(), &["branch", "-q", "-D", "release/1"]);

    let missing = w.tozai(&[
        "replay",
        "-c",
        "tozai.toml",
        "--repo",
        "work",
        "--commit",
        "HEAD",
        "--ref",
        "release/2",
    ]);
    missing.expect_code(2).expect_no_panic();
    assert_eq!(
        missing.stderr,
        "tozai: error: refs/heads/release/2 does not exist in work, the clone of the primary tokyo given with --repo\n"
    );
    // The clone has release/1 only as origin/release/1.
    let run = w.tozai(&[
        "replay",
        "-c",
        "tozai.toml",
        "--repo",
        "work",
        "--commit",
        &release,
        "--ref",
        "release/1",
    ]);
    run.expect_code(0).expect_no_panic();
    assert_eq!(
        last_lines(&run.stdout, 2)[0],
        format!(
            "would move osaka's refs/heads/release/1 to {}: then osaka's judge would start: osaka-core",
            short(&release)
        )
    );
}

/// Regression (review of issue 12): with `--repo`, a local branch holding a commit never
/// pushed passed "the commit is on the ref", and `--publish` would have sent a commit the
/// primary does not have. The clone's `origin/BRANCH` is what the primary had.
#[test]
fn replay_with_a_clone_takes_origin_branch_over_a_local_branch_ahead_of_it() {
    let w = World::new();
    let pushed = rev(w.work(), "main");
    let unpushed = w.commit("common/vpc.yaml", "never pushed");
    git(w.work(), &["fetch", "-q", "origin"]);
    for extra in [&[][..], &["--execute"][..]] {
        let mut args = vec![
            "replay",
            "-c",
            "tozai.toml",
            "--repo",
            "work",
            "--commit",
            &unpushed,
            "--ref",
            "main",
        ];
        args.extend(extra);
        let run = w.tozai(&args);
        run.expect_code(2).expect_no_panic();
        assert_eq!(
            run.stderr,
            format!(
                "tozai: error: commit {} is not on refs/heads/main (its head is {}): replay a commit of the ref\n",
                short(&unpushed),
                short(&pushed)
            ),
            "{extra:?}"
        );
        assert_eq!(run.stdout, "");
    }
    assert_eq!(w.head("osaka.git", "main"), None, "nothing mirrored");
    assert_eq!(w.head("tokyo.git", "main").unwrap(), pushed);
}

/// Regression: a clone whose `origin/main` is stale (a commit the primary has since lost
/// to a force-push) is checked again on the primary's refs as the mirror fetched them.
#[test]
fn replay_with_a_stale_clone_is_checked_on_the_primarys_fetched_refs() {
    let w = World::new();
    let first = rev(w.work(), "main");
    let gone = w.commit("common/vpc.yaml", "rewound later");
    w.push("main");
    git(w.work(), &["fetch", "-q", "origin"]);
    // The primary is rewound behind the clone's back.
    git(
        &w.root().join("tokyo.git"),
        &["update-ref", "refs/heads/main", &first],
    );
    let run = w.tozai(&[
        "replay",
        "-c",
        "tozai.toml",
        "--repo",
        "work",
        "--commit",
        &gone,
    ]);
    run.expect_code(2).expect_no_panic();
    assert_eq!(
        run.stderr,
        format!(
            "tozai: error: the primary tokyo as fetched: commit {} is not on refs/heads/main (its head is {}): replay a commit of the ref\n",
            short(&gone),
            short(&first)
        )
    );
    assert_eq!(w.head("osaka.git", "main"), None, "nothing mirrored");
}

/// Regression: `replay --ref v1.2.0` parsed the tag's short name as a branch, while
/// `mirror --ref v1.2.0` mirrors the tag. A short name is the branch, else the tag.
#[test]
fn replay_ref_short_name_of_a_tag_replays_the_tag() {
    let w = World::new();
    let tagged = w.commit("common/vpc.yaml", "v1.2.0");
    git(w.work(), &["tag", "v1.2.0"]);
    w.push("v1.2.0");
    for repo in [&[][..], &["--repo", "work"][..]] {
        let mut args = vec![
            "replay",
            "-c",
            "tozai.toml",
            "--commit",
            &tagged,
            "--ref",
            "v1.2.0",
        ];
        args.extend(repo);
        let run = w.tozai(&args);
        run.expect_code(0).expect_no_panic();
        assert_eq!(
            last_lines(&run.stdout, 2)[0],
            format!(
                "would move osaka's refs/tags/v1.2.0 to {}: then osaka's judge would start: nothing",
                short(&tagged)
            ),
            "{repo:?}: {}",
            run.stdout
        );
    }
    let run = w.tozai(&[
        "replay",
        "-c",
        "tozai.toml",
        "--commit",
        &tagged,
        "--ref",
        "v1.2.0",
        "--execute",
        "--json",
    ]);
    run.expect_code(0).expect_no_panic();
    assert_eq!(run.json()["plan"]["ref"], "refs/tags/v1.2.0");
    assert_eq!(w.head("osaka.git", "refs/tags/v1.2.0").unwrap(), tagged);
    assert_eq!(w.head("osaka.git", "refs/heads/v1.2.0"), None);
}

#[test]
fn replay_says_what_a_dry_run_would_do_and_what_execute_did() {
    let w = World::new();
    let change = w.commit("secondary/root.yaml", "dr");
    w.push("main");

    let dry = w.tozai(&["replay", "-c", "tozai.toml", "--commit", &change]);
    dry.expect_code(0);
    assert_eq!(
        last_lines(&dry.stdout, 2),
        [
            format!(
                "would move osaka's refs/heads/main to {}: then osaka's judge would start: osaka-core",
                short(&change)
            ),
            "(dry run: --execute mirrors, or --publish asks the mirror Lambda)".to_owned(),
        ]
    );
    assert_eq!(
        w.head("osaka.git", "main"),
        None,
        "a dry run pushes nothing"
    );

    let run = w.tozai(&[
        "replay",
        "-c",
        "tozai.toml",
        "--commit",
        &change,
        "--execute",
    ]);
    run.expect_code(0);
    assert_eq!(w.head("osaka.git", "main").unwrap(), change);
    assert_eq!(
        last_lines(&run.stdout, 1),
        [format!(
            "osaka's refs/heads/main moved to {}: osaka's judge starts: osaka-core",
            short(&change)
        )]
    );

    let again = w.tozai(&[
        "replay",
        "-c",
        "tozai.toml",
        "--commit",
        &change,
        "--execute",
    ]);
    again.expect_code(0);
    assert_eq!(
        last_lines(&again.stdout, 1),
        [format!(
            "osaka's refs/heads/main is already at {}: nothing to mirror, so osaka's judge starts nothing",
            short(&change)
        )]
    );
}

#[test]
fn replay_execute_ending_diverged_says_the_standby_was_not_updated() {
    let w = World::new();
    w.tozai(&["mirror", "-c", "tozai.toml"]).expect_code(0);
    // Someone commits straight to the standby's main.
    let base = rev(w.work(), "main");
    let direct = w.commit("secondary/direct.yaml", "made on the standby");
    git(
        w.work(),
        &["push", "-q", "../osaka.git", "HEAD:refs/heads/main"],
    );
    git(w.work(), &["reset", "-q", "--hard", &base]);
    let change = w.commit("common/vpc.yaml", "v2");
    w.push("main");

    let run = w.tozai(&[
        "replay",
        "-c",
        "tozai.toml",
        "--commit",
        &change,
        "--execute",
    ]);
    run.expect_code(1).expect_no_panic();
    assert!(run.stdout.contains("DIVERGED"), "{}", run.stdout);
    assert!(!run.stdout.contains("starts:"), "{}", run.stdout);
    assert_eq!(
        last_lines(&run.stdout, 1),
        [
            "osaka's refs/heads/main was not updated (diverged; --force backs it up, then overwrites it): osaka's judge starts nothing"
        ]
    );
    assert_eq!(w.head("osaka.git", "main").unwrap(), direct, "left alone");
}

#[test]
fn replay_publish_without_credentials_prints_one_error_naming_the_region_and_bus() {
    let w = World::new();
    let change = w.commit("common/vpc.yaml", "v2");
    w.push("main");
    let mut cmd = tozai_command(
        w.root(),
        w.sandbox(),
        &[
            "replay",
            "-c",
            "tozai.toml",
            "--commit",
            &change,
            "--publish",
        ],
    );
    no_aws_credentials(&mut cmd);
    let run = Run::of(cmd, "tozai replay --publish (no credentials)".into());
    run.expect_code(3).expect_no_panic();
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(
        run.stderr.starts_with(
            "tozai: error: cannot publish to EventBridge in ap-northeast-1 (bus default): no AWS credentials"
        ),
        "{}",
        run.stderr
    );
    // Each cause of the chain once: no part of the message repeats.
    let parts: Vec<&str> = run.stderr.trim_end().split(": ").collect();
    for (i, part) in parts.iter().enumerate() {
        assert!(
            !parts[i + 1..].contains(part),
            "{part:?} is printed twice: {}",
            run.stderr
        );
    }
    assert_eq!(run.stdout, "", "nothing was published");
}

/// No AWS variable of the caller's reaches `cmd`, the sandbox's HOME has no `~/.aws`, and
/// the instance metadata service is not asked: the credential chain finds nothing.
fn no_aws_credentials(cmd: &mut Command) {
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("AWS_") {
            cmd.env_remove(&name);
        }
    }
    cmd.env("AWS_EC2_METADATA_DISABLED", "true");
}

// ---- replay on a CodeCommit primary: the premises through CodeCommit's API ----

const CODECOMMIT_CONFIG: &str = r#"
primary = "tokyo"
[regions.tokyo]
aws_region = "ap-northeast-1"
repository = "codecommit::ap-northeast-1://core-infra"
[regions.osaka]
aws_region = "ap-northeast-3"
repository = "./osaka.git"
[sync]
branches = ["main", "release/*"]
[sync.to.osaka]
paths = ["common/**"]
[sync.to.tokyo]
paths = ["common/**"]
"#;

#[test]
fn replay_checks_its_premises_with_codecommits_api() {
    let w = World::with_config(CODECOMMIT_CONFIG);
    let repos = w.root().join("codecommit");
    std::fs::create_dir(&repos).unwrap();
    git(
        &repos,
        &["clone", "-q", "--bare", "../tokyo.git", "core-infra"],
    );
    let head = rev(w.work(), "main");
    let credentials = Credentials {
        access_key_id: "AKIDREPLAYTEST".into(),
        secret_access_key: "replay-secret".into(),
        session_token: None,
    };
    let api = CodeCommitApi::start(&repos, std::slice::from_ref(&credentials));
    // The same repositories over git (a tag is checked once the mirror fetched it).
    let server = GitServer::start(&repos, std::slice::from_ref(&credentials));
    let replay = |args: &[&str]| {
        let mut all = vec!["replay", "-c", "tozai.toml", "--cache", "cache"];
        all.extend(args);
        let mut cmd = tozai_command(w.root(), w.sandbox(), &all);
        no_aws_credentials(&mut cmd);
        cmd.env("AWS_ACCESS_KEY_ID", &credentials.access_key_id)
            .env("AWS_SECRET_ACCESS_KEY", &credentials.secret_access_key)
            .env("AWS_ENDPOINT_URL_CODECOMMIT", api.endpoint_url())
            .env("TOZAI_CODECOMMIT_ENDPOINT", server.url_prefix());
        Run::of(cmd, format!("tozai replay {args:?} (CodeCommit primary)"))
    };

    let missing = replay(&["--commit", &head, "--ref", "release/none"]);
    missing.expect_code(2).expect_no_panic();
    assert_eq!(
        missing.stderr,
        "tozai: error: refs/heads/release/none does not exist on the primary tokyo (codecommit::ap-northeast-1://core-infra)\n"
    );
    assert!(!api.requests_of("GetBranch").is_empty(), "asked GetBranch");

    // A commit CodeCommit has, on another branch only.
    git(w.work(), &["switch", "-q", "-c", "release/1"]);
    let elsewhere = w.commit("common/other.yaml", "x");
    git(
        w.work(),
        &[
            "push",
            "-q",
            repos.join("core-infra").to_str().unwrap(),
            "release/1",
        ],
    );
    let off = replay(&["--commit", &elsewhere]);
    off.expect_code(2).expect_no_panic();
    assert_eq!(
        off.stderr,
        format!(
            "tozai: error: commit {} is not on refs/heads/main (its head is {}): replay a commit of the ref\n",
            short(&elsewhere),
            short(&head)
        )
    );
    assert!(
        !api.requests_of("GetMergeOptions").is_empty(),
        "asked CodeCommit for the merge base"
    );

    // Regression (review of issue 12): a tag on a CodeCommit primary got only a warning.
    // CodeCommit's API reads no tags: the tag is checked once the mirror fetched it.
    let cc = "codecommit::ap-northeast-1://core-infra";
    for (reference, named) in [("refs/tags/v9", "refs/tags/v9"), ("v9", "refs/heads/v9")] {
        let missing = replay(&["--commit", &head, "--ref", reference]);
        missing.expect_code(2).expect_no_panic();
        assert_eq!(
            missing.stderr,
            format!("tozai: error: {named} does not exist on the primary tokyo ({cc})\n"),
            "{}",
            server.log()
        );
    }
    git(w.work(), &["tag", "v9", &head]);
    let tags = repos.join("core-infra");
    git(w.work(), &["push", "-q", tags.to_str().unwrap(), "v9"]);
    let off = replay(&["--commit", &elsewhere, "--ref", "v9"]);
    off.expect_code(2).expect_no_panic();
    assert_eq!(
        off.stderr,
        format!(
            "tozai: error: the primary tokyo as fetched: commit {} is not on refs/tags/v9 (its head is {}): replay a commit of the ref\n",
            short(&elsewhere),
            short(&head)
        )
    );
    let tagged = replay(&["--commit", &head, "--ref", "v9"]);
    tagged.expect_code(0).expect_no_panic();
    assert_eq!(tagged.stderr, "", "no warning");
    assert!(tagged.stdout.contains("refs/tags/v9"), "{}", tagged.stdout);
}

// ---- mirror -c stays inside the config's selection ----

#[test]
fn mirror_c_refuses_a_ref_outside_the_configs_selection() {
    let w = World::new();
    git(w.work(), &["switch", "-q", "-c", "feature/x"]);
    w.commit("common/x.yaml", "x");
    w.push("feature/x");

    let run = w.tozai(&["mirror", "-c", "tozai.toml", "--ref", "feature/x"]);
    run.expect_code(2).expect_no_panic();
    assert_eq!(
        run.stderr,
        "tozai: error: --ref feature/x is outside what tozai.toml syncs (sync.branches: main, release/*; sync.tags: v*): `mirror -c` only narrows that selection; mirror other refs with --from/--to\n"
    );
    assert_eq!(w.head("osaka.git", "refs/heads/feature/x"), None);
    assert_eq!(w.head("osaka.git", "main"), None, "nothing was pushed");

    // --from/--to has no config selection: any ref may be named.
    w.tozai(&[
        "mirror",
        "--from",
        "./tokyo.git",
        "--to",
        "./osaka.git",
        "--ref",
        "feature/x",
    ])
    .expect_code(0);
    assert_eq!(
        w.head("osaka.git", "refs/heads/feature/x"),
        w.head("tokyo.git", "refs/heads/feature/x")
    );
    assert_eq!(w.head("osaka.git", "main"), None, "only what --ref names");
}

#[test]
fn mirror_c_ref_narrows_the_configs_selection() {
    let w = World::new();
    git(w.work(), &["switch", "-q", "-c", "release/1"]);
    w.commit("common/r1.yaml", "r1");
    w.push("release/1");
    git(w.work(), &["switch", "-q", "-c", "release/2"]);
    w.commit("common/r2.yaml", "r2");
    w.push("release/2");

    git(w.work(), &["switch", "-q", "-c", "feature/x"]);
    w.commit("common/x.yaml", "x");
    w.push("feature/x");

    // A glob: what the config selects and the glob matches, nothing more.
    w.tozai(&["mirror", "-c", "tozai.toml", "--ref", "release/*"])
        .expect_code(0);
    for b in ["release/1", "release/2"] {
        let full = format!("refs/heads/{b}");
        assert_eq!(w.head("osaka.git", &full), w.head("tokyo.git", &full));
    }
    assert_eq!(w.head("osaka.git", "refs/heads/main"), None);
    w.tozai(&["mirror", "-c", "tozai.toml", "--ref", "*"])
        .expect_code(0);
    assert_eq!(
        w.head("osaka.git", "refs/heads/main"),
        w.head("tokyo.git", "refs/heads/main")
    );
    assert_eq!(
        w.head("osaka.git", "refs/heads/feature/x"),
        None,
        "outside sync.branches"
    );
}

#[test]
fn mirror_ref_short_name_of_a_tag_mirrors_the_tag() {
    let w = World::new();
    git(w.work(), &["tag", "-a", "-m", "release", "v1.2.0"]);
    w.push("v1.2.0");

    let run = w.tozai(&["mirror", "-c", "tozai.toml", "--ref", "v1.2.0"]);
    run.expect_code(0).expect_no_panic();
    assert_eq!(
        w.head("osaka.git", "refs/tags/v1.2.0").unwrap(),
        w.head("tokyo.git", "refs/tags/v1.2.0").unwrap()
    );
    assert_eq!(w.head("osaka.git", "refs/heads/main"), None);
    assert_eq!(run.stderr, "", "one ref of that name: nothing to say");
}

#[test]
fn mirror_ref_naming_a_branch_and_a_tag_takes_the_branch_and_says_so() {
    let w = World::new();
    git(w.work(), &["tag", "v2"]);
    w.push("v2");
    git(w.work(), &["switch", "-q", "-c", "v2"]);
    w.commit("common/v2.yaml", "the branch");
    w.push("refs/heads/v2");

    let run = w.tozai(&[
        "mirror",
        "--from",
        "./tokyo.git",
        "--to",
        "./osaka.git",
        "--ref",
        "v2",
    ]);
    run.expect_code(0).expect_no_panic();
    assert_eq!(
        run.stderr,
        "tozai: --ref v2 names both a branch and a tag: mirroring the branch refs/heads/v2 (write refs/tags/v2 for the tag)\n"
    );
    assert_eq!(
        w.head("osaka.git", "refs/heads/v2"),
        w.head("tokyo.git", "refs/heads/v2")
    );
    assert_eq!(w.head("osaka.git", "refs/tags/v2"), None);
}

#[test]
fn mirror_ref_matching_nothing_is_an_error_before_anything_is_pushed() {
    let w = World::new();
    let run = w.tozai(&[
        "mirror",
        "-c",
        "tozai.toml",
        "--ref",
        "main",
        "--ref",
        "release/none",
    ]);
    run.expect_code(2).expect_no_panic();
    assert_eq!(
        run.stderr,
        format!(
            "tozai: error: --ref release/none matches no branch or tag that tozai.toml syncs (sync.branches: main, release/*; sync.tags: v*), on the source {} nor on the standby {}\n",
            w.shown("tokyo.git"),
            w.shown("osaka.git")
        )
    );
    assert_eq!(w.head("osaka.git", "main"), None, "nothing was pushed");

    let run = w.tozai(&[
        "mirror",
        "--from",
        "./tokyo.git",
        "--to",
        "./osaka.git",
        "--ref",
        "refs/tags/*",
    ]);
    run.expect_code(2).expect_no_panic();
    assert_eq!(
        run.stderr,
        format!(
            "tozai: error: --ref refs/tags/* matches no branch or tag on the source {root}/tokyo.git nor on the standby {root}/osaka.git\n",
            root = w.root().display()
        )
    );

    // A ref only the standby has still matches: its deletion is what --ref asks for.
    w.tozai(&["mirror", "-c", "tozai.toml"]).expect_code(0);
    git(w.work(), &["push", "-q", "origin", "main:release/old"]);
    w.tozai(&["mirror", "-c", "tozai.toml"]).expect_code(0);
    git(w.work(), &["push", "-q", "origin", ":release/old"]);
    let run = w.tozai(&["mirror", "-c", "tozai.toml", "--ref", "release/old"]);
    run.expect_code(0);
    assert_eq!(w.head("osaka.git", "refs/heads/release/old"), None);
}

// ---- --cache must be a directory ----

#[test]
fn cache_pointing_at_a_file_is_a_usage_error_naming_it() {
    let w = World::new();
    std::fs::write(w.root().join("afile"), "not a directory").unwrap();
    let commands: [&[&str]; 3] = [
        &["mirror", "-c", "tozai.toml"],
        &["status", "-c", "tozai.toml"],
        &["replay", "-c", "tozai.toml", "--commit", "HEAD"],
    ];
    for args in commands {
        for state in [None, Some("state")] {
            let mut all = args.to_vec();
            all.extend(["--cache", "afile"]);
            if let Some(dir) = state {
                all.extend(["--state", dir]);
            }
            let run = w.tozai(&all);
            run.expect_code(2).expect_no_panic();
            assert_eq!(
                run.stderr,
                "tozai: error: --cache afile is not a directory: give a directory for the cache of source repositories\n",
                "{all:?}"
            );
        }
    }
}
