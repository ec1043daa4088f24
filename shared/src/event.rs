//! The events tozai's Lambdas receive from EventBridge, parsed into tozai's types.
//!
//! - `aws.codecommit` / "CodeCommit Repository State Change": one ref of one repository
//!   was created, updated or deleted. Delivery is best effort, unordered and at least
//!   once, so no event is trusted to carry the whole truth: consumers diff from their own
//!   checkpoint.
//! - `tozai` / "Sync Requested": the sync-judge (or `tozai replay`) asks the mirror to
//!   mirror one ref.
//!
//! Anything else (other detail-types from CodeCommit such as pull-request events,
//! `unreferencedMergeCommitCreated`, other sources) is [`Inbound::Ignored`] with the
//! reason: acknowledged, never retried. Unknown fields are ignored. A malformed event is an
//! [`EventError`] naming the field at fault.
//!
//! ```
//! use tozai::event::{parse, Inbound, RefChange};
//! let json = r#"{"version":"0","id":"3f71","detail-type":"CodeCommit Repository State Change",
//!   "source":"aws.codecommit","account":"111111111111","time":"2023-10-10T21:05:45Z",
//!   "region":"us-east-1","resources":["arn:aws:codecommit:us-east-1:111111111111:some-repo"],
//!   "detail":{"commitId":"f485fcc95a795517f279d0a877227e51208b0dfc","event":"referenceUpdated",
//!   "oldCommitId":"a399698fbd740af9c78fb2dd7f667656b70646b6","referenceFullName":"refs/heads/main",
//!   "referenceName":"main","referenceType":"branch","repositoryName":"some-repo"}}"#;
//! let Inbound::RefChanged(e) = parse(json).unwrap() else { panic!() };
//! assert_eq!(e.repository, "some-repo");
//! assert!(matches!(e.change, RefChange::Updated { .. }));
//! ```

use serde::{Deserialize, Serialize};

use crate::refs::{CommitId, RefName};

/// The detail-type of CodeCommit's ref events.
pub const STATE_CHANGE: &str = "CodeCommit Repository State Change";
/// The source of tozai's own events.
pub const TOZAI_SOURCE: &str = "tozai";
/// The detail-type of a mirror request.
pub const SYNC_REQUESTED: &str = "Sync Requested";

/// A malformed event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("the event is not valid JSON for an EventBridge event: {0}")]
    Json(String),
    #[error("event field {field} {problem}")]
    Field { field: String, problem: String },
}

fn field(field: &str, problem: impl Into<String>) -> EventError {
    EventError::Field {
        field: field.to_owned(),
        problem: problem.into(),
    }
}

/// What happened to a ref.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum RefChange {
    Created { commit: CommitId },
    Updated { old: CommitId, new: CommitId },
    Deleted { old: CommitId },
}

impl RefChange {
    /// The commit the ref points at now (none once deleted).
    pub fn after(&self) -> Option<&CommitId> {
        match self {
            Self::Created { commit } => Some(commit),
            Self::Updated { new, .. } => Some(new),
            Self::Deleted { .. } => None,
        }
    }

    /// The commit the ref pointed at before, if the event says.
    pub fn before(&self) -> Option<&CommitId> {
        match self {
            Self::Created { .. } => None,
            Self::Updated { old, .. } | Self::Deleted { old } => Some(old),
        }
    }
}

/// A ref of a CodeCommit repository changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RefChanged {
    /// EventBridge's event id, for logs.
    pub id: Option<String>,
    pub account: Option<String>,
    /// The AWS region the event came from.
    pub region: Option<String>,
    pub repository: String,
    #[serde(rename = "ref")]
    pub reference: RefName,
    pub change: RefChange,
    /// Who pushed (an IAM user or assumed-role ARN), when the event says.
    pub caller: Option<String>,
}

/// A request to mirror one ref, as the sync-judge or `tozai replay` sends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncRequested {
    pub repository: String,
    #[serde(rename = "ref")]
    pub reference: String,
    pub commit: Option<String>,
    pub reason: String,
}

