//! `tozai check`: validate the config and run its rule tests.

use std::path::Path;
use std::process::ExitCode;

use tozai::config::Config;
use tozai::ruletest;

use crate::report;

pub fn run(path: &Path) -> anyhow::Result<ExitCode> {
    let config = Config::load(path)?;
    println!("{}", report::summary(&config));
    let results = ruletest::run(&config);
    if results.is_empty() {
        println!("no rule tests: add [[test]] cases to check the path rules");
        return Ok(ExitCode::SUCCESS);
    }
    println!();
    let mut failed = 0;
    for r in &results {
        if r.passed() {
            println!("  PASS  {}", r.test.name);
            continue;
        }
        failed += 1;
        println!("  FAIL  {}", r.test.name);
        println!("          expected: {}", report::set(&r.test.expect));
        println!("          actual:   {}", report::set(&r.actual));
        for action in r.missing() {
            println!(
                "          {action} not taken: {}",
                report::why(&config, &r.decisions, action)
            );
        }
        for action in r.unexpected() {
            println!(
                "          {action} taken: {}",
                report::why(&config, &r.decisions, action)
            );
        }
    }
    println!();
    let total = results.len();
    if failed == 0 {
        println!("all {total} rule tests pass");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("{failed} of {total} rule tests FAIL");
        Ok(ExitCode::from(crate::EXIT_FAILED))
    }
}
