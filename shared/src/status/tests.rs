//! The status's judgements: table rows over a fake history.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use super::*;
use crate::change::Change;
use crate::plan::Push;

fn c(n: u8) -> CommitId {
    format!("{n:02x}").repeat(20).parse().unwrap()
}

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

#[test]
fn reconcile_accepts_whole_units_that_divide_a_day() {
    let rows = [
        ("15m", Some("15m")),
        ("1h", Some("1h")),
        ("60m", Some("1h")),
        ("6h", Some("6h")),
        ("30m", Some("30m")),
        ("1m", Some("1m")),
        ("12h", Some("12h")),
        ("1d", Some("1d")),
        ("24h", Some("1d")),
        // no cron schedule runs at these multiples from 00:00 UTC
        ("90m", None),
        ("45m", None),
        ("120m", None),
        ("1440m", None),
        ("48h", None),
        ("7h", None),
        ("7m", None),
        ("2d", None),
        ("0h", None),
        ("h", None),
        ("1", None),
        ("", None),
        ("1.5h", None),
        ("+1h", None),
        ("-1h", None),
        ("1H", None),
        ("1 h", None),
        ("99999999999m", None),
        ("1時", None),
    ];
    for (text, want) in rows {
        let got = text.parse::<Reconciliation>().map(|r| r.to_string());
        assert_eq!(got.as_deref().ok(), want, "{text:?}: {got:?}");
    }
    let e = "7h".parse::<Reconciliation>().unwrap_err();
    assert!(e.contains("divides 24 hours"), "{e}");
    assert_eq!(Reconciliation::default().to_string(), "1h");
}

/// The config's error names the key, the value and what is accepted.
#[test]
fn reconcile_that_no_schedule_matches_is_a_config_error_naming_key_value_and_choices() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/tozai.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    for value in ["45m", "90m"] {
        let bad = text.replacen("reconcile = \"1h\"", &format!("reconcile = \"{value}\""), 1);
        assert_ne!(bad, text);
        let e = Config::parse(&bad, Path::new("tozai.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&format!(
                "sync.reconcile = \"{value}\": the reconciliations run at its multiples from \
                 00:00 UTC, as a cron schedule does, so it must be a number of minutes that \
                 divides 60 (\"15m\", \"30m\"), of hours that divides 24 hours (\"1h\", \"6h\", \
                 \"12h\"), or \"1d\""
            )),
            "{e}"
        );
    }
}

#[test]
fn the_next_reconciliation_is_the_next_multiple_from_midnight_utc() {
    let rows = [
        ("1h", "2024-04-01T13:05:00Z", "2024-04-01T14:00:00Z"),
        ("1h", "2024-04-01T13:00:00Z", "2024-04-01T14:00:00Z"),
        ("15m", "2024-04-01T13:05:00Z", "2024-04-01T13:15:00Z"),
        ("6h", "2024-04-01T19:00:00Z", "2024-04-02T00:00:00Z"),
        ("1d", "2024-04-01T00:00:01Z", "2024-04-02T00:00:00Z"),
        ("30m", "2024-04-01T01:29:59Z", "2024-04-01T01:30:00Z"),
    ];
    for (every, now, want) in rows {
        let r: Reconciliation = every.parse().unwrap();
        assert_eq!(r.next_after(at(now)), at(want), "{every} after {now}");
    }
}

/// The first run after a lag began may have started before its commits were pushed: the
/// second (and the grace) must pass before the lag is overdue.
#[test]
fn a_lag_is_overdue_once_the_second_reconciliation_and_the_grace_passed() {
    let hourly = Reconciliation::default();
    let rows = [
        // (lag since, now, missed)
        ("2024-04-01T12:30:00Z", "2024-04-01T12:59:00Z", None),
        ("2024-04-01T12:30:00Z", "2024-04-01T13:10:00Z", None),
        ("2024-04-01T12:30:00Z", "2024-04-01T14:09:59Z", None),
        (
            "2024-04-01T12:30:00Z",
            "2024-04-01T14:10:00Z",
            Some("2024-04-01T14:00:00Z"),
        ),
        (
            "2024-04-01T09:00:00Z",
            "2024-04-01T13:05:00Z",
            Some("2024-04-01T11:00:00Z"),
        ),
        // committed on the hour: that run may have started before it
        ("2024-04-01T13:00:00Z", "2024-04-01T14:30:00Z", None),
        (
            "2024-04-01T13:00:00Z",
            "2024-04-01T15:10:00Z",
            Some("2024-04-01T15:00:00Z"),
        ),
    ];
    for (since, now, want) in rows {
        assert_eq!(
            hourly.missed(at(since), at(now)),
            want.map(at),
            "{since} {now}"
        );
    }
}

