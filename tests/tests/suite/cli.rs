//! The `tozai` binary, run as a user runs it: `tozai check` on good and bad configs, and
//! `tozai plan` on real repositories laid out like the seed (common/, primary/, secondary/).
//!
//! Exit codes: 0 ok, 1 a failed check, 2 a usage, config or input error.

use std::path::{Path, PathBuf};

use serde_json::Value;
use tempfile::TempDir;
use tozai_tests::{GitRepo, Sandbox, fixture, git_name_status, tozai, workspace_root};

/// A temporary directory with a sandbox home, for runs that need no repository.
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

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn tozai(&self, args: &[&str]) -> tozai_tests::Run {
        tozai(self.path(), &self.sandbox, args)
    }
}

// ---- tozai check ----

#[test]
fn check_passes_the_example_config() {
    let example = workspace_root().join("examples/tozai.toml");
    let text = std::fs::read_to_string(&example).unwrap();
    // the names of its [[test]] cases
    let mut names = Vec::new();
    let mut in_test = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_test = line == "[[test]]";
        } else if let Some(name) = line.strip_prefix("name = ").filter(|_| in_test) {
            names.push(name.trim_matches('"').to_owned());
        }
    }
    assert!(names.len() >= 8, "the example has rule tests: {names:?}");

    let s = Scratch::new();
    let run = s.tozai(&["check", "-c", example.to_str().unwrap()]);
    run.expect_code(0).expect_no_panic();
    for name in &names {
        assert!(
            run.stdout.contains(&format!("PASS  {name}\n")),
            "no PASS for {name:?}:\n{}",
            run.stdout
        );
    }
    assert_eq!(run.stdout.matches("PASS").count(), names.len());
    assert!(!run.stdout.contains("FAIL"), "{}", run.stdout);
    assert!(
        run.stdout
            .contains(&format!("all {} rule tests pass", names.len())),
        "{}",
        run.stdout
    );
}

#[test]
fn check_reads_tozai_toml_by_default() {
    let s = Scratch::new();
    std::fs::copy(fixture("plan.toml"), s.path().join("tozai.toml")).unwrap();
    let run = s.tozai(&["check"]);
    run.expect_code(0).expect_no_panic();
    assert!(run.stdout.contains("primary tokyo"), "{}", run.stdout);
    assert!(run.stdout.contains("standby osaka"), "{}", run.stdout);
}

#[test]
fn check_fails_a_wrong_rule_test_and_explains_it() {
    let config = std::fs::read_to_string(fixture("plan.toml")).unwrap()
        + r#"
[[test]]
name = "a secondary change deploys Osaka"
changes = ["secondary/templates/root.yaml"]
expect = ["mirror", "osaka-core", "osaka-smoke"]

[[test]]
name = "docs are mirrored"
changes = ["common/README.md"]
expect = ["mirror"]

[[test]]
name = "a common change deploys Osaka only"
changes = ["common/templates/vpc.yaml"]
expect = ["mirror", "osaka-core"]

[[test]]
name = "a tools change deploys Tokyo"
changes = ["tools/deploy.sh"]
expect = ["tokyo-core"]

[[test]]
name = "a feature branch deploys Tokyo"
ref = "feature/x"
changes = ["common/templates/vpc.yaml"]
expect = ["tokyo-core"]
"#;
    let s = Scratch::new();
    s.write("tozai.toml", &config);
    let run = s.tozai(&["check", "-c", "tozai.toml"]);
    run.expect_code(1).expect_no_panic();
    let out = &run.stdout;
    assert!(
        out.contains("PASS  a secondary change deploys Osaka\n"),
        "{out}"
    );

    // an expected action not taken: the exclude that removed the path is named
    let docs = section(out, "FAIL  docs are mirrored");
    assert!(docs.contains("expected: mirror\n"), "{docs}");
    assert!(docs.contains("actual:   (nothing)\n"), "{docs}");
    let why = line_with(docs, "mirror not taken");
    assert!(why.contains("common/README.md"), "{why}");
    assert!(why.contains("\"**/*.md\""), "{why}");

    // an action taken that was not expected: the path and the pattern that started it
    let common = section(out, "FAIL  a common change deploys Osaka only");
    assert!(
        common.contains("expected: mirror, osaka-core\n"),
        "{common}"
    );
    assert!(
        common.contains("actual:   mirror, osaka-core, tokyo-core\n"),
        "{common}"
    );
    let why = line_with(common, "tokyo-core taken");
    assert!(why.contains("common/templates/vpc.yaml"), "{why}");
    assert!(why.contains("\"common/**\""), "{why}");

    // nothing matched: the rule's path patterns are named, so the fix is visible
    let tools = section(out, "FAIL  a tools change deploys Tokyo");
    let why = line_with(tools, "tokyo-core not taken");
    assert!(why.contains("no changed path matches"), "{why}");
    assert!(
        why.contains("common/**") && why.contains("primary/**"),
        "{why}"
    );

    // the branch filter said no: its branches are named
    let feature = section(out, "FAIL  a feature branch deploys Tokyo");
    let why = line_with(feature, "tokyo-core not taken");
    assert!(why.contains("its branches: main"), "{why}");

    assert!(out.contains("4 of 5 rule tests FAIL"), "{out}");
}

