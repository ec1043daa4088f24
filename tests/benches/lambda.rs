//! Benchmark: the release judges (`tozai-sync-judge`, `tozai-pipeline-judge`) as Lambda
//! functions, each its own process against the local Runtime API ([`LambdaApi`]), with the
//! CodeCommit API stand-in for GetDifferences and moto for DynamoDB, EventBridge and
//! CodePipeline. For each judge it measures, over [`RUNS`] fresh processes:
//!
//! - **cold start**: from spawning the process to its first `GET /runtime/invocation/next`
//!   (init done), and to the arrival of its first response (a small push, queued before the
//!   spawn, handled);
//! - **peak RSS**: `VmHWM` of /proc/PID/status, read after its last event, before it is
//!   killed;
//! - **CPU per event**: the process's own CPU time (user + system; the stand-ins run in
//!   other processes) across one invocation, from its idle `next` before the event to its
//!   idle `next` after: for the small push, and for two pushes that each change 10,000
//!   paths, which the judge reads in 100 GetDifferences pages (CodeCommit's default page of
//!   100). CPU comes from /proc/PID/task/*/schedstat (nanoseconds) and, as a cross-check,
//!   from `utime + stime` of /proc/PID/stat (clock ticks, 10 ms).
//!
//! Every run gets a new DynamoDB table, so every run does the same work: no checkpoint yet
//! for the small push (diff from the event's old commit), then the checkpoint for the big
//! ones. Before anything is timed, the first run's answers are checked: each big event's
//! decision record says `diffs[0].changed` = 10,000, the paths the rules matched are the
//! ones the generator put under the rules' directories, and the judges made 100
//! GetDifferences calls per big event.
//!
//! The repository (generated with `git fast-import`): R adds 10,000 files under `common/`
//! (40%), `primary/` (30%) and `secondary/` (30%); S modifies 3 of them; B modifies all
//! 10,000; B2 modifies all 10,000 again. Events: R->S (small), S->B, B->B2 (big).
//!
//! Needs the release binaries (`cargo build --release -p tozai-sync-judge -p
//! tozai-pipeline-judge`; `bash bench/lambda.sh` does it first) and the test virtualenv
//! (`bash scripts/setup-test-env.sh`). `cargo bench -p tozai-tests --bench lambda`.

// The stand-ins serve HTTPS with the run's CA, trusted through SSL_CERT_FILE (tozai_tests::tls).
#[ctor::ctor(unsafe)]
fn install_test_ca() {
    tozai_tests::tls::install();
}

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tempfile::TempDir;
use tozai_tests::generate::FastImport;
use tozai_tests::lambda_api::{CpuTime, Function, LambdaApi, credentials};
use tozai_tests::stand_ins::{CodeCommitApi, MOTO_ACCOUNT_ID, Moto, source_and_build_stages};

const FILES: usize = 10_000;
/// Fresh processes per judge (`LAMBDA_BENCH_RUNS` overrides it).
const RUNS: usize = 20;
/// Runs (the first ones) that also handle the two 10,000-path events
/// (`LAMBDA_BENCH_CPU_RUNS` overrides it).
const CPU_RUNS: usize = 6;

fn knob(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
        .max(1)
}
const TOKYO: &str = "ap-northeast-1";
const REPO: &str = "core-infra";
const PIPELINE: &str = "core-infra-deploy";
const JUDGES: &[&str] = &["tozai-sync-judge", "tozai-pipeline-judge"];

fn top(i: usize) -> &'static str {
    match i % 10 {
        0..=3 => "common",
        4..=6 => "primary",
        _ => "secondary",
    }
}

fn path(i: usize) -> String {
    format!(
        "{}/stack{:02}/templates/resource-{i:05}.yaml",
        top(i),
        i % 40
    )
}

fn config_text() -> String {
    tozai_tests::lambda_api::seed_config()
}

fn git(repo: &Path) -> Command {
    let mut c = Command::new("git");
    c.arg("--git-dir")
        .arg(repo)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null");
    c
}