/// Issue 12's false alarm: committed at 12:55, pushed at 13:02; the 13:00 run could not
/// bring it, so at 13:15 it is not overdue; the 14:00 run should, so at 14:10 it is.
#[test]
fn a_commit_made_before_a_run_and_pushed_after_it_is_not_overdue() {
    let hourly = Reconciliation::default();
    let since = at("2024-04-01T12:55:00Z");
    assert_eq!(hourly.missed(since, at("2024-04-01T13:15:00Z")), None);
    assert_eq!(hourly.missed(since, at("2024-04-01T14:09:59Z")), None);
    assert_eq!(
        hourly.missed(since, at("2024-04-01T14:10:00Z")),
        Some(at("2024-04-01T14:00:00Z"))
    );
    let quarter: Reconciliation = "15m".parse().unwrap();
    assert_eq!(quarter.missed(since, at("2024-04-01T13:15:00Z")), None);
    assert_eq!(
        quarter.missed(since, at("2024-04-01T13:25:00Z")),
        Some(at("2024-04-01T13:15:00Z"))
    );
}

fn example() -> Config {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/tozai.toml");
    Config::load(&path).unwrap()
}

#[test]
fn what_matters_is_what_the_sync_rule_or_a_standby_target_selects() {
    let config = example();
    let rows: [(&str, &str, &[&str]); 6] = [
        ("main", "primary/templates/root.yaml", &[]),
        ("main", "common/README.md", &[]),
        ("main", "common/vpc.yaml", &["sync.to.osaka", "osaka-core"]),
        (
            "main",
            "secondary/root.yaml",
            &["sync.to.osaka", "osaka-core"],
        ),
        ("release/1", "secondary/root.yaml", &["sync.to.osaka"]),
        ("release/1", "primary/root.yaml", &[]),
    ];
    for (branch, path, want) in rows {
        let push = Push {
            repository: "tokyo".into(),
            region: "tokyo".into(),
            reference: RefName::branch(branch).unwrap(),
            before: Some(c(1)),
            after: c(2),
        };
        let plan = Plan::new(&config, push, vec![Change::modified(path)]).unwrap();
        assert_eq!(selected_by(&config, &plan), want, "{branch} {path}");
    }
}

#[test]
fn a_standby_target_matters_even_when_the_sync_rule_skips_the_path() {
    // Osaka deploys osaka-only/, which the sync rule does not select: plan_push's
    // after_mirror is empty (nothing is mirrored), yet osaka's deployment lacks it.
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/tozai.toml"))
        .unwrap()
        .replace(
            "paths = [\"common/**\", \"secondary/**\"]\nexclude = [\"**/*.md\", \"docs/**\"]\ntags",
            "paths = [\"common/**\", \"secondary/**\", \"osaka-only/**\"]\nexclude = [\"**/*.md\", \"docs/**\"]\ntags",
        );
    let config = Config::parse(&text, Path::new("tozai.toml")).unwrap();
    let push = Push {
        repository: "tokyo".into(),
        region: "tokyo".into(),
        reference: RefName::branch("main").unwrap(),
        before: Some(c(1)),
        after: c(2),
    };
    let plan = Plan::new(&config, push, vec![Change::modified("osaka-only/a.yaml")]).unwrap();
    assert!(!plan.decisions.sync.mirror);
    assert!(plan.decisions.after_mirror.is_empty());
    assert_eq!(selected_by(&config, &plan), ["osaka-core"]);
}

/// A history where every lag is given per ref, and annotated tags peel through a table.
#[derive(Default)]
struct Fake {
    lags: BTreeMap<String, Lag>,
    peeled: BTreeMap<CommitId, CommitId>,
}

