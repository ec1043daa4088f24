//! The sync-judge's use case: on a push to the primary's repository, decide from the
//! changed paths whether the ref is mirrored, and if so publish `Sync Requested`.
//!
//! The sync needs no lease: the mirror reads the source's refs when it runs, so two
//! requests in either order leave the standby at the newest head. A request is marked in
//! the checkpoint (a pending request at the head), published, then the checkpoint moves to
//! the head. When the publish or the last save fails, the mark stays and the next
//! judgement of the ref requests its head again, whatever changed: a failure costs a
//! repeated request, never a missed one (the simulation's seed 719 found the miss when
//! the mark did not exist).

use super::record::{DecisionRecord, SyncRecord, cut, note_diff};
use super::{Diffs, IgnoredCallers, JudgeError, SAVE_ATTEMPTS, SYNC_CONSUMER, base, locate};
use crate::config::Config;
use crate::event::{Inbound, SYNC_REQUESTED, SyncRequested};
use crate::ports::{
    Ancestry, ChangeSource, Checkpoint, CheckpointStore, EventSink, PendingStart, ServiceError,
};

/// Publishes `request` as the `Sync Requested` event the mirror acts on: what the
/// sync-judge sends, and `tozai replay --publish` by hand.
pub async fn request_sync<E: EventSink>(
    events: &E,
    request: &SyncRequested,
) -> Result<(), ServiceError> {
    let detail = serde_json::to_value(request).map_err(|err| {
        ServiceError::new(
            "event bus",
            format!("cannot encode the request: {err}"),
            false,
        )
    })?;
    events.publish(SYNC_REQUESTED, &detail).await
}

/// The sync-judge: on a push to the primary's repository, decides whether to mirror the
/// ref's head and if so publishes `Sync Requested`.
pub async fn sync_judge<R, S, E>(
    config: &Config,
    repo: &R,
    store: &S,
    events: &E,
    ignored: &IgnoredCallers,
    inbound: Inbound,
) -> Result<DecisionRecord, JudgeError>
where
    R: ChangeSource + Ancestry,
    S: CheckpointStore,
    E: EventSink,
{
    const F: &str = "sync-judge";
    let (e, mut record, region) = match locate(F, config, inbound) {
        Ok(located) => located,
        Err(record) => return Ok(*record),
    };
    if region.name != config.primary {
        return Ok(record.ignore(format!(
            "{} is the standby: mirroring goes from the primary ({}) only",
            region.name, config.primary
        )));
    }
    if ignored.ignores(e.caller.as_deref()) {
        return Ok(record.ignore("pushed by the mirror's own role"));
    }
    if e.change.after().is_none() {
        return Ok(record.ignore("a deletion is mirrored by the mirror function directly"));
    }
    if e.reference.is_backup() {
        return Ok(record.ignore(format!(
            "branch {} is a backup `tozai mirror --force` left: never mirrored",
            e.reference.short()
        )));
    }
    let filter = config.sync.filter_for(&e.reference);
    if filter.first_match(e.reference.short()).is_none() {
        return Ok(record.ignore(format!(
            "{} {} is not mirrored (sync.{})",
            e.reference.kind(),
            e.reference.short(),
            if e.reference.is_tag() {
                "tags"
            } else {
                "branches"
            }
        )));
    }
    let mut diffs = Diffs::new(repo, config, &region.name, &e);
    for _ in 0..SAVE_ATTEMPTS {
        let checkpoint = store
            .load(SYNC_CONSUMER, &e.repository, &e.reference)
            .await?;
        let Some(head) = base::head_of(repo, &e.reference, &e.change).await? else {
            return Ok(record.ignore("the ref no longer exists: its deletion is mirrored directly"));
        };
        let last = checkpoint.as_ref().and_then(|c| c.commit.clone());
        // A request marked but not known to be done (its publish or the save after it
        // failed): the mirror may have been asked for another commit, so ask for the head.
        let unsure = checkpoint.as_ref().is_some_and(|c| c.pending.is_some());
        if last.as_ref() == Some(&head) && !unsure {
            return Ok(record.ignore(format!(
                "already handled: the sync checkpoint is at the ref's head {head}"
            )));
        }
        let mut decision = match crate::plan::sync_by_ref(config, &region.name, &e.reference) {
            // A selected tag is mirrored whatever it changed: nothing to list.
            Some(decision) => decision,
            None => {
                let (base, why) = diffs.base(last.as_ref(), &head).await?;
                let judged = diffs.judged(&base, &head).await?;
                let (changed, sync) = (judged.changed, judged.decisions.sync.clone());
                note_diff(&mut record, SYNC_CONSUMER, &base, &why, changed);
                sync
            }
        };
        decision.mirror |= unsure;
        if decision.mirror {
            let reason = if unsure && decision.reason == crate::plan::Reason::NothingChanged {
                "an earlier request's outcome is unknown".to_owned()
            } else {
                decision.reason.describe().to_owned()
            };
            let request = SyncRequested {
                repository: e.repository.clone(),
                reference: e.reference.full(),
                commit: Some(head.to_string()),
                reason,
            };
            // Marked before it is sent: if what follows fails, the next judgement asks
            // again rather than comparing against a checkpoint the mirror never saw.
            let now = store.now();
            let marked = Checkpoint {
                commit: last.clone(),
                version: checkpoint.as_ref().map_or(1, |c| c.version + 1),
                pending: Some(PendingStart {
                    commit: head.clone(),
                    claimed_at: now,
                    lease_until: now,
                }),
                run_id: None,
            };
            if !store
                .save(
                    SYNC_CONSUMER,
                    &e.repository,
                    &e.reference,
                    &marked,
                    checkpoint.as_ref(),
                )
                .await?
            {
                record.diffs.clear();
                continue;
            }
            request_sync(events, &request).await?;
            store
                .save(
                    SYNC_CONSUMER,
                    &e.repository,
                    &e.reference,
                    &Checkpoint::at(head.clone()),
                    Some(&marked),
                )
                .await?;
        } else if !store
            .save(
                SYNC_CONSUMER,
                &e.repository,
                &e.reference,
                &Checkpoint::at(head.clone()),
                checkpoint.as_ref(),
            )
            .await?
        {
            record.diffs.clear();
            continue;
        }
        let (matches, matches_total) = cut(std::mem::take(&mut decision.matches));
        let (excluded, excluded_total) = cut(std::mem::take(&mut decision.excluded));
        decision.matches = matches;
        decision.excluded = excluded;
        record.head = Some(head);
        record.sync = Some(SyncRecord {
            requested: decision.mirror,
            decision,
            matches_total,
            excluded_total,
        });
        return Ok(record);
    }
    Err(JudgeError::contended(SYNC_CONSUMER, &e))
}
