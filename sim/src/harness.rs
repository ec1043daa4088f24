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
//! | `CheckpointStore` | DynamoDB | conditional puts (`attribute_not_exists`, `version = :v`, `lease_until < :now` by virtual time), a claim read back after a failed condition |
//! | `Starter` | CodeBuild `StartBuild`, CodePipeline `StartPipelineExecution` | a run per call; CodeBuild returns the same build for a token repeated within 5 minutes |
//! | `EventSink` | EventBridge `PutEvents` | `Sync Requested` is delivered to the mirror (at least once) |
//! | `RefMirror` | the mirror's git2 run | fetch the source into the cache (a new container's is empty), list the standby, [`plan_refs`], push each ref only if it still has the value the plan read |
//!
//! When the ports change shape, this module is the one to port.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{Value, json};
use tozai::change::Change;
use tozai::config::Config;
use tozai::event::{EventError, Inbound};
use tozai::judge::{self, IgnoredCallers, RefMirror};
use tozai::mirror::{
    History, MirrorOptions, MirrorOutcome, RefMap, RefResult, RefSelection, RefStatus, RefStep,
    plan_refs,
};
use tozai::ports::{
    Ancestry, ChangeError, ChangeSource, Checkpoint, CheckpointStore, Claim, EventSink,
    MirrorError, ServiceError, StartRequest, Starter,
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
        Event::Schedule => json!({
            "version": "0", "id": id, "detail-type": "Scheduled Event", "source": "aws.events",
            "account": ACCOUNT, "time": time, "region": primary,
            "resources": [format!("arn:aws:events:{primary}:{ACCOUNT}:rule/tozai-mirror-schedule")],
            "detail": {},
        }),
    };
    tozai::event::from_value(value)
}

/// What the judges are set up with besides the config, built once for every run (as a
/// Lambda's `main` builds it once): the callers the sync-judge ignores, the mirror's role.
pub struct Judges {
    ignored: IgnoredCallers,
}

impl Judges {
    pub fn new() -> Self {
        Self {
            ignored: IgnoredCallers::parse(MIRROR_ROLE).expect("a valid role name"),
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
}

impl<'s> Harness<'s> {
    pub fn new(sim: &'s Sim, config: &'s Config, judges: &'s Judges) -> Self {
        Self {
            sim,
            config,
            ignored: &judges.ignored,
        }
    }

    /// Each consumer starts where the run begins: every target's and the sync's checkpoint
    /// at `main`'s head `c`, and each target's start of `c` recorded.
    pub fn seed(&self, c: C) {
        let main = RefName::Branch(self.config.base_branch.clone());
        self.sim.with(|w| {
            let id = w.graph.id(c).clone();
            for t in &self.config.targets {
                let side = side_of(self.config, &t.region);
                let run = format!("seed-{}", t.name);
                seed_checkpoint(
                    w,
                    self.config,
                    side,
                    &judge::target_consumer(&t.name),
                    &main,
                    &id,
                );
                w.table(side).put_if(
                    &start_key(&t.name, &id),
                    Item::from([
                        ("state", Attr::S("started".into())),
                        ("run_id", Attr::S(run)),
                    ]),
                    |_| true,
                );
            }
            seed_checkpoint(
                w,
                self.config,
                Side::Primary,
                judge::SYNC_CONSUMER,
                &main,
                &id,
            );
        });
    }

    /// One invocation of `delivery.function` with its event: a task for the scheduler.
    /// It ends by handing its outcome to the world (which schedules Lambda's retries).
    pub fn invoke(&self, delivery: Delivery) -> Task<'s> {
        let (sim, config, ignored) = (self.sim, self.config, self.ignored);
        Box::pin(async move {
            let (invocation, event) =
                sim.with(|w| (w.begin(delivery), inbound(config, w, delivery.event)));
            let calls = Calls {
                sim,
                config,
                invocation,
            };
            let outcome = match event {
                Err(e) => Err(format!("malformed event: {e}")),
                Ok(event) => {
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
                            judge::mirror_job(config, &MirrorPort(calls), &BusPort(calls), event)
                                .await
                        }
                    };
                    record
                        .map(|r| {
                            sim.with(|w| note_diffs(w, invocation, &r));
                            r.to_json()
                        })
                        .map_err(|e| e.to_string())
                }
            };
            sim.with(|w| w.finish(invocation, delivery, outcome));
        })
    }
}

/// The diffs a judge's decision record says it made, as trace entries of their own.
fn note_diffs(w: &mut World, invocation: u64, record: &judge::DecisionRecord) {
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
}

