//! The one module that touches tozai's judges and ports: the fakes of the ports over the
//! [`World`], the events as the Lambdas receive them, and one invocation of a judge.
//!
//! Every port call is an await point ([`yield_now`]) followed by one atomic step on the
//! world, which may first be refused by an injected fault. The fakes keep the services'
//! semantics:
//!
//! | port | service | semantics kept |
//! |---|---|---|
//! | `ChangeSource::changes` | CodeCommit `GetDifferences` | the tree diff of any two commits the repository holds |
//! | `Ancestry::merge_base` | CodeCommit `GetMergeOptions` | the best common ancestor |
//! | `Ancestry::branch_head` | CodeCommit `GetBranch` | the branch's head at the moment of the call |
//! | `Ancestry::first_parent` | CodeCommit `GetCommit` | the commit's first parent |
//! | `Ancestry::branches` | CodeCommit `ListBranches` | every branch at the moment of the call |
//! | `CheckpointStore` | DynamoDB | `GetItem`; `PutItem` conditional on the version read (`attribute_not_exists` for none); `now()` is the virtual clock, in Unix seconds |
//! | `Starter::start` | CodeBuild `StartBuild`, CodePipeline `StartPipelineExecution` | a run per call; CodeBuild returns the same build for a token repeated within 5 minutes |
//! | `Starter::find_run` | `ListBuildsForProject` + `BatchGetBuilds`, `ListPipelineExecutions` + `GetPipelineExecution` | the newest run of the target at the commit for the ref, begun at or after `since` |
//! | `EventSink` | EventBridge `PutEvents` | `Sync Requested` is delivered to the mirror (at least once) |
//! | `RefMirror` | the mirror's git2 run and its `DynamoLedger` | fetch the source into the cache (a new container's is empty), list the standby, read the ledger (`BatchGetItem`), [`plan_refs`] with it as `owned`, record the push's [`intent`] (`BatchWriteItem`; a failure fails the run before anything is pushed), push each ref only if it still has the value the plan read, then record what is [`settled`] (`BatchWriteItem`; a failure is logged): created and updated refs at their new value, deleted ones forgotten, unchanged ones adopted |
//!
//! An invocation runs under its Lambda's timeout (the templates' defaults: 60 seconds for
//! the judges, 900 for the mirror): one still running then is stopped at its next await
//! point, as Lambda stops it, and fails (Lambda retries it).
//!
//! When the ports change shape, this module is the one to port.
//!
//! A [`Mutation`] (`--mutate NAME`) breaks one of these stand-ins on purpose, the way a bug
//! in a judge would break what it relies on, to show that the checker catches it: tozai's
//! own code is never changed.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use serde_json::{Value, json};
use tozai::change::Change;
use tozai::config::Config;
use tozai::event::{EventError, Inbound};
use tozai::judge::{self, IgnoredCallers, RefMirror};
use tozai::mirror::{
    History, MirrorOptions, MirrorOutcome, OwnedRefs, Record, RefMap, RefResult, RefSelection,
    RefStatus, RefStep, intent, plan_refs, settled,
};
use tozai::ports::{
    Ancestry, ChangeError, ChangeSource, Checkpoint, CheckpointStore, EventSink, MirrorError,
    PendingStart, RunKind, ServiceError, StartRequest, Starter,
};
use tozai::refs::{CommitId, RefName};

use crate::model::{C, Graph, Side, Writer};
use crate::scheduler::{Task, yield_now};
use crate::table::{Attr, Item, n, s};
use crate::trace::{Action, Consumer};
use crate::world::{Delivery, Event, Fault, Function, Sim, World};

const ACCOUNT: &str = "111111111111";
/// The mirror's role: its pushes carry it as the caller.
const MIRROR_ROLE: &str = "tozai-mirror";
/// How many times the mirror reads and plans again when the standby moved under it.
const PLAN_ATTEMPTS: u32 = 3;
/// The Unix time (seconds) virtual time 0 is: 2026-02-01T00:00:00Z, as events say.
pub const EPOCH_UNIX: u64 = 1_769_904_000;

/// The Lambda timeout of a function, in milliseconds: the templates' defaults (the judges'
/// 60 seconds, under the 2-minute lease of a claimed start; the mirror's 900).
pub fn timeout_ms(function: Function) -> u64 {
    match function {
        Function::Mirror => 900_000,
        Function::SyncJudge | Function::PipelineJudge(_) => 60_000,
    }
}

/// The virtual time `ms` as the store's clock reads it (Unix seconds).
pub fn unix_seconds(ms: u64) -> u64 {
    EPOCH_UNIX + ms / 1000
}

/// The region (config name) of one side.
fn region(config: &Config, side: Side) -> &str {
    match side {
        Side::Primary => &config.primary().name,
        Side::Standby => &config.standby().name,
    }
}

/// The config's name for each side, checked against the model's two sides.
pub fn side_of(config: &Config, region_name: &str) -> Side {
    if region_name == config.primary {
        Side::Primary
    } else {
        Side::Standby
    }
}

fn repository(config: &Config, side: Side) -> String {
    let region = match side {
        Side::Primary => config.primary(),
        Side::Standby => config.standby(),
    };
    region.repository.name()
}