impl SyncRequested {
    /// The requested ref and commit, parsed; an error names the detail's field.
    pub fn parsed(&self) -> Result<(RefName, Option<CommitId>), EventError> {
        let reference = self
            .reference
            .parse::<RefName>()
            .map_err(|err| field("detail.ref", err.to_string()))?;
        let commit = self
            .commit
            .as_deref()
            .map(str::parse::<CommitId>)
            .transpose()
            .map_err(|err| field("detail.commit", err.to_string()))?;
        Ok((reference, commit))
    }
}

/// An inbound event, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    RefChanged(RefChanged),
    /// A sync request, with its envelope's `id` when it has one.
    SyncRequested {
        request: SyncRequested,
        id: Option<String>,
    },
    /// An EventBridge schedule (`aws.events` / "Scheduled Event"): the mirror reconciles
    /// every configured ref, in case an event was lost for good.
    Scheduled,
    /// Acknowledged and not acted on; the string says why.
    Ignored(String),
}

/// An EventBridge event as the Lambda runtime hands it over, its detail not yet typed.
type Envelope = aws_lambda_events::event::eventbridge::EventBridgeEvent<serde_json::Value>;

/// The detail of a "CodeCommit Repository State Change" event (every field optional here;
/// which are required depends on `event` and is checked by [`parse`]). Unknown fields, such
/// as those of merges made by CodeCommit, are ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StateDetail {
    pub event: Option<String>,
    pub repository_name: Option<String>,
    pub reference_full_name: Option<String>,
    pub reference_name: Option<String>,
    pub reference_type: Option<String>,
    pub commit_id: Option<String>,
    pub old_commit_id: Option<String>,
    pub caller_user_arn: Option<String>,
}

/// A CodeCommit ref event, typed.
pub type StateChangeEvent = aws_lambda_events::event::eventbridge::EventBridgeEvent<StateDetail>;

/// The longest event tozai reads (EventBridge's own limit is 256 KiB).
pub const MAX_EVENT_BYTES: usize = 256 * 1024;

/// EventBridge's limit on one PutEvents entry, "256 KB", read in the stricter way.
pub const MAX_ENTRY_BYTES: usize = 256 * 1000;

/// The size EventBridge counts for one of tozai's PutEvents entries: Source, DetailType and
/// Detail in UTF-8 bytes (tozai sets neither Time nor Resources, which would count too).
pub fn entry_size(detail_type: &str, detail: &str) -> usize {
    TOZAI_SOURCE.len() + detail_type.len() + detail.len()
}

/// Parses and classifies one event.
pub fn parse(json: &str) -> Result<Inbound, EventError> {
    if json.len() > MAX_EVENT_BYTES {
        return Err(EventError::Json(format!(
            "{} bytes is over EventBridge's 256 KiB limit",
            json.len()
        )));
    }
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|e| EventError::Json(e.to_string()))?;
    from_value(value)
}

/// Classifies an event already parsed as JSON (as the Lambda runtime hands it over).
pub fn from_value(value: serde_json::Value) -> Result<Inbound, EventError> {
    check_envelope(&value)?;
    let envelope: Envelope =
        serde_json::from_value(value).map_err(|e| EventError::Json(e.to_string()))?;
    from_envelope(envelope)
}

