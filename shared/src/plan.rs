//! The plan for one push: whether to mirror it, and which pipeline targets to start.
//!
//! Pure: it takes the config, the push and its changed paths, and returns decisions with
//! their explanations. Precedence, for each action:
//!
//! 1. the reference filter: a branch must match the rule's `branches`; a tag must match
//!    `sync.tags` to be mirrored (all tags by default) and a target's `tags` to start it
//!    (none by default: tags never start pipelines unless a target opts in);
//! 2. mirroring goes from the primary to the standby only: a push to the standby is never
//!    mirrored back;
//! 3. a tag that passes its filter is mirrored whatever it changed (tags are mirrored);
//! 4. otherwise at least one changed path (either path of a rename) must be selected by
//!    the action's path rule, excludes first.
//!
//! When the plan mirrors, `after_mirror` holds the standby's targets judged on the same
//! changes: what the standby's judge will start once the mirror lands.
//!
//! ```
//! use tozai::{change::Change, config::Config, plan::decide, refs::RefName};
//! # let config = Config::parse(include_str!("../../examples/tozai.toml"), "examples/tozai.toml".as_ref())?;
//! let main = RefName::branch("main").unwrap();
//! let d = decide(&config, "tokyo", &main, &[Change::modified("secondary/templates/dr.yaml")]).unwrap();
//! assert!(d.sync.mirror);
//! assert!(d.pipelines.iter().all(|p| !p.start));      // nothing for Tokyo
//! assert!(d.after_mirror.iter().any(|p| p.start));    // Osaka deploys
//! # Ok::<(), tozai::config::ConfigError>(())
//! ```

use std::collections::BTreeSet;

use serde::Serialize;

use crate::change::Change;
use crate::config::{Config, MIRROR_ACTION, Target, sync_rule_name};
use crate::refs::{CommitId, RefName};
use crate::rules::{Judgement, Match, NameFilter, RuleOutcome};

/// A push to one region's repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Push {
    pub repository: String,
    pub region: String,
    #[serde(rename = "ref")]
    pub reference: RefName,
    pub before: Option<CommitId>,
    pub after: CommitId,
}

/// Why an action was or was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// At least one changed path was selected by the rule.
    PathsMatched,
    /// A tag selected by `sync.tags` is mirrored whatever it changed.
    TagPolicy,
    /// No changed path matched the rule's patterns.
    NoPathMatched,
    /// Paths matched, but excludes removed all of them.
    AllExcluded,
    /// The push changed no paths.
    NothingChanged,
    /// The branch is not in the rule's `branches`.
    BranchNotSelected,
    /// The tag is not in the rule's `tags`.
    TagNotSelected,
    /// The push landed in the standby: mirroring goes from the primary only.
    PushToStandby,
}

impl Reason {
    /// One sentence for reports.
    pub fn describe(self) -> &'static str {
        match self {
            Self::PathsMatched => "changed paths match its rule",
            Self::TagPolicy => "tags are mirrored",
            Self::NoPathMatched => "no changed path matches its rule",
            Self::AllExcluded => "every matching path is excluded",
            Self::NothingChanged => "the push changed no paths",
            Self::BranchNotSelected => "the branch is not one of its branches",
            Self::TagNotSelected => "the tag is not one of its tags",
            Self::PushToStandby => {
                "the push landed in the standby; mirroring goes from the primary only"
            }
        }
    }
}

/// Whether to mirror the push to the standby.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SyncDecision {
    pub mirror: bool,
    /// The region the mirror goes to (none for a push to the standby).
    pub to: Option<String>,
    pub reason: Reason,
    pub matches: Vec<Match>,
    pub excluded: Vec<Match>,
}

/// Whether to start one pipeline target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TargetDecision {
    pub target: String,
    pub region: String,
    /// `codepipeline` or `codebuild`.
    pub kind: &'static str,
    /// The pipeline or project name.
    pub name: String,
    pub start: bool,
    pub reason: Reason,
    pub matches: Vec<Match>,
    pub excluded: Vec<Match>,
}

/// The decisions for one push.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decisions {
    pub sync: SyncDecision,
    /// The targets of the region that received the push.
    pub pipelines: Vec<TargetDecision>,
    /// When mirrored: the standby's targets, judged on the same changes.
    pub after_mirror: Vec<TargetDecision>,
}

impl Decisions {
    /// The actions taken: `mirror` and the names of the targets started, in any region.
    pub fn actions(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        if self.sync.mirror {
            out.insert(MIRROR_ACTION.to_owned());
        }
        for p in self.pipelines.iter().chain(&self.after_mirror) {
            if p.start {
                out.insert(p.target.clone());
            }
        }
        out
    }
}