/// A virtual time as EventBridge writes it.
fn rfc3339(ms: u64) -> String {
    let secs = ms / 1000;
    let day = (1 + secs / 86_400).min(28);
    format!(
        "2026-02-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        secs / 3600 % 24,
        secs / 60 % 60,
        secs % 60,
        ms % 1000
    )
}

/// The event as EventBridge hands it to a Lambda, classified by tozai's own parser.
fn inbound(config: &Config, w: &World, event: usize) -> Result<Inbound, EventError> {
    let id = format!("00000000-0000-4000-8000-{event:012}");
    let time = rfc3339(w.now);
    let primary = &config.primary().aws_region;
    let value = match &w.events[event] {
        Event::Push(p) => {
            let aws_region = match p.side {
                Side::Primary => primary,
                Side::Standby => &config.standby().aws_region,
            };
            let name = repository(config, p.side);
            let caller = match p.by {
                Writer::Mirror => format!("arn:aws:sts::{ACCOUNT}:assumed-role/{MIRROR_ROLE}/sim"),
                Writer::Developer | Writer::Seed => format!("arn:aws:iam::{ACCOUNT}:user/engineer"),
            };
            let mut detail = json!({
                "callerUserArn": caller,
                "event": match (p.old, p.new) {
                    (None, _) => "referenceCreated",
                    (Some(_), Some(_)) => "referenceUpdated",
                    (Some(_), None) => "referenceDeleted",
                },
                "referenceFullName": p.reference.full(),
                "referenceName": p.reference.short(),
                "referenceType": p.reference.kind(),
                "repositoryId": format!("{name}-{aws_region}"),
                "repositoryName": name,
            });
            if let Some(old) = p.old {
                detail["oldCommitId"] = json!(w.graph.id(old).as_str());
            }
            if let Some(new) = p.new {
                detail["commitId"] = json!(w.graph.id(new).as_str());
            }
            json!({
                "version": "0", "id": id,
                "detail-type": tozai::event::STATE_CHANGE, "source": "aws.codecommit",
                "account": ACCOUNT, "time": time, "region": aws_region,
                "resources": [format!("arn:aws:codecommit:{aws_region}:{ACCOUNT}:{name}")],
                "detail": detail,
            })
        }
        Event::Bus {
            detail_type,
            detail,
        } => json!({
            "version": "0", "id": id, "detail-type": detail_type,
            "source": tozai::event::TOZAI_SOURCE, "account": ACCOUNT, "time": time,
            "region": primary, "resources": [], "detail": detail,
        }),
        Event::Schedule(function) => {
            let (aws_region, rule) = match function {
                Function::PipelineJudge(side) => (
                    match side {
                        Side::Primary => primary,
                        Side::Standby => &config.standby().aws_region,
                    },
                    "tozai-pipeline-judge-sweep",
                ),
                _ => (primary, "tozai-mirror-schedule"),
            };
            json!({
                "version": "0", "id": id, "detail-type": "Scheduled Event", "source": "aws.events",
                "account": ACCOUNT, "time": time, "region": aws_region,
                "resources": [format!("arn:aws:events:{aws_region}:{ACCOUNT}:rule/{rule}")],
                "detail": {},
            })
        }
    };
    tozai::event::from_value(value)
}

/// A bug injected into the harness's stand-ins, never into tozai (`--mutate NAME`): each
/// takes away one thing a guarantee rests on, so the checker must report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutation {
    /// `PutItem` ignores the version the judge read: no compare-and-swap, so two
    /// invocations can both claim one start, or save over each other.
    NoCas,
    /// `find_run` never finds a run: a claim taken over after its lease lapsed cannot see
    /// the run its first claimer started.
    NoFindRun,
    /// `GetBranch` answers with the commit of the event being handled, not the branch's
    /// head: the judge trusts the event, as the judges before issue 11 did.
    TrustEvent,
    /// The mirror's ledger says the mirror made every standby ref, at its current value:
    /// the mirror takes refs made on the standby.
    LedgerOwnsAll,
    /// The mirror records no intent before it pushes, as before the ledger's fix: a record
    /// lost after a push loses the mirror a ref it made (seeds 1966, 2271, 3080).
    NoIntent,
}

impl Mutation {
    /// Every mutation, by its `--mutate` name.
    pub const ALL: [(&'static str, Mutation); 5] = [
        ("no-cas", Mutation::NoCas),
        ("no-find-run", Mutation::NoFindRun),
        ("trust-event", Mutation::TrustEvent),
        ("ledger-owns-all", Mutation::LedgerOwnsAll),
        ("no-intent", Mutation::NoIntent),
    ];

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|&(_, m)| m)
    }

    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, m)| *m == self)
            .map_or("?", |(n, _)| n)
    }
}

/// What the judges are set up with besides the config, built once for every run (as a
/// Lambda's `main` builds it once): the callers the sync-judge ignores, the mirror's role;
/// and the [`Mutation`], if any, of the stand-ins.
pub struct Judges {
    ignored: IgnoredCallers,
    pub mutation: Option<Mutation>,
}