impl Facts for Fake {
    type Error = String;
    fn peel(&self, id: &CommitId) -> CommitId {
        self.peeled.get(id).unwrap_or(id).clone()
    }
    fn count(&self, old: &CommitId, new: &CommitId) -> Option<u64> {
        let digit = |c: &CommitId| u64::from(c.as_str().as_bytes()[1]);
        Some(digit(new).saturating_sub(digit(old)))
    }
    fn lag(&self, r: &RefName, _: Option<&CommitId>, _: &CommitId) -> Result<Lag, String> {
        self.lags.get(&r.full()).cloned().ok_or(r.full())
    }
}

fn lag(selected: &[&str], since: &str) -> Lag {
    Lag {
        behind: 2,
        commits: vec![LoggedCommit::new(c(3), "change primary/a.yaml")],
        selected_by: selected.iter().map(|s| s.to_string()).collect(),
        since: Some(at(since)),
    }
}

fn outcome(refs: Vec<(&str, RefStatus)>) -> MirrorOutcome {
    MirrorOutcome {
        source: "./tokyo.git".into(),
        target: "./osaka.git".into(),
        dry_run: true,
        refs: refs
            .into_iter()
            .map(|(name, status)| RefResult::new(name.parse().unwrap(), status))
            .collect(),
        objects_sent: 0,
        bytes_sent: 0,
        elapsed: Duration::ZERO,
        backups: Vec::new(),
    }
}

const NOW: &str = "2024-04-01T13:05:00Z";

fn policy(strict: bool) -> Policy {
    Policy {
        reconcile: Reconciliation::default(),
        now: at(NOW),
        strict,
    }
}

fn behind() -> RefStatus {
    RefStatus::Updated {
        old: c(1),
        new: c(3),
        forced: false,
    }
}

/// (ref, lag selected by, lag since, strict) -> (state, policy, overdue, drift)
#[test]
fn each_lag_is_judged_drift_or_policy() {
    let recent = "2024-04-01T13:01:00Z";
    let old = "2024-04-01T10:30:00Z";
    let created = RefStatus::Created { new: c(3) };
    type Row<'a> = (
        &'a str,
        RefStatus,
        &'a [&'a str],
        &'a str,
        bool,
        (&'a str, bool, bool, bool),
    );
    let rows: [Row; 8] = [
        (
            "refs/heads/main",
            behind(),
            &[],
            recent,
            false,
            ("behind", true, false, false),
        ),
        (
            "refs/heads/main",
            behind(),
            &[],
            recent,
            true,
            ("behind", true, false, true),
        ),
        (
            "refs/heads/main",
            behind(),
            &["sync.to.osaka"],
            recent,
            false,
            ("behind", false, false, true),
        ),
        (
            "refs/heads/main",
            behind(),
            &["osaka-core"],
            recent,
            false,
            ("behind", false, false, true),
        ),
        (
            "refs/heads/main",
            behind(),
            &[],
            old,
            false,
            ("behind", true, true, true),
        ),
        (
            "refs/heads/release/1",
            created.clone(),
            &[],
            recent,
            false,
            ("missing", true, false, false),
        ),
        (
            "refs/heads/release/1",
            created.clone(),
            &["sync.to.osaka"],
            recent,
            false,
            ("missing", false, false, true),
        ),
        (
            "refs/tags/v1",
            created,
            &[],
            recent,
            false,
            ("missing", false, false, true),
        ),
    ];
    for (name, status, selected, since, strict, want) in rows {
        let facts = Fake {
            lags: BTreeMap::from([(name.to_owned(), lag(selected, since))]),
            ..Fake::default()
        };
        let s = from_outcome(
            &outcome(vec![(name, status)]),
            ("tokyo", "osaka"),
            &facts,
            &policy(strict),
        )
        .unwrap();
        let r = &s.refs[0];
        assert_eq!(
            (r.state.key(), r.policy, r.overdue, r.drift),
            want,
            "{name} {selected:?} {since} strict={strict}"
        );
        assert_eq!(s.drift, r.drift);
        assert!(!s.in_sync);
        assert_eq!(r.behind, Some(2));
        assert_eq!(r.ahead, Some(0));
        assert_eq!(
            r.next_reconciliation,
            Some(UtcTime(at("2024-04-01T14:00:00Z")))
        );
        assert_eq!(r.missed_reconciliation.is_some(), r.overdue);
    }
}