/// A push with its changes and decisions: what `tozai plan` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    #[serde(flatten)]
    pub push: Push,
    pub changed: Vec<Change>,
    #[serde(flatten)]
    pub decisions: Decisions,
}

/// A push named a region the config does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown region {region:?} (the regions are {known})")]
pub struct UnknownRegion {
    pub region: String,
    pub known: String,
}

impl Plan {
    pub fn new(config: &Config, push: Push, changed: Vec<Change>) -> Result<Self, UnknownRegion> {
        let decisions = decide(config, &push.region, &push.reference, &changed)?;
        Ok(Self {
            push,
            changed,
            decisions,
        })
    }
}

/// Decides every action for a push of `changes` to `reference` in `region`.
pub fn decide(
    config: &Config,
    region: &str,
    reference: &RefName,
    changes: &[Change],
) -> Result<Decisions, UnknownRegion> {
    if config.region(region).is_none() {
        return Err(UnknownRegion {
            region: region.to_owned(),
            known: config
                .regions
                .iter()
                .map(|r| r.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    let mut judged = config.rules.judge(changes);
    let empty = changes.is_empty();

    let outcome = config
        .mirror_destination(region)
        .and_then(|to| judged.take(&sync_rule_name(&to.name)))
        .unwrap_or_default();
    let sync = match sync_by_ref(config, region, reference) {
        Some(by_ref) => SyncDecision {
            matches: outcome.matches,
            excluded: outcome.excluded,
            ..by_ref
        },
        None => {
            let (mirror, reason) = by_paths(&outcome, empty);
            SyncDecision {
                mirror,
                to: config.mirror_destination(region).map(|to| to.name.clone()),
                reason,
                matches: outcome.matches,
                excluded: outcome.excluded,
            }
        }
    };

    let pipelines = judge_targets(config, region, reference, &mut judged, empty);
    let after_mirror = match (&sync.to, sync.mirror) {
        (Some(to), true) => judge_targets(config, to, reference, &mut judged, empty),
        _ => Vec::new(),
    };
    Ok(Decisions {
        sync,
        pipelines,
        after_mirror,
    })
}

/// The sync decision of a push to `reference` in `region` when the changed paths cannot
/// change it, with no matches: a push to the standby, a branch or tag that `sync` does not
/// select, or a tag it selects (mirrored whatever it changed). `None` when it depends on
/// the paths. The sync-judge lists no changes when this decides (a new tag would otherwise
/// list its whole tree).
pub fn sync_by_ref(config: &Config, region: &str, reference: &RefName) -> Option<SyncDecision> {
    let decided = |to: Option<String>, mirror, reason| SyncDecision {
        mirror,
        to,
        reason,
        matches: Vec::new(),
        excluded: Vec::new(),
    };
    let Some(to) = config.mirror_destination(region) else {
        return Some(decided(None, false, Reason::PushToStandby));
    };
    let to = Some(to.name.clone());
    let (filter, tag) = match reference {
        RefName::Branch(_) => (&config.sync.branches, false),
        RefName::Tag(_) => (&config.sync.tags, true),
    };
    match filter.first_match(reference.short()) {
        None if tag => Some(decided(to, false, Reason::TagNotSelected)),
        None => Some(decided(to, false, Reason::BranchNotSelected)),
        Some(_) if tag => Some(decided(to, true, Reason::TagPolicy)),
        Some(_) => None,
    }
}

fn by_paths(outcome: &RuleOutcome, empty: bool) -> (bool, Reason) {
    if outcome.selected() {
        (true, Reason::PathsMatched)
    } else if empty {
        (false, Reason::NothingChanged)
    } else if outcome.excluded.is_empty() {
        (false, Reason::NoPathMatched)
    } else {
        (false, Reason::AllExcluded)
    }
}

fn judge_targets(
    config: &Config,
    region: &str,
    reference: &RefName,
    judged: &mut Judgement,
    empty: bool,
) -> Vec<TargetDecision> {
    config
        .targets_in(region)
        .map(|t| {
            let outcome = judged.take(&t.name).unwrap_or_default();
            let (start, reason) = match ref_filter(t, reference).first_match(reference.short()) {
                None if reference.is_tag() => (false, Reason::TagNotSelected),
                None => (false, Reason::BranchNotSelected),
                Some(_) => by_paths(&outcome, empty),
            };
            TargetDecision {
                target: t.name.clone(),
                region: t.region.clone(),
                kind: t.kind.label(),
                name: t.kind.resource().to_owned(),
                start,
                reason,
                matches: outcome.matches,
                excluded: outcome.excluded,
            }
        })
        .collect()
}

fn ref_filter<'a>(target: &'a Target, reference: &RefName) -> &'a NameFilter {
    match reference {
        RefName::Branch(_) => &target.branches,
        RefName::Tag(_) => &target.tags,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn example() -> Config {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/tozai.toml");
        Config::load(&path).unwrap()
    }

    fn d(region: &str, reference: &str, changes: &[Change]) -> Decisions {
        decide(&example(), region, &reference.parse().unwrap(), changes).unwrap()
    }

    #[test]
    fn only_a_branch_the_sync_selects_needs_the_paths() {
        let rows = [
            ("tokyo", "refs/tags/v1.0", Some((true, Reason::TagPolicy))),
            (
                "tokyo",
                "refs/tags/nightly",
                Some((false, Reason::TagNotSelected)),
            ),
            (
                "tokyo",
                "refs/heads/feature/x",
                Some((false, Reason::BranchNotSelected)),
            ),
            (
                "osaka",
                "refs/heads/main",
                Some((false, Reason::PushToStandby)),
            ),
            (
                "osaka",
                "refs/tags/v1.0",
                Some((false, Reason::PushToStandby)),
            ),
            ("tokyo", "refs/heads/main", None),
            ("tokyo", "refs/heads/release/1", None),
        ];
        let config = example();
        for (region, reference, want) in rows {
            let got = sync_by_ref(&config, region, &reference.parse().unwrap());
            assert_eq!(
                got.as_ref().map(|d| (d.mirror, d.reason)),
                want,
                "{region} {reference}"
            );
            // It agrees with the decision on any paths.
            if let Some(by_ref) = got {
                let full = d(region, reference, &[Change::modified("common/a.yaml")]).sync;
                assert_eq!(
                    (full.mirror, full.reason, full.to),
                    (by_ref.mirror, by_ref.reason, by_ref.to)
                );
            }
        }
    }

    fn target<'a>(list: &'a [TargetDecision], name: &str) -> &'a TargetDecision {
        list.iter().find(|t| t.target == name).unwrap()
    }

    #[test]
    fn common_change_mirrors_and_starts_both_regions() {
        let d = d(
            "tokyo",
            "main",
            &[Change::modified("common/templates/vpc.yaml")],
        );
        assert!(d.sync.mirror);
        assert_eq!(d.sync.to.as_deref(), Some("osaka"));
        assert_eq!(d.sync.reason, Reason::PathsMatched);
        assert_eq!(d.sync.matches[0].rule.as_ref(), "sync.to.osaka");
        assert!(target(&d.pipelines, "tokyo-core").start);
        assert!(target(&d.after_mirror, "osaka-core").start);
        assert_eq!(d.pipelines.len(), 1, "only the pushed region's targets");
    }

    #[test]
    fn primary_only_change_is_not_mirrored() {
        let d = d(
            "tokyo",
            "main",
            &[Change::modified("primary/templates/root.yaml")],
        );
        assert!(!d.sync.mirror);
        assert_eq!(d.sync.reason, Reason::NoPathMatched);
        assert!(d.after_mirror.is_empty());
        assert!(target(&d.pipelines, "tokyo-core").start);
    }

    #[test]
    fn excluded_paths_are_reported_with_their_exclude() {
        let d = d("tokyo", "main", &[Change::modified("common/README.md")]);
        assert!(!d.sync.mirror);
        assert_eq!(d.sync.reason, Reason::AllExcluded);
        assert_eq!(d.sync.excluded[0].pattern.as_ref(), "**/*.md");
        let t = target(&d.pipelines, "tokyo-core");
        assert_eq!((t.start, t.reason), (false, Reason::AllExcluded));
    }

    #[test]
    fn branch_filters_apply_per_action() {
        let d = d(
            "tokyo",
            "release/2024-04",
            &[Change::modified("common/a.yaml")],
        );
        assert!(d.sync.mirror, "release/* is mirrored");
        let t = target(&d.pipelines, "tokyo-core");
        assert_eq!((t.start, t.reason), (false, Reason::BranchNotSelected));
        // matches are still explained even when the branch filter says no
        assert!(!t.matches.is_empty());
        let f = self::d("tokyo", "feature/x", &[Change::modified("common/a.yaml")]);
        assert_eq!(
            (f.sync.mirror, f.sync.reason),
            (false, Reason::BranchNotSelected)
        );
    }

    #[test]
    fn tags_are_mirrored_whatever_they_change_and_start_only_opted_in_targets() {
        let d = d(
            "tokyo",
            "refs/tags/v2.0.0",
            &[Change::modified("common/notes.md")],
        );
        assert_eq!((d.sync.mirror, d.sync.reason), (true, Reason::TagPolicy));
        let t = target(&d.pipelines, "tokyo-core");
        assert_eq!((t.start, t.reason), (false, Reason::TagNotSelected));
        // osaka opted in, but the tag changed only excluded docs
        let o = target(&d.after_mirror, "osaka-core");
        assert_eq!((o.start, o.reason), (false, Reason::AllExcluded));
        let other = self::d(
            "tokyo",
            "refs/tags/nightly",
            &[Change::modified("common/a.yaml")],
        );
        assert_eq!(
            (other.sync.mirror, other.sync.reason),
            (false, Reason::TagNotSelected)
        );
    }

    #[test]
    fn a_push_to_the_standby_is_never_mirrored_back() {
        let d = d("osaka", "main", &[Change::modified("common/a.yaml")]);
        assert_eq!(
            (d.sync.mirror, d.sync.reason),
            (false, Reason::PushToStandby)
        );
        assert_eq!(d.sync.to, None);
        assert!(target(&d.pipelines, "osaka-core").start);
        assert!(d.pipelines.iter().all(|t| t.region == "osaka"));
    }

    #[test]
    fn after_a_failover_the_mirror_reverses() {
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/tozai.toml"),
        )
        .unwrap()
        .replace("primary = \"tokyo\"", "primary = \"osaka\"");
        let c = Config::parse(&text, Path::new("tozai.toml")).unwrap();
        let main = RefName::branch("main").unwrap();
        let d = decide(
            &c,
            "osaka",
            &main,
            &[Change::modified("primary/templates/root.yaml")],
        )
        .unwrap();
        assert_eq!(d.sync.to.as_deref(), Some("tokyo"));
        assert!(d.sync.mirror, "Tokyo, now the standby, needs primary/");
        assert!(target(&d.after_mirror, "tokyo-core").start);
        let from_tokyo = decide(&c, "tokyo", &main, &[Change::modified("common/a.yaml")]).unwrap();
        assert_eq!(from_tokyo.sync.reason, Reason::PushToStandby);
    }

    #[test]
    fn an_empty_push_starts_nothing() {
        let d = d("tokyo", "main", &[]);
        assert_eq!(
            (d.sync.mirror, d.sync.reason),
            (false, Reason::NothingChanged)
        );
        assert!(d.actions().is_empty());
    }

    #[test]
    fn unknown_region_is_an_error_naming_it() {
        let e = decide(&example(), "nagoya", &RefName::branch("main").unwrap(), &[]).unwrap_err();
        assert!(e.to_string().contains("\"nagoya\""), "{e}");
    }

    #[test]
    fn plan_json_has_the_documented_shape() {
        let push = Push {
            repository: "codecommit::ap-northeast-1://core-infra".into(),
            region: "tokyo".into(),
            reference: RefName::branch("main").unwrap(),
            before: None,
            after: "f485fcc95a795517f279d0a877227e51208b0dfc".parse().unwrap(),
        };
        let plan = Plan::new(
            &example(),
            push,
            vec![Change::renamed("primary/q.yaml", "common/q.yaml")],
        )
        .unwrap();
        let v = serde_json::to_value(&plan).unwrap();
        assert_eq!(v["ref"], "refs/heads/main");
        assert_eq!(v["before"], serde_json::Value::Null);
        assert_eq!(v["changed"][0]["path"], "common/q.yaml");
        assert_eq!(v["changed"][0]["old_path"], "primary/q.yaml");
        assert_eq!(v["changed"][0]["change"], "renamed");
        assert_eq!(v["sync"]["mirror"], true);
        assert_eq!(v["sync"]["matches"][0]["rule"], "sync.to.osaka");
        assert_eq!(v["sync"]["matches"][0]["pattern"], "common/**");
        assert_eq!(v["pipelines"][0]["kind"], "codepipeline");
        assert_eq!(v["pipelines"][0]["name"], "core-infra-deploy");
        assert_eq!(v["pipelines"][0]["start"], true);
        assert_eq!(v["pipelines"][0]["reason"], "paths_matched");
        assert_eq!(v["after_mirror"][0]["region"], "osaka");
    }
}