impl Judges {
    pub fn new() -> Self {
        Self {
            ignored: IgnoredCallers::parse(MIRROR_ROLE).expect("a valid role name"),
            mutation: None,
        }
    }

    /// The judges over stand-ins broken by `mutation`.
    pub fn mutated(mutation: Mutation) -> Self {
        Self {
            mutation: Some(mutation),
            ..Self::new()
        }
    }
}

impl Default for Judges {
    fn default() -> Self {
        Self::new()
    }
}

/// The judges over the world.
pub struct Harness<'s> {
    sim: &'s Sim,
    config: &'s Config,
    ignored: &'s IgnoredCallers,
    mutation: Option<Mutation>,
}

impl<'s> Harness<'s> {
    pub fn new(sim: &'s Sim, config: &'s Config, judges: &'s Judges) -> Self {
        Self {
            sim,
            config,
            ignored: &judges.ignored,
            mutation: judges.mutation,
        }
    }

    /// Each consumer starts where the run begins: every target's and the sync's checkpoint
    /// at `main`'s head `c`, each target's with the run it started there.
    pub fn seed(&self, c: C) {
        let main = RefName::Branch(self.config.base_branch.clone());
        self.sim.with(|w| {
            let id = w.graph.id(c).clone();
            for t in &self.config.targets {
                let side = side_of(self.config, &t.region);
                let checkpoint = Checkpoint {
                    version: 1,
                    run_id: Some(format!("seed-{}", t.name)),
                    ..Checkpoint::at(id.clone())
                };
                let consumer = judge::target_consumer(&t.name);
                let key = checkpoint_key(&consumer, &repository(self.config, side), &main);
                w.table(side)
                    .put_if(&key, checkpoint_item(&checkpoint, 1), |_| true);
            }
            let key = checkpoint_key(
                judge::SYNC_CONSUMER,
                &repository(self.config, Side::Primary),
                &main,
            );
            let checkpoint = Checkpoint::at(id.clone());
            w.table(Side::Primary)
                .put_if(&key, checkpoint_item(&checkpoint, 1), |_| true);
        });
    }

    /// One invocation of `delivery.function` with its event: a task for the scheduler.
    /// It ends by handing its outcome to the world (which schedules Lambda's retries). One
    /// still running past its Lambda timeout is dropped at its next await point, as Lambda
    /// stops it, and fails.
    pub fn invoke(&self, delivery: Delivery) -> Task<'s> {
        let (sim, config, ignored) = (self.sim, self.config, self.ignored);
        let (invocation, deadline) = sim.with(|w| {
            let deadline = w.now + timeout_ms(delivery.function);
            (w.begin(delivery), deadline)
        });
        let calls = Calls {
            sim,
            config,
            invocation,
            event: delivery.event,
            mutation: self.mutation,
        };
        let work: Pin<Box<dyn Future<Output = Result<String, String>> + 's>> =
            Box::pin(async move {
                let event = sim.with(|w| inbound(config, w, delivery.event));
                let event = event.map_err(|e| format!("malformed event: {e}"))?;
                let record = match delivery.function {
                    Function::SyncJudge => {
                        judge::sync_judge(
                            config,
                            &RepoPort(calls, Side::Primary),
                            &StorePort(calls, Side::Primary),
                            &BusPort(calls),
                            ignored,
                            event,
                        )
                        .await
                    }
                    Function::PipelineJudge(side) => {
                        judge::pipeline_judge(
                            config,
                            region(config, side),
                            &RepoPort(calls, side),
                            &StorePort(calls, side),
                            &StarterPort(calls, side),
                            event,
                        )
                        .await
                    }
                    Function::Mirror => {
                        judge::mirror_job(config, &MirrorPort(calls), &BusPort(calls), event).await
                    }
                };
                record
                    .map(|r| {
                        sim.with(|w| note_diffs(w, invocation, &r));
                        r.to_json()
                    })
                    .map_err(|e| e.to_string())
            });
        let mut work = Some(work);
        Box::pin(std::future::poll_fn(move |cx| {
            let Some(running) = work.as_mut() else {
                return Poll::Ready(());
            };
            if sim.with(|w| w.now > deadline) {
                work = None;
                let seconds = timeout_ms(delivery.function) / 1000;
                let timed_out = format!("Task timed out after {seconds}.00 seconds");
                sim.with(|w| w.finish(invocation, delivery, Err(timed_out)));
                return Poll::Ready(());
            }
            match running.as_mut().poll(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(outcome) => {
                    work = None;
                    sim.with(|w| w.finish(invocation, delivery, outcome));
                    Poll::Ready(())
                }
            }
        }))
    }
}

/// The diffs a judge's decision record says it made, as trace entries of their own.
fn note_diffs(w: &mut World, invocation: u64, record: &judge::DecisionRecord) {
    for one in &record.swept {
        note_diffs(w, invocation, one);
    }
    for d in &record.diffs {
        let why = serde_json::to_value(&d.why)
            .ok()
            .and_then(|v| v.get("why").and_then(|w| w.as_str()).map(str::to_owned))
            .unwrap_or_default();
        let base = d.base.as_ref().and_then(|b| w.graph.find(b));
        w.log(Action::Diffed {
            invocation,
            base,
            why,
        });
    }
}