impl Calls<'_> {
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
        let side = self.1;
        self.0
            .call("GetBranch", |w| {
                w.repo(side).branch(branch).map(|c| w.graph.id(c).clone())
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

fn start_key(target: &str, commit: &CommitId) -> String {
    format!("start#{target}#{commit}")
}

fn seed_checkpoint(
    w: &mut World,
    config: &Config,
    side: Side,
    consumer: &str,
    reference: &RefName,
    commit: &CommitId,
) {
    let key = checkpoint_key(consumer, &repository(config, side), reference);
    let item = Item::from([
        ("commit", Attr::S(commit.to_string())),
        ("version", Attr::N(1)),
    ]);
    w.table(side).put_if(&key, item, |_| true);
}

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
        Ok(item.map(|item| Checkpoint {
            commit: s(&item, "commit")
                .and_then(|c| c.parse().ok())
                .expect("the harness writes valid commits"),
            version: n(&item, "version").unwrap_or(0),
            covered_from: s(&item, "covered_from").and_then(|c| c.parse().ok()),
        }))
    }

    async fn save_covering(
        &self,
        consumer: &str,
        repository: &str,
        reference: &RefName,
        commit: &CommitId,
        covered_from: Option<&CommitId>,
        expected: Option<&Checkpoint>,
    ) -> Result<bool, ServiceError> {
        let key = checkpoint_key(consumer, repository, reference);
        let (side, calls) = (self.1, self.0);
        let mut item = Item::from([
            ("commit", Attr::S(commit.to_string())),
            ("version", Attr::N(expected.map_or(1, |e| e.version + 1))),
        ]);
        if let Some(from) = covered_from {
            item.insert("covered_from", Attr::S(from.to_string()));
        }
        let expected_version = expected.map(|e| e.version);
        self.0
            .call("PutItem", |w| {
                let saved =
                    w.table(side)
                        .put_if(&key, item, |current| match (current, expected_version) {
                            (None, None) => true,
                            (Some(c), Some(v)) => n(c, "version") == Some(v),
                            _ => false,
                        });
                if saved {
                    let c = w.graph.find(commit).expect("a commit of the graph");
                    w.log(Action::Saved {
                        invocation: calls.invocation,
                        consumer: consumer_of(calls.config, consumer),
                        side,
                        reference: reference.clone(),
                        commit: c,
                    });
                }
                saved
            })
            .await
            .map_err(|e| self.error(e))
    }

    async fn claim_start(
        &self,
        target: &str,
        commit: &CommitId,
        lease: Duration,
    ) -> Result<Claim, ServiceError> {
        let key = start_key(target, commit);
        let (side, invocation) = (self.1, self.0.invocation);
        let won = self
            .0
            .call("PutItem", |w| {
                let now = w.now;
                let lease_until = now + lease.as_millis() as u64;
                let item = Item::from([
                    ("state", Attr::S("starting".into())),
                    ("lease_until", Attr::N(lease_until)),
                ]);
                let won = w.table(side).put_if(&key, item, |current| match current {
                    None => true,
                    Some(c) => s(c, "state") == Some("starting") && n(c, "lease_until") < Some(now),
                });
                if won {
                    let c = w.graph.find(commit).expect("a commit of the graph");
                    w.log(Action::Claimed {
                        invocation,
                        target: target.to_owned(),
                        commit: c,
                        outcome: "won".into(),
                    });
                }
                won
            })
            .await
            .map_err(|e| self.error(e))?;
        if won {
            return Ok(Claim::Won);
        }
        self.0
            .call("GetItem", |w| {
                let item = w.table(side).get(&key).cloned().unwrap_or_default();
                let claim = match (s(&item, "state"), s(&item, "run_id")) {
                    (Some("started"), Some(id)) => Claim::Started(id.to_owned()),
                    _ => Claim::InProgress,
                };
                let c = w.graph.find(commit).expect("a commit of the graph");
                w.log(Action::Claimed {
                    invocation,
                    target: target.to_owned(),
                    commit: c,
                    outcome: format!("{claim:?}"),
                });
                claim
            })
            .await
            .map_err(|e| self.error(e))
    }

    async fn release_start(&self, target: &str, commit: &CommitId) -> Result<(), ServiceError> {
        let key = start_key(target, commit);
        let side = self.1;
        self.0
            .call("DeleteItem", |w| {
                w.table(side).delete_if(&key, |c| {
                    c.is_some_and(|c| s(c, "state") == Some("starting"))
                });
            })
            .await
            .map_err(|e| self.error(e))
    }

    async fn record_start(
        &self,
        target: &str,
        commit: &CommitId,
        run_id: &str,
    ) -> Result<(), ServiceError> {
        let key = start_key(target, commit);
        let (side, invocation) = (self.1, self.0.invocation);
        let recorded = self
            .0
            .call("UpdateItem", |w| {
                if w.fault(Fault::Record) {
                    w.log(Action::Fault {
                        invocation,
                        call: format!("UpdateItem {key}: throttled after the start"),
                    });
                    return false;
                }
                w.table(side).update_if(
                    &key,
                    |item| {
                        item.insert("state", Attr::S("started".into()));
                        item.insert("run_id", Attr::S(run_id.to_owned()));
                    },
                    |_| true,
                )
            })
            .await
            .map_err(|e| self.error(e))?;
        if recorded {
            Ok(())
        } else {
            Err(self.error(format!(
                "UpdateItem {key}: ProvisionedThroughputExceededException (simulated)"
            )))
        }
    }
}

