//! One seeded run: the world as it begins, the generator's pushes on the agenda, the
//! scheduler until everything is quiet, then the settle phase (faults off, the last event
//! of every ref delivered again until handled), then the checker.

use std::cell::RefCell;

use tozai::config::Config;
use tozai::refs::RefName;

use crate::check::{self, Violation};
use crate::generator::{Deliveries, Generator};
use crate::harness::{self, Harness, Judges};
use crate::model::Side;
use crate::scheduler::{Agenda, Scheduler, Task};
use crate::world::{Due, Event, Faults, Sim, World};

/// The config the runs judge with: the seed's layout, a target per region selecting
/// `common/**` and its own directory (one CodePipeline, one CodeBuild), the standby's
/// opting into tags `v*`.
pub const CONFIG: &str = r#"
primary = "tokyo"
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

[sync.to.osaka]
paths = ["common/**", "secondary/**"]
exclude = ["**/*.md", "docs/**"]

[sync.to.tokyo]
paths = ["common/**", "primary/**"]
exclude = ["**/*.md", "docs/**"]

[[pipeline]]
name = "tokyo-core"
region = "tokyo"
codepipeline = "core-infra-deploy"
branches = ["main", "feature/*", "release/*"]
paths = ["common/**", "primary/**"]
exclude = ["**/*.md", "docs/**"]

[[pipeline]]
name = "osaka-core"
region = "osaka"
codebuild = "core-infra-build"
branches = ["main", "release/*"]
paths = ["common/**", "secondary/**"]
exclude = ["**/*.md", "docs/**"]
tags = ["v*"]
"#;

/// The parsed [`CONFIG`].
pub fn config() -> Config {
    Config::parse(CONFIG, "sim/tozai.toml".as_ref()).expect("the simulation's config is valid")
}

/// What one run found.
pub struct Outcome {
    pub seed: u64,
    pub violations: Vec<Violation>,
    /// For each violation, the scenario of issue 11 it looks like.
    pub scenarios: Vec<Option<crate::scenarios::Scenario>>,
    /// The whole trace, one line per entry.
    pub trace: String,
    /// The run's settings and size, one line.
    pub summary: String,
}

/// The agenda as the scheduler sees it: the world's, with pushes made by the generator and
/// deliveries turned into invocations by the harness.
struct Driver<'a> {
    sim: &'a Sim,
    harness: &'a Harness<'a>,
    generator: RefCell<Generator>,
}

impl<'a> Agenda<'a> for Driver<'a> {
    fn now(&self) -> u64 {
        self.sim.with(|w| w.now)
    }

    fn set_now(&self, now: u64) {
        self.sim.with(|w| w.now = now);
    }

    fn due(&self) -> usize {
        self.sim
            .with(|w| w.agenda.iter().filter(|(at, ..)| *at <= w.now).count())
    }

    fn next(&self) -> Option<u64> {
        self.sim.with(|w| w.agenda.iter().map(|(at, ..)| *at).min())
    }

    fn fire(&self, i: usize) -> Option<Task<'a>> {
        let due = self.sim.with(|w| {
            let now = w.now;
            let position = w
                .agenda
                .iter()
                .enumerate()
                .filter(|(_, (at, ..))| *at <= now)
                .nth(i)
                .map(|(p, _)| p)?;
            Some(w.agenda.remove(position).2)
        })?;
        match due {
            Due::Push => {
                self.sim.with(|w| self.generator.borrow_mut().step(w));
                None
            }
            Due::Deliver(delivery) => Some(self.harness.invoke(delivery)),
        }
    }
}

/// Delivers once more the last event of every ref, and the last `Sync Requested` of each,
/// to each function that has not handled it. How many were delivered.
fn settle_round(w: &mut World) -> usize {
    let mut again = Vec::new();
    for side in Side::BOTH {
        let mut last = std::collections::BTreeMap::new();
        for u in w.repo(side).log.iter().filter(|u| u.event != usize::MAX) {
            last.insert(u.reference.clone(), u.event);
        }
        again.extend(last.into_values());
    }
    let mut requests = std::collections::BTreeMap::new();
    for (i, e) in w.events.iter().enumerate() {
        if let Event::Bus {
            detail_type,
            detail,
        } = e
            && detail_type == tozai::event::SYNC_REQUESTED
            && let Some(r) = detail.get("ref").and_then(|r| r.as_str())
        {
            requests.insert(r.to_owned(), i);
        }
    }
    again.extend(requests.into_values());
    let mut count = 0;
    for event in again {
        for function in w.route(event) {
            if !w.handled.contains(&(event, function)) {
                w.redeliver(event, function);
                count += 1;
            }
        }
    }
    count
}