// ---------------------------------------------------------------- calls

/// What every port of one invocation shares.
#[derive(Clone, Copy)]
struct Calls<'s> {
    sim: &'s Sim,
    config: &'s Config,
    invocation: u64,
    /// The event being handled (for [`Mutation::TrustEvent`]).
    event: usize,
    mutation: Option<Mutation>,
}

impl Calls<'_> {
    fn mutated(&self, mutation: Mutation) -> bool {
        self.mutation == Some(mutation)
    }

    /// One service call: an await point, then `act` on the world in one step, unless the
    /// call is throttled (`Err`, nothing done).
    async fn call<R>(
        &self,
        api: &str,
        act: impl FnOnce(&mut World) -> R + Send,
    ) -> Result<R, String> {
        yield_now().await;
        let invocation = self.invocation;
        self.sim.with(|w| {
            if w.fault(Fault::Throttle) {
                let call = format!("{api}: throttled");
                w.log(Action::Fault {
                    invocation,
                    call: call.clone(),
                });
                return Err(format!(
                    "{api}: ThrottlingException: Rate exceeded (simulated)"
                ));
            }
            Ok(act(w))
        })
    }
}

fn commit_of(w: &World, side: Side, id: &CommitId) -> Option<C> {
    w.graph.find(id).filter(|c| w.repo(side).has.contains(c))
}

// ---------------------------------------------------------------- CodeCommit

/// One region's repository through CodeCommit's API.
struct RepoPort<'s>(Calls<'s>, Side);

impl RepoPort<'_> {
    fn unknown(&self, spec: &CommitId) -> ChangeError {
        ChangeError::UnknownRevision {
            repository: repository(self.0.config, self.1),
            spec: spec.to_string(),
        }
    }

    fn throttled(&self, context: String) -> ChangeError {
        ChangeError::Backend {
            repository: repository(self.0.config, self.1),
            context: context.clone(),
            transient: true,
            source: Box::new(std::io::Error::other(context)),
        }
    }
}

impl ChangeSource for RepoPort<'_> {
    async fn changes(
        &self,
        before: Option<&CommitId>,
        after: &CommitId,
    ) -> Result<Vec<Change>, ChangeError> {
        let side = self.1;
        let found = self
            .0
            .call("GetDifferences", |w| {
                let before = before.map(|b| commit_of(w, side, b).ok_or(b));
                let after = commit_of(w, side, after).ok_or(after);
                match (before.transpose(), after) {
                    (Ok(before), Ok(after)) => Ok(w.graph.diff(before, after)),
                    (Err(missing), _) | (_, Err(missing)) => Err(missing.clone()),
                }
            })
            .await
            .map_err(|e| self.throttled(e))?;
        found.map_err(|missing| self.unknown(&missing))
    }
}

impl Ancestry for RepoPort<'_> {
    async fn merge_base(
        &self,
        a: &CommitId,
        b: &CommitId,
    ) -> Result<Option<CommitId>, ChangeError> {
        let side = self.1;
        let found = self
            .0
            .call("GetMergeOptions", |w| {
                match (commit_of(w, side, a), commit_of(w, side, b)) {
                    (Some(a), Some(b)) => {
                        Ok(w.graph.merge_base(a, b).map(|c| w.graph.id(c).clone()))
                    }
                    (None, _) => Err(a.clone()),
                    (_, None) => Err(b.clone()),
                }
            })
            .await
            .map_err(|e| self.throttled(e))?;
        found.map_err(|missing| self.unknown(&missing))
    }

    async fn branch_head(&self, branch: &str) -> Result<Option<CommitId>, ChangeError> {
        let (side, event) = (self.1, self.0.event);
        let trust_event = self.0.mutated(Mutation::TrustEvent);
        self.0
            .call("GetBranch", |w| {
                let head = match &w.events[event] {
                    Event::Push(p)
                        if trust_event
                            && p.side == side
                            && matches!(&p.reference, RefName::Branch(b) if b == branch) =>
                    {
                        p.new
                    }
                    _ => w.repo(side).branch(branch),
                };
                head.map(|c| w.graph.id(c).clone())
            })
            .await
            .map_err(|e| self.throttled(e))
    }

    async fn first_parent(&self, commit: &CommitId) -> Result<Option<CommitId>, ChangeError> {
        let side = self.1;
        let found = self
            .0
            .call("GetCommit", |w| match commit_of(w, side, commit) {
                Some(c) => Ok(w
                    .graph
                    .get(c)
                    .parents
                    .first()
                    .map(|&p| w.graph.id(p).clone())),
                None => Err(commit.clone()),
            })
            .await
            .map_err(|e| self.throttled(e))?;
        found.map_err(|missing| self.unknown(&missing))
    }

    async fn branches(&self) -> Result<Vec<String>, ChangeError> {
        let side = self.1;
        self.0
            .call("ListBranches", |w| {
                w.repo(side)
                    .refs
                    .keys()
                    .filter_map(|r| match r {
                        RefName::Branch(b) => Some(b.clone()),
                        RefName::Tag(_) => None,
                    })
                    .collect()
            })
            .await
            .map_err(|e| self.throttled(e))
    }
}

