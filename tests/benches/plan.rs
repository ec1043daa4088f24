//! Benchmark: the release `tozai plan --json` on one commit that modifies 100,000 files,
//! against git computing the same answers with `git diff --name-only A B -- PATHSPECS`,
//! once per rule the plan judges, run one after another and summed.
//!
//! The repository is generated (deterministically, with `git fast-import`) in a temporary
//! directory: commit A adds 100,000 files under common/, primary/, secondary/ and docs/
//! (depths 2 to 6, some names with spaces or in Japanese), commit B modifies every one, and
//! the objects are repacked as `git gc` would pack them. The config is the one of
//! examples/tozai.toml (Tokyo primary, Osaka standby); the push is `main` to Tokyo, so the
//! plan judges `sync.to.osaka`, `tokyo-core` and, after the mirror, `osaka-core`. Each
//! rule's git pathspecs are its globs with git's glob magic (`:(glob)common/**`,
//! `:(glob,exclude)**/*.md`), and the bench panics unless the paths tozai's JSON says each
//! rule matched are exactly the paths the corresponding git diff lists.
//!
//! Needs the release binary: `cargo build --release -p tozai-cli` (scripts/bench.sh does it
//! first), or `TOZAI_BIN=/path/to/tozai`. Runs of tozai and of git alternate, so noise from
//! other work on the machine falls on both.
//!
//! `cargo bench -p tozai-tests --bench plan` (or `bash scripts/bench.sh`).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tozai_tests::generate::FastImport;
use tozai_tests::timing::Stats;

const FILES: usize = 100_000;
const WARMUP: usize = 2;
const RUNS: usize = 15;

/// A path rule of the config, written to tozai.toml and turned into git pathspecs.
struct Rule {
    /// The rule's name in tozai's JSON (`sync.to.osaka` or the target's name).
    name: &'static str,
    /// Where the plan reports it: `sync`, `pipelines` or `after_mirror`.
    section: &'static str,
    region: &'static str,
    paths: &'static [&'static str],
    exclude: &'static [&'static str],
}

const NO_DOCS: &[&str] = &["**/*.md", "docs/**"];

/// The rules a push of `main` to Tokyo is judged by, as in examples/tozai.toml.
const JUDGED: &[Rule] = &[
    Rule {
        name: "sync.to.osaka",
        section: "sync",
        region: "osaka",
        paths: &["common/**", "secondary/**"],
        exclude: NO_DOCS,
    },
    Rule {
        name: "tokyo-core",
        section: "pipelines",
        region: "tokyo",
        paths: &["common/**", "primary/**"],
        exclude: NO_DOCS,
    },
    Rule {
        name: "osaka-core",
        section: "after_mirror",
        region: "osaka",
        paths: &["common/**", "secondary/**"],
        exclude: NO_DOCS,
    },
];

fn toml_list(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", quoted.join(", "))
}

/// tozai.toml, shaped like examples/tozai.toml.
fn config() -> String {
    let mut c = String::from(
        r#"primary = "tokyo"
base_branch = "main"

[regions.tokyo]
aws_region = "ap-northeast-1"
repository = "core-infra"

[regions.osaka]
aws_region = "ap-northeast-3"
repository = "core-infra"

[sync]
branches = ["main", "release/*"]
tags = ["v*"]

[sync.to.tokyo]
paths = ["common/**", "primary/**"]
exclude = ["**/*.md", "docs/**"]
"#,
    );
    for rule in JUDGED {
        if rule.section == "sync" {
            writeln!(c, "\n[sync.to.{}]", rule.region).unwrap();
        } else {
            writeln!(c, "\n[[pipeline]]\nname = {:?}", rule.name).unwrap();
            writeln!(c, "region = {:?}", rule.region).unwrap();
            writeln!(c, "codepipeline = \"core-infra-deploy\"").unwrap();
            writeln!(c, "branches = [\"main\"]").unwrap();
        }
        writeln!(c, "paths = {}", toml_list(rule.paths)).unwrap();
        writeln!(c, "exclude = {}", toml_list(rule.exclude)).unwrap();
    }
    c
}

/// The rule's globs as git pathspecs with glob magic.
fn pathspecs(rule: &Rule) -> Vec<String> {
    let include = rule.paths.iter().map(|p| format!(":(glob){p}"));
    let exclude = rule.exclude.iter().map(|p| format!(":(glob,exclude){p}"));
    include.chain(exclude).collect()
}