/// The lines of `out` from the one starting with `title` (after indentation) to the next
/// PASS or FAIL line.
fn section<'a>(out: &'a str, title: &str) -> &'a str {
    let start = out
        .find(title)
        .unwrap_or_else(|| panic!("no {title:?} in:\n{out}"));
    let rest = &out[start + title.len()..];
    let end = ["  PASS  ", "  FAIL  ", "\n\n"]
        .iter()
        .filter_map(|m| rest.find(m))
        .min()
        .unwrap_or(rest.len());
    &out[start..start + title.len() + end]
}

fn line_with<'a>(text: &'a str, needle: &str) -> &'a str {
    text.lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{text}"))
}

/// A valid config; each bad one below changes one thing. Line numbers matter: the rows
/// expect errors at them.
const BASE: &str = r#"primary = "tokyo"

[regions.tokyo]
aws_region = "ap-northeast-1"
repository = "core-infra"

[regions.osaka]
aws_region = "ap-northeast-3"
repository = "core-infra"

[sync]
branches = ["main"]

[sync.to.osaka]
paths = ["common/**", "secondary/**"]

[sync.to.tokyo]
paths = ["common/**", "primary/**"]
"#;

/// Starts at line 19 when appended to BASE: its `name` is line 20, its `region` line 21.
const PIPELINE: &str = r#"[[pipeline]]
name = "tokyo-core"
region = "tokyo"
codepipeline = "core-infra-deploy"
branches = ["main"]
paths = ["common/**", "primary/**"]
"#;

#[test]
fn the_base_config_of_the_bad_config_table_is_valid() {
    let s = Scratch::new();
    s.write("bad.toml", &format!("{BASE}{PIPELINE}"));
    s.tozai(&["check", "-c", "bad.toml"])
        .expect_code(0)
        .expect_no_panic();
}

