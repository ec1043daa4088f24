//! Everything outside tozai's code in one run: the two repositories, each region's table,
//! the run history of CodeBuild and CodePipeline, the events and their deliveries
//! (EventBridge and Lambda's asynchronous invocation), the virtual clock, the faults, and
//! the trace.
//!
//! Routing follows the infra's event rules: a created or updated ref of the primary's
//! repository goes to the sync-judge and the primary's pipeline-judge, a deleted one to the
//! mirror; a created or updated ref of the standby's repository to the standby's
//! pipeline-judge; `Sync Requested` to the mirror; each schedule to its function (the
//! mirror's reconciliation, each region's pipeline-judge's sweep). (The rules also filter
//! by ref name; the judges ignore the refs they do not handle, so delivering those too
//! changes nothing but the trace.) An invocation that fails is invoked again, as Lambda
//! does with an asynchronous invocation's error: twice more, a minute and then two minutes
//! later. The mirror runs one at a time (the templates' `MirrorReservedConcurrency`, 1 by
//! default, which its ledger relies on): an event that finds it busy is throttled, and
//! Lambda tries it again later, as often as it takes.

use std::collections::HashSet;

use tozai::refs::RefName;

use crate::generator::{self, Deliveries};
use crate::model::{C, Graph, RefUpdate, Repo, Side, Writer};
use crate::table::Table;
use crate::trace::{Action, Entry};

/// A Lambda function of tozai's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Function {
    SyncJudge,
    PipelineJudge(Side),
    Mirror,
}

impl std::fmt::Display for Function {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::SyncJudge => f.write_str("sync-judge"),
            Self::PipelineJudge(Side::Primary) => f.write_str("pipeline-judge@tokyo"),
            Self::PipelineJudge(Side::Standby) => f.write_str("pipeline-judge@osaka"),
            Self::Mirror => f.write_str("mirror"),
        }
    }
}

/// A ref change in one repository, as CodeCommit reports it.
#[derive(Debug, Clone)]
pub struct PushEvent {
    pub side: Side,
    pub reference: RefName,
    pub old: Option<C>,
    pub new: Option<C>,
    pub by: Writer,
}

/// An event on a bus.
#[derive(Debug, Clone)]
pub enum Event {
    Push(PushEvent),
    /// One of tozai's own events (`Sync Requested`, `Sync Completed`, `Sync Failed`).
    Bus {
        detail_type: String,
        detail: serde_json::Value,
    },
    /// An EventBridge schedule of one function: the mirror's reconciliation, or a
    /// region's pipeline-judge's sweep.
    Schedule(Function),
}

/// Handing one event to one function (one attempt).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    pub event: usize,
    pub function: Function,
    /// 1 for EventBridge's delivery, 2 and 3 for Lambda's retries.
    pub attempt: u8,
}

/// Something the scheduler fires at a virtual time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// The generator's next push.
    Push,
    Deliver(Delivery),
}

/// One run of a pipeline or build.
#[derive(Debug, Clone)]
pub struct Run {
    pub id: String,
    pub target: String,
    /// `codebuild` or `codepipeline`.
    pub kind: String,
    pub side: Side,
    pub reference: RefName,
    pub commit: C,
    pub token: String,
    pub seq: u64,
    pub at: u64,
    /// The invocation that started it (0: before the run began).
    pub invocation: u64,
}

/// How long CodeBuild returns the same build for a repeated `idempotencyToken`.
pub const CODEBUILD_IDEMPOTENCY_MS: u64 = 5 * 60 * 1000;
/// Lambda's waits before its two retries of a failed asynchronous invocation.
pub const RETRY_WAITS_MS: [u64; 2] = [60_000, 120_000];
/// How many mirrors run at once: the templates' `MirrorReservedConcurrency` (1 by default).
pub const MIRROR_CONCURRENCY: usize = 1;
/// The longest Lambda waits before it tries a throttled event again (it starts at a second
/// and grows to 5 minutes; the sim draws up to a minute).
pub const THROTTLED_WAIT_MS: u64 = 60_000;

/// Which faults are injected, and how often.
#[derive(Debug, Clone, Copy)]
pub struct Faults {
    /// Any service call fails with a transient error (throttling) before it acts.
    pub throttle: f64,
    /// Recording a start fails after the start happened.
    pub record: f64,
    /// The standby's git server fails partway through a mirror's push.
    pub mid_push: f64,
    /// A mirror invocation lands in a new container, its cache empty.
    pub cold_cache: f64,
    /// Off while deliveries settle.
    pub on: bool,
}

