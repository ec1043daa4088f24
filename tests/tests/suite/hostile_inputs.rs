//! Malformed and hostile events and configs: each gets a clear error naming what was wrong
//! (or, for events tozai has no business with, an acknowledgement), never a panic, and an
//! error message never echoes control characters or passwords. These are the parsers every
//! Lambda and CLI command goes through; an event that fails here reaches no judge, so
//! nothing can change (the Lambda tests check a malformed event end to end).

use serde_json::{Value, json};
use tozai::config::Config;
use tozai::event::{EventError, Inbound, from_value, parse};

fn sample() -> Value {
    json!({"version":"0","id":"3f7101d2-f1c4-d0a4-6d89-69fc887cc5e4",
        "detail-type":"CodeCommit Repository State Change","source":"aws.codecommit",
        "account":"111111111111","time":"2023-10-10T21:05:45Z","region":"ap-northeast-1",
        "resources":["arn:aws:codecommit:ap-northeast-1:111111111111:core-infra"],
        "detail":{"callerUserArn":"arn:aws:iam::111111111111:user/admin",
            "commitId":"f485fcc95a795517f279d0a877227e51208b0dfc","event":"referenceUpdated",
            "oldCommitId":"a399698fbd740af9c78fb2dd7f667656b70646b6",
            "referenceFullName":"refs/heads/main","referenceName":"main",
            "referenceType":"branch","repositoryName":"core-infra"}})
}

fn with(path: &str, value: Value) -> Value {
    let mut v = sample();
    let mut at = &mut v;
    let parts: Vec<&str> = path.split('.').collect();
    for p in &parts[..parts.len() - 1] {
        at = &mut at[*p];
    }
    at[parts[parts.len() - 1]] = value;
    v
}

fn without(path: &str) -> Value {
    let mut v = sample();
    let (parent, key) = path.rsplit_once('.').unwrap_or(("", path));
    let target = if parent.is_empty() {
        &mut v
    } else {
        &mut v[parent]
    };
    target.as_object_mut().unwrap().remove(key);
    v
}

fn sync_request(detail: Value) -> Value {
    json!({"version":"0","id":"1","detail-type":"Sync Requested","source":"tozai",
        "account":"111111111111","time":"2024-01-01T00:00:00Z","region":"ap-northeast-1",
        "resources":[],"detail":detail})
}

