//! The users' path-rule tests (`[[test]]` in `tozai.toml`), run by `tozai check`.
//!
//! A test pushes its changes to its region (the primary unless it says otherwise) and
//! compares the actions taken, `mirror` and the targets started in either region (the
//! standby's after the mirror), with the exact set it expects.

use std::collections::BTreeSet;

use crate::config::{Config, RuleTest};
use crate::plan::{Decisions, decide};

/// The result of one rule test.
#[derive(Debug, Clone)]
pub struct TestResult<'a> {
    pub test: &'a RuleTest,
    pub actual: BTreeSet<String>,
    pub decisions: Decisions,
}

impl TestResult<'_> {
    pub fn passed(&self) -> bool {
        self.actual == self.test.expect
    }

    /// Expected actions that were not taken.
    pub fn missing(&self) -> impl Iterator<Item = &String> {
        self.test.expect.difference(&self.actual)
    }

    /// Actions taken that were not expected.
    pub fn unexpected(&self) -> impl Iterator<Item = &String> {
        self.actual.difference(&self.test.expect)
    }
}

/// Runs every rule test of the config, in order.
pub fn run(config: &Config) -> Vec<TestResult<'_>> {
    config
        .tests
        .iter()
        .map(|test| {
            // The region and ref were checked when the config was loaded.
            let decisions = decide(config, &test.region, &test.reference, &test.changes)
                .expect("rule test regions are checked at load");
            TestResult {
                test,
                actual: decisions.actions(),
                decisions,
            }
        })
        .collect()
}
