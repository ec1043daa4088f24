//! The pipeline-judge's use case: on a push to its region's repository, start each target
//! whose selected files differ between the tree it last judged and the ref's head, once.
//!
//! Each (target, ref) has one checkpoint. A start moves it in three compare-and-swaps:
//!
//! 1. **claim**: the checkpoint gains a pending start at the head, with a lease. While the
//!    lease runs, any other invocation for this (target, ref) answers `in_progress` and is
//!    retried, so starts of one ref never overlap and never reorder;
//! 2. **start**, with a token derived from every parameter ([`StartRequest::new`]);
//! 3. **record**: the checkpoint moves to the head, with the run's id, and the claim goes.
//!
//! A start refused for good (a missing pipeline) gives the claim back. A start whose
//! outcome is unknown (a time-out, throttling), like one whose record failed, leaves the
//! claim to run out: the invocation that takes it over first asks the starter for the run
//! ([`Starter::find_run`]) and records it, so it is never started twice.

use super::record::{DecisionRecord, TargetRecord, TargetResult, note_diff};
use super::{Diffs, JudgeError, SAVE_ATTEMPTS, START_LEASE, base, locate, target_consumer};
use crate::config::{Config, Target};
use crate::event::{Inbound, RefChange, RefChanged};
use crate::plan::{Reason, TargetDecision};
use crate::ports::{
    Ancestry, ChangeSource, Checkpoint, CheckpointStore, PendingStart, ServiceError, StartRequest,
    Starter,
};
use crate::refs::{CommitId, RefName};

/// CodePipeline's limit on a variable's value (1-1,000 characters; counted here in bytes,
/// which is never fewer).
const VARIABLE_MAX: usize = 1000;
/// The value of a variable that has nothing to say (CodePipeline refuses empty values).
const NO_VALUE: &str = "(none)";

/// The pipeline-judge of `region_name`: on a push to that region's repository, starts each
/// of its targets whose files changed, at the ref's head, once per transition.
pub async fn pipeline_judge<R, S, P>(
    config: &Config,
    region_name: &str,
    repo: &R,
    store: &S,
    starter: &P,
    inbound: Inbound,
) -> Result<DecisionRecord, JudgeError>
where
    R: ChangeSource + Ancestry,
    S: CheckpointStore,
    P: Starter,
{
    if matches!(inbound, Inbound::Scheduled) {
        return sweep(config, region_name, repo, store, starter).await;
    }
    let (e, record, region) = match locate(F, config, inbound) {
        Ok(located) => located,
        Err(record) => return Ok(*record),
    };
    if region.name != region_name {
        return Ok(record.ignore(format!(
            "a push to {}'s repository; this judge is {region_name}'s",
            region.name
        )));
    }
    judge_ref(config, region_name, repo, store, starter, &e, record).await
}

const F: &str = "pipeline-judge";

/// The scheduled sweep: judges every branch of the region's repository that one of its
/// targets runs for, as if an event had woken it, so a push whose events were all lost is
/// still deployed. A branch already judged at its head costs one `GetItem` per target and
/// one `GetBranch`.
async fn sweep<R, S, P>(
    config: &Config,
    region_name: &str,
    repo: &R,
    store: &S,
    starter: &P,
) -> Result<DecisionRecord, JudgeError>
where
    R: ChangeSource + Ancestry,
    S: CheckpointStore,
    P: Starter,
{
    let mut record = DecisionRecord::new(F);
    record.region = Some(region_name.to_owned());
    let Some(region) = config.region(region_name) else {
        return Err(JudgeError::Config(format!(
            "region {region_name} is not in the config"
        )));
    };
    record.repository = Some(region.repository.name());
    let (mut judged, mut failures, mut transient) = (0, Vec::new(), true);
    for branch in repo.branches().await? {
        let Ok(reference) = RefName::branch(&branch) else {
            continue;
        };
        if !config
            .targets_in(region_name)
            .any(|t| eligible(t, &reference))
        {
            continue;
        }
        let Some(head) = repo.branch_head(&branch).await? else {
            continue;
        };
        judged += 1;
        let e = RefChanged {
            id: None,
            account: None,
            region: Some(region.aws_region.clone()),
            repository: region.repository.name(),
            reference,
            change: RefChange::Created { commit: head },
            caller: None,
        };
        let mut one = DecisionRecord::for_event(F, &e);
        one.region = Some(region_name.to_owned());
        match judge_ref(config, region_name, repo, store, starter, &e, one).await {
            Ok(one)
                if one
                    .targets
                    .iter()
                    .all(|t| t.result == TargetResult::AlreadyHandled) => {}
            Ok(one) => record.swept.push(one),
            Err(err) => {
                transient &= err.is_transient();
                failures.push(format!("{}: {err}", e.reference.full()));
            }
        }
    }
    if failures.is_empty() {
        if record.swept.is_empty() {
            record.ignored = Some(format!(
                "the sweep found its {judged} branches already judged at their heads"
            ));
        }
        return Ok(record);
    }
    tracing::error!(record = %record.to_json(), "the sweep could not judge every branch");
    Err(JudgeError::Starts {
        failed: failures.len(),
        total: judged,
        details: failures.join("; "),
        transient,
    })
}

