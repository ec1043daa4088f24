//! `tozai-sim`: a deterministic, seeded simulation of tozai's judges and mirror (issue 11).
//!
//! Each seed builds a world (two CodeCommit repositories, each region's DynamoDB table,
//! CodeBuild and CodePipeline, EventBridge and Lambda's retries), lets a seeded generator
//! push to it while a seeded scheduler interleaves the judges' invocations at their await
//! points, settles, and checks tozai's guarantees. The same seed always gives the same run.
//!
//! ```text
//! tozai-sim [--seeds N] [--from SEED] [--steps K]   # seeds FROM..FROM+N (200 from 0, 12 steps)
//!           [--traces]                              # the trace of every violating run
//!           [--find]                                # per scenario of issue 11, its first seed
//! tozai-sim --seed S [--steps K]                    # one seed, its whole trace
//! tozai-sim --found                                 # the seeds of sim/FOUND.md
//! tozai-sim --mutate NAME [--seeds N] ...            # over stand-ins broken on purpose
//! ```
//!
//! On a violation it prints the seed, which guarantee broke, the scenario of issue 11 it
//! looks like, and the trace (of the first violating run, or of each with `--traces`), and
//! exits 1; 2 is a usage error. The last line is always `N runs, V violations`.
//!
//! `--mutate NAME` breaks one of the harness's stand-ins the way a judge's bug would (no
//! compare-and-swap, a `find_run` that finds nothing, trusting the event over the branch's
//! head, a ledger that owns every standby ref, a mirror that records no intent before it
//! pushes: [`harness::Mutation`]), to show that the checker fails; the tests
//! `every_mutation_is_caught` and `without_its_intent_the_mirror_loses_a_ref_it_made` keep
//! it so.
//!
//! The modules: [`model`] (the repositories), [`table`] (DynamoDB), [`world`] (everything
//! outside tozai, with the clock, the faults and the trace), [`generator`] (pushes and
//! deliveries), [`scheduler`] (the interleaving), [`check`] (the guarantees),
//! [`scenarios`] (which scenario a violation looks like), [`run`] (one seed). Only
//! [`harness`] touches tozai's judges and ports: it is the one to port when they change.

mod check;
mod generator;
mod harness;
mod model;
mod run;
mod scenarios;
mod scheduler;
mod table;
mod trace;
mod world;

use std::process::ExitCode;
use std::time::Instant;

/// `println!` that ends the program quietly when the reader has gone (`| head`).
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if writeln!(std::io::stdout().lock(), $($arg)*).is_err() {
            std::process::exit(0);
        }
    }};
}

/// Where the simulation finds each scenario of issue 11 against the judges of commit
/// 4f62634 (sim/FOUND.md): (seed, steps, scenario). `--found` replays them.
pub const FOUND: &[(u64, usize, &str)] = &[
    (468, 4, "1"),
    (1987, 3, "2"),
    (347, 3, "3"),
    (1285, 3, "4"),
    (3725, 5, "5"),
    (4, 3, "6"),
    (20, 3, "7"),
    (706, 3, "8"),
    (1208, 4, "9a"),
    (413, 3, "9b"),
    (1593, 4, "5b"),
    (50, 3, "6b"),
    (1784, 4, "R"),
];

/// The command line.
struct Args {
    seeds: u64,
    from: u64,
    steps: usize,
    /// One seed, verbosely.
    seed: Option<u64>,
    /// Print the trace of every violating run, not only the first.
    traces: bool,
    /// Print, per scenario of issue 11, the first seed that looks like it.
    find: bool,
    /// Replay the seeds of [`FOUND`].
    found: bool,
    /// Break the harness's stand-ins on purpose.
    mutate: Option<harness::Mutation>,
}

const USAGE: &str = "usage: tozai-sim [--seeds N] [--from SEED] [--steps K] [--traces | --find]
       tozai-sim --seed S [--steps K]
       tozai-sim --found
any of them with --mutate no-cas|no-find-run|trust-event|ledger-owns-all|no-intent";