#[test]
fn bad_configs_exit_2_naming_the_file_and_the_line_or_value() {
    // (what, the config (None: no file), what stderr must say)
    let rows: Vec<(&str, Option<String>, Vec<&str>)> = vec![
        (
            "malformed TOML",
            Some(format!("{BASE}[sync.to.osaka\n")),
            vec!["bad.toml:19:15: ", "19 | [sync.to.osaka"],
        ),
        (
            "unknown key",
            Some(BASE.replace(
                "primary = \"tokyo\"\n",
                "primary = \"tokyo\"\ncolour = \"red\"\n",
            )),
            vec!["bad.toml:2:", "colour"],
        ),
        (
            "wrong type",
            Some(BASE.replace("branches = [\"main\"]", "branches = \"main\"")),
            vec!["bad.toml:12:", "branches"],
        ),
        (
            "invalid glob",
            Some(BASE.replace("\"secondary/**\"", "\"common/[\"")),
            vec!["bad.toml:15:", "\"common/[\"", "\"sync.to.osaka\""],
        ),
        (
            "misplaced **",
            Some(BASE.replace("\"secondary/**\"", "\"**.js\"")),
            vec!["bad.toml:15:", "\"**.js\"", "\"sync.to.osaka\""],
        ),
        (
            "pipeline in an unknown region",
            Some(format!(
                "{BASE}{}",
                PIPELINE.replace("region = \"tokyo\"", "region = \"nagoya\"")
            )),
            vec!["bad.toml:21:", "unknown region \"nagoya\""],
        ),
        (
            "duplicate pipeline names",
            Some(format!("{BASE}{PIPELINE}{PIPELINE}")),
            vec!["bad.toml:26:", "duplicate", "\"tokyo-core\""],
        ),
        (
            "sync rule without paths",
            Some(BASE.replace("paths = [\"common/**\", \"secondary/**\"]", "paths = []")),
            vec!["bad.toml:14:", "sync.to.osaka has no paths"],
        ),
        (
            "primary names an unknown region",
            Some(BASE.replace("primary = \"tokyo\"", "primary = \"nagoya\"")),
            vec!["bad.toml:1:", "unknown region \"nagoya\""],
        ),
        ("missing file", None, vec!["cannot read config", "bad.toml"]),
    ];
    for (what, text, words) in rows {
        let s = Scratch::new();
        if let Some(text) = &text {
            s.write("bad.toml", text);
        }
        // `plan` reads the config before anything else, so it refuses it the same way
        for args in [
            &["check", "-c", "bad.toml"][..],
            &["plan", "-c", "bad.toml", "--repo", ".", "HEAD"][..],
        ] {
            let run = s.tozai(args);
            run.expect_code(2).expect_no_panic();
            assert!(
                run.stderr.starts_with("tozai: error: "),
                "{what}: {args:?}: {}",
                run.stderr
            );
            for w in &words {
                assert!(
                    run.stderr.contains(w),
                    "{what}: {args:?}: stderr lacks {w:?}:\n{}",
                    run.stderr
                );
            }
            assert_eq!(run.stdout, "", "{what}: {args:?}: errors go to stderr");
        }
    }
}

#[test]
fn check_without_a_config_file_names_the_default() {
    let s = Scratch::new();
    let run = s.tozai(&["check"]);
    run.expect_code(2).expect_no_panic();
    assert!(run.stderr.contains("tozai.toml"), "{}", run.stderr);
}

#[test]
fn usage_errors_exit_2() {
    let s = Scratch::new();
    for args in [
        &[][..],
        &["frobnicate"][..],
        &["check", "--no-such-flag"][..],
        &["plan"][..],
    ] {
        let run = s.tozai(args);
        run.expect_code(2).expect_no_panic();
        assert!(run.stderr.contains("Usage"), "{args:?}: {}", run.stderr);
    }
}

#[test]
fn help_exits_0() {
    let s = Scratch::new();
    let top = s.tozai(&["--help"]);
    top.expect_code(0);
    for word in ["check", "plan", "Exit codes"] {
        assert!(
            top.stdout.contains(word),
            "--help lacks {word:?}:\n{}",
            top.stdout
        );
    }
    let check = s.tozai(&["check", "--help"]);
    check.expect_code(0);
    assert!(check.stdout.contains("--config"), "{}", check.stdout);
    let plan = s.tozai(&["plan", "--help"]);
    plan.expect_code(0);
    for word in ["RANGE", "--repo", "--region", "--ref", "--json"] {
        assert!(
            plan.stdout.contains(word),
            "plan --help lacks {word:?}:\n{}",
            plan.stdout
        );
    }
}