const FIRST_DIRS: &[&str] = &[
    "templates",
    "stacks",
    "params",
    "my templates",
    "テンプレート",
];
const DEEP_DIRS: &[&str] = &["prod", "stg", "dev", "東京", "大阪", "shared libs"];

/// File `i` of the 100,000, distinct by construction, depth 2 to 6.
fn path(i: usize) -> String {
    let root = match i % 10 {
        0..=3 => "common",
        4 | 5 => "primary",
        6 | 7 => "secondary",
        _ => "docs",
    };
    let depth = 2 + (i / 10 * 7 + i / 3) % 5;
    let mut p = String::from(root);
    for level in 1..depth - 1 {
        p.push('/');
        match level {
            1 => p.push_str(FIRST_DIRS[(i / 10) % FIRST_DIRS.len()]),
            2 => write!(p, "svc{}", (i / 13) % 150).unwrap(),
            _ => p.push_str(DEEP_DIRS[(i / 7 + level) % DEEP_DIRS.len()]),
        }
    }
    p.push('/');
    match (root, i % 11) {
        ("docs", _) | (_, 0) => write!(p, "README {i}.md"),
        (_, 1) => write!(p, "東京スタック{i}.yaml"),
        (_, 2) => write!(p, "params-{i}.json"),
        _ => write!(p, "stack{i}.yaml"),
    }
    .unwrap();
    p
}

/// git with no user or system config.
fn git(repo: &Path) -> Command {
    let mut c = Command::new("git");
    c.arg("-C").arg(repo);
    c.env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null");
    c
}

fn git_out(repo: &Path, args: &[&str]) -> Vec<u8> {
    let out = git(repo).args(args).output().expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Commit A adds every file, commit B modifies every one; returns (A, B).
fn generate(repo: &Path) -> (String, String) {
    let mut import = FastImport::bare(repo);
    for (message, content) in [("A: add", "v1"), ("B: modify", "v2")] {
        import.commit(
            &format!("{message} {FILES} files"),
            (0..FILES).map(|i| (path(i), format!("{content} of file {i}\n"))),
        );
    }
    import.finish();
    // Pack as `git gc` would: fast-import's pack is a quick one.
    git_out(repo, &["repack", "-a", "-d", "-f", "-q"]);
    let ids = String::from_utf8(git_out(repo, &["rev-parse", "main~1", "main"])).unwrap();
    let mut ids = ids.split_whitespace().map(str::to_owned);
    (ids.next().unwrap(), ids.next().unwrap())
}

fn tozai_binary() -> PathBuf {
    let bin = std::env::var_os("TOZAI_BIN").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/tozai"),
        PathBuf::from,
    );
    assert!(
        bin.is_file(),
        "the release tozai binary is missing at {}: build it first with \
         `cargo build --release -p tozai-cli` (scripts/bench.sh does), or set TOZAI_BIN",
        bin.display()
    );
    bin
}

/// Runs `cmd` with its output thrown away and returns its wall time.
fn timed(cmd: &mut Command) -> Duration {
    let t = Instant::now();
    let status = cmd
        .stdout(Stdio::null())
        .status()
        .expect("the command runs");
    let elapsed = t.elapsed();
    assert!(status.success(), "{cmd:?} failed");
    elapsed
}

