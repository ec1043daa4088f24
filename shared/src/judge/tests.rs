//! The judges called directly with events shaped like AWS's samples, over fakes of the
//! ports: an in-memory commit graph, store, starter and event bus.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{Value, json};

use super::*;
use crate::change::Change;
use crate::event::{Inbound, SYNC_REQUESTED};
use crate::mirror::{MirrorOutcome, RefResult, RefStatus};
use crate::plan::{Reason, TargetDecision};
use crate::ports::{
    Ancestry, ChangeError, ChangeSource, Checkpoint, CheckpointStore, EventSink, MirrorError,
    PendingStart, RunKind, ServiceError, StartRequest, Starter,
};

const CONFIG: &str = r#"
primary = "tokyo"
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
[sync.to.tokyo]
paths = ["common/**", "primary/**"]
[[pipeline]]
name = "tokyo-core"
region = "tokyo"
codepipeline = "core-deploy"
branches = ["main"]
paths = ["common/**", "primary/**"]
[[pipeline]]
name = "tokyo-lint"
region = "tokyo"
codebuild = "core-lint"
branches = ["main", "release/*"]
paths = ["**/*.yaml"]
[[pipeline]]
name = "osaka-core"
region = "osaka"
codepipeline = "core-deploy"
branches = ["main"]
paths = ["common/**", "secondary/**"]
tags = ["v*"]
"#;

pub(crate) fn config() -> Config {
    Config::parse(CONFIG, "tozai.toml".as_ref()).unwrap()
}

// ---- a commit graph ----

/// A commit: its parents (indices) and its files (path, content).
type FakeCommit = (Vec<usize>, BTreeMap<String, u32>);

#[derive(Default)]
pub(crate) struct Repo {
    commits: Mutex<Vec<FakeCommit>>,
    branches: Mutex<HashMap<String, CommitId>>,
    diffs: Mutex<Vec<(Option<CommitId>, CommitId)>>,
    /// Diffs to these commits wait for a permit: an invocation held up mid-judgement.
    gates: Mutex<HashMap<CommitId, std::sync::Arc<tokio::sync::Semaphore>>>,
}

fn id(n: usize) -> CommitId {
    format!("{:040x}", n + 1).parse().unwrap()
}

fn index(c: &CommitId) -> usize {
    usize::from_str_radix(c.as_str(), 16).unwrap() - 1
}

impl Repo {
    /// A commit on `parent` (none: a root) writing (`Some`) or deleting (`None`) files.
    pub(crate) fn commit(
        &self,
        parent: Option<&CommitId>,
        files: &[(&str, Option<u32>)],
    ) -> CommitId {
        let mut commits = self.commits.lock().unwrap();
        let (parents, mut tree) = match parent {
            Some(p) => (vec![index(p)], commits[index(p)].1.clone()),
            None => (vec![], BTreeMap::new()),
        };
        for (path, content) in files {
            match content {
                Some(c) => tree.insert(path.to_string(), *c),
                None => tree.remove(*path),
            };
        }
        commits.push((parents, tree));
        id(commits.len() - 1)
    }

    fn ancestors(&self, c: &CommitId) -> HashSet<usize> {
        let commits = self.commits.lock().unwrap();
        let mut seen = HashSet::new();
        let mut todo = vec![index(c)];
        while let Some(n) = todo.pop() {
            if seen.insert(n) {
                todo.extend(&commits[n].0);
            }
        }
        seen
    }

    fn diff_count(&self) -> usize {
        self.diffs.lock().unwrap().len()
    }

    /// Moves (`Some`) or deletes (`None`) a branch.
    pub(crate) fn set(&self, branch: &str, head: Option<&CommitId>) {
        let mut branches = self.branches.lock().unwrap();
        match head {
            Some(h) => branches.insert(branch.to_owned(), h.clone()),
            None => branches.remove(branch),
        };
    }

    /// Makes diffs to `after` wait until the returned semaphore gets a permit.
    fn gate(&self, after: &CommitId) -> std::sync::Arc<tokio::sync::Semaphore> {
        let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
        self.gates
            .lock()
            .unwrap()
            .insert(after.clone(), gate.clone());
        gate
    }
}

impl ChangeSource for Repo {
    async fn changes(
        &self,
        before: Option<&CommitId>,
        after: &CommitId,
    ) -> Result<Vec<Change>, ChangeError> {
        let gate = self.gates.lock().unwrap().get(after).cloned();
        if let Some(gate) = gate {
            gate.acquire().await.unwrap().forget();
        }
        self.diffs
            .lock()
            .unwrap()
            .push((before.cloned(), after.clone()));
        let commits = self.commits.lock().unwrap();
        let empty = BTreeMap::new();
        let old = before.map_or(&empty, |b| &commits[index(b)].1);
        let new = &commits[index(after)].1;
        let mut out = Vec::new();
        for (path, content) in new {
            match old.get(path) {
                None => out.push(Change::added(path)),
                Some(c) if c != content => out.push(Change::modified(path)),
                Some(_) => {}
            }
        }
        for path in old.keys().filter(|p| !new.contains_key(*p)) {
            out.push(Change::deleted(path));
        }
        Ok(out)
    }
}

impl Ancestry for Repo {
    async fn merge_base(
        &self,
        a: &CommitId,
        b: &CommitId,
    ) -> Result<Option<CommitId>, ChangeError> {
        let common: Vec<usize> = self
            .ancestors(a)
            .intersection(&self.ancestors(b))
            .copied()
            .collect();
        Ok(common.into_iter().max().map(id))
    }

    async fn branch_head(&self, branch: &str) -> Result<Option<CommitId>, ChangeError> {
        Ok(self.branches.lock().unwrap().get(branch).cloned())
    }

    async fn first_parent(&self, commit: &CommitId) -> Result<Option<CommitId>, ChangeError> {
        let commits = self.commits.lock().unwrap();
        Ok(commits[index(commit)].0.first().map(|&p| id(p)))
    }

    async fn branches(&self) -> Result<Vec<String>, ChangeError> {
        let mut names: Vec<String> = self.branches.lock().unwrap().keys().cloned().collect();
        names.sort();
        Ok(names)
    }
}

// ---- store, starter, events ----

/// A shared virtual clock (Unix seconds) for the store's leases and the starter's runs.
type Clock = std::sync::Arc<std::sync::atomic::AtomicU64>;

fn read(clock: &Clock) -> u64 {
    clock.load(std::sync::atomic::Ordering::SeqCst)
}

/// The checkpoint store with DynamoDB's conditional writes, a clock, and a fault: the
/// next `fail_records` saves that record a run fail as throttled.
#[derive(Default)]
pub(crate) struct Store {
    checkpoints: Mutex<HashMap<String, Checkpoint>>,
    clock: Clock,
    fail_records: Mutex<usize>,
}

fn key(consumer: &str, repository: &str, reference: &RefName) -> String {
    format!("{consumer} {repository} {}", reference.full())
}

impl Store {
    fn get(&self, consumer: &str, reference: &str) -> Option<Checkpoint> {
        let r: RefName = reference.parse().unwrap();
        self.checkpoints
            .lock()
            .unwrap()
            .get(&key(consumer, "core-infra", &r))
            .cloned()
    }

    fn at(&self, consumer: &str, reference: &str) -> Option<CommitId> {
        self.get(consumer, reference).and_then(|c| c.commit)
    }

    fn set(&self, consumer: &str, reference: &str, commit: &CommitId) {
        let r: RefName = reference.parse().unwrap();
        self.checkpoints.lock().unwrap().insert(
            key(consumer, "core-infra", &r),
            Checkpoint {
                version: 1,
                ..Checkpoint::at(commit.clone())
            },
        );
    }
}

impl CheckpointStore for Store {
    async fn load(
        &self,
        consumer: &str,
        repository: &str,
        reference: &RefName,
    ) -> Result<Option<Checkpoint>, ServiceError> {
        Ok(self
            .checkpoints
            .lock()
            .unwrap()
            .get(&key(consumer, repository, reference))
            .cloned())
    }