/// `tozai ... | head -1`: the reader goes away before tozai writes. tozai must neither
/// panic nor change its exit code; the same output to a full disk is an operation failure.
#[test]
fn a_closed_pipe_or_a_full_disk_on_stdout_is_not_a_panic() {
    let s = Scratch::new();
    let example = workspace_root().join("examples/tozai.toml");
    let repo = seed();
    let plan_config = fixture("plan.toml");
    let runs: [(&Path, Vec<&str>); 3] = [
        (s.dir.path(), vec!["check", "-c", example.to_str().unwrap()]),
        (
            repo.path(),
            vec![
                "plan",
                "-c",
                plan_config.to_str().unwrap(),
                "--json",
                "HEAD",
            ],
        ),
        (
            repo.path(),
            vec!["plan", "-c", plan_config.to_str().unwrap(), "HEAD"],
        ),
    ];
    for (cwd, args) in &runs {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let mut cmd = tozai_tests::tozai_command(cwd, &s.sandbox, args);
        cmd.stdout(writer);
        let run = tozai_tests::Run::of(cmd, format!("tozai {args:?} | (closed)"));
        run.expect_code(0).expect_no_panic();
        assert!(run.stderr.is_empty(), "{args:?}: {}", run.stderr);

        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let mut cmd = tozai_tests::tozai_command(cwd, &s.sandbox, args);
        cmd.stdout(full);
        let run = tozai_tests::Run::of(cmd, format!("tozai {args:?} > /dev/full"));
        run.expect_code(3).expect_no_panic();
        assert!(
            run.stderr
                .contains("cannot write to standard output: No space left"),
            "{args:?}: {}",
            run.stderr
        );
    }
}

// ---- tozai plan ----

/// A repository laid out like the seed, with one commit on `main`.
fn seed() -> GitRepo {
    let repo = GitRepo::new();
    repo.write("common/templates/vpc.yaml", template("vpc"))
        .write("common/README.md", "# common\n")
        .write("primary/templates/root.yaml", template("tokyo-root"))
        .write("primary/templates/queue.yaml", template("queue"))
        .write("secondary/templates/root.yaml", template("osaka-root"));
    repo.commit("seed");
    repo
}

fn template(name: &str) -> String {
    let mut s =
        format!("AWSTemplateFormatVersion: '2010-09-09'\nDescription: {name}\nResources:\n");
    for i in 0..12 {
        s.push_str(&format!(
            "  Topic{i}:\n    Type: AWS::SNS::Topic\n    Properties:\n      TopicName: {name}-{i}\n"
        ));
    }
    s
}

/// `tozai plan -c tests/fixtures/plan.toml --repo REPO ARGS...`, run outside the repo.
fn plan(repo: &GitRepo, args: &[&str]) -> tozai_tests::Run {
    let config = fixture("plan.toml");
    let mut all = vec![
        "plan",
        "-c",
        config.to_str().unwrap(),
        "--repo",
        repo.path().to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    tozai(repo.scratch(), repo.sandbox(), all)
}

fn plan_json(repo: &GitRepo, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let run = plan(repo, &all);
    run.expect_code(0).expect_no_panic();
    run.json()
}

/// (target, start) of each entry of a target list.
fn starts(list: &Value) -> Vec<(String, bool)> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|t| {
            (
                t["target"].as_str().unwrap().to_owned(),
                t["start"].as_bool().unwrap(),
            )
        })
        .collect()
}

fn pair(target: &str, start: bool) -> (String, bool) {
    (target.to_owned(), start)
}

#[test]
fn plan_json_a_secondary_change_is_mirrored_and_deploys_only_the_standby() {
    let repo = seed();
    let before = repo.rev_parse("HEAD");
    repo.write(
        "secondary/templates/root.yaml",
        template("osaka-root") + "Outputs: {}\n",
    );
    let after = repo.commit("osaka output");

    let v = plan_json(&repo, &["HEAD"]);
    assert_eq!(v["repository"], "codecommit::ap-northeast-1://core-infra");
    assert_eq!(v["region"], "tokyo");
    assert_eq!(v["ref"], "refs/heads/main");
    assert_eq!(v["before"], before.as_str());
    assert_eq!(v["after"], after.as_str());
    assert_eq!(
        v["changed"],
        serde_json::json!([
            {"path": "secondary/templates/root.yaml", "old_path": null, "change": "modified"}
        ])
    );

    assert_eq!(v["sync"]["mirror"], true);
    assert_eq!(v["sync"]["to"], "osaka");
    assert_eq!(v["sync"]["reason"], "paths_matched");
    assert_eq!(
        v["sync"]["matches"],
        serde_json::json!([
            {"rule": "sync.to.osaka", "pattern": "secondary/**", "path": "secondary/templates/root.yaml"}
        ])
    );

    assert_eq!(starts(&v["pipelines"]), [pair("tokyo-core", false)]);
    let tokyo = &v["pipelines"][0];
    assert_eq!(tokyo["region"], "tokyo");
    assert_eq!(tokyo["kind"], "codepipeline");
    assert_eq!(tokyo["name"], "core-infra-deploy");
    assert_eq!(tokyo["reason"], "no_path_matched");

    assert_eq!(
        starts(&v["after_mirror"]),
        [pair("osaka-core", true), pair("osaka-smoke", true)]
    );
    let smoke = &v["after_mirror"][1];
    assert_eq!(smoke["region"], "osaka");
    assert_eq!(smoke["kind"], "codebuild");
    assert_eq!(smoke["name"], "core-infra-smoke");
    assert_eq!(smoke["matches"][0]["rule"], "osaka-smoke");
    assert_eq!(smoke["matches"][0]["pattern"], "secondary/**");
    assert_eq!(smoke["matches"][0]["path"], "secondary/templates/root.yaml");
}