/// Median and minimum of the timed runs.
fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    let bin = tozai_binary();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let repo = dir.path().join("core-infra.git");
    let started = Instant::now();
    let (a, b) = generate(&repo);
    let setup = started.elapsed();
    let cfg = dir.path().join("tozai.toml");
    std::fs::write(&cfg, config()).unwrap();
    let range = format!("{a}..{b}");

    let mut tozai = Command::new(&bin);
    tozai
        .args(["plan", "-c"])
        .arg(&cfg)
        .arg("--repo")
        .arg(&repo)
        .args(["--ref", "main", "--json", &range])
        .env("HOME", dir.path())
        .env("GIT_CONFIG_NOSYSTEM", "1");
    let mut diffs: Vec<Command> = JUDGED
        .iter()
        .map(|rule| {
            let mut c = git(&repo);
            c.args(["diff", "--name-only", &a, &b, "--"])
                .args(pathspecs(rule));
            c
        })
        .collect();

    // Check the answers before timing anything.
    let out = tozai.stdout(Stdio::piped()).output().expect("tozai runs");
    assert!(
        out.status.success(),
        "tozai plan failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json_bytes = out.stdout.len();
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).expect("tozai prints JSON");
    let changed = plan["changed"].as_array().map_or(0, Vec::len);
    assert_eq!(changed, FILES, "tozai saw {changed} changed files");
    let mut counts = Vec::new();
    for rule in JUDGED {
        let section = &plan[rule.section];
        let decision = if rule.section == "sync" {
            section
        } else {
            section
                .as_array()
                .and_then(|ds| ds.iter().find(|d| d["target"] == rule.name))
                .unwrap_or_else(|| panic!("no {:?} in the plan's {}", rule.name, rule.section))
        };
        let tozai_paths: BTreeSet<&str> = decision["matches"]
            .as_array()
            .expect("matches")
            .iter()
            .map(|m| {
                assert_eq!(m["rule"], rule.name);
                m["path"].as_str().unwrap()
            })
            .collect();
        let mut args = vec!["diff", "--name-only", "-z", &a, &b, "--"];
        let specs = pathspecs(rule);
        args.extend(specs.iter().map(String::as_str));
        let listed = git_out(&repo, &args);
        let git_paths: BTreeSet<&str> = listed
            .split(|&c| c == 0)
            .filter(|p| !p.is_empty())
            .map(|p| std::str::from_utf8(p).unwrap())
            .collect();
        assert!(
            tozai_paths == git_paths,
            "rule {:?}: tozai matched {} paths, `git diff --name-only A B -- {}` lists {} \
             (first difference: {:?})",
            rule.name,
            tozai_paths.len(),
            specs.join(" "),
            git_paths.len(),
            tozai_paths.symmetric_difference(&git_paths).next(),
        );
        assert!(
            !git_paths.is_empty(),
            "rule {:?} matches nothing",
            rule.name
        );
        counts.push(git_paths.len());
    }

    // Alternate tozai and git so that noise falls on both.
    let mut tozai_times = Vec::new();
    let mut git_times: Vec<Vec<Duration>> = vec![Vec::new(); JUDGED.len() + 1];
    for run in 0..WARMUP + RUNS {
        let t = timed(&mut tozai);
        let each: Vec<Duration> = diffs.iter_mut().map(timed).collect();
        if run >= WARMUP {
            tozai_times.push(t);
            git_times[JUDGED.len()].push(each.iter().sum());
            for (times, d) in git_times.iter_mut().zip(each) {
                times.push(d);
            }
        }
    }
    let tozai = Stats::of(tozai_times);
    let git: Vec<Stats> = git_times.into_iter().map(Stats::of).collect();
    let total = &git[JUDGED.len()];
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();

    let version = String::from_utf8(git_out(&repo, &["--version"])).unwrap();
    println!(
        "plan: one commit modifying {FILES} files (repository generated in {:.1} s, {}), \
         median and min of {RUNS} runs after {WARMUP} warm-up runs",
        setup.as_secs_f64(),
        version.trim(),
    );
    println!("  {:<52} {:>8} {:>8} {:>7}", "", "median", "min", "paths");
    println!(
        "  {:<52} {:>8} {:>8} {:>7}",
        "tozai plan --json (release binary, whole process)",
        ms(tozai.median),
        ms(tozai.min),
        changed
    );
    for ((rule, stats), count) in JUDGED.iter().zip(&git).zip(&counts) {
        println!(
            "  {:<52} {:>8} {:>8} {:>7}",
            format!("git diff --name-only A B -- <{}>", rule.name),
            ms(stats.median),
            ms(stats.min),
            count
        );
    }
    println!(
        "  {:<52} {:>8} {:>8}",
        format!("git, the {} diffs summed", JUDGED.len()),
        ms(total.median),
        ms(total.min)
    );
    println!(
        "  {:<52} {:>7.2}x {:>7.2}x",
        "ratio tozai / git",
        ratio(tozai.median, total.median),
        ratio(tozai.min, total.min)
    );
    println!(
        "  work: tozai printed {:.1} MB of JSON; its matches per rule equal git's lists ({})",
        json_bytes as f64 / 1e6,
        JUDGED
            .iter()
            .zip(&counts)
            .map(|(r, n)| format!("{} {n}", r.name))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "  target: tozai no slower than git -> {}",
        if tozai.median <= total.median {
            "met"
        } else {
            "NOT MET"
        }
    );
}
