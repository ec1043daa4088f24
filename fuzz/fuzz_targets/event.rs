//! EventBridge events: `tozai::event::parse` on the text and `from_value` on the JSON.
//!
//! Beyond "no panic": both entry points agree; an error's message is non-empty and
//! free of raw control characters; a ref change's ref, commits and repository are valid
//! and round-trip; an accepted event, written back canonically, parses to the same thing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};
use tozai::event::{
    EventError, Inbound, MAX_EVENT_BYTES, RefChange, STATE_CHANGE, SYNC_REQUESTED, TOZAI_SOURCE,
    from_value, parse,
};
use tozai::location::check_codecommit_name;
use tozai::refs::{CommitId, RefName};
use tozai_fuzz::check_message;

fuzz_target!(|data: &[u8]| {
    let from_bytes = serde_json::from_slice::<Value>(data).ok().map(from_value);
    if let Some(result) = &from_bytes {
        check(result);
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = parse(text);
    check(&parsed);
    if let Some(result) = from_bytes.filter(|_| text.len() <= MAX_EVENT_BYTES) {
        // from_slice and from_str read the same JSON: the same outcome.
        assert_eq!(parsed, result, "parse and from_value disagree on {text:?}");
    }
    assert_eq!(parse(text), parsed, "parse is not deterministic");
});

fn check(result: &Result<Inbound, EventError>) {
    match result {
        Err(e) => {
            check_message("event error", &e.to_string());
            if let EventError::Field { field, problem } = e {
                assert!(!field.is_empty() && !problem.is_empty(), "{e:?}");
            }
        }
        Ok(Inbound::Ignored(why)) => check_message("ignored reason", why),
        Ok(Inbound::Scheduled) => {}
        Ok(Inbound::RefChanged(e)) => {
            check_codecommit_name(&e.repository).expect("an accepted repository name is valid");
            let full = e.reference.full();
            let again: RefName = full.parse().expect("an accepted ref's full name parses");
            assert_eq!(again, e.reference, "ref {full:?} does not round-trip");
            let short = e.reference.short();
            let rebuilt = if e.reference.is_tag() {
                RefName::tag(short)
            } else {
                RefName::branch(short)
            };
            assert_eq!(rebuilt.as_ref(), Ok(&e.reference));
            for c in e.change.before().into_iter().chain(e.change.after()) {
                let s = c.as_str();
                assert!(matches!(s.len(), 40 | 64), "{s:?}");
                assert!(
                    s.bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
                );
                assert_eq!(s.parse::<CommitId>().as_ref(), Ok(c));
                assert!(s.starts_with(c.short()));
            }
            match &e.change {
                RefChange::Created { .. } => assert!(e.change.before().is_none()),
                RefChange::Updated { .. } => {
                    assert!(e.change.before().is_some() && e.change.after().is_some())
                }
                RefChange::Deleted { .. } => assert!(e.change.after().is_none()),
            }
            serde_json::to_string(e).expect("a parsed event serializes");
            // Written back as CodeCommit would send it, it reads the same.
            let (event, commit, old) = match &e.change {
                RefChange::Created { commit } => ("referenceCreated", Some(commit), None),
                RefChange::Updated { old, new } => ("referenceUpdated", Some(new), Some(old)),
                RefChange::Deleted { old } => ("referenceDeleted", None, Some(old)),
            };
            let canonical = json!({
                "version": "0", "id": e.id, "account": e.account, "region": e.region,
                "source": "aws.codecommit", "detail-type": STATE_CHANGE,
                "detail": {
                    "event": event, "repositoryName": e.repository,
                    "referenceFullName": full, "referenceName": short,
                    "referenceType": e.reference.kind(),
                    "commitId": commit.map(|c| c.as_str()),
                    "oldCommitId": old.map(|c| c.as_str()),
                    "callerUserArn": e.caller,
                }
            });
            match from_value(canonical.clone()) {
                Ok(Inbound::RefChanged(back)) => assert_eq!(&back, e, "{canonical}"),
                other => panic!("canonical form of {e:?} parses as {other:?}"),
            }
        }
        Ok(Inbound::SyncRequested { request: s, .. }) => {
            check_codecommit_name(&s.repository).expect("an accepted repository name is valid");
            let r: RefName = s.reference.parse().expect("an accepted ref parses");
            assert_eq!(r.full().parse::<RefName>(), Ok(r));
            if let Some(c) = &s.commit {
                c.parse::<CommitId>().expect("an accepted commit parses");
            }
            let canonical = json!({"source": TOZAI_SOURCE, "detail-type": SYNC_REQUESTED,
                "detail": serde_json::to_value(s).expect("serializes")});
            assert_eq!(
                from_value(canonical.clone()),
                Ok(Inbound::SyncRequested {
                    request: s.clone(),
                    id: None
                }),
                "{canonical}"
            );
        }
    }
}
