//! Benchmark: `RuleSet::judge` on 100,000 changed paths against 50 rules, with
//! explanations, next to its floor: a bare `globset::GlobSet` of the same 50 include
//! globs calling `matches_into` over the same paths, in the same run.
//!
//! The paths and rules are deterministic. Runs of tozai and of the floor alternate, so
//! noise from other work on the machine falls on both. The bench also checks its answer:
//! for every rule, the paths tozai selects (and the paths it says an exclude removed) must
//! be exactly what the bare globset computes, include minus exclude; it panics otherwise.
//!
//! `cargo bench -p tozai-tests --bench judge` (or `bash scripts/bench.sh`).

use std::collections::HashSet;
use std::hint::black_box;
use std::time::{Duration, Instant};
use tozai_tests::timing::Stats;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use tozai::change::Change;
use tozai::rules::{PathRule, RuleSet};

const PATHS: usize = 100_000;
const WARMUP: usize = 3;
const RUNS: usize = 15;
const TARGET: Duration = Duration::from_millis(100);

/// Depths 2 to 6 (components, the file included), with spaces and Japanese names.
const ROOTS: &[(&str, u32)] = &[
    ("common", 34),
    ("primary", 24),
    ("secondary", 24),
    ("docs", 10),
    ("共通", 4),
    ("tools", 4),
];
const FIRST_DIRS: &[&str] = &[
    "templates",
    "templates",
    "stacks",
    "params",
    "my templates",
    "テンプレート",
];
const DEEP_DIRS: &[&str] = &[
    "prod",
    "stg",
    "dev",
    "nested",
    "東京",
    "大阪",
    "shared libs",
];

/// The 50 rules: one include each (so the floor holds the same 50 include globs), some
/// with excludes.
fn rules() -> Vec<PathRule> {
    let no_docs = ["**/*.md", "docs/**"];
    let mut rules = vec![
        PathRule::new("sync.to.osaka", ["{common,secondary}/**"]).excluding(no_docs),
        PathRule::new("sync.to.tokyo", ["{common,primary}/**"]).excluding(no_docs),
        PathRule::new("tokyo-core", ["{common,primary}/**"]).excluding(["**/*.md"]),
        PathRule::new("osaka-core", ["{common,secondary}/**"]).excluding(["**/*.md"]),
        PathRule::new("docs-site", ["docs/**"]),
        PathRule::new("markdown-lint", ["**/*.md"]).excluding(["docs/**"]),
        PathRule::new("json-schema", ["**/*.json"]),
        PathRule::new("shellcheck", ["**/*.sh"]),
        PathRule::new("python", ["**/*.py"]).excluding(["**/test_*.py"]),
        PathRule::new("python-tests", ["**/test_*.py"]),
        PathRule::new("tokyo-root", ["primary/*/root.yaml"]),
        PathRule::new("osaka-root", ["secondary/*/root.yaml"]),
        PathRule::new("common-roots", ["common/**/root.yaml"]),
        PathRule::new("kyotsu", ["共通/**"]).excluding(["**/*.md"]),
        PathRule::new("my-templates", ["common/my templates/*"]),
        PathRule::new("dotenv", ["**/.env"]),
        PathRule::new("tools", ["tools/**"]).excluding(["**/*.md", "**/test_*.py"]),
        PathRule::new("params", ["{primary,secondary}/params/**"]),
        PathRule::new("japanese-templates", ["*/テンプレート/**"]),
        PathRule::new("tokyo-prod", ["**/東京/**/*.yaml"]),
    ];
    // One pipeline per service, as teams tend to grow them.
    for k in 0..10 {
        let rule = PathRule::new(&format!("svc{k}"), [format!("common/templates/svc{k}/**")]);
        rules.push(if k % 2 == 0 {
            rule.excluding(["**/*.md"])
        } else {
            rule
        });
    }
    for k in 10..20 {
        rules.push(PathRule::new(
            &format!("svc{k}-tokyo"),
            [format!("primary/stacks/svc{k}/*.yaml")],
        ));
    }
    for k in 20..30 {
        rules.push(
            PathRule::new(
                &format!("svc{k}-osaka"),
                [format!("secondary/{{stacks,templates}}/svc{k}/**")],
            )
            .excluding(["**/*.md", "**/prod/**"]),
        );
    }
    assert_eq!(rules.len(), 50);
    assert!(rules.iter().all(|r| r.include.len() == 1));
    rules
}