/// A fault that may be injected into one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Throttle,
    Record,
    MidPush,
    ColdCache,
}

/// The world of one run.
pub struct World {
    pub graph: Graph,
    pub primary: Repo,
    pub standby: Repo,
    /// Each region's checkpoint table, indexed by [`Side`].
    pub tables: [Table; 2],
    pub runs: Vec<Run>,
    pub events: Vec<Event>,
    /// (when, insertion order, what): fired in any order once due.
    pub agenda: Vec<(u64, u64, Due)>,
    pub trace: Vec<Entry>,
    /// Virtual milliseconds since the run began.
    pub now: u64,
    seq: u64,
    agenda_order: u64,
    pub faults: Faults,
    pub deliveries: Deliveries,
    fault_rng: fastrand::Rng,
    delivery_rng: fastrand::Rng,
    /// (event, function) pairs an invocation handled without error.
    pub handled: HashSet<(usize, Function)>,
    /// How many deliveries each (event, function) was planned.
    pub planned: std::collections::HashMap<(usize, Function), usize>,
    /// The warm mirror container's cache: the commits it has fetched.
    pub mirror_cache: HashSet<C>,
    invocations: u64,
    /// How many mirror invocations are running.
    mirrors_running: usize,
}

impl World {
    pub fn new(seed: u64, faults: Faults, deliveries: Deliveries) -> Self {
        let mut seeds = fastrand::Rng::with_seed(seed ^ 0xfa17);
        Self {
            graph: Graph::default(),
            primary: Repo::new(Side::Primary),
            standby: Repo::new(Side::Standby),
            tables: [Table::default(), Table::default()],
            runs: Vec::new(),
            events: Vec::new(),
            agenda: Vec::new(),
            trace: Vec::new(),
            now: 0,
            seq: 0,
            agenda_order: 0,
            faults,
            deliveries,
            fault_rng: fastrand::Rng::with_seed(seeds.u64(..)),
            delivery_rng: fastrand::Rng::with_seed(seeds.u64(..)),
            handled: HashSet::new(),
            planned: std::collections::HashMap::new(),
            mirror_cache: HashSet::new(),
            invocations: 0,
            mirrors_running: 0,
        }
    }

    pub fn repo(&self, side: Side) -> &Repo {
        match side {
            Side::Primary => &self.primary,
            Side::Standby => &self.standby,
        }
    }

    pub fn repo_mut(&mut self, side: Side) -> &mut Repo {
        match side {
            Side::Primary => &mut self.primary,
            Side::Standby => &mut self.standby,
        }
    }

    pub fn table(&mut self, side: Side) -> &mut Table {
        &mut self.tables[side as usize]
    }

    /// Appends to the trace; the entry's sequence number.
    pub fn log(&mut self, action: Action) -> u64 {
        self.seq += 1;
        self.trace.push(Entry {
            seq: self.seq,
            at: self.now,
            action,
        });
        self.seq
    }

    pub fn note(&mut self, text: impl Into<String>) {
        self.log(Action::Note(text.into()));
    }

    /// True when this call gets the fault (never while deliveries settle).
    pub fn fault(&mut self, fault: Fault) -> bool {
        let rate = match fault {
            Fault::Throttle => self.faults.throttle,
            Fault::Record => self.faults.record,
            Fault::MidPush => self.faults.mid_push,
            Fault::ColdCache => self.faults.cold_cache,
        };
        self.faults.on && rate > 0.0 && self.fault_rng.f64() < rate
    }

    /// A number from the fault stream (how far a failing push got).
    pub fn fault_pick(&mut self, below: usize) -> usize {
        self.fault_rng.usize(..below.max(1))
    }

    pub fn schedule(&mut self, at: u64, due: Due) {
        self.agenda_order += 1;
        self.agenda.push((at, self.agenda_order, due));
    }

    /// The repository of `side` starts with `main` at `c`.
    pub fn seed_branch(&mut self, side: Side, name: &str, c: C) {
        let reference = RefName::branch(name).expect("a valid name");
        self.receive(side, c);
        let seq = self.log(Action::Note(format!(
            "seed: {side:?} {} at {}",
            reference.full(),
            Graph::label(c)
        )));
        let repo = self.repo_mut(side);
        repo.refs.insert(reference.clone(), c);
        repo.log.push(RefUpdate {
            seq,
            reference,
            old: None,
            new: Some(c),
            by: Writer::Seed,
            kind: "seed",
            event: usize::MAX,
        });
    }

