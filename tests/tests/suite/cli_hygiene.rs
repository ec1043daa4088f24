//! The `tozai` binary's hygiene, run as a user runs it: config checks (one repository for
//! both regions, an unknown AWS region), nothing secret, huge or hostile echoed (URL
//! credentials and query strings, a 5 MB junk config, control characters in file names,
//! colour only on a terminal), and what users of mature CLIs expect (`tozai init`,
//! `check --json`, shell completions, `tozai.toml` found in a parent directory).

use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;
use tozai_tests::mirror::{commit_file, git};
use tozai_tests::{
    GitRepo, Run, Sandbox, fixture, tozai, tozai_bin, tozai_command, workspace_root,
};

/// A temporary directory with a sandbox home.
struct Scratch {
    dir: TempDir,
    sandbox: Sandbox,
}

impl Scratch {
    fn new() -> Self {
        let dir = TempDir::new().unwrap();
        let sandbox = Sandbox::new(&dir.path().join("home"));
        Self { dir, sandbox }
    }

    /// The directory, as the process sees it (symlinks resolved), for exact messages.
    fn path(&self) -> PathBuf {
        self.dir.path().canonicalize().unwrap()
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }

    fn tozai(&self, args: &[&str]) -> Run {
        tozai(&self.path(), &self.sandbox, args)
    }

    fn tozai_in(&self, dir: &str, args: &[&str]) -> Run {
        tozai(&self.path().join(dir), &self.sandbox, args)
    }
}

/// Two regions whose AWS regions and repositories are filled in; line 6 is osaka's
/// `aws_region`, line 7 its `repository`.
fn config(tokyo_repo: &str, osaka_aws: &str, osaka_repo: &str) -> String {
    format!(
        r#"primary = "tokyo"
[regions.tokyo]
aws_region = "ap-northeast-1"
repository = "{tokyo_repo}"
[regions.osaka]
aws_region = "{osaka_aws}"
repository = "{osaka_repo}"
[sync]
branches = ["main"]
[sync.to.osaka]
paths = ["common/**", "secondary/**"]
[sync.to.tokyo]
paths = ["common/**", "primary/**"]
"#
    )
}

fn assert_lacks(run: &Run, secret: &str) {
    for (stream, text) in [("stdout", &run.stdout), ("stderr", &run.stderr)] {
        assert!(
            !text.contains(secret),
            "{}: {stream} shows {secret:?}:\n{text}",
            run.shown
        );
    }
}

// ---- config checks ----

#[test]
fn both_regions_on_one_repository_is_an_error_naming_both() {
    let s = Scratch::new();
    s.write(
        "tozai.toml",
        &config(
            "core-infra",
            "ap-northeast-1",
            "codecommit::ap-northeast-1://core-infra",
        ),
    );
    let run = s.tozai(&["check"]);
    run.expect_code(2).expect_no_panic();
    assert_eq!(
        run.stderr,
        "tozai: error: tozai.toml:7:14: regions tokyo and osaka use the same repository, \
         codecommit::ap-northeast-1://core-infra: the standby needs a repository of its own\n"
    );
    assert_eq!(run.stdout, "");

    // However it is written: the same CodeCommit repository, local path or URL.
    std::fs::create_dir_all(s.path().join("repos/tokyo.git")).unwrap();
    std::os::unix::fs::symlink(s.path().join("repos/tokyo.git"), s.path().join("link.git"))
        .unwrap();
    let local = s.path().join("repos/tokyo.git");
    let rows: [(&str, &str, &str, String); 6] = [
        (
            "core-infra",
            "ap-northeast-3",
            "https://git-codecommit.ap-northeast-1.amazonaws.com/v1/repos/core-infra",
            "codecommit::ap-northeast-1://core-infra".into(),
        ),
        (
            "codecommit::ap-northeast-3://core-infra",
            "ap-northeast-3",
            "core-infra",
            "codecommit::ap-northeast-3://core-infra".into(),
        ),
        (
            "./repos/tokyo.git",
            "ap-northeast-3",
            "repos/x/../tokyo.git/",
            local.display().to_string(),
        ),
        (
            "./repos/tokyo.git",
            "ap-northeast-3",
            "./link.git",
            local.display().to_string(),
        ),
        (
            "./missing/a.git",
            "ap-northeast-3",
            "./missing/b/../a.git",
            s.path().join("missing/a.git").display().to_string(),
        ),
        (
            "https://git.example.com/infra.git",
            "ap-northeast-3",
            "https://GIT.Example.com/infra/",
            "https://git.example.com/infra".into(),
        ),
    ];
    for (tokyo, aws, osaka, shown) in rows {
        s.write("tozai.toml", &config(tokyo, aws, osaka));
        let run = s.tozai(&["check"]);
        run.expect_code(2).expect_no_panic();
        assert!(
            run.stderr.contains(&format!(
                "regions tokyo and osaka use the same repository, {shown}: "
            )),
            "{tokyo} / {osaka}: {}",
            run.stderr
        );
    }

    // Different repositories, even of the same name, are fine.
    s.write(
        "tozai.toml",
        &config("core-infra", "ap-northeast-3", "core-infra"),
    );
    s.tozai(&["check"]).expect_code(0);
}