/// A small deterministic generator (splitmix64), so every run judges the same paths.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

/// 100,000 distinct repository paths, depth 2 to 6.
fn paths() -> Vec<String> {
    let total: u32 = ROOTS.iter().map(|(_, w)| w).sum();
    let mut rng = Rng(0x0070_52a1);
    let mut seen = HashSet::with_capacity(PATHS);
    let mut out = Vec::with_capacity(PATHS);
    while out.len() < PATHS {
        let mut roll = (rng.next() % u64::from(total)) as u32;
        let root = ROOTS
            .iter()
            .find(|(_, w)| {
                let hit = roll < *w;
                roll = roll.saturating_sub(*w);
                hit
            })
            .map_or("common", |(r, _)| r);
        let depth = 2 + rng.below(5);
        let mut p = String::from(root);
        for level in 1..depth - 1 {
            p.push('/');
            match level {
                1 => p.push_str(rng.pick(FIRST_DIRS)),
                2 => p.push_str(&format!("svc{}", rng.below(40))),
                _ => p.push_str(rng.pick(DEEP_DIRS)),
            }
        }
        p.push('/');
        let n = rng.below(2000);
        match rng.below(20) {
            0 => p.push_str("root.yaml"),
            1 | 2 => p.push_str(&format!("README-{n}.md")),
            3 => p.push_str(&format!("params-{n}.json")),
            4 => p.push_str(&format!("deploy-{n}.sh")),
            5 => p.push_str(&format!("handler_{n}.py")),
            6 => p.push_str(&format!("test_{n}.py")),
            7 => p.push_str(".env"),
            8 => p.push_str(&format!("東京 スタック{n}.yaml")),
            9 => p.push_str(&format!("notes {n}.md")),
            _ => p.push_str(&format!("stack{n}.yaml")),
        }
        if seen.insert(p.clone()) {
            out.push(p);
        }
    }
    out
}

fn glob_set<'a>(patterns: impl IntoIterator<Item = &'a str>) -> GlobSet {
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        b.add(
            GlobBuilder::new(p)
                .literal_separator(true)
                .build()
                .expect("the bench's globs are valid"),
        );
    }
    b.build().expect("the bench's glob set builds")
}

/// What one rule selects and what its excludes remove, computed with globset alone.
#[derive(Default)]
struct Expected {
    selected: Vec<usize>,
    excluded: Vec<usize>,
}

fn expected(rules: &[PathRule], paths: &[String], includes: &GlobSet) -> Vec<Expected> {
    let mut owner = Vec::new();
    let excludes = glob_set(rules.iter().enumerate().flat_map(|(i, r)| {
        owner.extend(std::iter::repeat_n(i, r.exclude.len()));
        r.exclude.iter().map(String::as_str)
    }));
    let mut out: Vec<Expected> = rules.iter().map(|_| Expected::default()).collect();
    let (mut inc, mut exc) = (Vec::new(), Vec::new());
    for (p, path) in paths.iter().enumerate() {
        includes.matches_into(path.as_str(), &mut inc);
        excludes.matches_into(path.as_str(), &mut exc);
        for &rule in &inc {
            if exc.iter().any(|&e| owner[e] == rule) {
                out[rule].excluded.push(p);
            } else {
                out[rule].selected.push(p);
            }
        }
    }
    out
}