#[test]
fn plan_json_a_move_from_primary_to_common_is_a_rename_that_concerns_both_regions() {
    let repo = seed();
    repo.mv(
        "primary/templates/queue.yaml",
        "common/templates/queue.yaml",
    );
    repo.commit("share the queue");

    let v = plan_json(&repo, &["HEAD"]);
    assert_eq!(
        v["changed"],
        serde_json::json!([{
            "path": "common/templates/queue.yaml",
            "old_path": "primary/templates/queue.yaml",
            "change": "renamed"
        }])
    );
    assert_eq!(v["sync"]["mirror"], true);
    assert_eq!(v["sync"]["matches"][0]["pattern"], "common/**");
    assert_eq!(
        v["sync"]["matches"][0]["path"],
        "common/templates/queue.yaml"
    );
    assert_eq!(starts(&v["pipelines"]), [pair("tokyo-core", true)]);
    // osaka-smoke watches only secondary/
    assert_eq!(
        starts(&v["after_mirror"]),
        [pair("osaka-core", true), pair("osaka-smoke", false)]
    );
}

#[test]
fn plan_json_a_move_out_of_primary_is_judged_by_its_old_path_too() {
    let repo = seed();
    repo.mv("primary/templates/queue.yaml", "attic/queue.yaml");
    repo.commit("retire the queue");

    let v = plan_json(&repo, &["HEAD"]);
    assert_eq!(v["changed"][0]["change"], "renamed");
    assert_eq!(v["changed"][0]["path"], "attic/queue.yaml");
    assert_eq!(v["changed"][0]["old_path"], "primary/templates/queue.yaml");
    assert_eq!(v["sync"]["mirror"], false, "Osaka has no primary/");
    assert_eq!(v["sync"]["reason"], "no_path_matched");
    let tokyo = &v["pipelines"][0];
    assert_eq!(tokyo["start"], true, "Tokyo lost a template");
    assert_eq!(tokyo["matches"][0]["path"], "primary/templates/queue.yaml");
    assert_eq!(v["after_mirror"], serde_json::json!([]));
}

#[test]
fn plan_json_docs_only_are_excluded_and_say_by_which_pattern() {
    let repo = seed();
    repo.write("common/README.md", "# common\nmore\n");
    repo.commit("docs");

    let v = plan_json(&repo, &["HEAD"]);
    assert_eq!(v["sync"]["mirror"], false);
    assert_eq!(v["sync"]["reason"], "all_excluded");
    assert_eq!(v["sync"]["matches"], serde_json::json!([]));
    assert_eq!(v["sync"]["excluded"][0]["pattern"], "**/*.md");
    assert_eq!(v["sync"]["excluded"][0]["path"], "common/README.md");
    assert_eq!(starts(&v["pipelines"]), [pair("tokyo-core", false)]);
    assert_eq!(v["pipelines"][0]["reason"], "all_excluded");
}