#[test]
fn an_unknown_aws_region_is_an_error_saying_how_to_allow_it() {
    let s = Scratch::new();
    let text = config("core-infra", "ap-northeast-9", "core-infra");
    s.write("tozai.toml", &text);
    let run = s.tozai(&["check"]);
    run.expect_code(2).expect_no_panic();
    assert_eq!(
        run.stderr,
        "tozai: error: tozai.toml:6:14: unknown AWS region \"ap-northeast-9\" for region osaka \
         (tozai knows the AWS regions open in late 2026): if AWS opened it since, allow it with \
         extra_aws_regions = [\"ap-northeast-9\"] at the top of the config\n"
    );

    // A CodeCommit location in an unknown region, too.
    s.write(
        "tozai.toml",
        &config("codecommit::ap-north-1://core-infra", "ap-northeast-3", "x"),
    );
    let run = s.tozai(&["check"]);
    run.expect_code(2);
    assert!(
        run.stderr.contains(
            "tozai.toml:4:14: unknown AWS region \"ap-north-1\" for region tokyo's repository"
        ),
        "{}",
        run.stderr
    );

    // The documented way in.
    s.write(
        "tozai.toml",
        &format!("extra_aws_regions = [\"ap-northeast-9\"]\n{text}"),
    );
    let run = s.tozai(&["check"]);
    run.expect_code(0);
    assert!(
        run.stdout.contains("standby osaka (ap-northeast-9"),
        "{}",
        run.stdout
    );
    // ...which takes only region names.
    s.write(
        "tozai.toml",
        &format!("extra_aws_regions = [\"osaka\"]\n{text}"),
    );
    let run = s.tozai(&["check"]);
    run.expect_code(2);
    assert!(
        run.stderr
            .contains("tozai.toml:1:22: \"osaka\" is not an AWS region name (like ap-northeast-1)"),
        "{}",
        run.stderr
    );
}

#[test]
fn both_regions_in_one_aws_region_is_allowed_with_one_warning() {
    let s = Scratch::new();
    s.write(
        "tozai.toml",
        &config("core-infra", "ap-northeast-1", "core-infra-dr"),
    );
    let warning = "regions tokyo and osaka are both in the AWS region ap-northeast-1: \
                   an outage of ap-northeast-1 takes both down";
    let run = s.tozai(&["check"]);
    run.expect_code(0).expect_no_panic();
    assert_eq!(
        run.stderr.matches(warning).count(),
        1,
        "warned once: {}",
        run.stderr
    );
    assert!(!run.stdout.contains(warning), "the warning goes to stderr");
}

// ---- nothing secret, huge or hostile ----

#[test]
fn a_syntax_error_never_shows_a_url_password() {
    let s = Scratch::new();
    let text = config("core-infra", "ap-northeast-3", "core-infra").replace(
        "repository = \"core-infra\"\n[regions.osaka]",
        "repository = \"https://user:s3cr3t@git.example.com/x.git\" x\n[regions.osaka]",
    );
    s.write("tozai.toml", &text);
    let run = s.tozai(&["check"]);
    run.expect_code(2).expect_no_panic();
    assert_lacks(&run, "s3cr3t");
    assert_eq!(
        run.stderr,
        format!(
            "tozai: error: tozai.toml:4:58: unexpected key or value, expected newline, `#`\n  \
             |\n4 | repository = \"https://***@git.example.com/x.git\" x\n  | {}^\n",
            " ".repeat(49)
        )
    );
}