    async fn save(
        &self,
        consumer: &str,
        repository: &str,
        reference: &RefName,
        next: &Checkpoint,
        expected: Option<&Checkpoint>,
    ) -> Result<bool, ServiceError> {
        let records = next.run_id.is_some() && expected.is_some_and(|e| e.pending.is_some());
        if records {
            let mut fail = self.fail_records.lock().unwrap();
            if *fail > 0 {
                *fail -= 1;
                return Err(ServiceError::new(
                    "DynamoDB table t",
                    "PutItem: ProvisionedThroughputExceededException",
                    true,
                ));
            }
        }
        let mut all = self.checkpoints.lock().unwrap();
        let k = key(consumer, repository, reference);
        if all.get(&k).map(|c| c.version) != expected.map(|e| e.version) {
            return Ok(false);
        }
        let version = expected.map_or(1, |e| e.version + 1);
        all.insert(
            k,
            Checkpoint {
                version,
                ..next.clone()
            },
        );
        Ok(true)
    }

    fn now(&self) -> u64 {
        read(&self.clock)
    }
}

/// The starter: records runs (with the clock's time) and finds them like CodeBuild's
/// `ListBuildsForProject`; a token seen before returns its run (idempotency).
#[derive(Default)]
pub(crate) struct Starts {
    done: Mutex<Vec<(StartRequest, u64)>>,
    /// Targets whose start fails, and whether transiently.
    failing: Mutex<HashMap<String, bool>>,
    clock: Clock,
}

impl Starts {
    fn of(&self, target: &str) -> Vec<CommitId> {
        self.requests()
            .iter()
            .filter(|r| r.target == target)
            .map(|r| r.commit.clone())
            .collect()
    }

    fn requests(&self) -> Vec<StartRequest> {
        self.done
            .lock()
            .unwrap()
            .iter()
            .map(|(r, _)| r.clone())
            .collect()
    }
}

impl Starter for Starts {
    async fn start(&self, r: &StartRequest) -> Result<String, ServiceError> {
        if let Some(&transient) = self.failing.lock().unwrap().get(&r.target) {
            return Err(ServiceError::new(
                format!("CodePipeline pipeline {}", r.name),
                "PipelineNotFoundException: not found",
                transient,
            ));
        }
        let mut done = self.done.lock().unwrap();
        if let Some(n) = done.iter().position(|(d, _)| d.token == r.token) {
            return Ok(format!("run-{}", n + 1));
        }
        done.push((r.clone(), read(&self.clock)));
        Ok(format!("run-{}", done.len()))
    }

    async fn find_run(&self, r: &StartRequest, since: u64) -> Result<Option<String>, ServiceError> {
        let done = self.done.lock().unwrap();
        Ok(done
            .iter()
            .enumerate()
            .rfind(|(_, (d, at))| {
                d.name == r.name
                    && d.commit == r.commit
                    && d.reference == r.reference
                    && *at >= since
            })
            .map(|(n, _)| format!("run-{}", n + 1)))
    }
}

#[derive(Default)]
pub(crate) struct Bus(Mutex<Vec<(String, Value)>>);

impl Bus {
    fn sent(&self) -> Vec<(String, Value)> {
        self.0.lock().unwrap().clone()
    }
}

impl EventSink for Bus {
    async fn publish(&self, detail_type: &str, detail: &Value) -> Result<(), ServiceError> {
        self.0
            .lock()
            .unwrap()
            .push((detail_type.to_owned(), detail.clone()));
        Ok(())
    }
}

// ---- events shaped like AWS's sample ----

pub(crate) fn push(
    aws_region: &str,
    reference: &str,
    old: Option<&CommitId>,
    new: Option<&CommitId>,
) -> Inbound {
    push_by(
        aws_region,
        reference,
        old,
        new,
        "arn:aws:iam::111111111111:user/admin",
    )
}

fn push_by(
    aws_region: &str,
    reference: &str,
    old: Option<&CommitId>,
    new: Option<&CommitId>,
    caller: &str,
) -> Inbound {
    let event = match (old, new) {
        (None, Some(_)) => "referenceCreated",
        (Some(_), Some(_)) => "referenceUpdated",
        _ => "referenceDeleted",
    };
    let (kind, short) = match reference.strip_prefix("refs/tags/") {
        Some(t) => ("tag", t),
        None => ("branch", reference.trim_start_matches("refs/heads/")),
    };
    let mut detail = json!({
        "callerUserArn": caller,
        "event": event,
        "referenceFullName": reference,
        "referenceName": short,
        "referenceType": kind,
        "repositoryId": "280e6f04-7a9c-4c72-8d8f-947d83e21a96",
        "repositoryName": "core-infra",
    });
    if let Some(o) = old {
        detail["oldCommitId"] = json!(o.as_str());
    }
    if let Some(n) = new {
        detail["commitId"] = json!(n.as_str());
    }
    crate::event::from_value(json!({
        "version": "0", "id": "3f7101d2-f1c4-d0a4-6d89-69fc887cc5e4",
        "detail-type": "CodeCommit Repository State Change", "source": "aws.codecommit",
        "account": "111111111111", "time": "2023-10-10T21:05:45Z", "region": aws_region,
        "resources": [format!("arn:aws:codecommit:{aws_region}:111111111111:core-infra")],
        "detail": detail,
    }))
    .unwrap()
}

pub(crate) const TOKYO: &str = "ap-northeast-1";
const OSAKA: &str = "ap-northeast-3";
pub(crate) const MAIN: &str = "refs/heads/main";

pub(crate) struct World {
    pub(crate) config: Config,
    pub(crate) repo: Repo,
    pub(crate) store: Store,
    pub(crate) starts: Starts,
    pub(crate) bus: Bus,
}

impl World {
    fn new() -> Self {
        let clock = Clock::new(1_700_000_000.into());
        Self {
            config: config(),
            repo: Repo::default(),
            store: Store {
                clock: clock.clone(),
                ..Store::default()
            },
            starts: Starts {
                clock,
                ..Starts::default()
            },
            bus: Bus::default(),
        }
    }

    /// Moves `reference` from `old` to `new` (a branch in the repository; a tag lives in
    /// its event) and returns the push's event, as CodeCommit sends it.
    pub(crate) fn pushed(
        &self,
        aws_region: &str,
        reference: &str,
        old: Option<&CommitId>,
        new: Option<&CommitId>,
    ) -> Inbound {
        if let Some(branch) = reference.strip_prefix("refs/heads/") {
            self.repo.set(branch, new);
        }
        push(aws_region, reference, old, new)
    }

    fn advance(&self, secs: u64) {
        self.store
            .clock
            .fetch_add(secs, std::sync::atomic::Ordering::SeqCst);
    }

    fn result(record: &DecisionRecord, target: &str) -> (TargetResult, Option<CommitId>) {
        let t = record.targets.iter().find(|t| t.target == target).unwrap();
        (t.result, t.commit.clone())
    }

    /// A main branch with one commit holding files everywhere, every consumer's checkpoint
    /// on it (the steady state).
    pub(crate) fn steady() -> (Self, CommitId) {
        let w = Self::new();
        let c0 = w.repo.commit(
            None,
            &[
                ("common/vpc.yaml", Some(0)),
                ("primary/root.yaml", Some(0)),
                ("secondary/root.yaml", Some(0)),
                ("docs/readme.md", Some(0)),
            ],
        );
        w.repo
            .branches
            .lock()
            .unwrap()
            .insert("main".into(), c0.clone());
        for consumer in [
            "sync",
            "target:tokyo-core",
            "target:tokyo-lint",
            "target:osaka-core",
        ] {
            w.store.set(consumer, MAIN, &c0);
        }
        (w, c0)
    }

    async fn sync(&self, inbound: Inbound) -> Result<DecisionRecord, JudgeError> {
        let ignored = IgnoredCallers::parse("arn:aws:iam::111111111111:role/tozai-mirror").unwrap();
        sync_judge(
            &self.config,
            &self.repo,
            &self.store,
            &self.bus,
            &ignored,
            inbound,
        )
        .await
    }

    async fn judge(&self, region: &str, inbound: Inbound) -> Result<DecisionRecord, JudgeError> {
        pipeline_judge(
            &self.config,
            region,
            &self.repo,
            &self.store,
            &self.starts,
            inbound,
        )
        .await
    }