// ---------------------------------------------------------------- DynamoDB

/// One region's checkpoint table.
struct StorePort<'s>(Calls<'s>, Side);

fn checkpoint_key(consumer: &str, repository: &str, reference: &RefName) -> String {
    format!("checkpoint#{consumer}#{repository}#{}", reference.full())
}

/// A checkpoint as its item, at `version`.
fn checkpoint_item(checkpoint: &Checkpoint, version: u64) -> Item {
    let mut item = Item::from([("version", Attr::N(version))]);
    if let Some(commit) = &checkpoint.commit {
        item.insert("commit", Attr::S(commit.to_string()));
    }
    if let Some(p) = &checkpoint.pending {
        item.insert("pending_commit", Attr::S(p.commit.to_string()));
        item.insert("claimed_at", Attr::N(p.claimed_at));
        item.insert("lease_until", Attr::N(p.lease_until));
    }
    if let Some(id) = &checkpoint.run_id {
        item.insert("run_id", Attr::S(id.clone()));
    }
    item
}

/// The checkpoint an item holds.
fn checkpoint_of(item: &Item) -> Checkpoint {
    let commit = |name| s(item, name).map(|c| c.parse().expect("the harness writes valid commits"));
    Checkpoint {
        commit: commit("commit"),
        version: n(item, "version").unwrap_or(0),
        pending: commit("pending_commit").map(|commit| PendingStart {
            commit,
            claimed_at: n(item, "claimed_at").unwrap_or(0),
            lease_until: n(item, "lease_until").unwrap_or(0),
        }),
        run_id: s(item, "run_id").map(str::to_owned),
    }
}

/// The attribute (the simulation's own, which tozai never reads) naming the invocation
/// that claimed the pending start, for the trace and the checker.
const CLAIMED_BY: &str = "sim_claimed_by";

fn consumer_of(config: &Config, consumer: &str) -> Consumer {
    config
        .targets
        .iter()
        .find(|t| judge::target_consumer(&t.name) == consumer)
        .map_or(Consumer::Sync, |t| Consumer::Target(t.name.clone()))
}

impl StorePort<'_> {
    fn error(&self, context: String) -> ServiceError {
        ServiceError::new(format!("DynamoDB table of {:?}", self.1), context, true)
    }
}

/// What a successful save did, for the trace.
fn log_save(
    w: &mut World,
    calls: Calls<'_>,
    side: Side,
    consumer: &str,
    reference: &RefName,
    (next, expected): (&Checkpoint, Option<&Checkpoint>),
    claimer: Option<u64>,
) {
    let invocation = calls.invocation;
    let find = |w: &World, id: &CommitId| w.graph.find(id).expect("a commit of the graph");
    let target = || match consumer_of(calls.config, consumer) {
        Consumer::Target(t) => t,
        Consumer::Sync => consumer.to_owned(),
    };
    let was_pending = expected.and_then(|e| e.pending.as_ref());
    if let Some(p) = &next.pending
        && was_pending.is_none()
    {
        let commit = find(w, &p.commit);
        w.log(Action::Claimed {
            invocation,
            target: target(),
            commit,
            outcome: format!("claimed, lease until {}", p.lease_until),
        });
    }
    if next.commit != expected.and_then(|e| e.commit.clone())
        && let Some(id) = &next.commit
    {
        let commit = find(w, id);
        w.log(Action::Saved {
            invocation,
            consumer: consumer_of(calls.config, consumer),
            side,
            reference: reference.clone(),
            commit,
            claimed_by: claimer.filter(|_| was_pending.is_some()),
        });
    } else if let Some(p) = was_pending
        && next.pending.is_none()
    {
        let commit = find(w, &p.commit);
        w.log(Action::Claimed {
            invocation,
            target: target(),
            commit,
            outcome: "given back".into(),
        });
    }
}