/// Judges every target of the region that runs for the event's ref.
async fn judge_ref<R, S, P>(
    config: &Config,
    region_name: &str,
    repo: &R,
    store: &S,
    starter: &P,
    e: &RefChanged,
    mut record: DecisionRecord,
) -> Result<DecisionRecord, JudgeError>
where
    R: ChangeSource + Ancestry,
    S: CheckpointStore,
    P: Starter,
{
    let targets: Vec<&Target> = config
        .targets_in(region_name)
        .filter(|t| eligible(t, &e.reference))
        .collect();
    if targets.is_empty() {
        return Ok(record.ignore(format!(
            "no target of {region_name} runs for {} {}",
            e.reference.kind(),
            e.reference.short()
        )));
    }
    // Every checkpoint is read before the head, so the head is never older than a
    // checkpoint another invocation saved.
    let mut checkpoints = Vec::with_capacity(targets.len());
    for target in &targets {
        let consumer = target_consumer(&target.name);
        checkpoints.push(store.load(&consumer, &e.repository, &e.reference).await?);
    }
    let head = base::head_of(repo, &e.reference, &e.change).await?;
    record.head = head.clone();
    let mut judging = Judging {
        e,
        repo,
        store,
        starter,
        diffs: Diffs::new(repo, config, region_name, e),
        head,
    };
    let mut failures = Vec::new();
    let mut transient = true;
    for (target, checkpoint) in targets.into_iter().zip(checkpoints) {
        let tr = judging.target(&mut record, target, checkpoint).await?;
        match tr.result {
            TargetResult::Failed => {
                transient &= tr.transient;
                failures.push(format!(
                    "{}: {}",
                    tr.record.target,
                    tr.record.error.as_deref().unwrap_or("failed")
                ));
            }
            TargetResult::InProgress => failures.push(format!(
                "{}: another invocation is starting it at {}",
                tr.record.target,
                tr.record.commit.as_ref().map_or("?", |c| c.as_str())
            )),
            _ => {}
        }
        record.targets.push(tr.record);
    }
    if failures.is_empty() {
        Ok(record)
    } else {
        tracing::error!(record = %record.to_json(), "some targets did not finish");
        Err(JudgeError::Starts {
            failed: failures.len(),
            total: record.targets.len(),
            details: failures.join("; "),
            transient,
        })
    }
}

/// True when `target` runs for `reference`; never for a backup `tozai mirror --force` left.
fn eligible(target: &Target, reference: &RefName) -> bool {
    let filter = match reference {
        RefName::Branch(_) => &target.branches,
        RefName::Tag(_) => &target.tags,
    };
    !reference.is_backup() && filter.first_match(reference.short()).is_some()
}

/// One invocation's work on one ref: its event, ports, diffs and the head it read.
struct Judging<'a, R, S, P> {
    e: &'a RefChanged,
    repo: &'a R,
    store: &'a S,
    starter: &'a P,
    diffs: Diffs<'a, R>,
    /// The ref's head, read after the checkpoints it is judged against.
    head: Option<CommitId>,
}

/// A target's record, and whether its failure may pass on a retry.
struct Judged {
    result: TargetResult,
    record: TargetRecord,
    transient: bool,
}