    /// A run that happened before the simulation began (the targets start deployed).
    pub fn seed_run(&mut self, side: Side, target: &str, kind: &str, reference: RefName, c: C) {
        self.runs.push(Run {
            id: format!("seed-{target}"),
            target: target.to_owned(),
            kind: kind.to_owned(),
            side,
            reference,
            commit: c,
            token: String::new(),
            seq: 0,
            at: 0,
            invocation: 0,
        });
    }

    /// `side`'s repository receives `c` and everything it descends from.
    pub fn receive(&mut self, side: Side, c: C) {
        let mut todo = vec![c];
        while let Some(n) = todo.pop() {
            if self.repo_mut(side).has.insert(n) {
                todo.extend(self.graph.get(n).parents.clone());
            }
        }
    }

    /// Moves `reference` of `side` from `expected` to `new` if it is still at `expected`,
    /// and emits CodeCommit's event for it. The event's index, or `None` when the ref had
    /// moved (nothing changed).
    pub fn push(
        &mut self,
        side: Side,
        reference: &RefName,
        expected: Option<C>,
        new: Option<C>,
        by: Writer,
        kind: &'static str,
    ) -> Option<usize> {
        if let Some(c) = new {
            self.receive(side, c);
        }
        if !self.repo_mut(side).swap(reference, expected, new) {
            return None;
        }
        let event = self.events.len();
        let seq = self.log(Action::Push {
            event,
            side,
            reference: reference.clone(),
            old: expected,
            new,
            by,
            kind,
        });
        self.repo_mut(side).log.push(RefUpdate {
            seq,
            reference: reference.clone(),
            old: expected,
            new,
            by,
            kind,
            event,
        });
        self.events.push(Event::Push(PushEvent {
            side,
            reference: reference.clone(),
            old: expected,
            new,
            by,
        }));
        self.plan(event);
        Some(event)
    }

    /// Puts one of tozai's events on the bus.
    pub fn publish(&mut self, detail_type: &str, detail: serde_json::Value) -> usize {
        let event = self.events.len();
        self.log(Action::Published {
            event,
            detail_type: detail_type.to_owned(),
            detail: detail.to_string(),
        });
        self.events.push(Event::Bus {
            detail_type: detail_type.to_owned(),
            detail,
        });
        self.plan(event);
        event
    }

    /// The schedule of `function` fires.
    pub fn tick(&mut self, function: Function) -> usize {
        let event = self.events.len();
        self.log(Action::Note(format!(
            "schedule of {function}: event e{event}"
        )));
        self.events.push(Event::Schedule(function));
        self.plan(event);
        event
    }

    /// Every schedule fires: the mirror's reconciliation, and each region's
    /// pipeline-judge's sweep.
    pub fn tick_all(&mut self) {
        for function in [
            Function::Mirror,
            Function::PipelineJudge(Side::Primary),
            Function::PipelineJudge(Side::Standby),
        ] {
            self.tick(function);
        }
    }

    /// The functions an event is delivered to (the infra's event rules).
    pub fn route(&self, event: usize) -> Vec<Function> {
        match &self.events[event] {
            Event::Push(p) => match (p.side, p.new.is_some()) {
                (Side::Primary, true) => {
                    vec![Function::SyncJudge, Function::PipelineJudge(Side::Primary)]
                }
                (Side::Primary, false) => vec![Function::Mirror],
                (Side::Standby, true) => vec![Function::PipelineJudge(Side::Standby)],
                (Side::Standby, false) => Vec::new(),
            },
            Event::Bus { detail_type, .. } if detail_type == tozai::event::SYNC_REQUESTED => {
                vec![Function::Mirror]
            }
            Event::Bus { .. } => Vec::new(),
            Event::Schedule(function) => vec![*function],
        }
    }

    /// Plans the deliveries of a new event: each of its functions gets it some number of
    /// times, each after its own delay.
    fn plan(&mut self, event: usize) {
        let at_least_once = !matches!(self.events[event], Event::Push(_));
        for function in self.route(event) {
            let delays = generator::delays(&mut self.delivery_rng, &self.deliveries, at_least_once);
            self.planned.insert((event, function), delays.len());
            for delay in delays {
                self.schedule(
                    self.now + delay,
                    Due::Deliver(Delivery {
                        event,
                        function,
                        attempt: 1,
                    }),
                );
            }
        }
    }

    /// Delivers `event` to `function` once more, soon (settling).
    pub fn redeliver(&mut self, event: usize, function: Function) {
        let delay = self.delivery_rng.u64(..2_000);
        self.schedule(
            self.now + delay,
            Due::Deliver(Delivery {
                event,
                function,
                attempt: 1,
            }),
        );
    }