    fn requested(&self) -> Vec<String> {
        self.bus
            .sent()
            .iter()
            .filter(|(t, _)| t == SYNC_REQUESTED)
            .map(|(_, d)| d["commit"].as_str().unwrap().to_owned())
            .collect()
    }
}

#[tokio::test]
async fn a_common_change_is_mirrored_once_and_the_checkpoint_moves() {
    let (w, c0) = World::steady();
    let c1 = w.repo.commit(Some(&c0), &[("common/vpc.yaml", Some(1))]);
    let record = w
        .sync(w.pushed(TOKYO, MAIN, Some(&c0), Some(&c1)))
        .await
        .unwrap();
    assert!(record.sync.as_ref().unwrap().requested);
    let sent = w.bus.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].1["repository"], "core-infra");
    assert_eq!(sent[0].1["ref"], MAIN);
    assert_eq!(sent[0].1["commit"], c1.as_str());
    assert_eq!(w.store.at("sync", MAIN), Some(c1.clone()));
    assert_eq!(record.diffs[0].base, Some(c0));
    assert_eq!(record.diffs[0].why, BaseWhy::Checkpoint);

    // The same event again (at-least-once delivery): nothing more.
    let again = w
        .sync(push(TOKYO, MAIN, Some(&id(0)), Some(&c1)))
        .await
        .unwrap();
    assert!(again.ignored.unwrap().contains("already handled"));
    assert_eq!(w.bus.sent().len(), 1);
}

#[tokio::test]
async fn a_primary_only_change_is_not_mirrored_but_a_later_common_one_carries_it() {
    let (w, c0) = World::steady();
    let c1 = w.repo.commit(Some(&c0), &[("primary/root.yaml", Some(1))]);
    let r1 = w
        .sync(w.pushed(TOKYO, MAIN, Some(&c0), Some(&c1)))
        .await
        .unwrap();
    assert!(!r1.sync.unwrap().requested);
    assert!(w.bus.sent().is_empty());
    assert_eq!(w.store.at("sync", MAIN), Some(c1.clone()));

    let c2 = w
        .repo
        .commit(Some(&c1), &[("secondary/root.yaml", Some(2))]);
    let r2 = w
        .sync(w.pushed(TOKYO, MAIN, Some(&c1), Some(&c2)))
        .await
        .unwrap();
    assert_eq!(r2.diffs[0].base, Some(c1));
    assert_eq!(r2.diffs[0].changed, 1);
    assert_eq!(w.requested(), vec![c2.to_string()]);
}

#[tokio::test]
async fn the_sync_judge_ignores_what_is_not_its_business_without_calling_aws() {
    let (w, c0) = World::steady();
    let c1 = w.repo.commit(Some(&c0), &[("common/vpc.yaml", Some(1))]);
    let cases = [
        (
            push_by(
                TOKYO,
                MAIN,
                Some(&c0),
                Some(&c1),
                "arn:aws:sts::111111111111:assumed-role/tozai-mirror/1700000000",
            ),
            "mirror's own role",
        ),
        (push(OSAKA, MAIN, Some(&c0), Some(&c1)), "standby"),
        (
            push(TOKYO, "refs/heads/feature/x", Some(&c0), Some(&c1)),
            "not mirrored",
        ),
        (
            push(TOKYO, "refs/tags/nightly", None, Some(&c1)),
            "not mirrored",
        ),
        (push(TOKYO, MAIN, Some(&c0), None), "deletion"),
        (
            push("eu-west-1", MAIN, Some(&c0), Some(&c1)),
            "not in the config",
        ),
    ];
    for (event, why) in cases {
        let record = w.sync(event).await.unwrap();
        let ignored = record.ignored.unwrap_or_default();
        assert!(ignored.contains(why), "{ignored:?} should say {why:?}");
    }
    assert_eq!(w.repo.diff_count(), 0);
    assert!(w.bus.sent().is_empty());
    assert_eq!(w.store.at("sync", MAIN), Some(c0));
}

/// Regression: a new tag was diffed against nothing, listing every file of its tree
/// (GetDifferences, page after page: a time-out on a repository of 100,000 files), though
/// the tag rule mirrors a selected tag whatever it changed.
#[tokio::test]
async fn a_new_tag_is_mirrored_without_listing_its_tree() {
    let (w, c0) = World::steady();
    let c1 = w.repo.commit(Some(&c0), &[("docs/readme.md", Some(1))]);
    let tag = "refs/tags/v1.0";
    let record = w.sync(push(TOKYO, tag, None, Some(&c1))).await.unwrap();
    assert_eq!(w.repo.diff_count(), 0, "no ChangeSource call");
    assert!(record.diffs.is_empty(), "{:?}", record.diffs);
    let sync = record.sync.unwrap();
    assert!(sync.requested);
    assert_eq!(sync.decision.reason, Reason::TagPolicy);
    assert_eq!(w.requested(), vec![c1.to_string()]);
    // Delivered again: already handled (the checkpoint moved), not requested twice.
    let again = w.sync(push(TOKYO, tag, None, Some(&c1))).await.unwrap();
    assert!(again.ignored.unwrap().contains("already handled"));
    assert_eq!(w.requested().len(), 1);
    // The pipeline-judge of a target that opts into tags still judges the tag's paths:
    // its whole tree, since a new tag has no base.
    let judged = w
        .judge("osaka", push(OSAKA, tag, None, Some(&c1)))
        .await
        .unwrap();
    assert_eq!(w.repo.diff_count(), 1);
    assert!(matches!(judged.diffs[0].why, BaseWhy::WholeTree { .. }));
    assert_eq!(w.starts.of("osaka-core"), vec![c1]);
}

#[tokio::test]
async fn a_new_branch_is_judged_against_its_merge_base_with_the_base_branch() {
    let (w, c0) = World::steady();
    let c1 = w.repo.commit(Some(&c0), &[("common/vpc.yaml", Some(1))]);
    let record = w
        .sync(w.pushed(TOKYO, "refs/heads/release/1", None, Some(&c1)))
        .await
        .unwrap();
    assert_eq!(record.diffs[0].base, Some(c0));
    assert_eq!(
        record.diffs[0].why,
        BaseWhy::MergeBase {
            branch: "main".into()
        }
    );
    assert_eq!(record.diffs[0].changed, 1);
    assert_eq!(w.requested(), vec![c1.to_string()]);
}

#[tokio::test]
async fn with_no_usable_base_every_file_counts_as_changed() {
    let w = World::new();
    let c0 = w.repo.commit(
        None,
        &[("secondary/root.yaml", Some(0)), ("docs/a.md", Some(0))],
    );
    let record = w
        .sync(w.pushed(TOKYO, MAIN, None, Some(&c0)))
        .await
        .unwrap();
    assert_eq!(record.diffs[0].base, None);
    assert!(matches!(record.diffs[0].why, BaseWhy::WholeTree { .. }));
    assert_eq!(record.diffs[0].changed, 2);
    assert_eq!(w.requested(), vec![c0.to_string()]);
}

#[tokio::test]
async fn the_same_event_five_times_starts_each_target_once() {
    let (w, c0) = World::steady();
    let c1 = w.repo.commit(Some(&c0), &[("common/vpc.yaml", Some(1))]);
    let event = w.pushed(TOKYO, MAIN, Some(&c0), Some(&c1));
    for _ in 0..5 {
        w.judge("tokyo", event.clone()).await.unwrap();
    }
    assert_eq!(w.starts.of("tokyo-core"), vec![c1.clone()]);
    assert_eq!(w.starts.of("tokyo-lint"), vec![c1.clone()]);
    assert!(
        w.starts.of("osaka-core").is_empty(),
        "Tokyo's judge starts Tokyo only"
    );
    let done = w.starts.requests();
    let core = done.iter().find(|r| r.target == "tokyo-core").unwrap();
    assert_eq!(core.kind, RunKind::CodePipeline);
    assert_eq!(core.name, "core-deploy");
    assert_eq!(core.source_action.as_deref(), Some("Source"));
    assert_eq!(core.token, core.derived_token());
    assert!(
        core.token.starts_with(&format!("tozai-{c1}-")),
        "{}",
        core.token
    );
    let vars: BTreeMap<_, _> = core.variables.iter().cloned().collect();
    assert_eq!(vars["TOZAI_COMMIT_ID"], c1.as_str());
    assert_eq!(vars["TOZAI_REF"], MAIN);
    assert_eq!(vars["TOZAI_MATCHED_PATHS"], "common/vpc.yaml");
    let lint = done.iter().find(|r| r.target == "tokyo-lint").unwrap();
    assert_eq!(
        (lint.kind, lint.source_action.as_deref()),
        (RunKind::CodeBuild, None)
    );
}

