//! One seeded run: the world as it begins, the generator's pushes on the agenda, the
//! scheduler until everything is quiet, then the settle phase, then the checker.
//!
//! **Settling** is what production does once pushes stop, nothing more: faults end (the
//! services work again), every delivery already planned lands or is lost as planned, and
//! then the schedules fire, round after round: the mirror's reconciliation (every branch
//! and tag the sync selects) and each region's pipeline-judge's sweep (every branch a
//! target runs for), with Lambda's retries of whatever fails, until a round changes
//! nothing. A branch event lost for good is caught up only that way.
//!
//! One exception, a known limit: CodeCommit cannot list tags, so no sweep judges a tag,
//! and a tag event lost for good is recovered for the mirror by its reconciliation but by
//! no pipeline-judge. So the last event of every tag is delivered again, while settling,
//! to each function that has not handled it: the runs assume that a tag's event reaches
//! each of its functions at least once (in either region), and check everything else
//! under events lost for good.

use std::cell::RefCell;

use tozai::config::Config;
use tozai::refs::RefName;

use crate::check::{self, Violation};
use crate::generator::{Deliveries, Generator};
use crate::harness::{self, Harness, Judges};
use crate::model::Side;
use crate::scheduler::{Agenda, Scheduler, Task};
use crate::trace::Action;
use crate::world::{Due, Faults, Sim, World};

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
            Due::Deliver(delivery) if self.sim.with(|w| w.throttled(delivery)) => None,
            Due::Deliver(delivery) => Some(self.harness.invoke(delivery)),
        }
    }
}

/// Delivers once more the last event of every tag to each function that has not handled
/// it (the one rule that assumes an event is not lost for good: see the module's
/// documentation). How many were delivered.
fn redeliver_tags(w: &mut World) -> usize {
    let mut again = Vec::new();
    for side in Side::BOTH {
        again.extend(check::last_tag_events(w, side).into_values());
    }
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

/// What a settle round may change: ref updates, checkpoint moves, claims and starts. A
/// round that changes none of them leaves the world settled.
fn changes(w: &World) -> usize {
    w.trace
        .iter()
        .filter(|e| {
            matches!(
                e.action,
                Action::Push { .. }
                    | Action::Saved { .. }
                    | Action::Claimed { .. }
                    | Action::Started { .. }
            )
        })
        .count()
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
    let mutated = judges
        .mutation
        .map_or_else(String::new, |m| format!(", mutated: {}", m.name()));
    let summary = format!(
        "seed {seed}: {steps} steps, faults {faults:?}, deliveries {deliveries:?}{mutated}"
    );
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
                "settle: faults off; the schedules fire (the mirror's reconciliation, each region's sweep) until a round changes nothing; the last event of a tag is delivered again until handled",
            );
        });
        let mut settled = false;
        for round in 0..SETTLE_ROUNDS {
            if stuck.is_some() {
                break;
            }
            let before = sim.with(|w| {
                w.note(format!("settle: round {}", round + 1));
                redeliver_tags(w);
                w.tick_all();
                changes(w)
            });
            stuck = scheduler.run(&driver).err();
            if sim.with(|w| changes(w)) == before {
                settled = true;
                break;
            }
        }
        if !settled && stuck.is_none() {
            stuck = Some(format!(
                "still changing after {SETTLE_ROUNDS} rounds of the schedules"
            ));
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
    use crate::harness::Mutation;

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

    /// The judges of commit 4f62634 broke the guarantees in these seeds, one scenario of
    /// issue 11 each (sim/FOUND.md); the level-triggered judges and the mirror's ledger keep
    /// them.
    #[test]
    fn the_seeds_that_found_the_scenarios_of_issue_11_now_pass() {
        let (config, ignored) = (config(), Judges::new());
        for (seed, steps, scenario) in crate::FOUND {
            let outcome = run(*seed, *steps, &config, &ignored);
            let broken: Vec<String> = outcome
                .violations
                .iter()
                .map(|v| format!("[{}] {}", v.guarantee, v.what))
                .collect();
            assert!(
                broken.is_empty(),
                "scenario {scenario}, seed {seed} --steps {steps}: {broken:?}\n{}",
                outcome.trace
            );
        }
    }

    /// The checker can fail: each bug injected into the harness's stand-ins (`--mutate`)
    /// breaks the guarantee it takes away within the first seeds of the default window (each
    /// is caught by seed 5 of 12-step runs; 50 leaves room for changes to the generator).
    /// `no-intent` is rarer: see the next test.
    #[test]
    fn every_mutation_is_caught() {
        use crate::check::Guarantee;
        const WITHIN: u64 = 50;
        let config = config();
        for (mutation, breaks) in [
            (Mutation::NoCas, Guarantee::Once),
            (Mutation::NoFindRun, Guarantee::Once),
            (Mutation::TrustEvent, Guarantee::Order),
            (Mutation::LedgerOwnsAll, Guarantee::Mirror),
        ] {
            let judges = Judges::mutated(mutation);
            let caught = (0..WITHIN).find(|&seed| {
                run(seed, 12, &config, &judges)
                    .violations
                    .iter()
                    .any(|v| v.guarantee == breaks)
            });
            assert!(
                caught.is_some(),
                "--mutate {} broke no \"{breaks}\" in seeds 0..{WITHIN}",
                mutation.name()
            );
        }
    }

    /// The mirror's ledger lost the record written after a push, and left a branch on the
    /// standby after the source deleted it (found at seeds 1050, 1966, 2271 when mirrors
    /// overlapped); recording the intent before the push fixed it. `no-intent` is the
    /// mirror before that fix. The seeds are those that show it with today's judges (the
    /// sync-judge's request mark changed the interleavings): `bash scripts/simulate.sh
    /// --release --mutate no-intent --seeds 6000` lists them.
    #[test]
    fn without_its_intent_the_mirror_loses_a_ref_it_made() {
        use crate::check::Guarantee;
        let config = config();
        let (fixed, before) = (Judges::new(), Judges::mutated(Mutation::NoIntent));
        for seed in [2081, 3080, 3310] {
            let broken = |judges: &Judges| {
                (run(seed, 12, &config, judges).violations.iter())
                    .any(|v| v.guarantee == Guarantee::Mirror)
            };
            assert!(
                broken(&before),
                "seed {seed}: no-intent kept every guarantee"
            );
            assert!(
                !broken(&fixed),
                "seed {seed}: the mirror lost a ref it made"
            );
        }
    }

    #[test]
    fn every_mutation_has_a_name() {
        for (name, mutation) in Mutation::ALL {
            assert_eq!(Mutation::parse(name), Some(mutation));
            assert_eq!(mutation.name(), name);
        }
    }
}