    /// True when `delivery` is throttled, the function's reserved concurrency taken by the
    /// invocations running: Lambda keeps the event and tries it again later (not a retry: it
    /// counts no attempt).
    pub fn throttled(&mut self, delivery: Delivery) -> bool {
        if delivery.function != Function::Mirror || self.mirrors_running < MIRROR_CONCURRENCY {
            return false;
        }
        let at = self.now + 1_000 + self.delivery_rng.u64(..THROTTLED_WAIT_MS - 1_000);
        self.note(format!(
            "mirror busy (reserved concurrency {MIRROR_CONCURRENCY}): e{} throttled, tried again at {:.3}s",
            delivery.event,
            at as f64 / 1000.0
        ));
        self.schedule(at, Due::Deliver(delivery));
        true
    }

    /// An invocation begins; its number.
    pub fn begin(&mut self, delivery: Delivery) -> u64 {
        if delivery.function == Function::Mirror {
            self.mirrors_running += 1;
        }
        self.invocations += 1;
        let invocation = self.invocations;
        self.log(Action::Invoked {
            invocation,
            function: delivery.function,
            event: delivery.event,
            attempt: delivery.attempt,
        });
        invocation
    }

    /// An invocation ended: with its decision record, or an error (retried by Lambda).
    pub fn finish(&mut self, invocation: u64, delivery: Delivery, outcome: Result<String, String>) {
        if delivery.function == Function::Mirror {
            self.mirrors_running -= 1;
        }
        match outcome {
            Ok(record) => {
                self.handled.insert((delivery.event, delivery.function));
                self.log(Action::Decided { invocation, record });
            }
            Err(error) => {
                let retry_at = (delivery.attempt <= RETRY_WAITS_MS.len() as u8).then(|| {
                    let wait = RETRY_WAITS_MS[usize::from(delivery.attempt) - 1];
                    self.now + wait + self.delivery_rng.u64(..5_000)
                });
                self.log(Action::Failed {
                    invocation,
                    error,
                    retry_at,
                });
                if let Some(at) = retry_at {
                    self.schedule(
                        at,
                        Due::Deliver(Delivery {
                            attempt: delivery.attempt + 1,
                            ..delivery
                        }),
                    );
                }
            }
        }
    }

    /// A start call reaches CodeBuild or CodePipeline: the run's index and whether it is
    /// new. CodeBuild returns the build it started for the same `idempotencyToken` within
    /// the last 5 minutes; CodePipeline documents no such window (tozai's own docs say so)
    /// and starts an execution each time.
    #[allow(clippy::too_many_arguments)]
    pub fn start_run(
        &mut self,
        invocation: u64,
        side: Side,
        target: &str,
        kind: &str,
        reference: RefName,
        commit: C,
        token: &str,
    ) -> (usize, bool) {
        let now = self.now;
        let repeat = (kind == "codebuild")
            .then(|| {
                self.runs.iter().rposition(|r| {
                    r.token == token && r.side == side && now - r.at <= CODEBUILD_IDEMPOTENCY_MS
                })
            })
            .flatten();
        let (run, real) = match repeat {
            Some(run) => (run, false),
            None => {
                let n = self.runs.len();
                self.runs.push(Run {
                    id: format!("{kind}-{n}"),
                    target: target.to_owned(),
                    kind: kind.to_owned(),
                    side,
                    reference,
                    commit,
                    token: token.to_owned(),
                    seq: self.seq + 1,
                    at: now,
                    invocation,
                });
                (n, true)
            }
        };
        self.log(Action::Started {
            invocation,
            run,
            real,
        });
        (run, real)
    }

    /// The trace, one line per entry.
    pub fn show_trace(&self) -> String {
        let mut out = String::new();
        for e in &self.trace {
            out.push_str(&e.show(&self.graph, &self.runs));
            out.push('\n');
        }
        out
    }
}

/// The world behind a lock, shared by the invocations of one run (one thread: the lock is
/// never contended; it makes the ports' futures `Send`, as the ports require).
pub struct Sim {
    world: std::sync::Mutex<World>,
}

impl Sim {
    pub fn new(world: World) -> Self {
        Self {
            world: std::sync::Mutex::new(world),
        }
    }

    /// Acts on the world, atomically.
    pub fn with<R>(&self, f: impl FnOnce(&mut World) -> R) -> R {
        let mut world = self.world.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut world)
    }

    pub fn into_world(self) -> World {
        self.world.into_inner().unwrap_or_else(|e| e.into_inner())
    }
}
