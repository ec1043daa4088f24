//! `tozai check`: validate the config and run its rule tests, as a report or as JSON.

use std::collections::BTreeSet;
use std::process::ExitCode;

use serde::Serialize;
use tozai::config::Config;
use tozai::ruletest::{self, TestResult};
use tozai::text::quoted;

use crate::report;

#[derive(clap::Args)]
pub struct Options {
    #[command(flatten)]
    pub config: crate::config_file::ConfigArg,
    /// Print the regions and each rule test's result as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(o: Options) -> anyhow::Result<ExitCode> {
    let config = Config::load(&o.config.path)?;
    let results = ruletest::run(&config);
    let failed = results.iter().filter(|r| !r.passed()).count();
    if o.json {
        crate::output::json(&Report::of(&config, &results, &o.config.path))?;
    } else {
        text(&config, &results);
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(crate::EXIT_FAILED)
    })
}

fn text(config: &Config, results: &[TestResult]) {
    outln!("{}", report::summary(config));
    if results.is_empty() {
        outln!("no rule tests: add [[test]] cases to check the path rules");
        return;
    }
    outln!();
    for r in results {
        let name = quoted(&r.test.name);
        if r.passed() {
            outln!("  PASS  {name}");
            continue;
        }
        outln!("  FAIL  {name}");
        outln!("          expected: {}", report::set(&r.test.expect));
        outln!("          actual:   {}", report::set(&r.actual));
        for e in explanation(config, r) {
            let verb = if e.taken { "taken" } else { "not taken" };
            outln!("          {} {verb}: {}", e.action, e.why);
        }
    }
    outln!();
    let total = results.len();
    let failed = results.iter().filter(|r| !r.passed()).count();
    if failed == 0 {
        outln!("all {total} rule tests pass");
    } else {
        outln!("{failed} of {total} rule tests FAIL");
    }
}

/// Why each action that differs from the expectation was taken or not: the expected ones
/// missing first, then the unexpected ones.
fn explanation<'a>(config: &Config, r: &'a TestResult) -> Vec<Explanation<'a>> {
    let missing = r.missing().map(|a| (a, false));
    let unexpected = r.unexpected().map(|a| (a, true));
    missing
        .chain(unexpected)
        .map(|(action, taken)| Explanation {
            action,
            taken,
            why: report::why(config, &r.decisions, action),
        })
        .collect()
}

/// `tozai check --json`.
#[derive(Serialize)]
struct Report<'a> {
    /// The config file's path, exact (text output quotes it).
    config: String,
    regions: Vec<RegionJson<'a>>,
    tests: Vec<TestJson<'a>>,
    passed: usize,
    failed: usize,
}

#[derive(Serialize)]
struct RegionJson<'a> {
    name: &'a str,
    role: &'static str,
    aws_region: &'a str,
    repository: String,
}

#[derive(Serialize)]
struct TestJson<'a> {
    name: &'a str,
    passed: bool,
    expected: &'a BTreeSet<String>,
    actual: &'a BTreeSet<String>,
    explanation: Vec<Explanation<'a>>,
}

#[derive(Serialize)]
struct Explanation<'a> {
    action: &'a str,
    taken: bool,
    why: String,
}

impl<'a> Report<'a> {
    fn of(config: &'a Config, results: &'a [TestResult], path: &std::path::Path) -> Self {
        let roles = [(config.primary(), "primary"), (config.standby(), "standby")];
        let tests: Vec<TestJson> = results
            .iter()
            .map(|r| TestJson {
                name: &r.test.name,
                passed: r.passed(),
                expected: &r.test.expect,
                actual: &r.actual,
                explanation: explanation(config, r),
            })
            .collect();
        let passed = tests.iter().filter(|t| t.passed).count();
        Report {
            config: path.display().to_string(),
            regions: roles
                .into_iter()
                .map(|(r, role)| RegionJson {
                    name: &r.name,
                    role,
                    aws_region: &r.aws_region,
                    repository: r.repository.shown(),
                })
                .collect(),
            failed: tests.len() - passed,
            passed,
            tests,
        }
    }
}