/// Checks the envelope's fields one by one, so that an error names the field at fault.
fn check_envelope(value: &serde_json::Value) -> Result<(), EventError> {
    let Some(object) = value.as_object() else {
        return Err(EventError::Json(format!(
            "an EventBridge event is a JSON object, not {}",
            kind(value)
        )));
    };
    for name in ["source", "detail-type"] {
        match object.get(name) {
            None => return Err(field(name, "is missing")),
            Some(v) if !v.is_string() => {
                return Err(field(name, format!("must be a string, not {}", kind(v))));
            }
            Some(_) => {}
        }
    }
    for name in ["id", "version", "account", "region", "time"] {
        if let Some(v) = object.get(name).filter(|v| !v.is_string() && !v.is_null()) {
            return Err(field(name, format!("must be a string, not {}", kind(v))));
        }
    }
    if let Some(time) = object.get("time").filter(|t| t.is_string()) {
        let probe =
            serde_json::json!({"source": "", "detail-type": "", "time": time, "detail": null});
        if serde_json::from_value::<Envelope>(probe).is_err() {
            return Err(field("time", "is not an RFC 3339 timestamp"));
        }
    }
    if let Some(v) = object.get("resources")
        && !v.is_null()
        && !v
            .as_array()
            .is_some_and(|a| a.iter().all(|r| r.is_string()))
    {
        return Err(field("resources", "must be a list of strings"));
    }
    if !object.contains_key("detail") {
        return Err(field("detail", "is missing"));
    }
    Ok(())
}

fn kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "an object",
    }
}

fn from_envelope(e: Envelope) -> Result<Inbound, EventError> {
    match (e.source.as_str(), e.detail_type.as_str()) {
        ("aws.codecommit", STATE_CHANGE) => state_change(e),
        (TOZAI_SOURCE, SYNC_REQUESTED) => {
            let id = e.id.filter(|id| !id.is_empty());
            sync_requested(e.detail).map(|request| Inbound::SyncRequested { request, id })
        }
        ("aws.events", "Scheduled Event") => Ok(Inbound::Scheduled),
        (source, detail_type) => Ok(Inbound::Ignored(format!(
            "not a ref change or a sync request (source {source:?}, detail-type {detail_type:?})"
        ))),
    }
}

fn state_change(e: Envelope) -> Result<Inbound, EventError> {
    if !e.detail.is_object() {
        return Err(field("detail", "must be an object"));
    }
    let d: StateDetail = serde_json::from_value(e.detail)
        .map_err(|err| field("detail", format!("is malformed: {err}")))?;
    let event = d.event.ok_or_else(|| field("detail.event", "is missing"))?;
    let needs_ref = matches!(
        event.as_str(),
        "referenceCreated" | "referenceUpdated" | "referenceDeleted"
    );
    if !needs_ref {
        return Ok(Inbound::Ignored(format!(
            "CodeCommit event {event:?} does not change a branch or tag"
        )));
    }
    let repository = d
        .repository_name
        .ok_or_else(|| field("detail.repositoryName", "is missing"))?;
    crate::location::check_codecommit_name(&repository)
        .map_err(|why| field("detail.repositoryName", why))?;
    let reference = match (&d.reference_full_name, &d.reference_type, &d.reference_name) {
        (Some(full), _, _) => full
            .parse::<RefName>()
            .map_err(|err| field("detail.referenceFullName", err.to_string()))?,
        (None, Some(kind), Some(name)) => match kind.as_str() {
            "branch" => RefName::branch(name),
            "tag" => RefName::tag(name),
            other => {
                return Ok(Inbound::Ignored(format!(
                    "reference type {other:?} is neither branch nor tag"
                )));
            }
        }
        .map_err(|err| field("detail.referenceName", err.to_string()))?,
        _ => return Err(field("detail.referenceFullName", "is missing")),
    };
    let commit = |value: Option<String>, name: &str| -> Result<CommitId, EventError> {
        let value = value.ok_or_else(|| field(name, format!("is missing for {event}")))?;
        value
            .parse()
            .map_err(|err: crate::refs::RefError| field(name, err.to_string()))
    };
    let change = match event.as_str() {
        "referenceCreated" => RefChange::Created {
            commit: commit(d.commit_id, "detail.commitId")?,
        },
        "referenceUpdated" => RefChange::Updated {
            old: commit(d.old_commit_id, "detail.oldCommitId")?,
            new: commit(d.commit_id, "detail.commitId")?,
        },
        _ => RefChange::Deleted {
            old: commit(d.old_commit_id, "detail.oldCommitId")?,
        },
    };
    Ok(Inbound::RefChanged(RefChanged {
        id: e.id,
        account: e.account,
        region: e.region,
        repository,
        reference,
        change,
        caller: d.caller_user_arn,
    }))
}