/// Builds the bare repository; returns the ids of R, S, B and B2.
fn generate(repo: &Path) -> [String; 4] {
    let mut import = FastImport::bare(repo);
    let commits: [(&str, &str, &[usize]); 4] = [
        ("R: add", "v1", &[]),
        ("S: a small push", "v1.1", &[0, 4, 7]),
        ("B: modify every file", "v2", &[]),
        ("B2: modify every file again", "v3", &[]),
    ];
    let all: Vec<usize> = (0..FILES).collect();
    for (message, content, only) in commits {
        let files: &[usize] = if only.is_empty() { &all } else { only };
        import.commit(
            message,
            files
                .iter()
                .map(|&i| (path(i), format!("{content} of resource {i}\n"))),
        );
    }
    import.finish();
    let out = git(repo)
        .args(["repack", "-a", "-d", "-q"])
        .status()
        .expect("git repack runs");
    assert!(out.success(), "git repack failed");
    let out = git(repo)
        .args(["rev-parse", "main~3", "main~2", "main~1", "main"])
        .output()
        .expect("git rev-parse runs");
    let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    [
        ids[0].clone(),
        ids[1].clone(),
        ids[2].clone(),
        ids[3].clone(),
    ]
}

/// A referenceUpdated event of `main`, shaped like the docs' sample.
fn push(old: &str, new: &str) -> Value {
    json!({
        "version": "0",
        "id": format!("bench-{}", &new[..12]),
        "detail-type": "CodeCommit Repository State Change",
        "source": "aws.codecommit",
        "account": MOTO_ACCOUNT_ID,
        "time": "2024-04-01T00:00:00Z",
        "region": TOKYO,
        "resources": [format!("arn:aws:codecommit:{TOKYO}:{MOTO_ACCOUNT_ID}:{REPO}")],
        "detail": {
            "callerUserArn": "arn:aws:iam::123456789012:user/engineer",
            "commitId": new,
            "event": "referenceUpdated",
            "oldCommitId": old,
            "referenceFullName": "refs/heads/main",
            "referenceName": "main",
            "referenceType": "branch",
            "repositoryId": "280e6f04-7a9c-4c72-8d8f-947d83e21a96",
            "repositoryName": REPO,
        },
    })
}

/// What one fresh process measured.
#[derive(Debug, Default, Clone)]
struct Run {
    ready: Duration,
    first_response: Duration,
    /// (schedstat ns, ticks ns) from the spawn to idle after the small push.
    init_and_small_cpu: (u64, u64),
    big_cpu: Vec<(u64, u64)>,
    big_wall: Vec<Duration>,
    /// Bytes of each big push's response, and of the longest line the function printed
    /// (its decision record).
    big_response_bytes: Vec<usize>,
    longest_log_line: usize,
    peak_rss_kib: u64,
}

/// (schedstat ns, ticks ns) used between `before` and `after`.
fn used(before: CpuTime, after: CpuTime) -> (u64, u64) {
    (
        after.schedstat_ns.saturating_sub(before.schedstat_ns),
        after.ticks_ns.saturating_sub(before.ticks_ns),
    )
}

/// Waits until the function is idle again (its `count`-th `next` has arrived and it has
/// had a moment to block on it), then reads its CPU time.
fn idle_cpu(api: &LambdaApi, f: &Function, count: usize) -> CpuTime {
    let nexts = api.wait_next_requests(count, Duration::from_secs(120));
    assert!(
        nexts.len() >= count,
        "{} did not ask for event {count}\n{}",
        f.name(),
        f.log()
    );
    std::thread::sleep(Duration::from_millis(30));
    f.cpu()
        .unwrap_or_else(|| panic!("{} is gone\n{}", f.name(), f.log()))
}

struct Bench {
    /// The bare repository the CodeCommit stand-in serves: its `main` is moved to each
    /// push's commit before the push's event (the judges read the branch's head).
    repo: PathBuf,
    moto: Moto,
    codecommit: CodeCommitApi,
    config: String,
    ids: [String; 4],
    tables: std::cell::Cell<usize>,
    /// `LAMBDA_BENCH_PERF`: a directory where `perf record` profiles of each judge's first
    /// big push go (`perf report -i DIR/JUDGE.perf.data`); the timings of that run include
    /// perf's overhead.
    perf_dir: Option<String>,
}