/// Median and minimum of the timed runs.
fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    let rules = rules();
    let paths = paths();
    let changes: Vec<Change> = paths.iter().map(|p| Change::modified(p)).collect();
    let set = RuleSet::new(rules.clone()).expect("the bench's rules compile");
    let floor = glob_set(rules.iter().map(|r| r.include[0].as_str()));
    // The globs tozai's own set holds: every include, then every exclude.
    let all = glob_set(
        rules
            .iter()
            .flat_map(|r| r.include.iter().chain(&r.exclude).map(String::as_str)),
    );
    let excludes: usize = rules.iter().map(|r| r.exclude.len()).sum();

    // Check the answer before timing anything.
    let want = expected(&rules, &paths, &floor);
    let judged = set.judge(&changes);
    let (mut matches, mut removed) = (0, 0);
    for (rule, want) in rules.iter().zip(&want) {
        let got = judged
            .outcome(&rule.name)
            .expect("every rule has an outcome");
        let selected: Vec<&str> = got
            .matches
            .iter()
            .map(|m| m.path.to_str().unwrap())
            .collect();
        let expected: Vec<&str> = want.selected.iter().map(|&i| paths[i].as_str()).collect();
        assert!(
            selected == expected,
            "rule {:?}: tozai selected {} paths, globset {} (first difference: {:?})",
            rule.name,
            selected.len(),
            expected.len(),
            selected.iter().zip(&expected).find(|(a, b)| a != b),
        );
        let excluded: Vec<&str> = got
            .excluded
            .iter()
            .map(|m| m.path.to_str().unwrap())
            .collect();
        let expected: Vec<&str> = want.excluded.iter().map(|&i| paths[i].as_str()).collect();
        assert!(
            excluded == expected,
            "rule {:?}: tozai excluded {} paths, globset {}",
            rule.name,
            excluded.len(),
            expected.len(),
        );
        assert!(got.matches.iter().all(|m| *m.pattern == *rule.include[0]));
        matches += got.matches.len();
        removed += got.excluded.len();
    }
    drop(judged);
    let selecting = want.iter().filter(|w| !w.selected.is_empty()).count();
    assert_eq!(selecting, rules.len(), "every rule selects something");

    // Alternate the two so that noise falls on both; dropping a judgement is not timed.
    let mut hits = Vec::new();
    let mut floor_run = || {
        let mut n = 0usize;
        for p in &paths {
            floor.matches_into(black_box(p.as_str()), &mut hits);
            n += hits.len();
        }
        n
    };
    let mut all_hits = Vec::new();
    let mut all_run = || {
        let mut n = 0usize;
        for p in &paths {
            all.matches_into(black_box(p.as_str()), &mut all_hits);
            n += all_hits.len();
        }
        n
    };
    let (mut tozai_times, mut floor_times, mut all_times) = (Vec::new(), Vec::new(), Vec::new());
    let mut built_times = Vec::new();
    let mut floor_hits = 0;
    for run in 0..WARMUP + RUNS {
        let t = Instant::now();
        floor_hits = black_box(floor_run());
        let f = t.elapsed();
        let t = Instant::now();
        black_box(all_run());
        let a = t.elapsed();
        let t = Instant::now();
        let j = set.judge(black_box(&changes));
        let z = t.elapsed();
        drop(black_box(j));
        // The same, then every rule's explanations built as `Match` values (what a plan
        // does with the rules it reports).
        let t = Instant::now();
        let j = set.judge(black_box(&changes));
        for rule in &rules {
            black_box(j.outcome(&rule.name));
        }
        let b = t.elapsed();
        drop(black_box(j));
        if run >= WARMUP {
            floor_times.push(f);
            all_times.push(a);
            tozai_times.push(z);
            built_times.push(b);
        }
    }
    let built = Stats::of(built_times);
    let (tozai, floor, all) = (
        Stats::of(tozai_times),
        Stats::of(floor_times),
        Stats::of(all_times),
    );
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();

    println!(
        "judge: {PATHS} changed paths x {} rules ({} include + {excludes} exclude globs), \
         median and min of {RUNS} runs after {WARMUP} warm-up runs",
        rules.len(),
        rules.len(),
    );
    println!("  {:<40} {:>10} {:>10}", "", "median", "min");
    println!(
        "  {:<40} {:>10} {:>10}",
        "tozai RuleSet::judge (with explanations)",
        ms(tozai.median),
        ms(tozai.min)
    );
    println!(
        "  {:<40} {:>10} {:>10}",
        "tozai judge + every Match built",
        ms(built.median),
        ms(built.min)
    );
    println!(
        "  {:<40} {:>10} {:>10}",
        "floor GlobSet::matches_into (includes)",
        ms(floor.median),
        ms(floor.min)
    );
    println!(
        "  {:<40} {:>10} {:>10}",
        format!("globset alone, tozai's {} globs", rules.len() + excludes),
        ms(all.median),
        ms(all.min)
    );
    println!(
        "  {:<40} {:>9.2}x {:>9.2}x",
        "ratio tozai / floor",
        ratio(tozai.median, floor.median),
        ratio(tozai.min, floor.min)
    );
    println!(
        "  work: tozai {matches} selections + {removed} excluded explanations; \
         floor {floor_hits} include hits; checked equal to globset include minus exclude"
    );
    println!(
        "  target: tozai median under {} -> {}",
        ms(TARGET),
        if tozai.median < TARGET {
            "met"
        } else {
            "NOT MET"
        }
    );
}