impl<R, S, P> Judging<'_, R, S, P>
where
    R: ChangeSource + Ancestry,
    S: CheckpointStore,
    P: Starter,
{
    /// Judges one target until its checkpoint is at the head (or another invocation holds
    /// it), reading the checkpoint and the head again whenever a swap is lost.
    async fn target(
        &mut self,
        record: &mut DecisionRecord,
        target: &Target,
        mut checkpoint: Option<Checkpoint>,
    ) -> Result<Judged, JudgeError> {
        let consumer = target_consumer(&target.name);
        let mut tr = blank(target);
        let mut recovered: Option<(CommitId, String)> = None;
        for attempt in 0..SAVE_ATTEMPTS {
            if attempt > 0 {
                checkpoint = self.load(&consumer).await?;
                self.head = base::head_of(self.repo, &self.e.reference, &self.e.change).await?;
                record.head = self.head.clone();
            }
            if let Some(cp) = &checkpoint
                && let Some(pending) = &cp.pending
            {
                if pending.lease_until > self.store.now() {
                    tr.commit = Some(pending.commit.clone());
                    return Ok(done(tr, TargetResult::InProgress));
                }
                if let Some(id) = self.take_over(target, &consumer, cp, pending).await? {
                    recovered = Some((pending.commit.clone(), id));
                }
                continue;
            }
            let Some(head) = self.head.clone() else {
                return Ok(done(tr, TargetResult::RefGone));
            };
            let last = checkpoint.as_ref().and_then(|c| c.commit.clone());
            if last.as_ref() == Some(&head) {
                tr.commit = Some(head.clone());
                return Ok(match recovered {
                    Some((commit, id)) if commit == head => {
                        tr.run_id = Some(id);
                        done(tr, TargetResult::AlreadyStarted)
                    }
                    _ => done(tr, TargetResult::AlreadyHandled),
                });
            }
            let decision = self
                .decide(record, target, &consumer, last.as_ref(), &head)
                .await?;
            fill(&mut tr, &decision);
            let run_id = checkpoint.as_ref().and_then(|c| c.run_id.clone());
            if !decision.start {
                let next = Checkpoint {
                    run_id,
                    ..Checkpoint::at(head.clone())
                };
                if self.save(&consumer, &next, checkpoint.as_ref()).await? {
                    tr.commit = Some(head);
                    return Ok(done(tr, TargetResult::NotStarted));
                }
                continue;
            }
            let now = self.store.now();
            let claim = Checkpoint {
                commit: last,
                version: checkpoint.as_ref().map_or(1, |c| c.version + 1),
                pending: Some(PendingStart {
                    commit: head.clone(),
                    claimed_at: now,
                    lease_until: now + START_LEASE.as_secs(),
                }),
                run_id,
            };
            if !self.save(&consumer, &claim, checkpoint.as_ref()).await? {
                continue;
            }
            let request = start_request(target, &decision, &self.e.reference, &head)
                .with_sequence(claim.version);
            tr.commit = Some(head.clone());
            return self.start(tr, &consumer, &request, claim).await;
        }
        Err(JudgeError::contended(&consumer, self.e))
    }

    /// The rules' decision for `target` on the diff from `last` (or the ref's birth base)
    /// to `head`, noted in the record.
    async fn decide(
        &mut self,
        record: &mut DecisionRecord,
        target: &Target,
        consumer: &str,
        last: Option<&CommitId>,
        head: &CommitId,
    ) -> Result<TargetDecision, JudgeError> {
        let (base, why) = self.diffs.base(last, head).await?;
        let judged = self.diffs.judged(&base, head).await?;
        note_diff(record, consumer, &base, &why, judged.changed);
        judged
            .decisions
            .pipelines
            .iter()
            .find(|d| d.target == target.name)
            .cloned()
            .ok_or_else(|| JudgeError::Config(format!("target {} has no decision", target.name)))
    }

    /// Starts `request` under `claim`, then records the run (or gives the claim back).
    async fn start(
        &self,
        mut tr: TargetRecord,
        consumer: &str,
        request: &StartRequest,
        claim: Checkpoint,
    ) -> Result<Judged, JudgeError> {
        let id = match self.starter.start(request).await {
            Ok(id) => id,
            Err(err) if err.transient => {
                // The start may have happened (a time-out, a throttled answer): the claim
                // stays until its lease runs out, and whoever takes it over looks for the
                // run first, so a second start is never made on a guess.
                tr.error = Some(err.to_string());
                return Ok(done(tr, TargetResult::Failed));
            }
            Err(err) => {
                let released = Checkpoint {
                    pending: None,
                    ..claim.clone()
                };
                if let Err(release) = self.save(consumer, &released, Some(&claim)).await {
                    tracing::warn!(error = %release, consumer, "could not give the claim back; it lapses after its lease");
                }
                tr.error = Some(err.to_string());
                return Ok(Judged {
                    transient: err.transient,
                    ..done(tr, TargetResult::Failed)
                });
            }
        };
        let recorded = Checkpoint {
            commit: Some(request.commit.clone()),
            version: 0,
            pending: None,
            run_id: Some(id.clone()),
        };
        if !self.save(consumer, &recorded, Some(&claim)).await? {
            tracing::warn!(consumer, run = %id, "the claim was taken over before the start was recorded");
        }
        tr.run_id = Some(id);
        Ok(done(tr, TargetResult::Started))
    }

    /// Resolves a claim whose lease ran out: records the run its holder started, if the
    /// starter has one, or drops the claim. The run's id, when found.
    async fn take_over(
        &self,
        target: &Target,
        consumer: &str,
        cp: &Checkpoint,
        pending: &PendingStart,
    ) -> Result<Option<String>, JudgeError> {
        let probe = start_request_bare(target, &self.e.reference, &pending.commit);
        let found = self.starter.find_run(&probe, pending.claimed_at).await?;
        let next = match &found {
            Some(id) => Checkpoint {
                run_id: Some(id.clone()),
                ..Checkpoint::at(pending.commit.clone())
            },
            None => Checkpoint {
                pending: None,
                ..cp.clone()
            },
        };
        tracing::info!(consumer, commit = %pending.commit, found = ?found, "took over a claim whose lease ran out");
        self.save(consumer, &next, Some(cp)).await?;
        Ok(found)
    }

    async fn load(&self, consumer: &str) -> Result<Option<Checkpoint>, ServiceError> {
        self.store
            .load(consumer, &self.e.repository, &self.e.reference)
            .await
    }

    async fn save(
        &self,
        consumer: &str,
        next: &Checkpoint,
        expected: Option<&Checkpoint>,
    ) -> Result<bool, ServiceError> {
        self.store
            .save(
                consumer,
                &self.e.repository,
                &self.e.reference,
                next,
                expected,
            )
            .await
    }
}