#[test]
fn query_strings_are_redacted_in_errors_warnings_and_reports() {
    let s = Scratch::new();
    let url = "https://git.example.com/y.git?token=abc123&x=1";
    // a syntax error on its line
    let text = config("core-infra", "ap-northeast-3", url);
    s.write(
        "tozai.toml",
        &text.replace(&format!("\"{url}\""), &format!("\"{url}\" x")),
    );
    let run = s.tozai(&["check"]);
    run.expect_code(2);
    assert_lacks(&run, "abc123");
    assert!(
        run.stderr
            .contains("7 | repository = \"https://git.example.com/y.git?***\" x\n"),
        "{}",
        run.stderr
    );
    // the report of a config that is valid
    s.write("tozai.toml", &text);
    let run = s.tozai(&["check"]);
    run.expect_code(0);
    assert_lacks(&run, "abc123");
    assert!(
        run.stdout
            .contains("(ap-northeast-3, https://git.example.com/y.git?***)"),
        "{}",
        run.stdout
    );
    // warnings (network errors, retried) and the error, on a server that refuses
    git(&s.path(), &["init", "-q", "--bare", "standby.git"]);
    let run = s.tozai(&[
        "-v",
        "mirror",
        "--from",
        "http://127.0.0.1:1/x.git?token=abc123",
        "--to",
        "./standby.git",
        "--cache",
        "cache",
    ]);
    run.expect_code(3).expect_no_panic();
    assert_lacks(&run, "abc123");
    assert!(
        run.stderr.contains("network error; retrying")
            && run.stderr.contains("location=http://127.0.0.1:1/x.git?***"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("tozai: error: cannot reach http://127.0.0.1:1/x.git?*** "),
        "{}",
        run.stderr
    );
}

#[test]
fn a_5_mb_junk_config_gives_under_4_kb_of_output() {
    let s = Scratch::new();
    let five_mb = 5 << 20;
    let mut hostile = String::new();
    while hostile.len() < five_mb {
        hostile.push_str("a = \"https://u:pw@h/x?t=tok\u{1b}[2J\" [ \u{7}");
    }
    let rows = [
        ("x", "x".repeat(five_mb)),
        ("hostile", hostile),
        (
            "a huge value",
            config("core-infra", "ap-northeast-3", "core-infra").replace(
                "primary = \"tokyo\"",
                &format!("primary = \"{}\"", "y".repeat(five_mb)),
            ),
        ),
        (
            "a huge key",
            format!(
                "{}{} = 1\n",
                config("a", "ap-northeast-3", "b"),
                "k".repeat(five_mb)
            ),
        ),
    ];
    for (what, text) in rows {
        s.write("junk.toml", &text);
        let run = s.tozai(&["check", "-c", "junk.toml"]);
        run.expect_code(2).expect_no_panic();
        let total = run.stdout.len() + run.stderr.len();
        assert!(
            total < 4096,
            "{what}: {total} bytes of output:\n{}",
            run.stderr
        );
        assert!(
            run.stderr.starts_with("tozai: error: junk.toml:"),
            "{what}: {}",
            run.stderr
        );
        // Cut and marked; the hostile line is instead hidden from its first URL to its
        // last `@` (5 MB later), a line's secrets being hidden whole.
        assert!(
            run.stderr.contains('…') || (what == "hostile" && run.stderr.contains("://***@")),
            "{what}: the cut is marked: {}",
            run.stderr
        );
        if what == "hostile" {
            assert!(
                run.stderr
                    .contains("1 | a = \"https://***@h/x?***␛[2J\" [ ␇\n"),
                "the line is shown, its secrets hidden (from its first URL to its last `@`): {}",
                run.stderr
            );
        }
        assert_lacks(&run, "pw@");
        assert_lacks(&run, "t=tok");
        assert!(
            !run.stderr.chars().any(|c| c.is_control() && c != '\n'),
            "{what}: {:?}",
            run.stderr
        );
    }
    let run = s.tozai(&["check", "-c", "junk.toml"]);
    assert!(run.stderr.starts_with("tozai: error: junk.toml:"));
    s.write("junk.toml", &"x".repeat(five_mb));
    let run = s.tozai(&["check", "-c", "junk.toml"]);
    assert!(
        run.stderr
            .starts_with(&format!("tozai: error: junk.toml:1:{}: ", five_mb + 1)),
        "the real line and column: {}",
        run.stderr
    );
}

#[test]
fn plan_quotes_control_characters_in_file_names_and_json_keeps_them() {
    let repo = GitRepo::new();
    repo.write("common/base.yaml", "base\n");
    repo.commit("base");
    let hostile = "common/\u{1b}[31mred\nline.yaml";
    repo.write(hostile, "x\n");
    repo.commit("hostile");
    let config = fixture("plan.toml");
    let args = [
        "plan",
        "-c",
        config.to_str().unwrap(),
        "--repo",
        repo.path().to_str().unwrap(),
        "HEAD",
    ];
    let run = tozai(repo.scratch(), repo.sandbox(), args);
    run.expect_code(0).expect_no_panic();
    let shown = "\"common/\\033[31mred\\nline.yaml\"";
    assert!(
        run.stdout.contains(&format!("  A {shown}\n")),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(&format!(
            "      {shown}  matched \"common/**\" (sync.to.osaka)\n"
        )),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains('\u{1b}'), "{:?}", run.stdout);
    assert!(
        !run.stdout.lines().any(|l| l.starts_with("line.yaml")),
        "a line split: {}",
        run.stdout
    );

    let mut json_args = args.to_vec();
    json_args.insert(1, "--json");
    let run = tozai(repo.scratch(), repo.sandbox(), json_args);
    run.expect_code(0);
    assert_eq!(run.json()["changed"][0]["path"], hostile, "JSON is exact");

    // an error naming a hostile ref or path
    for (flag, value) in [
        ("--ref", "ma\u{1b}[2Jin"),
        ("--repo", "/nowhere/\u{1b}[2J\n"),
    ] {
        let mut bad = args.to_vec();
        match flag {
            "--repo" => bad[4] = value,
            _ => bad.extend([flag, value]),
        }
        let run = tozai(repo.scratch(), repo.sandbox(), &bad);
        run.expect_code(2).expect_no_panic();
        assert!(
            !run.stderr
                .trim_end()
                .chars()
                .any(|c| c.is_control() && c != '\n')
                && run.stderr.lines().count() == 1,
            "{flag}: {:?}",
            run.stderr
        );
    }
}

/// A config that loads with a warning (both regions in one AWS region).
fn warning_config(s: &Scratch) {
    s.write(
        "tozai.toml",
        &config("core-infra", "ap-northeast-1", "core-infra-dr"),
    );
}

#[test]
fn logs_to_a_pipe_have_no_colour() {
    let s = Scratch::new();
    warning_config(&s);
    let mut cmd = tozai_command(&s.path(), &s.sandbox, &["-v", "check"]);
    cmd.env_remove("NO_COLOR");
    let run = Run::of(cmd, "tozai -v check 2>|pipe".into());
    run.expect_code(0);
    assert!(
        run.stderr.contains("WARN"),
        "a warning is logged: {}",
        run.stderr
    );
    assert!(!run.stderr.contains("\u{1b}["), "{:?}", run.stderr);
}

#[test]
fn logs_on_a_terminal_have_colour_unless_no_color() {
    let s = Scratch::new();
    warning_config(&s);
    // `script` (util-linux) runs the command on a pseudo-terminal.
    let on_terminal = |no_color: Option<&str>| -> String {
        let mut cmd = Command::new("script");
        cmd.args([
            "-qec",
            &format!("{} -v check", tozai_bin().display()),
            "/dev/null",
        ])
        .current_dir(s.path());
        s.sandbox.apply(&mut cmd);
        cmd.env_remove("TOZAI_LOG").env_remove("NO_COLOR");
        if let Some(v) = no_color {
            cmd.env("NO_COLOR", v);
        }
        let out = cmd
            .output()
            .expect("script (util-linux) runs: it is needed for this test");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let coloured = on_terminal(None);
    assert!(
        coloured.contains("WARN") && coloured.contains("\u{1b}["),
        "{coloured:?}"
    );
    let empty = on_terminal(Some(""));
    assert!(
        empty.contains("\u{1b}["),
        "an empty NO_COLOR is not set: {empty:?}"
    );
    let plain = on_terminal(Some("1"));
    assert!(
        plain.contains("WARN") && !plain.contains("\u{1b}["),
        "{plain:?}"
    );
}

// ---- what users of mature CLIs expect ----

#[test]
fn init_writes_a_commented_config_that_passes_check() {
    let s = Scratch::new();
    let run = s.tozai(&["init"]);
    run.expect_code(0).expect_no_panic();
    assert_eq!(
        run.stdout,
        "wrote tozai.toml: primary tokyo (ap-northeast-1, codecommit::ap-northeast-1://core-infra), \
         standby osaka (ap-northeast-3, codecommit::ap-northeast-3://core-infra), \
         2 pipeline targets, 10 rule tests\n\
         next: name your pipelines in it, then run `tozai check`\n"
    );
    let text = std::fs::read_to_string(s.path().join("tozai.toml")).unwrap();
    assert!(text.starts_with("# tozai.toml"), "commented: {text}");
    for part in ["common/", "primary/", "secondary/", "[[test]]"] {
        assert!(text.contains(part), "{part}: {text}");
    }
    let check = s.tozai(&["check"]);
    check.expect_code(0);
    assert!(
        check.stdout.contains("all 10 rule tests pass"),
        "{}",
        check.stdout
    );

    // never over a file, unless --force
    std::fs::write(s.path().join("tozai.toml"), "mine\n").unwrap();
    let run = s.tozai(&["init"]);
    run.expect_code(2);
    assert_eq!(
        run.stderr,
        "tozai: error: tozai.toml already exists (give --force to overwrite it)\n"
    );
    assert_eq!(
        std::fs::read_to_string(s.path().join("tozai.toml")).unwrap(),
        "mine\n"
    );
    s.tozai(&["init", "--force"]).expect_code(0);
    s.tozai(&["check"]).expect_code(0);
}

/// Regression (second review): `init --force` truncated `tozai.toml` in place, following
/// a symlink of that name, and kept nothing of the old config; `init` below a directory
/// with a `tozai.toml` silently shadowed it.
#[test]
fn init_force_keeps_the_old_config_and_never_writes_through_a_symlink() {
    let s = Scratch::new();
    std::fs::write(s.path().join("other.txt"), "not a config\n").unwrap();
    std::os::unix::fs::symlink("other.txt", s.path().join("tozai.toml")).unwrap();
    let run = s.tozai(&["init", "--force"]);
    run.expect_code(0).expect_no_panic();
    assert!(
        run.stdout
            .contains("\nkept the old one as tozai.toml.bak\n"),
        "{}",
        run.stdout
    );
    let read = |name: &str| std::fs::read_to_string(s.path().join(name)).unwrap();
    assert_eq!(
        read("other.txt"),
        "not a config\n",
        "the link's target is untouched"
    );
    assert!(read("tozai.toml").starts_with("# tozai.toml"));
    let backup = std::fs::symlink_metadata(s.path().join("tozai.toml.bak")).unwrap();
    assert!(
        backup.file_type().is_symlink(),
        "the old link itself is kept"
    );
    assert!(
        !std::fs::symlink_metadata(s.path().join("tozai.toml"))
            .unwrap()
            .file_type()
            .is_symlink()
    );

    // Below a directory with a tozai.toml, init would shadow it: refused unless --force.
    let below = s.path().join("infra/team");
    std::fs::create_dir_all(&below).unwrap();
    let run = s.tozai_in("infra/team", &["init"]);
    run.expect_code(2);
    assert_eq!(
        run.stderr,
        format!(
            "tozai: error: {} applies here already (give --force to write another tozai.toml \
             here, which commands run below this directory would read instead)\n",
            s.path().join("tozai.toml").display()
        )
    );
    assert!(!below.join("tozai.toml").exists());
    s.tozai_in("infra/team", &["init", "--force"])
        .expect_code(0);
    assert!(below.join("tozai.toml").is_file());
}

#[test]
fn init_takes_the_regions_as_flags() {
    let s = Scratch::new();
    let run = s.tozai(&[
        "init",
        "--primary",
        "virginia=us-east-1:infra",
        "--standby",
        "oregon=us-west-2:https://git-codecommit.us-west-2.amazonaws.com/v1/repos/infra-dr",
    ]);
    run.expect_code(0).expect_no_panic();
    assert!(
        run.stdout.starts_with(
            "wrote tozai.toml: primary virginia (us-east-1, codecommit::us-east-1://infra), \
             standby oregon (us-west-2, codecommit::us-west-2://infra-dr)"
        ),
        "{}",
        run.stdout
    );
    let check = s.tozai(&["check", "--json"]);
    check.expect_code(0);
    let v = check.json();
    assert_eq!(v["regions"][0]["name"], "virginia");
    assert_eq!(v["regions"][1]["name"], "oregon");
    assert_eq!(v["failed"], 0);

    // bad flags: exit 2, nothing written
    let t = Scratch::new();
    let rows = [
        (
            vec!["init", "--primary", "tokyo"],
            "tozai: error: --primary \"tokyo\": expected NAME=AWS_REGION:REPOSITORY, \
             like tokyo=ap-northeast-1:core-infra\n",
        ),
        (
            vec!["init", "--standby", "osaka=ap-northeast-9:core-infra"],
            "(for an AWS region newer than tozai's table, give --extra-aws-region REGION): \
             tozai.toml:19:14: unknown AWS region \"ap-northeast-9\" for region osaka",
        ),
        (
            vec![
                "init",
                "--primary",
                "a=us-east-1:x",
                "--standby",
                "a=us-west-2:x",
            ],
            "tozai: error: --primary and --standby name the same region \"a\"\n",
        ),
    ];
    for (args, message) in rows {
        let run = t.tozai(&args);
        run.expect_code(2).expect_no_panic();
        assert!(run.stderr.contains(message), "{args:?}: {}", run.stderr);
        assert!(
            !t.path().join("tozai.toml").exists(),
            "{args:?} wrote a file"
        );
    }
    // ...and the flag that allows it
    let run = t.tozai(&[
        "init",
        "--standby",
        "osaka=ap-northeast-9:core-infra",
        "--extra-aws-region",
        "ap-northeast-9",
    ]);
    run.expect_code(0).expect_no_panic();
    t.tozai(&["check"]).expect_code(0);
}

#[test]
fn check_json_gives_each_rule_test_and_the_regions() {
    let s = Scratch::new();
    let example = workspace_root().join("examples/tozai.toml");
    let run = s.tozai(&["check", "--json", "-c", example.to_str().unwrap()]);
    run.expect_code(0);
    let v = run.json();
    assert_eq!(v["config"], example.to_str().unwrap());
    assert_eq!(
        v["regions"][0],
        serde_json::json!({"name": "tokyo", "role": "primary", "aws_region": "ap-northeast-1",
                           "repository": "codecommit::ap-northeast-1://core-infra"})
    );
    assert_eq!(v["regions"][1]["role"], "standby");
    assert_eq!(v["passed"], 10);
    assert_eq!(v["failed"], 0);
    assert_eq!(
        v["tests"][0],
        serde_json::json!({"name": "a common change mirrors and deploys both regions",
                           "passed": true,
                           "expected": ["mirror", "osaka-core", "tokyo-core"],
                           "actual": ["mirror", "osaka-core", "tokyo-core"],
                           "explanation": []})
    );

    let failing = std::fs::read_to_string(fixture("plan.toml")).unwrap()
        + "[[test]]\nname = \"docs are mirrored\"\nchanges = [\"common/README.md\"]\nexpect = [\"mirror\"]\n";
    s.write("tozai.toml", &failing);
    let run = s.tozai(&["check", "--json"]);
    run.expect_code(1);
    let v = run.json();
    assert_eq!(v["failed"], 1);
    let t = &v["tests"][0];
    assert_eq!(t["passed"], false);
    assert_eq!(t["expected"], serde_json::json!(["mirror"]));
    assert_eq!(t["actual"], serde_json::json!([]));
    assert_eq!(t["explanation"][0]["action"], "mirror");
    assert_eq!(t["explanation"][0]["taken"], false);
    let why = t["explanation"][0]["why"].as_str().unwrap();
    assert!(
        why.contains("common/README.md excluded by \"**/*.md\""),
        "{why}"
    );
}

#[test]
fn completions_for_bash_define_tozais() {
    let s = Scratch::new();
    let run = s.tozai(&["completions", "bash"]);
    run.expect_code(0);
    assert!(run.stdout.contains("_tozai()"), "{}", run.stdout);
    // bash itself loads it and then knows a completion for tozai
    let out = Command::new("bash")
        .args([
            "-c",
            &format!(
                "source <({} completions bash) && complete -p tozai",
                tozai_bin().display()
            ),
        ])
        .output()
        .expect("bash runs");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        said.starts_with("complete ") && said.trim_end().ends_with(" tozai"),
        "{said}"
    );
    for (shell, mark) in [("zsh", "#compdef tozai"), ("fish", "complete -c tozai")] {
        let run = s.tozai(&["completions", shell]);
        run.expect_code(0);
        assert!(run.stdout.contains(mark), "{shell}: {}", run.stdout);
    }
    s.tozai(&["completions", "tcsh"]).expect_code(2);
}

/// Two local regions and a work tree, the config at the root; commands run from `a/b`.
fn world() -> (Scratch, String) {
    let s = Scratch::new();
    let root = s.path();
    s.write(
        "tozai.toml",
        &config("./tokyo.git", "ap-northeast-3", "./osaka.git"),
    );
    for bare in ["tokyo.git", "osaka.git"] {
        git(&root, &["init", "-q", "--bare", "-b", "main", bare]);
    }
    std::fs::create_dir_all(root.join("work")).unwrap();
    std::fs::create_dir_all(root.join("a/b")).unwrap();
    git(&root.join("work"), &["init", "-q", "-b", "main"]);
    let head = commit_file(&root.join("work"), "common/vpc.yaml", "v1");
    git(&root.join("work"), &["push", "-q", "../tokyo.git", "main"]);
    (s, head)
}

#[test]
fn the_config_is_found_in_a_parent_directory_for_every_command() {
    let (s, head) = world();
    let found = s.path().join("tozai.toml");
    let run = s.tozai_in("a/b", &["check"]);
    run.expect_code(0);
    assert!(
        run.stdout
            .starts_with(&format!("{}: primary tokyo", found.display())),
        "{}",
        run.stdout
    );
    let runs: [&[&str]; 4] = [
        &["plan", "--repo", "../../work", "HEAD"],
        &["mirror", "--cache", "../../cache"],
        &["status", "--cache", "../../cache"],
        &["replay", "--commit", &head, "--cache", "../../cache"],
    ];
    for args in runs {
        let run = s.tozai_in("a/b", args);
        run.expect_code(0).expect_no_panic();
    }
    assert_eq!(
        tozai_tests::mirror::rev(&s.path().join("osaka.git"), "main"),
        head,
        "mirror used the config found"
    );
    // an explicit -c is used as it is
    let run = s.tozai_in("a/b", &["check", "-c", "tozai.toml"]);
    run.expect_code(2);
    assert!(
        run.stderr.contains("cannot read config tozai.toml"),
        "{}",
        run.stderr
    );
}

#[test]
fn no_config_anywhere_up_is_an_error_saying_what_to_do() {
    let s = Scratch::new();
    let mut dir = Some(s.path());
    while let Some(d) = dir {
        assert!(
            !d.join("tozai.toml").exists(),
            "{} has a tozai.toml: this test needs none above its directory",
            d.display()
        );
        dir = d.parent().map(Path::to_owned);
    }
    let want = format!(
        "tozai: error: no tozai.toml in {} or any parent directory (give -c FILE, or run tozai init)\n",
        s.path().display()
    );
    let runs: [&[&str]; 5] = [
        &["check"],
        &["plan", "HEAD"],
        &["status"],
        &["replay", "--commit", "HEAD"],
        &["mirror"],
    ];
    for args in runs {
        let run = s.tozai(args);
        run.expect_code(2).expect_no_panic();
        assert_eq!(run.stderr, want, "{args:?}");
    }
}

// ---- review of issue 12: what the first fixes missed ----

/// Regression: a password holding `/` (CodeCommit's generated git passwords are base64),
/// `#` or `?` ended the user part early: the URL was accepted and printed whole by
/// `check`, its JSON and `plan --json`.
#[test]
fn a_password_holding_a_slash_hash_or_question_mark_is_refused_and_never_shown() {
    let s = Scratch::new();
    for password in ["AbC/dEf+g=", "AbC#dEf+g=", "AbC?dEf+g="] {
        let url = format!(
            "https://user-at-123:{password}@git-codecommit.us-east-1.amazonaws.com/v1/repos/x"
        );
        s.write("tozai.toml", &config("./tokyo.git", "us-east-1", &url));
        let runs: [&[&str]; 3] = [
            &["check"],
            &["check", "--json"],
            &["plan", "--json", "HEAD"],
        ];
        for args in runs {
            let run = s.tozai(args);
            run.expect_code(2).expect_no_panic();
            for part in [password, "AbC", "dEf+g=", "user-at-123"] {
                assert_lacks(&run, part);
            }
            assert_eq!(
                run.stderr,
                "tozai: error: tozai.toml:7:14: invalid repository location \"https://***@git-codecommit.us-east-1.amazonaws.com/v1/repos/x\": credentials in URLs are refused: tozai keeps no static git credentials (CodeCommit uses IAM-signed logins)\n",
                "{password}: {args:?}"
            );
        }
    }
}

/// Regression (second review): `'` ended a URL for the redaction, and so did a space: a
/// password or a query token holding one was printed from that character on, in the
/// refusal, in a config's syntax-error excerpt and in every retry warning.
#[test]
fn a_secret_holding_an_apostrophe_or_a_space_is_never_shown() {
    let s = Scratch::new();
    git(&s.path(), &["init", "-q", "--bare", "standby.git"]);
    git(&s.path(), &["init", "-q", "--bare", "src.git"]);
    let runs: [&[&str]; 2] = [
        &[
            "mirror",
            "--from",
            "./src.git",
            "--to",
            "https://bob:Sup3r'SECRET2@git.example.com/x.git",
            "--dry-run",
        ],
        &[
            "-v",
            "mirror",
            "--from",
            "http://127.0.0.1:1/x.git?token=ab'SECRETTAIL",
            "--to",
            "./standby.git",
            "--cache",
            "cache",
        ],
    ];
    for args in runs {
        let run = s.tozai(args);
        run.expect_no_panic();
        assert_ne!(run.code, Some(0), "{args:?}");
        assert_lacks(&run, "SECRET");
    }
    for password in ["Sup3r'SECRET", "Sup3r SECRET", "Sup3r\\\"SECRET"] {
        let url = format!("https://bob:{password}@git.example.com/x.git");
        let text = config("./tokyo.git", "ap-northeast-3", &url);
        // As it is (the location is refused), and with a syntax error on its line.
        let on_its_line = text.replace(&format!("\"{url}\""), &format!("\"{url}\" x"));
        assert_ne!(on_its_line, text);
        for broken in [text.clone(), on_its_line] {
            s.write("tozai.toml", &broken);
            let run = s.tozai(&["check"]);
            run.expect_code(2).expect_no_panic();
            assert_lacks(&run, "SECRET");
        }
    }
}

/// git's smart HTTP, read-only and without authentication, for a primary reached by a
/// plain `http://` URL: `git http-backend` behind Python's `http.server`.
const SMART_HTTP: &str = r#""""git's smart HTTP, read-only and without authentication: `git http-backend` behind
Python's http.server, for a source reached by a plain http:// URL. Prints its port."""
import http.server
import os
import subprocess
import sys

ROOT = sys.argv[1]


class Handler(http.server.BaseHTTPRequestHandler):
    def serve(self):
        path, _, query = self.path.partition("?")
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        env = dict(
            os.environ,
            GIT_PROJECT_ROOT=ROOT,
            GIT_HTTP_EXPORT_ALL="1",
            PATH_INFO=path,
            QUERY_STRING=query,
            REQUEST_METHOD=self.command,
            CONTENT_TYPE=self.headers.get("Content-Type", ""),
            CONTENT_LENGTH=str(len(body)),
        )
        out = subprocess.run(
            ["git", "http-backend"], input=body, env=env, capture_output=True
        ).stdout
        head, _, rest = out.partition(b"\r\n\r\n")
        status, headers = 200, []
        for line in head.decode().split("\r\n"):
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name:
                headers.append((name, value.strip()))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(rest)))
        self.end_headers()
        self.wfile.write(rest)

    do_GET = do_POST = serve

    def log_message(self, *args):
        pass