#[test]
fn diverged_stale_and_unknown_are_always_drift_and_in_sync_never() {
    let s = from_outcome(
        &outcome(vec![
            ("refs/heads/main", RefStatus::Unchanged { at: c(1) }),
            (
                "refs/heads/hotfix",
                RefStatus::Diverged {
                    source: Some(c(5)),
                    standby: c(7),
                    cause: crate::divergence::Cause::StandbyPushedTo,
                },
            ),
            ("refs/tags/old", RefStatus::Deleted { old: c(7) }),
            (
                "refs/heads/x",
                RefStatus::Rejected {
                    reason: "hook".into(),
                },
            ),
        ]),
        ("tokyo", "osaka"),
        &Fake::default(),
        &policy(false),
    )
    .unwrap();
    let got: Vec<_> = s.refs.iter().map(|r| (r.state.key(), r.drift)).collect();
    assert_eq!(
        got,
        [
            ("in_sync", false),
            ("diverged", true),
            ("stale", true),
            ("unknown", true)
        ]
    );
    assert_eq!((s.refs[0].ahead, s.refs[0].behind), (Some(0), Some(0)));
    // the fake counts by the id's digit: the standby (7) is 2 ahead of 5
    assert_eq!((s.refs[1].ahead, s.refs[1].behind), (Some(2), Some(0)));
    assert_eq!(s.drifted(), 3);
    assert!(s.drift);
}

#[test]
fn json_has_regions_apart_peeled_tags_counts_and_times() {
    let tag_object = c(9);
    let facts = Fake {
        peeled: BTreeMap::from([(tag_object.clone(), c(1))]),
        lags: BTreeMap::from([(
            "refs/heads/main".to_owned(),
            lag(&[], "2024-04-01T13:01:00Z"),
        )]),
    };
    let mut o = outcome(vec![
        ("refs/heads/main", behind()),
        ("refs/tags/v1", RefStatus::Unchanged { at: tag_object }),
    ]);
    o.backups = vec![Backup {
        reference: "refs/heads/tozai-backup/main/1".parse().unwrap(),
        commit: c(4),
    }];
    let s = from_outcome(&o, ("tokyo", "osaka"), &facts, &policy(false)).unwrap();
    let v = serde_json::to_value(&s).unwrap();
    assert_eq!(
        v["primary"],
        serde_json::json!({"name": "tokyo", "location": "./tokyo.git"})
    );
    assert_eq!(v["standby"]["name"], "osaka");
    assert_eq!(v["reconcile"], "1h");
    assert_eq!(v["next_reconciliation"], "2024-04-01T14:00:00Z");
    assert_eq!(
        (v["in_sync"].clone(), v["drift"].clone()),
        (false.into(), false.into())
    );
    let main = &v["refs"][0];
    assert_eq!(main["ref"], "refs/heads/main");
    assert_eq!(main["state"], "behind");
    assert_eq!(main["source"], c(3).as_str());
    assert_eq!(main["standby"], c(1).as_str());
    assert_eq!(
        (main["ahead"].clone(), main["behind"].clone()),
        (0.into(), 2.into())
    );
    assert_eq!(main["matters"], false);
    assert_eq!(main["policy"], true);
    assert_eq!(main["overdue"], false);
    assert_eq!(main["lag_since"], "2024-04-01T13:01:00Z");
    assert_eq!(main["next_reconciliation"], "2024-04-01T14:00:00Z");
    assert_eq!(main["commits"][0]["subject"], "change primary/a.yaml");
    let tag = &v["refs"][1];
    assert_eq!(tag["state"], "in_sync");
    assert_eq!(tag["source"], c(1).as_str(), "peeled");
    assert_eq!(tag["standby"], c(1).as_str(), "peeled");
    assert_eq!(tag["next_reconciliation"], serde_json::Value::Null);
    assert_eq!(v["backups"][0]["ref"], "refs/heads/tozai-backup/main/1");
    assert_eq!(v["backups"][0]["commit"], c(4).as_str());
}