fn blank(target: &Target) -> TargetRecord {
    TargetRecord {
        target: target.name.clone(),
        kind: target.kind.run_kind(),
        name: target.kind.resource().to_owned(),
        start: false,
        reason: Reason::NothingChanged,
        matches: Vec::new(),
        matches_total: 0,
        result: TargetResult::NotStarted,
        commit: None,
        run_id: None,
        error: None,
    }
}

fn fill(tr: &mut TargetRecord, decision: &TargetDecision) {
    tr.start = decision.start;
    tr.reason = decision.reason;
    tr.matches = decision
        .matches
        .iter()
        .take(super::RECORD_MATCHES)
        .cloned()
        .collect();
    tr.matches_total = decision.matches.len();
}

fn done(mut record: TargetRecord, result: TargetResult) -> Judged {
    record.result = result;
    Judged {
        result,
        record,
        transient: true,
    }
}

/// The start of `target` at `commit` for `decision`.
fn start_request(
    target: &Target,
    decision: &TargetDecision,
    reference: &RefName,
    commit: &CommitId,
) -> StartRequest {
    StartRequest::new(
        &target.name,
        target.kind.run_kind(),
        target.kind.resource(),
        source_action(target),
        commit.clone(),
        reference.clone(),
        variables(decision, reference, commit),
    )
}

/// A start with no variables: what [`Starter::find_run`] matches on.
fn start_request_bare(target: &Target, reference: &RefName, commit: &CommitId) -> StartRequest {
    StartRequest::new(
        &target.name,
        target.kind.run_kind(),
        target.kind.resource(),
        source_action(target),
        commit.clone(),
        reference.clone(),
        Vec::new(),
    )
}

fn source_action(target: &Target) -> Option<String> {
    match &target.kind {
        crate::config::TargetKind::CodePipeline { source_action, .. } => {
            Some(source_action.clone())
        }
        crate::config::TargetKind::CodeBuild { .. } => None,
    }
}

/// The variables a start carries, each cut to CodePipeline's 1,000 characters with a
/// visible marker (see [`crate::text`]) and never empty: CodePipeline refuses both.
pub(super) fn variables(
    decision: &TargetDecision,
    reference: &RefName,
    commit: &CommitId,
) -> Vec<(String, String)> {
    let paths: Vec<String> = decision
        .matches
        .iter()
        .map(|m| m.path.to_string())
        .collect();
    let mut rules: Vec<String> = decision
        .matches
        .iter()
        .map(|m| format!("{}:{}", m.rule, m.pattern))
        .collect();
    rules.sort();
    rules.dedup();
    [
        ("TOZAI_COMMIT_ID", commit.to_string()),
        (
            "TOZAI_REF",
            crate::text::cut(&reference.full(), VARIABLE_MAX),
        ),
        (
            "TOZAI_MATCHED_RULES",
            crate::text::list(&rules, VARIABLE_MAX),
        ),
        (
            "TOZAI_MATCHED_PATHS",
            crate::text::list(&paths, VARIABLE_MAX),
        ),
    ]
    .into_iter()
    .map(|(name, value)| {
        let value = if value.is_empty() {
            NO_VALUE.to_owned()
        } else {
            value
        };
        (name.to_owned(), value)
    })
    .collect()
}