/// Each hostile event and the field its error must name.
fn hostile_events() -> Vec<(&'static str, Value, &'static str)> {
    let long = "x".repeat(10_000);
    vec![
        (
            "detail-type of the wrong type",
            with("detail-type", json!(42)),
            "detail-type",
        ),
        ("no source", without("source"), "source"),
        ("no detail-type", without("detail-type"), "detail-type"),
        (
            "detail is a string",
            with("detail", json!("main")),
            "detail",
        ),
        ("detail is null", with("detail", Value::Null), "detail"),
        ("no detail.event", without("detail.event"), "detail.event"),
        (
            "detail.event is a number",
            with("detail.event", json!(7)),
            "detail",
        ),
        (
            "path traversal in the repository",
            with("detail.repositoryName", json!("../../etc")),
            "detail.repositoryName",
        ),
        (
            "a 10,000-character repository",
            with("detail.repositoryName", json!(long)),
            "detail.repositoryName",
        ),
        (
            "a NUL in the repository",
            with("detail.repositoryName", json!("core\u{0}infra")),
            "detail.repositoryName",
        ),
        (
            "no repository",
            without("detail.repositoryName"),
            "detail.repositoryName",
        ),
        (
            "a ref with ..",
            with("detail.referenceFullName", json!("refs/heads/../../HEAD")),
            "detail.referenceFullName",
        ),
        (
            "a ref outside heads and tags",
            with(
                "detail.referenceFullName",
                json!("refs/remotes/origin/main"),
            ),
            "detail.referenceFullName",
        ),
        (
            "a newline in the ref",
            with("detail.referenceFullName", json!("refs/heads/ma\nin")),
            "detail.referenceFullName",
        ),
        (
            "an escape sequence in the ref",
            with(
                "detail.referenceFullName",
                json!("refs/heads/\u{1b}[31mred"),
            ),
            "detail.referenceFullName",
        ),
        (
            "a 10,000-character ref",
            with(
                "detail.referenceFullName",
                json!(format!("refs/heads/{long}")),
            ),
            "detail.referenceFullName",
        ),
        (
            "a commit that is not hex",
            with("detail.commitId", json!("zzzz")),
            "detail.commitId",
        ),
        (
            "a commit one digit short",
            with(
                "detail.commitId",
                json!("f485fcc95a795517f279d0a877227e51208b0df"),
            ),
            "detail.commitId",
        ),
        (
            "a commit of the wrong type",
            with("detail.commitId", json!(123)),
            "detail",
        ),
        (
            "an update without its old commit",
            without("detail.oldCommitId"),
            "detail.oldCommitId",
        ),
        (
            "a deletion without its old commit",
            {
                let mut v = with("detail.event", json!("referenceDeleted"));
                v["detail"].as_object_mut().unwrap().remove("oldCommitId");
                v
            },
            "detail.oldCommitId",
        ),
        (
            "no ref name at all",
            {
                let mut v = without("detail.referenceFullName");
                v["detail"].as_object_mut().unwrap().remove("referenceName");
                v
            },
            "detail.referenceFullName",
        ),
        (
            "a short ref name with ..",
            {
                let mut v = without("detail.referenceFullName");
                v["detail"]["referenceName"] = json!("..");
                v
            },
            "detail.referenceName",
        ),
        (
            "a sync request for ../x",
            sync_request(json!({"repository":"../x","ref":"refs/heads/main","reason":"r"})),
            "detail.repository",
        ),
        (
            "a sync request for a bad ref",
            sync_request(json!({"repository":"core-infra","ref":"refs/heads/a..b","reason":"r"})),
            "detail.ref",
        ),
        (
            "a sync request for a bad commit",
            sync_request(
                json!({"repository":"core-infra","ref":"refs/heads/main","commit":"xyz","reason":"r"}),
            ),
            "detail.commit",
        ),
        (
            "a sync request without a ref",
            sync_request(json!({"repository":"core-infra","reason":"r"})),
            "detail",
        ),
        (
            "a sync request that is a list",
            sync_request(json!(["core-infra"])),
            "detail",
        ),
    ]
}

#[test]
fn hostile_events_get_an_error_naming_the_field() {
    let cases = hostile_events();
    assert!(cases.len() >= 25);
    println!(
        "hostile events: {} malformed, each an error naming its field",
        cases.len()
    );
    for (what, event, field) in cases {
        let text = event.to_string();
        let err = match parse(&text) {
            Err(e) => e,
            Ok(ok) => panic!("{what}: accepted as {ok:?}"),
        };
        let message = err.to_string();
        assert!(
            message.contains(field),
            "{what}: the error should name {field:?}: {message}"
        );
        // The message never echoes a control character back into a log.
        assert!(
            !message.chars().any(|c| c.is_control() && c != '\n'),
            "{what}: {message:?}"
        );
        // The same through the Lambda path (already-parsed JSON).
        assert_eq!(from_value(event).unwrap_err(), err, "{what}");
    }
}