#[tokio::test]
async fn events_in_reverse_order_start_the_newest_commit_and_never_roll_back() {
    let (w, c0) = World::steady();
    let c1 = w.repo.commit(Some(&c0), &[("primary/root.yaml", Some(1))]);
    let c2 = w.repo.commit(Some(&c1), &[("docs/readme.md", Some(2))]);
    let older_event = w.pushed(TOKYO, MAIN, Some(&c0), Some(&c1));
    let newer_event = w.pushed(TOKYO, MAIN, Some(&c1), Some(&c2));
    // The newer event first: the head's diff from the checkpoint covers c1's change too.
    let newer = w.judge("tokyo", newer_event).await.unwrap();
    assert_eq!(newer.diffs[0].base, Some(c0.clone()));
    assert_eq!(w.starts.of("tokyo-core"), vec![c2.clone()]);
    // The older event last: already handled, nothing starts on the older commit.
    let older = w.judge("tokyo", older_event).await.unwrap();
    assert!(
        older
            .targets
            .iter()
            .all(|t| t.result == TargetResult::AlreadyHandled)
    );
    assert_eq!(w.starts.of("tokyo-core"), vec![c2.clone()]);
    assert_eq!(w.store.at("target:tokyo-core", MAIN), Some(c2));
}

#[tokio::test]
async fn a_lost_event_is_covered_by_the_next_one() {
    let (w, c0) = World::steady();
    let c1 = w.repo.commit(Some(&c0), &[("primary/root.yaml", Some(1))]);
    let c2 = w.repo.commit(Some(&c1), &[("docs/readme.md", Some(2))]);
    // c1's event is lost; c2's alone changes only docs, yet Tokyo must deploy c1's change.
    w.repo.set("main", Some(&c1));
    w.judge("tokyo", w.pushed(TOKYO, MAIN, Some(&c1), Some(&c2)))
        .await
        .unwrap();
    assert_eq!(w.starts.of("tokyo-core"), vec![c2]);
}

#[tokio::test]
async fn a_force_push_is_diffed_from_the_last_judged_head() {
    let (w, c0) = World::steady();
    let c1 = w.repo.commit(Some(&c0), &[("primary/root.yaml", Some(1))]);
    w.judge("tokyo", w.pushed(TOKYO, MAIN, Some(&c0), Some(&c1)))
        .await
        .unwrap();
    // main is force-pushed to a sibling of c1 that changes only docs.
    let c2 = w.repo.commit(Some(&c0), &[("docs/readme.md", Some(9))]);
    let record = w
        .judge("tokyo", w.pushed(TOKYO, MAIN, Some(&c1), Some(&c2)))
        .await
        .unwrap();
    assert_eq!(record.diffs[0].base, Some(c1.clone()));
    assert_eq!(record.diffs[0].why, BaseWhy::Checkpoint);
    // Going back from c1 to c2 reverts primary/root.yaml: Tokyo deploys c2.
    assert_eq!(w.starts.of("tokyo-core"), vec![c1, c2]);
}

#[tokio::test]
async fn a_failed_start_fails_the_event_and_a_retry_starts_it() {
    let (w, c0) = World::steady();
    let c1 = w.repo.commit(Some(&c0), &[("common/vpc.yaml", Some(1))]);
    w.starts
        .failing
        .lock()
        .unwrap()
        .insert("tokyo-core".into(), false);
    let event = w.pushed(TOKYO, MAIN, Some(&c0), Some(&c1));
    let err = w.judge("tokyo", event.clone()).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("tokyo-core") && text.contains("PipelineNotFoundException"),
        "{text}"
    );
    assert!(!err.is_transient());
    // The other target started; the failed one's checkpoint did not move, and its claim
    // was given back.
    assert_eq!(w.starts.of("tokyo-lint"), vec![c1.clone()]);
    let core = w.store.get("target:tokyo-core", MAIN).unwrap();
    assert_eq!((core.commit, core.pending), (Some(c0), None));
    assert_eq!(w.store.at("target:tokyo-lint", MAIN), Some(c1.clone()));

    w.starts.failing.lock().unwrap().clear();
    w.judge("tokyo", event).await.unwrap();
    assert_eq!(w.starts.of("tokyo-core"), vec![c1.clone()]);
    assert_eq!(w.starts.of("tokyo-lint"), vec![c1]);
}

#[tokio::test]
async fn a_start_in_progress_elsewhere_is_retried_not_duplicated() {
    let (w, c0) = World::steady();
    let c1 = w.repo.commit(Some(&c0), &[("primary/root.yaml", Some(1))]);
    let now = w.store.now();
    let claimed = Checkpoint {
        pending: Some(PendingStart {
            commit: c1.clone(),
            claimed_at: now,
            lease_until: now + 120,
        }),
        ..Checkpoint::at(c0.clone())
    };
    let r: RefName = MAIN.parse().unwrap();
    let held = w.store.get("target:tokyo-core", MAIN);
    assert!(
        w.store
            .save(
                "target:tokyo-core",
                "core-infra",
                &r,
                &claimed,
                held.as_ref()
            )
            .await
            .unwrap()
    );
    let err = w
        .judge("tokyo", w.pushed(TOKYO, MAIN, Some(&c0), Some(&c1)))
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert!(err.to_string().contains("another invocation"), "{err}");
    assert!(w.starts.of("tokyo-core").is_empty());
}

#[tokio::test]
async fn the_standby_judge_starts_its_own_targets_and_tags_that_opt_in() {
    let (w, c0) = World::steady();
    let c1 = w
        .repo
        .commit(Some(&c0), &[("secondary/root.yaml", Some(1))]);
    // A push to Tokyo's repository is not Osaka's business.
    let other = w
        .judge("osaka", push(TOKYO, MAIN, Some(&c0), Some(&c1)))
        .await
        .unwrap();
    assert!(other.ignored.is_some());
    w.judge("osaka", w.pushed(OSAKA, MAIN, Some(&c0), Some(&c1)))
        .await
        .unwrap();
    assert_eq!(w.starts.of("osaka-core"), vec![c1.clone()]);
    // A release tag on a new commit: judged on its whole tree, started once.
    let c2 = w.repo.commit(Some(&c1), &[("common/vpc.yaml", Some(2))]);
    let tag = w
        .judge("osaka", push(OSAKA, "refs/tags/v1.0", None, Some(&c2)))
        .await
        .unwrap();
    assert!(matches!(tag.diffs[0].why, BaseWhy::WholeTree { .. }));
    assert_eq!(w.starts.of("osaka-core"), vec![c1, c2]);
    // A tag no target opted into starts nothing and reads nothing.
    let diffs = w.repo.diff_count();
    let none = w
        .judge("tokyo", push(TOKYO, "refs/tags/v1.1", None, Some(&id(0))))
        .await
        .unwrap();
    assert!(none.ignored.unwrap().contains("no target"));
    assert_eq!(w.repo.diff_count(), diffs);
}