impl Bench {
    /// Moves `main` to `commit`, as the push whose event follows did.
    fn moved(&self, commit: &str) {
        let out = git(&self.repo)
            .args(["update-ref", "refs/heads/main", commit])
            .status()
            .expect("git update-ref runs");
        assert!(out.success(), "git update-ref failed");
    }

    fn table(&self) -> String {
        let n = self.tables.get();
        self.tables.set(n + 1);
        let name = format!("tozai-bench-{n}");
        self.moto.create_checkpoint_table(TOKYO, &name);
        name
    }

    /// One fresh process of `judge`: the small push queued before the spawn, then (when
    /// `big`) the two big pushes. Returns the measures and the responses.
    fn run(&self, judge: &str, big: bool) -> (Run, Vec<Value>) {
        let table = self.table();
        let api = LambdaApi::start();
        let moto = self.moto.endpoint_url();
        let codecommit = self.codecommit.endpoint_url();
        let [r, s, b, b2] = &self.ids;
        self.moved(s);
        let small = api.submit(push(r, s), Duration::from_secs(120));
        let function = Function::spawn(
            judge,
            &api,
            &[
                ("AWS_REGION", TOKYO),
                ("AWS_LAMBDA_FUNCTION_NAME", judge),
                ("TOZAI_CONFIG", &self.config),
                ("TOZAI_TABLE", &table),
                ("TOZAI_REGION", "tokyo"),
                ("AWS_ENDPOINT_URL_CODECOMMIT", &codecommit),
                ("AWS_ENDPOINT_URL_DYNAMODB", &moto),
                ("AWS_ENDPOINT_URL_EVENTBRIDGE", &moto),
                ("AWS_ENDPOINT_URL_CODEPIPELINE", &moto),
                ("AWS_ENDPOINT_URL_CODEBUILD", &moto),
            ],
        );
        let mut responses = Vec::new();
        let first = function.outcome(&small, Duration::from_secs(120));
        responses.push(
            first.unwrap_or_else(|e| {
                panic!("{judge} failed the small push: {e}\n{}", function.log())
            }),
        );
        let spawned = function.spawned_at();
        let ready = api
            .next_requests()
            .first()
            .copied()
            .expect("a next was requested");
        let answered = api
            .invocation(&small)
            .and_then(|i| i.answered_at)
            .expect("answered");
        let mut run = Run {
            ready: ready - spawned,
            first_response: answered - spawned,
            ..Run::default()
        };
        let after_small = idle_cpu(&api, &function, 2);
        run.init_and_small_cpu = (after_small.schedstat_ns, after_small.ticks_ns);
        if big {
            let mut before = after_small;
            for (n, (old, new)) in [(s, b), (b, b2)].into_iter().enumerate() {
                let perf = self.perf_dir.as_ref().filter(|_| n == 0).map(|dir| {
                    let pid = function.pid().expect("the function runs");
                    let out = Path::new(dir).join(format!("{judge}.perf.data"));
                    let child = Command::new("perf")
                        .args([
                            "record",
                            "-q",
                            "-F",
                            "4999",
                            "--call-graph",
                            "dwarf,32768",
                            "-p",
                            &pid.to_string(),
                            "-o",
                        ])
                        .arg(&out)
                        .stdout(Stdio::null())
                        .spawn()
                        .expect("perf runs");
                    std::thread::sleep(Duration::from_millis(500));
                    child
                });
                self.moved(new);
                let t = Instant::now();
                let response = function.invoke(push(old, new)).unwrap_or_else(|e| {
                    panic!(
                        "{judge} failed the big push {old}..{new}: {e}\n{}",
                        function.log()
                    )
                });
                run.big_wall.push(t.elapsed());
                let after = idle_cpu(&api, &function, 3 + n);
                if let Some(mut perf) = perf {
                    let _ = Command::new("kill")
                        .args(["-INT", &perf.id().to_string()])
                        .status();
                    let _ = perf.wait();
                }
                run.big_cpu.push(used(before, after));
                before = after;
                run.big_response_bytes.push(response.to_string().len());
                responses.push(response);
            }
        }
        run.peak_rss_kib = function
            .peak_rss_kib()
            .unwrap_or_else(|| panic!("no VmHWM for {judge}"));
        run.longest_log_line = function.stdout().lines().map(str::len).max().unwrap_or(0);
        drop(function);
        (run, responses)
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn quantile(mut xs: Vec<f64>, q: f64) -> f64 {
    assert!(!xs.is_empty(), "nothing measured");
    xs.sort_by(f64::total_cmp);
    let i = ((xs.len() as f64 - 1.0) * q).round() as usize;
    xs[i]
}

/// Checks a judge's answers to the three events.
fn check(judge: &str, responses: &[Value], expected: &BTreeMap<&str, usize>) {
    for (n, response) in responses.iter().enumerate().skip(1) {
        assert_eq!(
            response["diffs"][0]["changed"],
            FILES,
            "{judge}, big push {n}: diffs[0].changed must be {FILES}: {}",
            &response.to_string()[..2000.min(response.to_string().len())]
        );
        let (rule, listed) = if judge == "tozai-sync-judge" {
            assert_eq!(response["sync"]["requested"], true, "{judge}: mirrored");
            ("sync", &response["sync"])
        } else {
            let target = response["targets"]
                .as_array()
                .and_then(|t| t.iter().find(|t| t["target"] == "tokyo-core"))
                .unwrap_or_else(|| panic!("no tokyo-core in {judge}'s response"));
            assert_eq!(target["result"], "started", "{judge}: started");
            ("tokyo-core", target)
        };
        let want: BTreeMap<&str, usize> = expected
            .iter()
            .filter(|(top, _)| match rule {
                "sync" => **top != "primary",
                _ => **top != "secondary",
            })
            .map(|(k, v)| (*k, *v))
            .collect();
        // The record lists the first 100 matches and counts them all.
        let total: usize = want.values().sum();
        assert_eq!(
            listed["matches_total"], total,
            "{judge}, big push {n}: matched paths in all"
        );
        let matches = listed["matches"].as_array().expect("matches");
        assert_eq!(matches.len(), total.min(100), "{judge}: listed matches");
        for m in matches {
            let p = m["path"].as_str().expect("a path");
            let top = p.split('/').next().unwrap();
            assert!(want.contains_key(top), "{judge}, big push {n}: {p} matched");
        }
    }
    assert_eq!(
        responses[0]["diffs"][0]["changed"], 3,
        "{judge}: the small push changes 3 paths"
    );
}

fn main() {
    // `cargo bench` passes --bench; any other argument filters nothing here.
    let started = Instant::now();
    let dir = TempDir::new().expect("a temporary directory");
    let repos = dir.path().join("repos");
    std::fs::create_dir(&repos).unwrap();
    let ids = generate(&repos.join(REPO));
    let config = dir.path().join("tozai.toml");
    std::fs::write(&config, config_text()).unwrap();
    let mut expected: BTreeMap<&str, usize> = BTreeMap::new();
    for i in 0..FILES {
        *expected.entry(top(i)).or_default() += 1;
    }
    let codecommit = CodeCommitApi::start(&repos, &[credentials()]);
    let moto = Moto::start();
    moto.create_pipeline(
        TOKYO,
        PIPELINE,
        &source_and_build_stages(REPO, "main", "core-infra-build"),
    );
    let bench = Bench {
        repo: repos.join(REPO),
        moto,
        codecommit,
        config: config.display().to_string(),
        ids,
        tables: std::cell::Cell::new(0),
        perf_dir: std::env::var("LAMBDA_BENCH_PERF").ok(),
    };
    let setup = started.elapsed();

    // The floor: spawning a process under the same watchdog and waiting for it.
    let runs_per_judge = knob("LAMBDA_BENCH_RUNS", RUNS);
    let cpu_runs = knob("LAMBDA_BENCH_CPU_RUNS", CPU_RUNS);
    let floor: Vec<f64> = (0..runs_per_judge)
        .map(|_| {
            let t = Instant::now();
            let status = Command::new("timeout")
                .args(["-s", "KILL", "600", "true"])
                .status()
                .expect("timeout runs");
            assert!(status.success());
            ms(t.elapsed())
        })
        .collect();

    let mut report = Vec::new();
    for judge in JUDGES {
        // Check the answers first (the run is kept: the checks do not change what it does).
        bench.codecommit.clear_requests();
        let (first, responses) = bench.run(judge, true);
        check(judge, &responses, &expected);
        let pages = bench.codecommit.requests_of("GetDifferences");
        assert_eq!(
            pages.len(),
            1 + 2 * 100,
            "{judge}: one page for the small push, 100 for each big one"
        );
        let mut runs = vec![first];
        for i in 1..runs_per_judge {
            runs.push(bench.run(judge, i < cpu_runs).0);
        }
        report.push((*judge, runs));
    }

    let version = |bin: &str| {
        let p = tozai_tests::lambda_api::lambda_bin(bin);
        let len = std::fs::metadata(&p).map_or(0, |m| m.len());
        format!("{} ({:.1} MB)", p.display(), len as f64 / 1e6)
    };
    println!(
        "lambda: the release judges as Lambda processes on a local Runtime API; {runs_per_judge} fresh \
         processes per judge ({} with the two {FILES}-path pushes); set-up {:.1} s",
        cpu_runs,
        setup.as_secs_f64()
    );
    for judge in JUDGES {
        println!("  binary: {}", version(judge));
    }
    println!(
        "  floor: spawning `timeout -s KILL 600 true` and reaping it: median {:.1} ms, p90 {:.1} ms",
        quantile(floor.clone(), 0.5),
        quantile(floor, 0.9)
    );
    println!(
        "  {:<22} {:>34} {:>10} {:>10} {:>10}",
        "", "measure", "median", "p90", "max"
    );
    for (judge, runs) in &report {
        let row = |what: &str, xs: Vec<f64>, unit: &str| {
            if xs.is_empty() {
                return;
            }
            println!(
                "  {:<22} {:>34} {:>8.1}{unit} {:>8.1}{unit} {:>8.1}{unit}",
                judge,
                what,
                quantile(xs.clone(), 0.5),
                quantile(xs.clone(), 0.9),
                quantile(xs, 1.0)
            );
        };
        row(
            "spawn -> first next (init)",
            runs.iter().map(|r| ms(r.ready)).collect(),
            "ms",
        );
        row(
            "spawn -> first response",
            runs.iter().map(|r| ms(r.first_response)).collect(),
            "ms",
        );
        row(
            "CPU, init + small push (schedstat)",
            runs.iter()
                .map(|r| r.init_and_small_cpu.0 as f64 / 1e6)
                .collect(),
            "ms",
        );
        row(
            "CPU, init + small push (utime+stime)",
            runs.iter()
                .map(|r| r.init_and_small_cpu.1 as f64 / 1e6)
                .collect(),
            "ms",
        );
        let big: Vec<&Run> = runs.iter().filter(|r| !r.big_cpu.is_empty()).collect();
        row(
            "peak RSS, small push only",
            runs.iter()
                .filter(|r| r.big_cpu.is_empty())
                .map(|r| r.peak_rss_kib as f64 / 1024.0)
                .collect(),
            "MB",
        );
        row(
            "peak RSS, after 2 big pushes",
            big.iter().map(|r| r.peak_rss_kib as f64 / 1024.0).collect(),
            "MB",
        );
        row(
            "longest stdout line (decision log)",
            big.iter()
                .map(|r| r.longest_log_line as f64 / 1e3)
                .collect(),
            "kB",
        );
        for n in 0..2 {
            row(
                &format!("CPU, big push {} (schedstat)", n + 1),
                big.iter().map(|r| r.big_cpu[n].0 as f64 / 1e6).collect(),
                "ms",
            );
            row(
                &format!("CPU, big push {} (utime+stime)", n + 1),
                big.iter().map(|r| r.big_cpu[n].1 as f64 / 1e6).collect(),
                "ms",
            );
            row(
                &format!("wall, big push {}", n + 1),
                big.iter().map(|r| ms(r.big_wall[n])).collect(),
                "ms",
            );
            row(
                &format!("response size, big push {}", n + 1),
                big.iter()
                    .map(|r| r.big_response_bytes[n] as f64 / 1e3)
                    .collect(),
                "kB",
            );
        }
    }
}