/// How many settle rounds a run gets.
const SETTLE_ROUNDS: usize = 8;

/// Runs one seed.
pub fn run(seed: u64, steps: usize, config: &Config, judges: &Judges) -> Outcome {
    let mut rng = fastrand::Rng::with_seed(seed);
    let faulty = rng.bool();
    let faults = Faults {
        throttle: if faulty {
            [0.01, 0.03, 0.08][rng.usize(..3)]
        } else {
            0.0
        },
        record: if faulty {
            [0.0, 0.1, 0.3][rng.usize(..3)]
        } else {
            0.0
        },
        mid_push: if faulty {
            [0.0, 0.1][rng.usize(..2)]
        } else {
            0.0
        },
        cold_cache: [0.1, 0.5][rng.usize(..2)],
        on: true,
    };
    let deliveries = Deliveries::pick(&mut rng);
    let mut world = World::new(seed, faults, deliveries);
    let root = world.graph.root();
    let main = RefName::Branch(config.base_branch.clone());
    for side in Side::BOTH {
        world.seed_branch(side, &config.base_branch, root);
    }
    for t in &config.targets {
        let side = harness::side_of(config, &t.region);
        world.seed_run(side, &t.name, t.kind.label(), main.clone(), root);
    }
    let mut generator = Generator::new(seed);
    for at in generator.times(steps) {
        world.schedule(at, Due::Push);
    }
    let summary =
        format!("seed {seed}: {steps} steps, faults {faults:?}, deliveries {deliveries:?}");
    world.note(summary.clone());

    let sim = Sim::new(world);
    let (stuck, steps_taken) = {
        let harness = Harness::new(&sim, config, judges);
        harness.seed(root);
        let driver = Driver {
            sim: &sim,
            harness: &harness,
            generator: RefCell::new(generator),
        };
        let mut scheduler = Scheduler::new(seed);
        let mut stuck = scheduler.run(&driver).err();
        sim.with(|w| {
            w.faults.on = false;
            w.note(
                "settle: faults off; the last event of every ref is delivered again until handled",
            );
        });
        for _ in 0..SETTLE_ROUNDS {
            if stuck.is_some() || sim.with(settle_round) == 0 {
                break;
            }
            stuck = scheduler.run(&driver).err();
        }
        (stuck, scheduler.steps)
    };
    let world = sim.into_world();
    let mut violations = check::check(&world, config);
    if let Some(why) = stuck {
        violations.push(Violation {
            guarantee: check::Guarantee::NothingMissed,
            what: format!("the run never settled: {why}"),
            context: Vec::new(),
            facts: check::Facts::Stuck,
        });
    }
    let scenarios = violations
        .iter()
        .map(|v| crate::scenarios::classify(&world, v, &violations))
        .collect();
    Outcome {
        seed,
        violations,
        scenarios,
        trace: world.show_trace(),
        summary: format!(
            "{summary}; {} events, {} scheduler steps",
            world.events.len(),
            steps_taken
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_always_gives_the_same_run() {
        let (config, ignored) = (config(), Judges::new());
        let first = run(7, 8, &config, &ignored);
        let again = run(7, 8, &config, &ignored);
        assert_eq!(first.trace, again.trace);
        assert_eq!(first.violations.len(), again.violations.len());
        assert_ne!(first.trace, run(8, 8, &config, &ignored).trace);
    }

    #[test]
    fn a_run_without_pushes_breaks_nothing() {
        let outcome = run(1, 0, &config(), &Judges::new());
        assert!(outcome.violations.is_empty(), "{}", outcome.trace);
    }

    /// Today's judges (issue 11) break the guarantees in these seeds, one scenario each
    /// (sim/FOUND.md). When the judges keep the guarantees, these are the seeds to replay.
    #[test]
    fn the_simulation_finds_the_scenarios_of_issue_11() {
        let (config, ignored) = (config(), Judges::new());
        for (seed, steps, scenario) in crate::FOUND {
            let outcome = run(*seed, *steps, &config, &ignored);
            let seen: Vec<&str> = outcome
                .scenarios
                .iter()
                .flatten()
                .map(|(n, _)| *n)
                .collect();
            assert!(
                seen.contains(scenario),
                "seed {seed} --steps {steps}: expected scenario {scenario}, saw {seen:?}"
            );
        }
    }
}