impl CheckpointStore for StorePort<'_> {
    async fn load(
        &self,
        consumer: &str,
        repository: &str,
        reference: &RefName,
    ) -> Result<Option<Checkpoint>, ServiceError> {
        let key = checkpoint_key(consumer, repository, reference);
        let side = self.1;
        let item = self
            .0
            .call("GetItem", |w| w.table(side).get(&key).cloned())
            .await
            .map_err(|e| self.error(e))?;
        Ok(item.as_ref().map(checkpoint_of))
    }

    async fn save(
        &self,
        consumer: &str,
        repository: &str,
        reference: &RefName,
        next: &Checkpoint,
        expected: Option<&Checkpoint>,
    ) -> Result<bool, ServiceError> {
        let key = checkpoint_key(consumer, repository, reference);
        let (side, calls) = (self.1, self.0);
        let version = expected.map_or(1, |e| e.version + 1);
        let mut item = checkpoint_item(next, version);
        if next.pending.is_some() {
            item.insert(CLAIMED_BY, Attr::N(calls.invocation));
        }
        let expected_version = expected.map(|e| e.version);
        // Recording a run a claim started: the fault "a start succeeds, its record fails".
        let records_a_start = next.pending.is_none()
            && next.run_id.is_some()
            && expected.is_some_and(|e| e.pending.is_some() && e.run_id != next.run_id);
        let saved = self
            .0
            .call("PutItem", |w| {
                if records_a_start && w.fault(Fault::Record) {
                    w.log(Action::Fault {
                        invocation: calls.invocation,
                        call: format!("PutItem {key} (recording a start): throttled"),
                    });
                    return Err(format!(
                        "PutItem {key}: ProvisionedThroughputExceededException (simulated)"
                    ));
                }
                let current = w.table(side).get(&key);
                let claimer = current.and_then(|c| n(c, CLAIMED_BY));
                let holds = match (current, expected_version) {
                    _ if calls.mutated(Mutation::NoCas) => true,
                    (None, None) => true,
                    (Some(c), Some(v)) => n(c, "version") == Some(v),
                    _ => false,
                };
                if holds {
                    w.table(side).put_if(&key, item, |_| true);
                    log_save(
                        w,
                        calls,
                        side,
                        consumer,
                        reference,
                        (next, expected),
                        claimer,
                    );
                }
                Ok(holds)
            })
            .await
            .map_err(|e| self.error(e))?;
        saved.map_err(|e| self.error(e))
    }

    fn now(&self) -> u64 {
        self.0.sim.with(|w| unix_seconds(w.now))
    }
}

// ---------------------------------------------------------------- CodeBuild, CodePipeline

/// One region's CodeBuild and CodePipeline.
struct StarterPort<'s>(Calls<'s>, Side);

impl Starter for StarterPort<'_> {
    async fn start(&self, request: &StartRequest) -> Result<String, ServiceError> {
        let (side, invocation) = (self.1, self.0.invocation);
        let api = match request.kind {
            RunKind::CodeBuild => "StartBuild",
            RunKind::CodePipeline => "StartPipelineExecution",
        };
        self.0
            .call(api, |w| {
                let c = w
                    .graph
                    .find(&request.commit)
                    .expect("a commit of the graph");
                let (run, _) = w.start_run(
                    invocation,
                    side,
                    &request.target,
                    request.kind.label(),
                    request.reference.clone(),
                    c,
                    &request.token,
                );
                w.runs[run].id.clone()
            })
            .await
            .map_err(|e| ServiceError::new(request.kind.label(), e, true))
    }

    async fn find_run(
        &self,
        request: &StartRequest,
        since: u64,
    ) -> Result<Option<String>, ServiceError> {
        let (side, invocation) = (self.1, self.0.invocation);
        let no_find_run = self.0.mutated(Mutation::NoFindRun);
        let api = match request.kind {
            RunKind::CodeBuild => "ListBuildsForProject",
            RunKind::CodePipeline => "ListPipelineExecutions",
        };
        self.0
            .call(api, |w| {
                let c = w.graph.find(&request.commit);
                let found = w
                    .runs
                    .iter()
                    .rev()
                    .find(|r| {
                        r.side == side
                            && r.target == request.target
                            && Some(r.commit) == c
                            && r.reference == request.reference
                            && unix_seconds(r.at) >= since
                    })
                    .map(|r| r.id.clone())
                    .filter(|_| !no_find_run);
                w.log(Action::Note(format!(
                    "#{invocation} find_run {} {} at {} since {since}: {}",
                    request.target,
                    request.reference.full(),
                    c.map_or_else(|| "?".to_owned(), Graph::label),
                    found.as_deref().unwrap_or("none")
                )));
                found
            })
            .await
            .map_err(|e| ServiceError::new(request.kind.label(), e, true))
    }
}

// ---------------------------------------------------------------- EventBridge

struct BusPort<'s>(Calls<'s>);

impl EventSink for BusPort<'_> {
    async fn publish(&self, detail_type: &str, detail: &Value) -> Result<(), ServiceError> {
        self.0
            .call("PutEvents", |w| {
                w.publish(detail_type, detail.clone());
            })
            .await
            .map_err(|e| ServiceError::new("EventBridge", e, true))
    }
}

// ---------------------------------------------------------------- the mirror

/// The mirror's run over the model: what `Git2Mirror` does, step by step, with its ledger
/// (`DynamoLedger`) in the primary's table.
struct MirrorPort<'s>(Calls<'s>);

/// The mirror cache's view of history: ancestry only between commits it holds.
struct CacheHistory<'a> {
    graph: &'a Graph,
    cache: &'a HashSet<C>,
}

impl History for CacheHistory<'_> {
    fn is_ancestor(&self, ancestor: &CommitId, descendant: &CommitId) -> bool {
        let held = |id: &CommitId| self.graph.find(id).filter(|c| self.cache.contains(c));
        match (held(ancestor), held(descendant)) {
            (Some(a), Some(d)) => self.graph.is_ancestor(a, d),
            _ => ancestor == descendant,
        }
    }
}

fn unreachable(location: String, context: &'static str, why: &str) -> MirrorError {
    MirrorError::Unreachable {
        location,
        context,
        source: Box::new(std::io::Error::other(why.to_owned())),
    }
}