#[test]
fn plan_region_osaka_is_a_push_to_the_standby_and_is_not_mirrored_back() {
    let repo = seed();
    repo.write("secondary/templates/root.yaml", template("osaka-2"));
    repo.commit("osaka hotfix");

    let v = plan_json(&repo, &["--region", "osaka", "HEAD"]);
    assert_eq!(v["region"], "osaka");
    assert_eq!(
        v["repository"],
        "codecommit::ap-northeast-3://core-infra-dr"
    );
    assert_eq!(v["sync"]["mirror"], false);
    assert_eq!(v["sync"]["reason"], "push_to_standby");
    assert_eq!(v["sync"]["to"], Value::Null);
    assert_eq!(
        starts(&v["pipelines"]),
        [pair("osaka-core", true), pair("osaka-smoke", true)]
    );
    assert_eq!(v["after_mirror"], serde_json::json!([]));
}

#[test]
fn plan_an_a_to_b_range_covers_every_commit_between() {
    let repo = seed();
    let a = repo.rev_parse("HEAD");
    repo.write("primary/templates/root.yaml", template("tokyo-2"));
    repo.commit("tokyo");
    repo.write("secondary/templates/dns.yaml", template("dns"));
    repo.rm("common/README.md");
    let b = repo.commit("osaka");

    let v = plan_json(&repo, &[&format!("{a}..{b}")]);
    assert_eq!(v["before"], a.as_str());
    assert_eq!(v["after"], b.as_str());
    let mut changed: Vec<(String, String)> = v["changed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["change"].as_str().unwrap().to_owned(),
                c["path"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    changed.sort();
    let mut git: Vec<(String, String)> = git_name_status(&repo, &a, &b)
        .into_iter()
        .map(|(k, path, _)| {
            let kind = match k {
                'A' => "added",
                'M' => "modified",
                'D' => "deleted",
                other => panic!("unexpected {other}"),
            };
            (kind.to_owned(), String::from_utf8(path).unwrap())
        })
        .collect();
    git.sort();
    assert_eq!(changed, git);
    assert_eq!(changed.len(), 3);
    assert_eq!(v["sync"]["mirror"], true);
    assert_eq!(starts(&v["pipelines"]), [pair("tokyo-core", true)]);
    assert_eq!(
        starts(&v["after_mirror"]),
        [pair("osaka-core", true), pair("osaka-smoke", true)]
    );
}

#[test]
fn plan_a_root_commit_has_no_base_and_adds_everything() {
    let repo = seed();
    let root = repo.rev_parse("HEAD");
    let v = plan_json(&repo, &[&root]);
    assert_eq!(v["before"], Value::Null);
    assert_eq!(v["after"], root.as_str());
    let changed = v["changed"].as_array().unwrap();
    assert_eq!(changed.len(), 5);
    assert!(
        changed.iter().all(|c| c["change"] == "added"),
        "{changed:?}"
    );
}

#[test]
fn plan_ref_names_the_pushed_branch_or_tag() {
    let repo = seed();
    repo.write("common/templates/vpc.yaml", template("vpc-2"));
    repo.commit("vpc");

    let feature = plan_json(&repo, &["--ref", "feature/new-queue", "HEAD"]);
    assert_eq!(feature["ref"], "refs/heads/feature/new-queue");
    assert_eq!(feature["sync"]["mirror"], false);
    assert_eq!(feature["sync"]["reason"], "branch_not_selected");
    assert_eq!(starts(&feature["pipelines"]), [pair("tokyo-core", false)]);

    let tag = plan_json(&repo, &["--ref", "refs/tags/v1.4.0", "HEAD"]);
    assert_eq!(tag["ref"], "refs/tags/v1.4.0");
    assert_eq!(tag["sync"]["mirror"], true);
    assert_eq!(tag["sync"]["reason"], "tag_policy");
    // no target opted in to tags
    assert_eq!(tag["pipelines"][0]["reason"], "tag_not_selected");
    assert!(
        starts(&tag["after_mirror"]).iter().all(|(_, start)| !start),
        "{}",
        tag["after_mirror"]
    );
}

#[test]
fn plan_uses_the_checked_out_branch_and_needs_ref_when_detached() {
    let repo = seed();
    repo.branch("release/2024-04");
    repo.write("common/templates/vpc.yaml", template("vpc-2"));
    let head = repo.commit("release fix");

    let v = plan_json(&repo, &["HEAD"]);
    assert_eq!(v["ref"], "refs/heads/release/2024-04");
    assert_eq!(v["sync"]["mirror"], true, "release/* is mirrored");
    assert_eq!(v["pipelines"][0]["reason"], "branch_not_selected");

    repo.git(&["switch", "-q", "--detach", &head]);
    let run = plan(&repo, &["HEAD"]);
    run.expect_code(2).expect_no_panic();
    assert!(run.stderr.contains("--ref"), "{}", run.stderr);
    plan(&repo, &["--ref", "main", "HEAD"]).expect_code(0);
}

#[test]
fn plan_keeps_names_that_are_not_utf8_and_matches_their_bytes() {
    let repo = seed();
    repo.write(b"secondary/templates/caf\xe9.yaml", "x: 1\n");
    repo.commit("latin-1 name");

    let v = plan_json(&repo, &["HEAD"]);
    assert_eq!(
        v["changed"][0]["path"],
        "secondary/templates/caf\u{fffd}.yaml"
    );
    assert_eq!(v["changed"][0]["change"], "added");
    assert_eq!(v["sync"]["mirror"], true);
    assert_eq!(v["sync"]["matches"][0]["pattern"], "secondary/**");
}

#[test]
fn plan_text_report_says_what_happens_and_why() {
    let repo = seed();
    repo.write("secondary/templates/root.yaml", template("osaka-2"));
    repo.commit("osaka");

    let run = plan(&repo, &["HEAD"]);
    run.expect_code(0).expect_no_panic();
    let out = &run.stdout;
    for line in [
        "push to tokyo refs/heads/main ",
        "1 changed path\n",
        "  M secondary/templates/root.yaml\n",
        "MIRROR to osaka",
        "secondary/templates/root.yaml  matched \"secondary/**\" (sync.to.osaka)",
        "pipelines in tokyo:",
        "skip  tokyo-core (codepipeline core-infra-deploy)",
        "after the mirror, pipelines in osaka:",
        "START osaka-core (codepipeline core-infra-deploy-dr)",
        "START osaka-smoke (codebuild core-infra-smoke)",
    ] {
        assert!(out.contains(line), "report lacks {line:?}:\n{out}");
    }
    assert!(!out.trim_start().starts_with('{'), "not JSON:\n{out}");
}

#[test]
fn plan_an_unknown_commit_exits_2_naming_it() {
    let repo = seed();
    let head = repo.rev_parse("HEAD");
    for (range, named) in [
        ("no-such-commit", "no-such-commit"),
        (&format!("{head}..no-such-branch") as &str, "no-such-branch"),
    ] {
        let run = plan(&repo, &[range]);
        run.expect_code(2).expect_no_panic();
        assert!(run.stderr.contains(named), "{range}: {}", run.stderr);
        assert_eq!(run.stdout, "", "{range}");
    }
}

#[test]
fn plan_in_a_directory_that_is_not_a_repository_exits_2() {
    let s = Scratch::new();
    let not_a_repo = s.path().join("plain");
    std::fs::create_dir(&not_a_repo).unwrap();
    let config = fixture("plan.toml");
    let run = s.tozai(&[
        "plan",
        "-c",
        config.to_str().unwrap(),
        "--repo",
        not_a_repo.to_str().unwrap(),
        "HEAD",
    ]);
    run.expect_code(2).expect_no_panic();
    assert!(run.stderr.contains("plain"), "{}", run.stderr);
    assert!(
        run.stderr.contains("not a git repository"),
        "{}",
        run.stderr
    );
}

#[test]
fn plan_an_unknown_region_exits_2_naming_it() {
    let repo = seed();
    let run = plan(&repo, &["--region", "nagoya", "HEAD"]);
    run.expect_code(2).expect_no_panic();
    assert!(run.stderr.contains("\"nagoya\""), "{}", run.stderr);
    assert!(
        run.stderr.contains("osaka"),
        "lists the regions: {}",
        run.stderr
    );
}

#[test]
fn plan_an_invalid_ref_exits_2_naming_it() {
    let repo = seed();
    for bad in ["refs/pull/1/head", "feature/../evil"] {
        let run = plan(&repo, &["--ref", bad, "HEAD"]);
        run.expect_code(2).expect_no_panic();
        assert!(run.stderr.contains(bad), "{bad}: {}", run.stderr);
    }
}