fn sync_requested(detail: serde_json::Value) -> Result<SyncRequested, EventError> {
    if !detail.is_object() {
        return Err(field("detail", "must be an object"));
    }
    let s: SyncRequested = serde_json::from_value(detail)
        .map_err(|err| field("detail", format!("is malformed: {err}")))?;
    crate::location::check_codecommit_name(&s.repository)
        .map_err(|why| field("detail.repository", why))?;
    s.parsed()?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// The docs' sample, keys as captured (FACTS.md).
    fn sample() -> Value {
        json!({"version":"0","id":"3f7101d2-f1c4-d0a4-6d89-69fc887cc5e4",
            "detail-type":"CodeCommit Repository State Change","source":"aws.codecommit",
            "account":"111111111111","time":"2023-10-10T21:05:45Z","region":"us-east-1",
            "resources":["arn:aws:codecommit:us-east-1:111111111111:some-repo"],
            "detail":{"callerUserArn":"arn:aws:iam::111111111111:user/admin",
                "commitId":"f485fcc95a795517f279d0a877227e51208b0dfc","event":"referenceUpdated",
                "oldCommitId":"a399698fbd740af9c78fb2dd7f667656b70646b6",
                "referenceFullName":"refs/heads/main","referenceName":"main",
                "referenceType":"branch","repositoryId":"280e6f04-7a9c-4c72-8d8f-947d83e21a96",
                "repositoryName":"some-repo"}})
    }

    fn with(path: &[&str], value: Value) -> Value {
        let mut v = sample();
        let mut at = &mut v;
        for p in &path[..path.len() - 1] {
            at = &mut at[*p];
        }
        at[path[path.len() - 1]] = value;
        v
    }

    fn without(path: &[&str]) -> Value {
        let mut v = sample();
        v[path[0]].as_object_mut().unwrap().remove(path[1]);
        v
    }

    #[test]
    fn the_docs_sample_is_an_eventbridge_event_with_a_typed_detail() {
        let typed: StateChangeEvent = serde_json::from_value(sample()).unwrap();
        assert_eq!(typed.detail_type, STATE_CHANGE);
        assert_eq!(typed.detail.repository_name.as_deref(), Some("some-repo"));
        assert_eq!(typed.detail.event.as_deref(), Some("referenceUpdated"));
        let back = serde_json::to_value(&typed).unwrap();
        assert_eq!(
            back["detail"]["oldCommitId"],
            sample()["detail"]["oldCommitId"]
        );
    }

    #[test]
    fn the_docs_sample_parses() {
        let Inbound::RefChanged(e) = from_value(sample()).unwrap() else {
            panic!()
        };
        assert_eq!(e.reference.full(), "refs/heads/main");
        assert_eq!(
            e.caller.as_deref(),
            Some("arn:aws:iam::111111111111:user/admin")
        );
        assert_eq!(e.change.before().unwrap().short(), "a399698fbd74");
        assert_eq!(e.change.after().unwrap().short(), "f485fcc95a79");
        assert_eq!(e.region.as_deref(), Some("us-east-1"));
    }

    #[test]
    fn created_deleted_tags_and_optional_fields() {
        let created = with(&["detail", "event"], json!("referenceCreated"));
        let mut created = created;
        created["detail"]
            .as_object_mut()
            .unwrap()
            .remove("oldCommitId");
        created["detail"]
            .as_object_mut()
            .unwrap()
            .remove("callerUserArn");
        let Inbound::RefChanged(e) = from_value(created).unwrap() else {
            panic!()
        };
        assert!(matches!(e.change, RefChange::Created { .. }));
        assert_eq!(e.caller, None);

        let mut deleted = with(&["detail", "event"], json!("referenceDeleted"));
        deleted["detail"]
            .as_object_mut()
            .unwrap()
            .remove("commitId");
        let Inbound::RefChanged(e) = from_value(deleted).unwrap() else {
            panic!()
        };
        assert_eq!(e.change.after(), None);

        let tag = with(&["detail", "referenceFullName"], json!("refs/tags/v1.0"));
        let Inbound::RefChanged(e) = from_value(tag).unwrap() else {
            panic!()
        };
        assert!(e.reference.is_tag());
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let v = with(&["detail", "mergeOption"], json!("FAST_FORWARD_MERGE"));
        let v = {
            let mut v = v;
            v["detail"]["sourceCommitId"] = json!("x");
            v["extra"] = json!({"a": 1});
            v
        };
        assert!(matches!(from_value(v).unwrap(), Inbound::RefChanged(_)));
    }

    #[test]
    fn other_events_are_acknowledged_not_acted_on() {
        let rows = [
            with(
                &["detail-type"],
                json!("CodeCommit Pull Request State Change"),
            ),
            with(&["detail-type"], json!("CodeCommit Comment on Commit")),
            with(&["source"], json!("aws.s3")),
            with(
                &["detail", "event"],
                json!("unreferencedMergeCommitCreated"),
            ),
            with(&["detail", "event"], json!("somethingNew")),
        ];
        for v in rows {
            assert!(
                matches!(from_value(v.clone()).unwrap(), Inbound::Ignored(_)),
                "{v}"
            );
        }
    }

    #[test]
    fn malformed_events_name_the_field() {
        let rows: Vec<(Value, &str)> = vec![
            (without(&["detail", "commitId"]), "detail.commitId"),
            (without(&["detail", "oldCommitId"]), "detail.oldCommitId"),
            (without(&["detail", "event"]), "detail.event"),
            (
                without(&["detail", "repositoryName"]),
                "detail.repositoryName",
            ),
            (
                with(&["detail", "commitId"], json!("HEAD")),
                "detail.commitId",
            ),
            (with(&["detail", "commitId"], json!(42)), "detail"),
            (
                with(&["detail", "referenceFullName"], json!("refs/heads/../x")),
                "detail.referenceFullName",
            ),
            (
                with(&["detail", "referenceFullName"], json!("refs/pull/1/head")),
                "detail.referenceFullName",
            ),
            (
                with(&["detail", "repositoryName"], json!("../../etc")),
                "detail.repositoryName",
            ),
            (
                with(&["detail", "repositoryName"], json!("a\u{0}b")),
                "detail.repositoryName",
            ),
            (with(&["detail"], json!("text")), "detail"),
        ];
        for (v, name) in rows {
            let err = from_value(v).unwrap_err().to_string();
            assert!(err.contains(name), "{name}: {err}");
        }
        assert!(matches!(parse("{"), Err(EventError::Json(_))));
        assert!(
            parse(r#"{"source":"aws.codecommit"}"#)
                .unwrap_err()
                .to_string()
                .contains("detail-type")
        );
        let huge = format!("{{\"x\":\"{}\"}}", "a".repeat(MAX_EVENT_BYTES));
        assert!(parse(&huge).unwrap_err().to_string().contains("256 KiB"));
    }

    #[test]
    fn sync_requests_round_trip_and_are_checked() {
        let request = SyncRequested {
            repository: "core-infra".into(),
            reference: "refs/heads/main".into(),
            commit: Some("f485fcc95a795517f279d0a877227e51208b0dfc".into()),
            reason: "common/a.yaml matched common/**".into(),
        };
        let event = json!({"source": TOZAI_SOURCE, "detail-type": SYNC_REQUESTED,
            "detail": serde_json::to_value(&request).unwrap()});
        assert_eq!(
            from_value(event.clone()).unwrap(),
            Inbound::SyncRequested { request, id: None }
        );
        let mut bad = event;
        bad["detail"]["ref"] = json!("refs/notes/x");
        assert!(
            from_value(bad)
                .unwrap_err()
                .to_string()
                .contains("detail.ref")
        );
    }
}