#[tokio::test]
async fn one_diff_serves_every_target_with_the_same_base() {
    let (w, c0) = World::steady();
    let c1 = w.repo.commit(Some(&c0), &[("common/vpc.yaml", Some(1))]);
    let record = w
        .judge("tokyo", w.pushed(TOKYO, MAIN, Some(&c0), Some(&c1)))
        .await
        .unwrap();
    assert_eq!(w.repo.diff_count(), 1);
    assert_eq!(record.diffs.len(), 1);
    assert_eq!(
        record.diffs[0].consumers,
        vec!["target:tokyo-core", "target:tokyo-lint"]
    );
    let json: Value = serde_json::from_str(&record.to_json()).unwrap();
    assert_eq!(json["function"], "pipeline-judge");
    assert_eq!(json["ref"], MAIN);
    assert_eq!(json["before"], c0.as_str());
    assert_eq!(json["after"], c1.as_str());
    assert_eq!(json["head"], c1.as_str());
    assert_eq!(json["diffs"][0]["why"], "checkpoint");
    assert_eq!(json["targets"][0]["result"], "started");
    assert_eq!(json["targets"][0]["kind"], "codepipeline");
    assert_eq!(json["targets"][0]["run_id"], "run-1");
    assert_eq!(json["targets"][0]["matches"][0]["path"], "common/vpc.yaml");
}

#[tokio::test]
async fn a_deleted_branch_starts_nothing_and_keeps_its_checkpoint() {
    let (w, c0) = World::steady();
    let record = w
        .judge("tokyo", w.pushed(TOKYO, MAIN, Some(&c0), None))
        .await
        .unwrap();
    assert!(
        record
            .targets
            .iter()
            .all(|t| t.result == TargetResult::RefGone)
    );
    assert_eq!(w.store.at("target:tokyo-core", MAIN), Some(c0));
    assert!(w.starts.requests().is_empty());
}

#[test]
fn start_tokens_are_deterministic_valid_and_cover_every_parameter() {
    let start = |target: &str, name: &str, commit: usize, reference: &str, paths: &str| {
        StartRequest::new(
            target,
            RunKind::CodeBuild,
            name,
            None,
            id(commit),
            reference.parse().unwrap(),
            vec![("TOZAI_MATCHED_PATHS".into(), paths.into())],
        )
    };
    let long = "t".repeat(500);
    let rows = [
        start("tokyo-core", "core-lint", 41, MAIN, "common/a.yaml"),
        start("osaka-core", "core-lint", 41, MAIN, "common/a.yaml"),
        start("名前 with spaces", "core-lint", 41, MAIN, "common/a.yaml"),
        start(&long, "core-lint", 41, MAIN, "common/a.yaml"),
        start("tokyo-core", "other-project", 41, MAIN, "common/a.yaml"),
        start("tokyo-core", "core-lint", 42, MAIN, "common/a.yaml"),
        start(
            "tokyo-core",
            "core-lint",
            41,
            "refs/heads/release/1",
            "common/a.yaml",
        ),
        start("tokyo-core", "core-lint", 41, MAIN, "common/b.yaml"),
    ];
    let mut seen = HashSet::new();
    for r in &rows {
        let token = &r.token;
        assert_eq!(token, &r.clone().derived_token(), "deterministic");
        assert!(token.len() <= 128, "{token}");
        assert!(
            token
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '-'),
            "{token}"
        );
        assert!(seen.insert(token.clone()), "{token} for {r:?}");
    }
    let sha256 = StartRequest::new(
        "t",
        RunKind::CodeBuild,
        "p",
        None,
        "ab".repeat(32).parse().unwrap(),
        MAIN.parse().unwrap(),
        vec![],
    );
    assert!(sha256.token.len() <= 128, "{}", sha256.token);
}

#[test]
fn ignored_callers_match_roles_in_any_session_only() {
    let i = IgnoredCallers::parse("tozai-mirror, arn:aws:iam::1:role/path/other").unwrap();
    assert!(i.ignores(Some("arn:aws:sts::1:assumed-role/tozai-mirror/123")));
    assert!(i.ignores(Some("arn:aws:sts::1:assumed-role/other/abc")));
    assert!(!i.ignores(Some("arn:aws:sts::1:assumed-role/tozai-mirror-2/123")));
    assert!(!i.ignores(Some("arn:aws:iam::1:user/tozai-mirror")));
    assert!(!i.ignores(None));
    let err = IgnoredCallers::parse("arn:aws:iam::1:user/x").unwrap_err();
    assert!(err.contains("arn:aws:iam::1:user/x"), "{err}");
    assert!(IgnoredCallers::parse("bad name!").is_err());
}

// ---- the mirror ----

struct FakeMirror {
    calls: Mutex<Vec<RefName>>,
    answer: fn(&RefName) -> Result<MirrorOutcome, MirrorError>,
}

impl FakeMirror {
    fn answering(answer: fn(&RefName) -> Result<MirrorOutcome, MirrorError>) -> Self {
        Self {
            calls: Mutex::default(),
            answer,
        }
    }
}

impl RefMirror for FakeMirror {
    async fn mirror_ref(&self, reference: &RefName) -> Result<MirrorOutcome, MirrorError> {
        self.calls.lock().unwrap().push(reference.clone());
        (self.answer)(reference)
    }

    async fn mirror_selected(
        &self,
        selection: crate::mirror::RefSelection,
    ) -> Result<MirrorOutcome, MirrorError> {
        // Record which of a few refs the selection takes.
        let mut refs = Vec::new();
        for r in [
            "refs/heads/main",
            "refs/heads/feature/x",
            "refs/tags/v1.0",
            "refs/tags/nightly",
        ] {
            let r: RefName = r.parse().unwrap();
            if selection.selects(&r) {
                refs.push(r);
            }
        }
        let first = refs[0].clone();
        self.calls.lock().unwrap().extend(refs);
        (self.answer)(&first)
    }
}

fn outcome(reference: &RefName, status: RefStatus) -> MirrorOutcome {
    MirrorOutcome {
        source: "codecommit::ap-northeast-1://core-infra".into(),
        target: "codecommit::ap-northeast-3://core-infra".into(),
        dry_run: false,
        refs: vec![RefResult::new(reference.clone(), status)],
        objects_sent: 3,
        bytes_sent: 100,
        elapsed: Duration::from_millis(5),
        backups: Vec::new(),
    }
}

fn sync_request(repository: &str, reference: &str) -> Inbound {
    crate::event::from_value(json!({
        "version": "0", "id": "sync-1", "detail-type": "Sync Requested", "source": "tozai",
        "account": "111111111111", "time": "2024-01-01T00:00:00Z", "region": TOKYO,
        "resources": [],
        "detail": {"repository": repository, "ref": reference, "commit": id(7).as_str(),
                   "reason": "changed paths match its rule"},
    }))
    .unwrap()
}

#[tokio::test]
async fn the_mirror_mirrors_the_requested_ref_and_reports() {
    let config = config();
    let bus = Bus::default();
    let ok = FakeMirror::answering(|r| Ok(outcome(r, RefStatus::Created { new: id(7) })));
    let record = mirror_job(&config, &ok, &bus, sync_request("core-infra", MAIN))
        .await
        .unwrap();
    assert_eq!(
        *ok.calls.lock().unwrap(),
        vec![RefName::branch("main").unwrap()]
    );
    let sent = bus.sent();
    assert_eq!(sent[0].0, SYNC_COMPLETED);
    assert_eq!(sent[0].1["status"], "in_sync");
    assert_eq!(sent[0].1["to"], "osaka");
    assert_eq!(sent[0].1["counts"]["created"], 1);
    assert_eq!(record.mirror.unwrap()["objects_sent"], 3);
    // The record names the request it answers, for tracing a DLQ entry or a replay.
    assert_eq!(record.event_id.as_deref(), Some("sync-1"));

    // A diverged standby: reported (an alarm), not retried.
    let diverged = FakeMirror::answering(|r| {
        Ok(outcome(
            r,
            RefStatus::Diverged {
                source: Some(id(7)),
                standby: id(8),
                cause: crate::divergence::Cause::StandbyPushedTo,
            },
        ))
    });
    mirror_job(&config, &diverged, &bus, sync_request("core-infra", MAIN))
        .await
        .unwrap();
    assert_eq!(bus.sent()[1].0, SYNC_FAILED);
    assert_eq!(bus.sent()[1].1["status"], "out_of_step");

    // A run that failed: reported and returned, transient so that it is retried.
    let down = FakeMirror::answering(|_| {
        Err(MirrorError::Unreachable {
            location: "codecommit::ap-northeast-3://core-infra".into(),
            context: "pushing",
            source: "connection refused".into(),
        })
    });
    let err = mirror_job(&config, &down, &bus, sync_request("core-infra", MAIN))
        .await
        .unwrap_err();
    assert!(err.is_transient());
    assert_eq!(bus.sent()[2].0, SYNC_FAILED);
    assert!(
        bus.sent()[2].1["error"]
            .as_str()
            .unwrap()
            .contains("cannot reach")
    );
}

