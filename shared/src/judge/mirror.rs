//! The mirror's use case: on `Sync Requested`, on a branch or tag deleted in the primary's
//! repository, and on the schedule, mirror and publish `Sync Completed` or `Sync Failed`.

use super::JudgeError;
use super::record::DecisionRecord;
use super::region_of;
use crate::config::Config;
use crate::event::{Inbound, RefChange};
use crate::ports::{EventSink, RefMirror, ServiceError};
use crate::refs::CommitId;

/// The detail-type of a finished mirror.
pub const SYNC_COMPLETED: &str = "Sync Completed";
/// The detail-type of a mirror that left the standby out of step.
pub const SYNC_FAILED: &str = "Sync Failed";

/// The mirror: on `Sync Requested`, and on a branch or tag deleted in the primary's
/// repository, mirrors that ref and publishes `Sync Completed` or `Sync Failed`.
///
/// A ref left diverged or rejected is `Sync Failed` (an alarm) but not an error: running
/// again would not change it. A failed run (unreachable, authentication) is published and
/// returned as an error, so the event is retried when that may help.
pub async fn mirror_job<M, E>(
    config: &Config,
    mirror: &M,
    events: &E,
    inbound: Inbound,
) -> Result<DecisionRecord, JudgeError>
where
    M: RefMirror,
    E: EventSink,
{
    const F: &str = "mirror";
    let primary = config.primary();
    let mut record = DecisionRecord::new(F);
    record.region = Some(primary.name.clone());
    let (repository, reference, commit) = match inbound {
        Inbound::Ignored(why) => return Ok(record.ignore(why)),
        Inbound::Scheduled => {
            record.repository = Some(primary.repository.name());
            let outcome = mirror.mirror_selected(config.sync.selection()).await;
            return report(config, events, record, None, outcome).await;
        }
        Inbound::SyncRequested { request: s, id } => {
            record.event_id = id;
            let (reference, commit) = s.parsed()?;
            (s.repository, reference, commit)
        }
        Inbound::RefChanged(e) => {
            record = DecisionRecord::for_event(F, &e);
            record.region = Some(primary.name.clone());
            if region_of(config, &e).is_none_or(|r| r.name != primary.name) {
                return Ok(record.ignore("not a change to the primary's repository"));
            }
            if !matches!(e.change, RefChange::Deleted { .. }) {
                return Ok(record.ignore("pushes reach the mirror through the sync-judge"));
            }
            (e.repository, e.reference, None)
        }
    };
    record.repository = Some(repository.clone());
    record.reference = Some(reference.full());
    record.after = commit.clone();
    if repository != primary.repository.name() {
        return Ok(record.ignore(format!(
            "repository {repository} is not the primary's ({})",
            primary.repository.name()
        )));
    }
    let filter = config.sync.filter_for(&reference);
    if reference.is_backup() || filter.first_match(reference.short()).is_none() {
        return Ok(record.ignore(format!(
            "{} {} is not mirrored",
            reference.kind(),
            reference.short()
        )));
    }
    let outcome = mirror.mirror_ref(&reference).await;
    report(config, events, record, commit, outcome).await
}

/// How much of a failed run's error `Sync Failed` and the record carry (cut with `…`).
const ERROR_BYTES: usize = 4096;

/// Publishes `Sync Completed` or `Sync Failed` for a mirror run and completes the record:
/// the run's [`MirrorSummary`](crate::mirror::MirrorSummary), so the event stays under
/// EventBridge's 256 KB whatever the number of refs.
async fn report<E: EventSink>(
    config: &Config,
    events: &E,
    mut record: DecisionRecord,
    commit: Option<CommitId>,
    outcome: Result<crate::mirror::MirrorOutcome, crate::ports::MirrorError>,
) -> Result<DecisionRecord, JudgeError> {
    let detail = |status: &str, extra: serde_json::Value| {
        let mut d = serde_json::json!({
            "repository": record.repository,
            "ref": record.reference,
            "commit": commit.as_ref().map(|c| c.to_string()),
            "from": config.primary().name,
            "to": config.standby().name,
            "status": status,
        });
        if let (Some(d), serde_json::Value::Object(extra)) = (d.as_object_mut(), extra) {
            d.extend(extra);
        }
        d
    };
    match outcome {
        Ok(outcome) => {
            let summary = serde_json::to_value(outcome.summary()).map_err(|err| {
                ServiceError::new(
                    "event bus",
                    format!("cannot encode the mirror's summary: {err}"),
                    false,
                )
            })?;
            let (kind, status) = if outcome.in_sync() {
                (SYNC_COMPLETED, "in_sync")
            } else {
                (SYNC_FAILED, "out_of_step")
            };
            events
                .publish(kind, &detail(status, summary.clone()))
                .await?;
            record.mirror = Some(summary);
            Ok(record)
        }
        Err(err) => {
            let message = crate::text::cut(&err.to_string(), ERROR_BYTES);
            let published = events
                .publish(
                    SYNC_FAILED,
                    &detail(
                        "error",
                        serde_json::json!({"error": message, "transient": err.is_transient()}),
                    ),
                )
                .await;
            if let Err(p) = published {
                tracing::error!(error = %p, "could not publish Sync Failed");
            }
            record.mirror = Some(serde_json::json!({ "error": message }));
            tracing::error!(record = %record.to_json(), "mirror failed");
            Err(err.into())
        }
    }
}