server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;

/// A plain smart-HTTP git server over loopback, serving the bare repositories under a
/// directory; killed when dropped.
struct PlainHttp {
    child: std::process::Child,
    port: u16,
}

impl PlainHttp {
    fn start(root: &Path) -> Self {
        use std::io::BufRead;
        let script = root.join("smart_http.py");
        std::fs::write(&script, SMART_HTTP).unwrap();
        let python = std::env::var_os("TOZAI_TEST_PYTHON").unwrap_or_else(|| "python3".into());
        let mut child = Command::new(&python)
            .arg(&script)
            .arg(root)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {python:?} (install python3): {e}"));
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("the smart-HTTP server did not start: {line:?}"));
        Self { child, port }
    }
}

impl Drop for PlainHttp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Regression: `plan --json` and `replay --json` gave the pushed repository as written,
/// a `?token=...` query string and all.
#[test]
fn a_query_string_token_stays_out_of_plan_and_replay_json() {
    let (s, head) = world();
    let server = PlainHttp::start(&s.path());
    let primary = format!("http://127.0.0.1:{}/tokyo.git?token=abc", server.port);
    s.write(
        "tozai.toml",
        &config(&primary, "ap-northeast-3", "./osaka.git"),
    );
    let shown = format!("http://127.0.0.1:{}/tokyo.git?***", server.port);
    let plan = s.tozai(&["plan", "--json", "--repo", "work", "HEAD"]);
    plan.expect_code(0).expect_no_panic();
    assert_lacks(&plan, "abc");
    assert_eq!(plan.json()["repository"], shown.as_str());
    let replay = s.tozai(&[
        "replay", "--json", "--repo", "work", "--commit", &head, "--cache", "cache",
    ]);
    replay.expect_code(0).expect_no_panic();
    assert_lacks(&replay, "abc");
    let v = replay.json();
    assert_eq!(v["plan"]["repository"], shown.as_str());
    assert_eq!(v["mirror"]["source"], shown.as_str());
}