#[tokio::test]
async fn the_mirror_handles_source_deletions_and_ignores_the_rest() {
    let config = config();
    let bus = Bus::default();
    let m = FakeMirror::answering(|r| Ok(outcome(r, RefStatus::Deleted { old: id(3) })));
    let tag = "refs/tags/v1.0";
    mirror_job(&config, &m, &bus, push(TOKYO, tag, Some(&id(3)), None))
        .await
        .unwrap();
    assert_eq!(
        *m.calls.lock().unwrap(),
        vec![RefName::tag("v1.0").unwrap()]
    );

    for (inbound, why) in [
        (push(OSAKA, MAIN, Some(&id(3)), None), "primary"),
        (push(TOKYO, MAIN, Some(&id(3)), Some(&id(4))), "sync-judge"),
        (sync_request("other-repo", MAIN), "not the primary"),
        (
            sync_request("core-infra", "refs/heads/feature/x"),
            "not mirrored",
        ),
    ] {
        let record = mirror_job(&config, &m, &bus, inbound).await.unwrap();
        let ignored = record.ignored.unwrap_or_default();
        assert!(ignored.contains(why), "{ignored:?} should say {why:?}");
    }
    assert_eq!(m.calls.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_schedule_reconciles_every_configured_ref() {
    let config = config();
    let bus = Bus::default();
    let m = FakeMirror::answering(|r| Ok(outcome(r, RefStatus::Unchanged { at: id(1) })));
    let schedule = crate::event::from_value(json!({
        "version": "0", "id": "9", "detail-type": "Scheduled Event", "source": "aws.events",
        "account": "111111111111", "time": "2024-01-01T00:00:00Z", "region": TOKYO,
        "resources": ["arn:aws:events:ap-northeast-1:111111111111:rule/tozai-reconcile"],
        "detail": {},
    }))
    .unwrap();
    mirror_job(&config, &m, &bus, schedule.clone())
        .await
        .unwrap();
    let calls: Vec<String> = m.calls.lock().unwrap().iter().map(|r| r.full()).collect();
    assert_eq!(
        calls,
        ["refs/heads/main", "refs/tags/v1.0"],
        "sync.branches and sync.tags"
    );
    assert_eq!(bus.sent()[0].0, SYNC_COMPLETED);
    // The sync-judge leaves schedules to the mirror; a pipeline-judge sweeps (below).
    let w = World::new();
    assert!(w.sync(schedule.clone()).await.unwrap().ignored.is_some());
}

// ---- issue 11's scenarios: each broke a guarantee when events were trusted as edges ----

/// The target of the scenarios on `main` (Tokyo's deploy: `common/**`, `primary/**`).
const CORE: &str = "tokyo-core";

/// 1. Two invocations at once: the slower A→B invocation must not start B after C.
#[tokio::test]
async fn scenario_1_a_slow_invocation_never_starts_an_older_head_after_a_newer_one() {
    let (w, a) = World::steady();
    let b = w.repo.commit(Some(&a), &[("primary/root.yaml", Some(1))]);
    let c = w.repo.commit(Some(&b), &[("primary/root.yaml", Some(2))]);
    let a_to_b = w.pushed(TOKYO, MAIN, Some(&a), Some(&b));
    let gate = w.repo.gate(&b);
    let slow = w.judge("tokyo", a_to_b);
    tokio::pin!(slow);
    let held = tokio::time::timeout(Duration::from_millis(50), &mut slow).await;
    assert!(held.is_err(), "the A→B invocation is held mid-judgement");
    w.judge("tokyo", w.pushed(TOKYO, MAIN, Some(&b), Some(&c)))
        .await
        .unwrap();
    assert_eq!(w.starts.of(CORE), vec![c.clone()]);
    gate.add_permits(100);
    let late = slow.await.unwrap();
    assert_eq!(w.starts.of(CORE), vec![c.clone()], "B never starts after C");
    assert_eq!(
        World::result(&late, CORE),
        (TargetResult::AlreadyHandled, Some(c.clone()))
    );
    assert_eq!(w.store.at("target:tokyo-core", MAIN), Some(c));
}

/// 2. A late event from an abandoned line: B is on no branch any more.
#[tokio::test]
async fn scenario_2_a_late_event_from_an_abandoned_line_starts_nothing() {
    let (w, a) = World::steady();
    let b = w.repo.commit(Some(&a), &[("primary/root.yaml", Some(1))]);
    let x = w.repo.commit(Some(&a), &[("docs/readme.md", Some(1))]);
    let a_to_b = w.pushed(TOKYO, MAIN, Some(&a), Some(&b));
    let forced = w.pushed(TOKYO, MAIN, Some(&b), Some(&x));
    w.judge("tokyo", forced).await.unwrap();
    let late = w.judge("tokyo", a_to_b).await.unwrap();
    assert!(w.starts.of(CORE).is_empty(), "B is never started");
    assert_eq!(World::result(&late, CORE).0, TargetResult::AlreadyHandled);
    assert_eq!(
        w.store.at("target:tokyo-core", MAIN),
        Some(x),
        "no step back"
    );
}

/// 3. A real rewind is deployed: the deployed tree changes back.
#[tokio::test]
async fn scenario_3_a_rewind_is_deployed() {
    let (w, c0) = World::steady();
    let c1 = w.repo.commit(Some(&c0), &[("primary/root.yaml", Some(1))]);
    w.judge("tokyo", w.pushed(TOKYO, MAIN, Some(&c0), Some(&c1)))
        .await
        .unwrap();
    let rewind = w
        .judge("tokyo", w.pushed(TOKYO, MAIN, Some(&c1), Some(&c0)))
        .await
        .unwrap();
    assert_eq!(
        World::result(&rewind, CORE),
        (TargetResult::Started, Some(c0.clone()))
    );
    let c2 = w.repo.commit(Some(&c0), &[("docs/readme.md", Some(2))]);
    w.judge("tokyo", w.pushed(TOKYO, MAIN, Some(&c0), Some(&c2)))
        .await
        .unwrap();
    assert_eq!(w.starts.of(CORE), vec![c1, c0]);
}

/// 4. A force-push back to a commit started before starts it again (a new run).
#[tokio::test]
async fn scenario_4_a_force_push_back_starts_the_commit_again() {
    let (w, c0) = World::steady();
    let c1 = w.repo.commit(Some(&c0), &[("primary/root.yaml", Some(1))]);
    let c2 = w.repo.commit(Some(&c0), &[("primary/root.yaml", Some(2))]);
    for (old, new) in [(&c0, &c1), (&c1, &c2), (&c2, &c1)] {
        w.judge("tokyo", w.pushed(TOKYO, MAIN, Some(old), Some(new)))
            .await
            .unwrap();
    }
    assert_eq!(w.starts.of(CORE), vec![c1.clone(), c2, c1]);
    let tokens: HashSet<String> = w
        .starts
        .requests()
        .iter()
        .filter(|r| r.target == CORE)
        .map(|r| r.token.clone())
        .collect();
    assert_eq!(tokens.len(), 3, "each start has its own token");
}

/// 5. A lost event, then a rebase: the head is diffed from the last judged commit.
#[tokio::test]
async fn scenario_5_a_rebase_after_a_lost_event_is_judged() {
    let (w, c0) = World::steady();
    let feature = "refs/heads/release/x";
    let f1 = w.repo.commit(Some(&c0), &[("primary/app.yaml", Some(1))]);
    w.repo.set("release/x", Some(&f1));
    w.store.set("target:tokyo-lint", feature, &f1);
    // F1→F2 changes the target's file; its event is lost.
    let f2 = w.repo.commit(Some(&f1), &[("primary/root.yaml", Some(5))]);
    w.repo.set("release/x", Some(&f2));
    // Rebased on a newer main and force-pushed.
    let m = w.repo.commit(Some(&c0), &[("docs/readme.md", Some(3))]);
    let f1r = w.repo.commit(Some(&m), &[("primary/app.yaml", Some(1))]);
    let f2r = w.repo.commit(Some(&f1r), &[("primary/root.yaml", Some(5))]);
    let record = w
        .judge("tokyo", w.pushed(TOKYO, feature, Some(&f2), Some(&f2r)))
        .await
        .unwrap();
    assert_eq!(
        World::result(&record, "tokyo-lint"),
        (TargetResult::Started, Some(f2r.clone()))
    );
    assert_eq!(w.starts.of("tokyo-lint"), vec![f2r]);
}

/// 6. A tag is a ref of its own: a release tag on a commit `main` deployed starts again.
#[tokio::test]
async fn scenario_6_a_tag_on_a_deployed_commit_starts_for_the_tag() {
    let (w, c0) = World::steady();
    let c = w
        .repo
        .commit(Some(&c0), &[("secondary/root.yaml", Some(1))]);
    w.judge("osaka", w.pushed(OSAKA, MAIN, Some(&c0), Some(&c)))
        .await
        .unwrap();
    let tag = w
        .judge("osaka", push(OSAKA, "refs/tags/v1.4.0", None, Some(&c)))
        .await
        .unwrap();
    assert_eq!(
        World::result(&tag, "osaka-core"),
        (TargetResult::Started, Some(c.clone()))
    );
    let refs: Vec<String> = w
        .starts
        .requests()
        .iter()
        .map(|r| r.reference.full())
        .collect();
    assert_eq!(refs, vec![MAIN.to_owned(), "refs/tags/v1.4.0".to_owned()]);
    assert_eq!(w.starts.of("osaka-core"), vec![c.clone(), c]);
}

/// 7. A start whose record failed is found, not repeated, when its lease is taken over.
#[tokio::test]
async fn scenario_7_a_start_whose_record_failed_is_found_not_repeated() {
    let (w, c0) = World::steady();
    let c1 = w.repo.commit(Some(&c0), &[("primary/root.yaml", Some(1))]);
    *w.store.fail_records.lock().unwrap() = 1;
    let event = w.pushed(TOKYO, MAIN, Some(&c0), Some(&c1));
    let err = w.judge("tokyo", event.clone()).await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert_eq!(w.starts.of(CORE), vec![c1.clone()]);
    // Retried within the lease: in progress, nothing started.
    let err = w.judge("tokyo", event.clone()).await.unwrap_err();
    assert!(err.to_string().contains("another invocation"), "{err}");
    // Retried after the lease ran out: the run is found and recorded.
    w.advance(START_LEASE.as_secs() + 1);
    let record = w.judge("tokyo", event).await.unwrap();
    let core = record.targets.iter().find(|t| t.target == CORE).unwrap();
    assert_eq!(core.result, TargetResult::AlreadyStarted);
    assert_eq!(core.run_id.as_deref(), Some("run-1"));
    assert_eq!(w.starts.of(CORE), vec![c1.clone()], "no second run");
    let cp = w.store.get("target:tokyo-core", MAIN).unwrap();
    assert_eq!(
        (cp.commit, cp.pending, cp.run_id),
        (Some(c1), None, Some("run-1".into()))
    );
}

/// 7b. A claim whose holder died before starting anything is taken over and started.
#[tokio::test]
async fn a_claim_whose_holder_started_nothing_is_taken_over_and_started() {
    let (w, c0) = World::steady();
    let c1 = w.repo.commit(Some(&c0), &[("primary/root.yaml", Some(1))]);
    let now = w.store.now();
    let r: RefName = MAIN.parse().unwrap();
    let held = w.store.get("target:tokyo-core", MAIN);
    let claimed = Checkpoint {
        pending: Some(PendingStart {
            commit: c1.clone(),
            claimed_at: now,
            lease_until: now + 120,
        }),
        ..Checkpoint::at(c0)
    };
    w.store
        .save(
            "target:tokyo-core",
            "core-infra",
            &r,
            &claimed,
            held.as_ref(),
        )
        .await
        .unwrap();
    w.advance(121);
    let record = w
        .judge("tokyo", w.pushed(TOKYO, MAIN, None, Some(&c1)))
        .await
        .unwrap();
    assert_eq!(
        World::result(&record, CORE),
        (TargetResult::Started, Some(c1.clone()))
    );
    assert_eq!(w.starts.of(CORE), vec![c1]);
}

/// 8. A new branch whose base moved: judged on what the branch changed.
#[tokio::test]
async fn scenario_8_a_new_branch_whose_base_moved_is_judged_on_its_own_change() {
    let (w, a) = World::steady();
    let b = w.repo.commit(Some(&a), &[("primary/root.yaml", Some(1))]);
    let created = w.pushed(TOKYO, "refs/heads/release/1", None, Some(&b));
    w.repo.set("main", Some(&b));
    let record = w.judge("tokyo", created).await.unwrap();
    assert_eq!(
        record.diffs[0].why,
        BaseWhy::TipCommit {
            branch: "main".into()
        }
    );
    assert_eq!(record.diffs[0].base, Some(a));
    assert_eq!(w.starts.of("tokyo-lint"), vec![b]);
}

/// A request whose publish or last save failed leaves its mark: the next judgement asks
/// for the head again, even when the head's synced paths equal the checkpoint's (found by
/// the simulation, seed 719: the ref came back and the head was never requested).
#[tokio::test]
async fn a_sync_request_not_known_to_be_done_is_made_again() {
    let (w, c0) = World::steady();
    let x = w.repo.commit(Some(&c0), &[("common/vpc.yaml", Some(1))]);
    let r: RefName = MAIN.parse().unwrap();
    let held = w.store.get("sync", MAIN);
    let marked = Checkpoint {
        pending: Some(PendingStart {
            commit: x.clone(),
            claimed_at: 0,
            lease_until: 0,
        }),
        ..Checkpoint::at(c0.clone())
    };
    assert!(
        w.store
            .save("sync", "core-infra", &r, &marked, held.as_ref())
            .await
            .unwrap()
    );
    // The ref comes back to c0 itself: the checkpoint's commit, yet the mirror was asked
    // for x.
    let at_c0 = w
        .sync(w.pushed(TOKYO, MAIN, Some(&x), Some(&c0)))
        .await
        .unwrap();
    assert!(at_c0.sync.unwrap().requested, "a rewind to the checkpoint");
    assert_eq!(w.requested(), vec![c0.to_string()]);
    // Marked again, then back to c0's content (a docs-only sibling of c0).
    let held = w.store.get("sync", MAIN);
    assert!(
        w.store
            .save("sync", "core-infra", &r, &marked, held.as_ref())
            .await
            .unwrap()
    );
    let back = w.repo.commit(Some(&c0), &[("docs/readme.md", Some(5))]);
    let record = w
        .sync(w.pushed(TOKYO, MAIN, Some(&x), Some(&back)))
        .await
        .unwrap();
    assert!(record.sync.unwrap().requested);
    assert_eq!(w.requested(), vec![c0.to_string(), back.to_string()]);
    let cp = w.store.get("sync", MAIN).unwrap();
    assert_eq!((cp.commit, cp.pending), (Some(back), None));
}

/// A backup `tozai mirror --force` left on a standby is a branch: even when every branch is
/// selected, the sync-judge never mirrors it and no target starts on it (events or sweep).
#[tokio::test]
async fn backup_branches_are_never_mirrored_nor_deployed() {
    let (mut w, c0) = World::steady();
    let every = CONFIG.replace(
        r#"branches = ["main", "release/*"]"#,
        r#"branches = ["**"]"#,
    );
    w.config = Config::parse(&every, "tozai.toml".as_ref()).unwrap();
    let backup = "refs/heads/tozai-backup/20260102T030405Z/heads/main";
    let c1 = w.repo.commit(Some(&c0), &[("common/vpc.yaml", Some(1))]);
    let sync = w
        .sync(w.pushed(TOKYO, backup, None, Some(&c1)))
        .await
        .unwrap();
    assert!(sync.ignored.unwrap().contains("backup"));
    assert!(w.bus.sent().is_empty());
    for region in ["tokyo", "osaka"] {
        let aws = if region == "tokyo" { TOKYO } else { OSAKA };
        let judged = w
            .judge(region, push(aws, backup, None, Some(&c1)))
            .await
            .unwrap();
        assert!(judged.ignored.unwrap().contains("no target"), "{region}");
    }
    let schedule = crate::event::from_value(json!({
        "version": "0", "id": "9", "detail-type": "Scheduled Event", "source": "aws.events",
        "account": "111111111111", "time": "2024-01-01T00:00:00Z", "region": TOKYO,
        "resources": [], "detail": {},
    }))
    .unwrap();
    w.judge("tokyo", schedule).await.unwrap();
    assert!(w.starts.requests().is_empty());
    // The same push on an ordinary branch does start: the config does select it.
    w.judge("tokyo", w.pushed(TOKYO, "refs/heads/x", None, Some(&c1)))
        .await
        .unwrap();
    assert_eq!(w.starts.of("tokyo-lint"), vec![c1]);
}

/// Every event of a push lost: the scheduled sweep judges each branch a target runs for.
#[tokio::test]
async fn the_sweep_deploys_a_push_whose_events_were_all_lost() {
    let (w, c0) = World::steady();
    let schedule = crate::event::from_value(json!({
        "version": "0", "id": "9", "detail-type": "Scheduled Event", "source": "aws.events",
        "account": "111111111111", "time": "2024-01-01T00:00:00Z", "region": TOKYO,
        "resources": [], "detail": {},
    }))
    .unwrap();
    let idle = w.judge("tokyo", schedule.clone()).await.unwrap();
    assert!(idle.ignored.unwrap().contains("already judged"));
    let c1 = w.repo.commit(Some(&c0), &[("primary/root.yaml", Some(1))]);
    w.repo.set("main", Some(&c1));
    let r1 = w.repo.commit(Some(&c0), &[("docs/readme.md", Some(1))]);
    w.repo.set("release/2", Some(&r1));
    w.repo.set("feature/y", Some(&c1));
    let swept = w.judge("tokyo", schedule.clone()).await.unwrap();
    assert_eq!(w.starts.of(CORE), vec![c1.clone()]);
    assert_eq!(w.starts.of("tokyo-lint"), vec![c1.clone()]);
    let refs: Vec<_> = swept.swept.iter().map(|r| r.reference.clone()).collect();
    assert_eq!(
        refs,
        vec![
            Some(MAIN.to_owned()),
            Some("refs/heads/release/2".to_owned())
        ],
        "feature/y runs no target"
    );
    // Swept again: nothing more.
    w.judge("tokyo", schedule).await.unwrap();
    assert_eq!(w.starts.requests().len(), 2);
}

/// A consumer new to an existing branch judges what the event pushed, not the whole tree.
#[tokio::test]
async fn a_first_event_on_an_old_branch_is_judged_from_its_old_commit() {
    let w = World::new();
    let c0 = w.repo.commit(
        None,
        &[("common/vpc.yaml", Some(0)), ("docs/readme.md", Some(0))],
    );
    let c1 = w.repo.commit(Some(&c0), &[("docs/readme.md", Some(1))]);
    let record = w
        .judge("tokyo", w.pushed(TOKYO, MAIN, Some(&c0), Some(&c1)))
        .await
        .unwrap();
    assert_eq!(record.diffs[0].why, BaseWhy::EventBefore);
    assert!(w.starts.requests().is_empty());
    assert_eq!(w.store.at("target:tokyo-core", MAIN), Some(c1));
}

// ---- pipeline variables ----

fn decision_matching(rules: &[(&str, &str)], paths: &[String]) -> TargetDecision {
    let matches = paths
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let (rule, pattern) = rules[i % rules.len()];
            crate::rules::Match {
                rule: rule.into(),
                pattern: pattern.into(),
                path: p.as_str().into(),
            }
        })
        .collect();
    TargetDecision {
        target: "tokyo-core".into(),
        region: "tokyo".into(),
        kind: "codepipeline",
        name: "core-deploy".into(),
        start: true,
        reason: Reason::PathsMatched,
        matches,
        excluded: Vec::new(),
    }
}