fn ref_map(w: &World, side: Side) -> RefMap {
    w.repo(side)
        .refs
        .iter()
        .map(|(r, &c)| (r.clone(), w.graph.id(c).clone()))
        .collect()
}

/// The ledger item of one standby ref.
fn ledger_key(standby: &str, reference: &RefName) -> String {
    format!("mirrored#{standby}#{}", reference.full())
}

/// A ledger item as `DynamoLedger` writes it: `commit`, the last value, and `also`, the
/// ones before it (a push in flight: the value it replaces), here one string.
fn ledger_item(values: &[CommitId]) -> Option<Item> {
    let (commit, also) = values.split_last()?;
    let mut item = Item::from([("commit", Attr::S(commit.to_string()))]);
    if !also.is_empty() {
        let also: Vec<String> = also.iter().map(CommitId::to_string).collect();
        item.insert("also", Attr::S(also.join(" ")));
    }
    Some(item)
}

/// An item's recorded values: `also`'s, then `commit`.
fn ledger_values(item: &Item) -> Option<Vec<CommitId>> {
    let also = s(item, "also").unwrap_or_default().split_whitespace();
    let values = also.chain(Some(s(item, "commit")?)).map(|c| c.parse().ok());
    values.collect()
}

impl MirrorPort<'_> {
    fn standby(&self) -> String {
        repository(self.0.config, Side::Standby)
    }

    /// Fetches every branch and tag of the source into the cache (a new container's cache
    /// starts empty), and returns the source's refs.
    async fn fetch(&self) -> Result<RefMap, MirrorError> {
        let invocation = self.0.invocation;
        let fetched = self
            .0
            .call("git fetch (source)", |w| {
                if w.fault(Fault::ColdCache) {
                    w.mirror_cache.clear();
                    w.log(Action::Fault {
                        invocation,
                        call: "a new container: the mirror's cache is empty".into(),
                    });
                }
                let tips: Vec<C> = w.primary.refs.values().copied().collect();
                let reached = w.graph.reachable(tips);
                w.mirror_cache.extend(reached);
                ref_map(w, Side::Primary)
            })
            .await;
        fetched.map_err(|e| {
            unreachable(
                repository(self.0.config, Side::Primary),
                "fetching the source",
                &e,
            )
        })
    }

    /// Lists the standby's refs.
    async fn list_standby(&self) -> Result<RefMap, MirrorError> {
        let listed = self
            .0
            .call("git ls-remote (standby)", |w| ref_map(w, Side::Standby))
            .await;
        listed.map_err(|e| unreachable(self.standby(), "listing the target's refs", &e))
    }

    /// What the ledger holds for the selected refs the standby has (`BatchGetItem`).
    async fn owned(
        &self,
        standby_refs: &RefMap,
        selection: &RefSelection,
    ) -> Result<OwnedRefs, MirrorError> {
        let standby = self.standby();
        let owns_all = self.0.mutated(Mutation::LedgerOwnsAll);
        let read = self
            .0
            .call("BatchGetItem (the mirror's ledger)", |w| {
                let table = w.table(Side::Primary);
                standby_refs
                    .iter()
                    .filter(|(r, _)| selection.selects(r))
                    .filter_map(|(r, at)| {
                        if owns_all {
                            return Some((r.clone(), vec![at.clone()]));
                        }
                        let item = table.get(&ledger_key(&standby, r))?;
                        Some((r.clone(), ledger_values(item)?))
                    })
                    .collect()
            })
            .await;
        read.map_err(|e| MirrorError::Ledger {
            location: standby.clone(),
            context: "read what the mirror pushed there before",
            source: ServiceError::new("DynamoDB table of Primary", e, true),
        })
    }

    /// Pushes the plan's changes, each only if the standby's ref still has the value the
    /// plan read (checked for all before anything is sent). `Ok(None)`: a ref moved.
    async fn push(&self, steps: &[RefStep]) -> Result<Option<Vec<RefResult>>, MirrorError> {
        let invocation = self.0.invocation;
        let pushed = self
            .0
            .call("git push (standby)", |w| {
                let find = |g: &Graph, id: &CommitId| g.find(id).expect("a commit of the graph");
                let moved = steps.iter().filter(|s| s.action.pushes()).any(|s| {
                    w.standby.head(&s.reference) != s.action.expected_old().map(|id| find(&w.graph, id))
                });
                if moved {
                    w.log(Action::Note(format!(
                        "#{invocation} mirror: a standby ref moved since it was read; planning again"
                    )));
                    return Ok(None);
                }
                let pushing = steps.iter().filter(|s| s.action.pushes()).count();
                let fail_at = w.fault(Fault::MidPush).then(|| w.fault_pick(pushing));
                let mut results = Vec::new();
                let mut pushed = 0;
                for step in steps {
                    let status = RefStatus::from_action(&step.action);
                    if step.action.pushes() {
                        if Some(pushed) == fail_at {
                            w.log(Action::Fault {
                                invocation,
                                call: "git push: the standby's server failed mid-push".into(),
                            });
                            return Err("the connection was reset mid-push".to_owned());
                        }
                        pushed += 1;
                        let old = step.action.expected_old().map(|id| find(&w.graph, id));
                        let new = match &status {
                            RefStatus::Created { new } | RefStatus::Updated { new, .. } => {
                                Some(find(&w.graph, new))
                            }
                            _ => None,
                        };
                        w.push(Side::Standby, &step.reference, old, new, Writer::Mirror, "mirror");
                    }
                    if status.is_change() || status.is_problem() {
                        w.log(Action::Mirrored {
                            invocation,
                            reference: step.reference.clone(),
                            status: serde_json::to_string(&status).unwrap_or_default(),
                        });
                    }
                    results.push(RefResult::new(step.reference.clone(), status));
                }
                Ok(Some(results))
            })
            .await;
        match pushed {
            Ok(Ok(results)) => Ok(results),
            Ok(Err(why)) | Err(why) => {
                Err(unreachable(self.standby(), "pushing to the target", &why))
            }
        }
    }

    /// Writes `records` to the ledger (`BatchWriteItem`): each ref's values, none
    /// forgetting it. `what` names the write in the trace.
    async fn write(&self, what: &str, records: &[Record]) -> Result<(), String> {
        let (standby, invocation) = (self.standby(), self.0.invocation);
        self.0
            .call("BatchWriteItem (the mirror's ledger)", |w| {
                let mut shown = Vec::new();
                for (reference, values) in records {
                    let key = ledger_key(&standby, reference);
                    let table = w.table(Side::Primary);
                    match ledger_item(values) {
                        Some(item) => table.put_if(&key, item, |_| true),
                        None => table.delete_if(&key, |_| true),
                    };
                    let labels: Vec<String> = values
                        .iter()
                        .filter_map(|c| w.graph.find(c))
                        .map(Graph::label)
                        .collect();
                    shown.push(format!(
                        "{} {}",
                        reference.full(),
                        if labels.is_empty() {
                            "forgotten".to_owned()
                        } else {
                            labels.join("+")
                        }
                    ));
                }
                w.log(Action::Note(format!(
                    "#{invocation} mirror: recorded {what}: {}",
                    shown.join(", ")
                )));
            })
            .await
    }

    /// Records, before the push, the values the mirror may leave on the refs it creates or
    /// updates ([`intent`]), and keeps `owned` what the ledger then holds. A failure fails
    /// the run: nothing is pushed.
    async fn record_intent(
        &self,
        steps: &[RefStep],
        owned: &mut OwnedRefs,
    ) -> Result<(), MirrorError> {
        let records = intent(steps, owned);
        if records.is_empty() || self.0.mutated(Mutation::NoIntent) {
            return Ok(());
        }
        self.write("the intent", &records)
            .await
            .map_err(|e| MirrorError::Ledger {
                location: self.standby(),
                context: "record the intent of a push",
                source: ServiceError::new("DynamoDB table of Primary", e, true),
            })?;
        owned.extend(records);
        Ok(())
    }

    /// Settles the ledger once the push is over ([`settled`]). A failure is logged and
    /// undoes nothing, as in `git_mirror::record_pushed`: the intent still owns what was
    /// pushed.
    async fn settle(&self, results: &[RefResult], recorded: &OwnedRefs) {
        let records = settled(results, recorded);
        if records.is_empty() {
            return;
        }
        if let Err(e) = self.write("what was pushed", &records).await {
            let invocation = self.0.invocation;
            self.0.sim.with(|w| {
                w.log(Action::Fault {
                    invocation,
                    call: format!("the mirror's ledger not settled: {e}"),
                })
            });
        }
    }
}

