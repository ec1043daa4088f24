//! `tozai check`: validate the config and run its rule tests.

use std::path::Path;
use std::process::ExitCode;

use tozai::config::Config;
use tozai::ruletest;

use crate::report;

pub fn run(path: &Path) -> anyhow::Result<ExitCode> {
    let config = Config::load(path)?;
    outln!("{}", report::summary(&config));
    let results = ruletest::run(&config);
    if results.is_empty() {
        outln!("no rule tests: add [[test]] cases to check the path rules");
        return Ok(ExitCode::SUCCESS);
    }
    outln!();
    let mut failed = 0;
    for r in &results {
        if r.passed() {
            outln!("  PASS  {}", r.test.name);
            continue;
        }
        failed += 1;
        outln!("  FAIL  {}", r.test.name);
        outln!("          expected: {}", report::set(&r.test.expect));
        outln!("          actual:   {}", report::set(&r.actual));
        for action in r.missing() {
            outln!(
                "          {action} not taken: {}",
                report::why(&config, &r.decisions, action)
            );
        }
        for action in r.unexpected() {
            outln!(
                "          {action} taken: {}",
                report::why(&config, &r.decisions, action)
            );
        }
    }
    outln!();
    let total = results.len();
    if failed == 0 {
        outln!("all {total} rule tests pass");
        Ok(ExitCode::SUCCESS)
    } else {
        outln!("{failed} of {total} rule tests FAIL");
        Ok(ExitCode::from(crate::EXIT_FAILED))
    }
}