#[test]
fn not_json_and_oversized_events_are_errors_too() {
    let deep = (0..200).fold(json!(1), |inner, _| json!([inner]));
    for (what, text) in [
        ("empty", String::new()),
        ("not JSON", "{".to_owned()),
        ("a JSON list", "[1,2]".to_owned()),
        ("invalid UTF-8 escape", r#"{"source":"\udc00"}"#.to_owned()),
        (
            "JSON nested 200 deep",
            with("detail.extra", deep).to_string(),
        ),
        (
            "over 256 KiB",
            with("detail.padding", json!("p".repeat(300_000))).to_string(),
        ),
    ] {
        match parse(&text) {
            Err(EventError::Json(m)) => assert!(!m.is_empty(), "{what}"),
            other => panic!("{what}: {other:?}"),
        }
    }
}

#[test]
fn events_that_are_not_tozais_business_are_acknowledged_not_errors() {
    for (what, event) in [
        (
            "a pull request",
            with("detail-type", json!("CodeCommit Pull Request State Change")),
        ),
        (
            "a merge commit without a ref",
            with("detail.event", json!("unreferencedMergeCommitCreated")),
        ),
        ("another source", with("source", json!("aws.s3"))),
        (
            "a detail-type with control characters",
            with("detail-type", json!("Sync\u{7}Requested")),
        ),
        ("a reference type tozai does not know", {
            let mut v = without("detail.referenceFullName");
            v["detail"]["referenceType"] = json!("note");
            v
        }),
    ] {
        match from_value(event) {
            Ok(Inbound::Ignored(why)) => assert!(!why.is_empty(), "{what}"),
            other => panic!("{what}: {other:?}"),
        }
    }
}

const BASE: &str = r#"primary = "tokyo"
[regions.tokyo]
aws_region = "ap-northeast-1"
repository = "core-infra"
[regions.osaka]
aws_region = "ap-northeast-3"
repository = "core-infra"
[sync]
branches = ["main"]
[sync.to.osaka]
paths = ["common/**"]
[sync.to.tokyo]
paths = ["common/**"]
"#;

fn pipeline(fields: &str) -> String {
    format!(
        "{BASE}[[pipeline]]\n{fields}\nregion = \"tokyo\"\nbranches = [\"main\"]\npaths = [\"**\"]\n"
    )
}

#[test]
fn hostile_configs_get_an_error_naming_the_value() {
    let huge = "a".repeat(5000);
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "a NUL in an AWS region",
            BASE.replace("\"ap-northeast-1\"", "\"ap-northeast-1\\u0000\""),
            "ap-northeast-1",
        ),
        (
            "path traversal in a region name",
            BASE.replace("[regions.tokyo]", "[regions.\"../tokyo\"]"),
            "../tokyo",
        ),
        (
            "an escape sequence in the primary",
            BASE.replace("primary = \"tokyo\"", "primary = \"tok\\u001byo\""),
            "unknown region",
        ),
        (
            "a bell in a branch glob",
            BASE.replace("[\"main\"]", "[\"ma\\u0007in\"]"),
            "control character",
        ),
        (
            "a 5,000-byte pattern",
            BASE.replace(
                "paths = [\"common/**\"]\n[sync.to.tokyo]",
                &format!("paths = [\"{huge}\"]\n[sync.to.tokyo]"),
            ),
            "4096",
        ),
        (
            "a newline in a target name",
            pipeline("name = \"a\\nb\"\ncodebuild = \"x\""),
            "target name",
        ),
        (
            "path traversal in a project",
            pipeline("name = \"t\"\ncodebuild = \"../../x\""),
            "../../x",
        ),
        (
            "an empty pipeline name",
            pipeline("name = \"t\"\ncodepipeline = \"\""),
            "pipeline name",
        ),
        (
            "a NUL in a source action",
            pipeline("name = \"t\"\ncodepipeline = \"p\"\nsource_action = \"a\\u0000\""),
            "source action",
        ),
        (
            "a wrong type",
            BASE.replace("primary = \"tokyo\"", "primary = 5"),
            "primary",
        ),
        (
            "an unknown region for a target",
            pipeline("name = \"t\"\ncodebuild = \"x\"").replace(
                "region = \"tokyo\"\nbranches",
                "region = \"nagoya\"\nbranches",
            ),
            "nagoya",
        ),
        (
            "SSH in a repository",
            BASE.replacen(
                "repository = \"core-infra\"",
                "repository = \"git@example.com:x.git\"",
                1,
            ),
            "SSH",
        ),
        (
            "credentials in a repository URL",
            BASE.replacen(
                "repository = \"core-infra\"",
                "repository = \"https://user:secret@example.com/x.git\"",
                1,
            ),
            "credentials",
        ),
    ];
    println!(
        "hostile configs: {} refused, each naming the value",
        cases.len()
    );
    for (what, text, needle) in cases {
        let err = match Config::parse(&text, "hostile.toml".as_ref()) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("{what}: accepted"),
        };
        assert!(
            err.contains("hostile.toml"),
            "{what}: names the file: {err}"
        );
        assert!(err.contains(needle), "{what}: should say {needle:?}: {err}");
        assert!(
            !err.contains("secret"),
            "{what}: never echoes a password: {err}"
        );
        // The message never echoes a control character back into a log.
        assert!(
            !err.chars().any(|c| c.is_control() && c != '\n'),
            "{what}: {err:?}"
        );
    }
}