/// Regression: the search for `tozai.toml` climbed past one that is not a readable file
/// (a dangling symlink here) and read a parent's config: with `mirror`, another standby.
#[test]
fn a_tozai_toml_that_is_not_a_file_stops_the_search() {
    let (s, head) = world();
    std::os::unix::fs::symlink("gone.toml", s.path().join("a/b/tozai.toml")).unwrap();
    for args in [&["mirror", "--cache", "../../cache"][..], &["check"][..]] {
        let run = s.tozai_in("a/b", args);
        run.expect_code(2).expect_no_panic();
        assert_eq!(
            run.stderr,
            "tozai: error: cannot read config tozai.toml: No such file or directory (os error 2)\n",
            "{args:?}"
        );
    }
    std::fs::create_dir(s.path().join("a/tozai.toml")).unwrap();
    let run = s.tozai_in("a", &["mirror", "--cache", "../cache"]);
    run.expect_code(2).expect_no_panic();
    assert_eq!(
        run.stderr,
        "tozai: error: cannot read config tozai.toml: Is a directory (os error 21)\n"
    );
    assert_eq!(
        tozai_tests::mirror::try_git(
            &s.path().join("osaka.git"),
            &["rev-parse", "--verify", "-q", "main"]
        ),
        None,
        "nothing mirrored (the parent's config would have mirrored {head})"
    );
}

/// Regression: `check --json` gave the config's path quoted for a terminal.
#[test]
fn check_json_gives_the_configs_exact_path() {
    let s = Scratch::new();
    let name = "my \"dr\"\tconfig.toml";
    s.write(
        name,
        &config("./tokyo.git", "ap-northeast-3", "./osaka.git"),
    );
    let run = s.tozai(&["check", "--json", "-c", name]);
    run.expect_code(0);
    assert_eq!(run.json()["config"], name);
    let run = s.tozai(&["check", "-c", name]);
    run.expect_code(0);
    assert!(
        run.stdout
            .starts_with("\"my \\\"dr\\\"\\tconfig.toml\": primary tokyo"),
        "{}",
        run.stdout
    );
}