// ---------------------------------------------------------------- CodeBuild, CodePipeline

/// One region's CodeBuild and CodePipeline.
struct StarterPort<'s>(Calls<'s>, Side);

impl Starter for StarterPort<'_> {
    async fn start(&self, request: &StartRequest) -> Result<String, ServiceError> {
        let (side, invocation) = (self.1, self.0.invocation);
        let api = match request.kind {
            "codebuild" => "StartBuild",
            _ => "StartPipelineExecution",
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
                    request.kind,
                    request.reference.clone(),
                    c,
                    &request.token,
                );
                w.runs[run].id.clone()
            })
            .await
            .map_err(|e| ServiceError::new(request.kind, e, true))
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

/// The mirror's run over the model: what `Git2Mirror` does, step by step.
struct MirrorPort<'s>(Calls<'s>);

/// The mirror cache's view of history: ancestry only between commits it holds.
struct CacheHistory<'a> {
    graph: &'a Graph,
    cache: &'a HashSet<C>,
}

impl CacheHistory<'_> {
    fn held(&self, id: &CommitId) -> Option<C> {
        self.graph.find(id).filter(|c| self.cache.contains(c))
    }
}

impl History for CacheHistory<'_> {
    fn is_ancestor(&self, ancestor: &CommitId, descendant: &CommitId) -> bool {
        match (self.held(ancestor), self.held(descendant)) {
            (Some(a), Some(d)) => self.graph.is_ancestor(a, d),
            _ => ancestor == descendant,
        }
    }

    fn contains(&self, id: &CommitId) -> bool {
        self.held(id).is_some()
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

impl MirrorPort<'_> {
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

    /// Lists the standby's refs and plans every selected ref.
    async fn plan(
        &self,
        source: &RefMap,
        selection: &RefSelection,
    ) -> Result<Vec<RefStep>, MirrorError> {
        let main = RefName::Branch(self.0.config.base_branch.clone());
        let planned = self
            .0
            .call("git ls-remote (standby)", |w| {
                let standby = ref_map(w, Side::Standby);
                let history = CacheHistory {
                    graph: &w.graph,
                    cache: &w.mirror_cache,
                };
                let options = MirrorOptions {
                    force: false,
                    standby_default: Some(main),
                };
                plan_refs(source, &standby, selection, &history, &options)
            })
            .await;
        planned.map_err(|e| {
            unreachable(
                repository(self.0.config, Side::Standby),
                "listing the target's refs",
                &e,
            )
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
                    results.push(RefResult {
                        reference: step.reference.clone(),
                        status,
                    });
                }
                Ok(Some(results))
            })
            .await;
        let standby = repository(self.0.config, Side::Standby);
        match pushed {
            Ok(Ok(results)) => Ok(results),
            Ok(Err(why)) | Err(why) => Err(unreachable(standby, "pushing to the target", &why)),
        }
    }
}

impl RefMirror for MirrorPort<'_> {
    async fn mirror_ref(&self, reference: &RefName) -> Result<MirrorOutcome, MirrorError> {
        self.mirror_selected(RefSelection::exactly(reference)).await
    }

    async fn mirror_selected(&self, selection: RefSelection) -> Result<MirrorOutcome, MirrorError> {
        for _ in 0..PLAN_ATTEMPTS {
            let source = self.fetch().await?;
            let steps = self.plan(&source, &selection).await?;
            if let Some(refs) = self.push(&steps).await? {
                return Ok(MirrorOutcome {
                    source: repository(self.0.config, Side::Primary),
                    target: repository(self.0.config, Side::Standby),
                    dry_run: false,
                    refs,
                    objects_sent: 0,
                    bytes_sent: 0,
                    elapsed: Duration::ZERO,
                });
            }
        }
        Err(MirrorError::Contended {
            refs: "the selected refs".into(),
            attempts: PLAN_ATTEMPTS,
        })
    }
}