impl RefMirror for MirrorPort<'_> {
    async fn mirror_ref(&self, reference: &RefName) -> Result<MirrorOutcome, MirrorError> {
        self.mirror_selected(RefSelection::exactly(reference)).await
    }

    async fn mirror_selected(&self, selection: RefSelection) -> Result<MirrorOutcome, MirrorError> {
        let main = RefName::Branch(self.0.config.base_branch.clone());
        for _ in 0..PLAN_ATTEMPTS {
            let source = self.fetch().await?;
            let standby = self.list_standby().await?;
            let owned = self.owned(&standby, &selection).await?;
            let mut options = MirrorOptions {
                force: false,
                standby_default: Some(main.clone()),
                owned,
            };
            let steps = self.0.sim.with(|w| {
                let history = CacheHistory {
                    graph: &w.graph,
                    cache: &w.mirror_cache,
                };
                plan_refs(&source, &standby, &selection, &history, &options)
            });
            self.record_intent(&steps, &mut options.owned).await?;
            if let Some(refs) = self.push(&steps).await? {
                self.settle(&refs, &options.owned).await;
                return Ok(MirrorOutcome {
                    source: repository(self.0.config, Side::Primary),
                    target: self.standby(),
                    dry_run: false,
                    refs,
                    objects_sent: 0,
                    bytes_sent: 0,
                    elapsed: Duration::ZERO,
                    backups: Vec::new(),
                });
            }
        }
        Err(MirrorError::Contended {
            refs: "the selected refs".into(),
            attempts: PLAN_ATTEMPTS,
        })
    }
}