fn parse(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut parsed = Args {
        seeds: 200,
        from: 0,
        steps: 12,
        seed: None,
        traces: false,
        find: false,
        found: false,
        mutate: None,
    };
    while let Some(arg) = args.next() {
        let mut value = |name: &str| -> Result<u64, String> {
            let v = args.next().ok_or_else(|| format!("{name} needs a value"))?;
            v.parse()
                .map_err(|_| format!("{name}: {v:?} is not a number"))
        };
        match arg.as_str() {
            "--seeds" => parsed.seeds = value("--seeds")?,
            "--from" => parsed.from = value("--from")?,
            "--steps" => parsed.steps = value("--steps")? as usize,
            "--seed" => parsed.seed = Some(value("--seed")?),
            "--traces" => parsed.traces = true,
            "--find" => parsed.find = true,
            "--found" => parsed.found = true,
            "--mutate" => {
                let name = args.next().ok_or("--mutate needs a value")?;
                let mutation = harness::Mutation::parse(&name)
                    .ok_or_else(|| format!("--mutate: no mutation {name:?}\n{USAGE}"))?;
                parsed.mutate = Some(mutation);
            }
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok(parsed)
}

fn report(outcome: &run::Outcome, args: &Args, trace: bool) {
    let mutate = args
        .mutate
        .map_or_else(String::new, |m| format!(" --mutate {}", m.name()));
    say!(
        "seed {} violates {} guarantee(s); replay: bash scripts/simulate.sh --seed {} --steps {}{mutate}",
        outcome.seed,
        outcome.violations.len(),
        outcome.seed,
        args.steps
    );
    say!("  {}", outcome.summary);
    for (v, scenario) in outcome.violations.iter().zip(&outcome.scenarios) {
        let hint = scenario.map_or(String::new(), |(n, what)| {
            format!(" (looks like scenario {n}: {what})")
        });
        say!("  [{}] {}{hint}", v.guarantee, v.what);
        for line in &v.context {
            say!("      {line}");
        }
    }
    if trace {
        say!("  trace:");
        for line in outcome.trace.lines() {
            say!("    {line}");
        }
    }
}

/// Replays the seeds of [`FOUND`], one line each.
fn replay_found(config: &tozai::config::Config, judges: &harness::Judges) -> ExitCode {
    let mut violations = 0;
    for (seed, steps, scenario) in FOUND {
        let outcome = run::run(*seed, *steps, config, judges);
        let seen: Vec<&str> = outcome
            .scenarios
            .iter()
            .flatten()
            .map(|(n, _)| *n)
            .collect();
        let what: Vec<String> = outcome
            .violations
            .iter()
            .map(|v| format!("[{}] {}", v.guarantee, v.what))
            .collect();
        say!(
            "scenario {scenario}: --seed {seed} --steps {steps}: {}",
            if what.is_empty() {
                "no violation".to_owned()
            } else {
                format!("looks like {seen:?}: {}", what.join("; "))
            }
        );
        violations += outcome.violations.len();
    }
    say!("{} runs, {violations} violations", FOUND.len());
    if violations == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let config = run::config();
    let judges = args
        .mutate
        .map_or_else(harness::Judges::new, harness::Judges::mutated);
    if args.found {
        return replay_found(&config, &judges);
    }
    let (from, count) = match args.seed {
        Some(seed) => (seed, 1),
        None => (args.from, args.seeds),
    };
    let began = Instant::now();
    let mut violations = 0;
    let mut printed_trace = false;
    let mut found: std::collections::BTreeMap<&str, (u64, &str, usize)> = Default::default();
    let mut unclassified = 0;
    for seed in from..from.saturating_add(count) {
        let outcome = run::run(seed, args.steps, &config, &judges);
        if args.find {
            for scenario in &outcome.scenarios {
                match scenario {
                    Some((n, what)) => found.entry(n).or_insert((seed, what, 0)).2 += 1,
                    None => unclassified += 1,
                }
            }
            violations += outcome.violations.len();
            continue;
        }
        if args.seed.is_some() {
            say!("{}", outcome.summary);
            say!("{}", outcome.trace.trim_end());
        }
        if !outcome.violations.is_empty() {
            let trace = args.seed.is_none() && (args.traces || !printed_trace);
            report(&outcome, &args, trace);
            printed_trace |= trace;
            violations += outcome.violations.len();
        }
    }
    for (n, (seed, what, times)) in &found {
        say!(
            "scenario {n} ({what}): first at seed {seed} (--seed {seed} --steps {}), seen {times} times",
            args.steps
        );
    }
    if args.find {
        say!("violations like no scenario: {unclassified}");
    }
    let elapsed = began.elapsed().as_secs_f64();
    eprintln!(
        "{count} runs in {elapsed:.2} s ({:.0} seeds/s)",
        count as f64 / elapsed.max(1e-9)
    );
    say!("{count} runs, {violations} violations");
    if violations == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
