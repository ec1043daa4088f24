//! Timing summaries for the benches: the median and the minimum of repeated runs.

use std::time::Duration;

/// The median and the fastest of a set of timed runs.
#[derive(Debug, Clone, Copy)]
pub struct Stats {
    pub median: Duration,
    pub min: Duration,
}

impl Stats {
    /// Summarises `times`; panics on an empty set (a bench that timed nothing).
    pub fn of(mut times: Vec<Duration>) -> Self {
        assert!(!times.is_empty(), "no timed runs");
        times.sort();
        Self {
            median: times[times.len() / 2],
            min: times[0],
        }
    }
}