/// Regression: `TOZAI_MATCHED_PATHS` was empty when the first matched path alone was over
/// CodePipeline's 1,000 characters, and CodePipeline refuses an empty value.
#[test]
fn pipeline_variables_are_never_empty_and_never_over_1000() {
    let long = format!("common/{}", "x".repeat(2000));
    let kanji = format!("common/{}.yaml", "東".repeat(700));
    let many: Vec<String> = (0..400)
        .map(|i| format!("共通/テンプレート-{i:03}.yaml"))
        .collect();
    let rules: Vec<(String, String)> = (0..60)
        .map(|i| (format!("target-{i}"), format!("common/dir-{i}/**")))
        .collect();
    let rules: Vec<(&str, &str)> = rules.iter().map(|(r, p)| (&r[..], &p[..])).collect();
    let long_tag = format!("refs/tags/{}", "v".repeat(1000));
    // (what, ref, rules, paths, expected start of TOZAI_MATCHED_PATHS, expected end)
    type Row<'a> = (
        &'a str,
        &'a str,
        Vec<(&'a str, &'a str)>,
        Vec<String>,
        String,
        &'a str,
    );
    let rows: Vec<Row> = vec![
        (
            "one short path",
            MAIN,
            vec![("tokyo-core", "common/**")],
            vec!["common/a.yaml".into()],
            "common/a.yaml".into(),
            "common/a.yaml",
        ),
        (
            "one 2,000-character path",
            MAIN,
            vec![("tokyo-core", "common/**")],
            vec![long.clone()],
            format!("common/{}", "x".repeat(900)),
            "…",
        ),
        (
            "a long first path, then more",
            MAIN,
            vec![("tokyo-core", "common/**")],
            vec![long.clone(), "common/b.yaml".into()],
            "common/xxx".into(),
            "…,...(+1 more)",
        ),
        (
            "a multi-byte path over the limit",
            MAIN,
            vec![("tokyo-core", "common/**")],
            vec![kanji.clone()],
            "common/東東東".into(),
            "…",
        ),
        (
            "400 multi-byte paths",
            MAIN,
            vec![("tokyo-core", "common/**")],
            many.clone(),
            "共通/テンプレート-000.yaml,".into(),
            "more)",
        ),
        (
            "60 rules",
            "refs/tags/v1",
            rules.clone(),
            many.clone(),
            "共通/".into(),
            "more)",
        ),
        (
            "a 1,500-character tag",
            &long_tag,
            vec![("tokyo-core", "common/**")],
            vec!["common/a.yaml".into()],
            "common/a.yaml".into(),
            "common/a.yaml",
        ),
    ];
    for (what, reference, rules, paths, starts, ends) in rows {
        let Inbound::RefChanged(e) = push(TOKYO, reference, None, Some(&id(1))) else {
            panic!("{what}: not a ref event")
        };
        let vars = pipeline::variables(&decision_matching(&rules, &paths), &e.reference, &id(1));
        for (name, value) in &vars {
            assert!(!value.is_empty(), "{what}: {name} is empty");
            assert!(
                value.len() <= 1000,
                "{what}: {name} is {} bytes",
                value.len()
            );
        }
        let value = |name: &str| vars.iter().find(|(n, _)| n == name).unwrap().1.clone();
        let paths_value = value("TOZAI_MATCHED_PATHS");
        assert!(paths_value.starts_with(&starts), "{what}: {paths_value}");
        assert!(paths_value.ends_with(ends), "{what}: {paths_value}");
        assert!(
            value("TOZAI_MATCHED_RULES").starts_with(&format!("{}:", rules[0].0)),
            "{what}"
        );
        if rules.len() > 20 {
            assert!(value("TOZAI_MATCHED_RULES").ends_with("more)"), "{what}");
        }
        if reference.len() > 1000 {
            assert!(value("TOZAI_REF").ends_with('…'), "{what}");
        }
    }
}
