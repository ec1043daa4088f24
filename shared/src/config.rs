//! `tozai.toml`: regions, the sync rule, pipeline targets and rule tests.
//!
//! The file is parsed once, checked whole, and its globs compiled at start-up, so a bad
//! rule fails when it is deployed, not on the next push. Unknown keys are refused. Every
//! error names the file and the line, or the value at fault.
//!
//! Roles are one line: `primary = "tokyo"`; the standby is the other of the two regions.
//! Nothing else in the file says which region is which (the sync rule is keyed by the
//! region that receives the mirror), so a failover is that one line.
//!
//! ```
//! let config = tozai::config::Config::parse(r#"
//!     primary = "tokyo"
//!     [regions.tokyo]
//!     aws_region = "ap-northeast-1"
//!     repository = "core-infra"
//!     [regions.osaka]
//!     aws_region = "ap-northeast-3"
//!     repository = "core-infra"
//!     [sync]
//!     branches = ["main"]
//!     [sync.to.osaka]
//!     paths = ["common/**", "secondary/**"]
//!     [sync.to.tokyo]
//!     paths = ["common/**", "primary/**"]
//! "#, "tozai.toml".as_ref())?;
//! assert_eq!(config.standby().name, "osaka");
//! # Ok::<(), tozai::config::ConfigError>(())
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use toml::Spanned;

use crate::change::{Change, ChangeKind, RepoPath};
use crate::location::{Location, check_aws_region};
use crate::regions;
use crate::text::quoted;

mod excerpt;
use crate::refs::RefName;
use crate::rules::{NameFilter, PathRule, RuleSet, compile_glob};

/// The action name a rule test uses for "mirror to the standby".
pub const MIRROR_ACTION: &str = "mirror";

/// A config that could not be read or is not valid.
///
/// Nothing in a message is echoed raw: URL secrets are redacted, control characters shown
/// as pictures, values and the quoted line cut to a few hundred bytes.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {}", quoted(&.path.display().to_string()))]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// TOML syntax, a wrong type, a missing or unknown key: toml's message, where it is
    /// (`line` 0 when toml does not say), and an excerpt of the line with a caret.
    #[error("{origin}{}: {message}{excerpt}", at(*.line, *.column))]
    Syntax {
        origin: String,
        line: usize,
        column: usize,
        message: String,
        excerpt: String,
    },
    /// A value that parses but is wrong.
    #[error("{origin}:{line}:{column}: {message}")]
    Invalid {
        origin: String,
        line: usize,
        column: usize,
        message: String,
    },
}

/// `:LINE:COLUMN`, or nothing for line 0 (unknown).
fn at(line: usize, column: usize) -> String {
    if line == 0 {
        String::new()
    } else {
        format!(":{line}:{column}")
    }
}

impl ConfigError {
    /// An error with no place in the file.
    fn whole(origin: &str, message: String) -> Self {
        Self::Syntax {
            origin: origin.to_owned(),
            line: 0,
            column: 0,
            message: excerpt::message(&message),
            excerpt: String::new(),
        }
    }

    /// toml's error, with its excerpt made safe to print.
    fn toml(origin: &str, text: &str, e: &toml::de::Error) -> Self {
        let message = excerpt::message(e.message().trim_end());
        match e.span() {
            Some(span) => {
                let (line, column) = excerpt::position(text, span.start);
                Self::Syntax {
                    origin: origin.to_owned(),
                    line,
                    column,
                    message,
                    excerpt: excerpt::excerpt(text, span.start, line),
                }
            }
            None => Self::whole(origin, message),
        }
    }
}

/// One region: a name of the user's choosing, its AWS region and its repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region {
    pub name: String,
    pub aws_region: String,
    pub repository: Location,
}

/// Which branches and tags are mirrored at all. Paths are per receiving region, in the
/// rule set under the name [`sync_rule_name`].
#[derive(Debug, Clone)]
pub struct SyncRule {
    pub branches: NameFilter,
    pub tags: NameFilter,
    /// `sync.reconcile`: how often the mirror's reconciliation runs (default hourly), for
    /// `tozai status`; the stacks' `MirrorSchedule` must agree.
    pub reconcile: crate::status::Reconciliation,
}

impl SyncRule {
    /// The filter a ref must pass to be mirrored: `branches` or `tags`.
    pub fn filter_for(&self, reference: &RefName) -> &NameFilter {
        match reference {
            RefName::Branch(_) => &self.branches,
            RefName::Tag(_) => &self.tags,
        }
    }

    /// Every branch and tag this rule mirrors, as a mirror's selection.
    pub fn selection(&self) -> crate::mirror::RefSelection {
        crate::mirror::RefSelection {
            branches: Some(self.branches.clone()),
            tags: Some(self.tags.clone()),
        }
    }
}

/// The name of the sync rule for mirrors into `region`: `sync.to.REGION`.
pub fn sync_rule_name(region: &str) -> String {
    format!("sync.to.{region}")
}

/// What a pipeline target starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetKind {
    /// A CodePipeline (V2) pipeline, its source action pinned to the judged commit.
    CodePipeline {
        pipeline: String,
        source_action: String,
    },
    /// A CodeBuild project, built at the judged commit.
    CodeBuild { project: String },
}

impl TargetKind {
    /// `codepipeline` or `codebuild`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::CodePipeline { .. } => "codepipeline",
            Self::CodeBuild { .. } => "codebuild",
        }
    }

    /// What it starts, as the starter's port names it.
    pub fn run_kind(&self) -> crate::ports::RunKind {
        match self {
            Self::CodePipeline { .. } => crate::ports::RunKind::CodePipeline,
            Self::CodeBuild { .. } => crate::ports::RunKind::CodeBuild,
        }
    }

    /// The pipeline or project name.
    pub fn resource(&self) -> &str {
        match self {
            Self::CodePipeline { pipeline, .. } => pipeline,
            Self::CodeBuild { project } => project,
        }
    }
}

/// A pipeline or build that a region starts when its files change. Its paths are in the
/// rule set under the target's name.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub region: String,
    pub kind: TargetKind,
    pub branches: NameFilter,
    /// Tags that start this target; empty (the default) means tags never start it.
    pub tags: NameFilter,
}

/// A user's path-rule test: a push of these changes should cause exactly these actions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleTest {
    pub name: String,
    /// The region the push lands in (default: the primary).
    pub region: String,
    pub reference: RefName,
    pub changes: Vec<Change>,
    /// `mirror` and the names of the targets expected to start, in any region.
    pub expect: BTreeSet<String>,
}

/// A whole, checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where it was read from, for messages.
    pub origin: String,
    /// The primary region's name.
    pub primary: String,
    /// The branch new branches are compared with (default `main`).
    pub base_branch: String,
    /// Exactly two regions, the primary first.
    pub regions: Vec<Region>,
    pub sync: SyncRule,
    pub targets: Vec<Target>,
    pub tests: Vec<RuleTest>,
    /// Every path rule: `sync.to.REGION` for each region and one per target.
    pub rules: RuleSet,
    /// What is allowed but probably a mistake (both regions in one AWS region); logged
    /// once by [`Config::load`].
    pub warnings: Vec<String>,
}

impl Config {
    /// Reads and checks a config file, and logs its [warnings](Config::warnings).
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let config = Self::parse(&text, path)?;
        for warning in &config.warnings {
            tracing::warn!(config = %config.origin, "{warning}");
        }
        Ok(config)
    }

    /// Checks config text; `origin` names it in errors and anchors relative paths.
    pub fn parse(text: &str, origin: &Path) -> Result<Self, ConfigError> {
        let shown = quoted(&origin.display().to_string()).into_owned();
        let raw: RawConfig =
            toml::from_str(text).map_err(|e| ConfigError::toml(&shown, text, &e))?;
        let base = origin.parent().unwrap_or(Path::new("."));
        Checker {
            text,
            origin: shown,
        }
        .check(raw, base)
    }

    /// The primary region.
    pub fn primary(&self) -> &Region {
        &self.regions[0]
    }

    /// The standby region.
    pub fn standby(&self) -> &Region {
        &self.regions[1]
    }

    /// The region with this name.
    pub fn region(&self, name: &str) -> Option<&Region> {
        self.regions.iter().find(|r| r.name == name)
    }

    /// Makes `name` the primary (and the other region the standby): a failover, without
    /// editing the file (`TOZAI_PRIMARY` in the Lambdas).
    pub fn fail_over_to(&mut self, name: &str) -> Result<(), String> {
        let Some(i) = self.regions.iter().position(|r| r.name == name) else {
            return Err(format!(
                "{name:?} is not a region of {} (the regions are {})",
                self.origin,
                self.regions
                    .iter()
                    .map(|r| r.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        };
        self.regions.swap(0, i);
        self.primary = name.to_owned();
        Ok(())
    }

    /// The region a mirror from `region` goes to, if `region` is the primary.
    pub fn mirror_destination(&self, region: &str) -> Option<&Region> {
        (region == self.primary).then(|| self.standby())
    }

    /// The targets deployed in `region`.
    pub fn targets_in<'a>(&'a self, region: &'a str) -> impl Iterator<Item = &'a Target> {
        self.targets.iter().filter(move |t| t.region == region)
    }
}

// ---- raw, as written ----

type S = Spanned<String>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    extra_aws_regions: Option<Vec<S>>,
    primary: S,
    base_branch: Option<S>,
    regions: Spanned<BTreeMap<String, Spanned<RawRegion>>>,
    sync: Spanned<RawSync>,
    #[serde(default)]
    pipeline: Vec<Spanned<RawPipeline>>,
    #[serde(default)]
    test: Vec<Spanned<RawTest>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegion {
    aws_region: S,
    repository: S,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSync {
    branches: Vec<S>,
    tags: Option<Vec<S>>,
    reconcile: Option<S>,
    #[serde(default)]
    to: BTreeMap<String, Spanned<RawPaths>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPaths {
    #[serde(default)]
    paths: Vec<S>,
    #[serde(default)]
    exclude: Vec<S>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPipeline {
    name: S,
    region: S,
    codepipeline: Option<S>,
    codebuild: Option<S>,
    source_action: Option<S>,
    branches: Vec<S>,
    #[serde(default)]
    paths: Vec<S>,
    #[serde(default)]
    exclude: Vec<S>,
    #[serde(default)]
    tags: Vec<S>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTest {
    name: S,
    region: Option<S>,
    #[serde(rename = "ref")]
    reference: Option<S>,
    changes: Vec<Spanned<RawChange>>,
    expect: Vec<S>,
}

/// A changed path in a rule test: `"path"` (modified) or
/// `{ path = "...", change = "renamed", old_path = "..." }`.
struct RawChange {
    path: String,
    change: Option<String>,
    old_path: Option<String>,
}

impl<'de> Deserialize<'de> for RawChange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawChange;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a path, or a table { path, change, old_path }")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawChange, E> {
                Ok(RawChange {
                    path: v.to_owned(),
                    change: None,
                    old_path: None,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawChange, A::Error> {
                #[derive(Deserialize)]
                #[serde(deny_unknown_fields)]
                struct Table {
                    path: String,
                    change: Option<String>,
                    old_path: Option<String>,
                }
                let t = Table::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(RawChange {
                    path: t.path,
                    change: t.change,
                    old_path: t.old_path,
                })
            }
        }
        d.deserialize_any(V)
    }
}

// ---- checking ----

struct Checker<'a> {
    text: &'a str,
    origin: String,
}

impl Checker<'_> {
    fn err(&self, span: Range<usize>, message: impl Into<String>) -> ConfigError {
        let (line, column) = excerpt::position(self.text, span.start);
        ConfigError::Invalid {
            origin: self.origin.clone(),
            line,
            column,
            message: excerpt::message(&message.into()),
        }
    }

    /// `extra_aws_regions`: region names AWS opened after this release's table.
    fn extra_regions(&self, extra: Option<Vec<S>>) -> Result<Vec<String>, ConfigError> {
        let extra = extra.unwrap_or_default();
        for r in &extra {
            check_aws_region(r.get_ref()).map_err(|m| self.err(r.span(), m))?;
        }
        Ok(extra.into_iter().map(Spanned::into_inner).collect())
    }

    /// One region, checked: its name, its AWS region (a known one), its repository.
    fn region(
        &self,
        name: String,
        region: RawRegion,
        extra: &[String],
        base: &Path,
    ) -> Result<(Region, Range<usize>), ConfigError> {
        let aws_region = region.aws_region.get_ref();
        check_aws_region(aws_region).map_err(|m| self.err(region.aws_region.span(), m))?;
        if !regions::is_known(aws_region, extra) {
            return Err(self.err(
                region.aws_region.span(),
                unknown_aws_region(aws_region, &format!("region {name}")),
            ));
        }
        let span = region.repository.span();
        let repository = Location::parse(region.repository.get_ref(), aws_region, base)
            .map_err(|e| self.err(span.clone(), e.to_string()))?;
        if let Location::CodeCommit { region: r, .. } = &repository
            && !regions::is_known(r, extra)
        {
            let whose = format!("region {name}'s repository");
            return Err(self.err(span, unknown_aws_region(r, &whose)));
        }
        let region = Region {
            name,
            aws_region: region.aws_region.into_inner(),
            repository,
        };
        Ok((region, span))
    }

    /// Two regions on one repository would mirror it onto itself; two in one AWS region
    /// fail together (allowed: a warning).
    fn distinct(
        &self,
        regions: &[Region],
        standby_span: Range<usize>,
        warnings: &mut Vec<String>,
    ) -> Result<(), ConfigError> {
        let (p, s) = (&regions[0], &regions[1]);
        let same = p.repository.canonical();
        if same == s.repository.canonical() {
            return Err(self.err(
                standby_span,
                format!(
                    "regions {} and {} use the same repository, {}: the standby needs a repository of its own",
                    p.name,
                    s.name,
                    same.shown()
                ),
            ));
        }
        if p.aws_region == s.aws_region {
            warnings.push(format!(
                "regions {} and {} are both in the AWS region {}: an outage of {} takes both down",
                p.name, s.name, p.aws_region, p.aws_region
            ));
        }
        Ok(())
    }

    fn check(&self, raw: RawConfig, base: &Path) -> Result<Config, ConfigError> {
        // Regions: exactly two, valid names, the primary among them.
        let region_span = raw.regions.span();
        let raw_regions = raw.regions.into_inner();
        if raw_regions.len() != 2 {
            return Err(self.err(
                region_span,
                format!(
                    "expected exactly two regions (a primary and a standby), found {}",
                    raw_regions.len()
                ),
            ));
        }
        let extra = self.extra_regions(raw.extra_aws_regions)?;
        let mut regions = Vec::new();
        let mut repository_spans = Vec::new();
        for (name, region) in raw_regions {
            let span = region.span();
            check_name(&name, "region").map_err(|m| self.err(span, m))?;
            let (region, span) = self.region(name, region.into_inner(), &extra, base)?;
            regions.push(region);
            repository_spans.push(span);
        }
        let names: Vec<String> = regions.iter().map(|r| r.name.clone()).collect();
        let known = |s: &S| -> Result<String, ConfigError> {
            if names.iter().any(|n| n == s.get_ref()) {
                Ok(s.get_ref().clone())
            } else {
                Err(self.err(
                    s.span(),
                    format!(
                        "unknown region {:?} (the regions are {})",
                        s.get_ref(),
                        names.join(", ")
                    ),
                ))
            }
        };
        let primary = known(&raw.primary)?;
        let standby_span = if regions[0].name == primary {
            repository_spans[1].clone()
        } else {
            repository_spans[0].clone()
        };
        regions.sort_by_key(|r| r.name != primary);
        let mut warnings = Vec::new();
        self.distinct(&regions, standby_span, &mut warnings)?;

        let base_branch = match raw.base_branch {
            Some(b) => {
                RefName::branch(b.get_ref()).map_err(|e| self.err(b.span(), e.to_string()))?;
                b.into_inner()
            }
            None => "main".to_owned(),
        };

        // The sync rule.
        let sync_span = raw.sync.span();
        let sync = raw.sync.into_inner();
        if sync.branches.is_empty() {
            return Err(self.err(
                sync_span.clone(),
                "sync.branches is empty: name the branches to mirror, e.g. [\"main\"]",
            ));
        }
        let tags = sync
            .tags
            .unwrap_or_else(|| vec![Spanned::new(0..0, "**".to_owned())]);
        let sync_rule = SyncRule {
            branches: self.filter("sync.branches", &sync.branches)?,
            tags: self.filter("sync.tags", &tags)?,
            reconcile: match &sync.reconcile {
                Some(r) => r.get_ref().parse().map_err(|e| {
                    let shown = crate::text::cut(r.get_ref(), 40);
                    self.err(r.span(), format!("sync.reconcile = {shown:?}: {e}"))
                })?,
                None => Default::default(),
            },
        };
        let mut path_rules = Vec::new();
        for (to, paths) in &sync.to {
            if !names.contains(to) {
                return Err(self.err(
                    paths.span(),
                    format!(
                        "sync.to.{to} names an unknown region (the regions are {})",
                        names.join(", ")
                    ),
                ));
            }
        }
        for region in &names {
            let rule = sync_rule_name(region);
            let Some(paths) = sync.to.get(region) else {
                return Err(self.err(
                    sync_span.clone(),
                    format!(
                        "[{rule}] is missing: say which paths a push must change to be mirrored into {region} (needed whenever {region} is the standby, so a failover stays a one-line change)"
                    ),
                ));
            };
            if paths.get_ref().paths.is_empty() {
                return Err(self.err(
                    paths.span(),
                    format!("{rule} has no paths: a sync rule needs at least one path pattern (\"**\" mirrors every change)"),
                ));
            }
            path_rules.push(self.path_rule(
                &rule,
                &paths.get_ref().paths,
                &paths.get_ref().exclude,
            )?);
        }

        // Pipeline targets.
        let mut targets: Vec<Target> = Vec::new();
        for p in raw.pipeline {
            let span = p.span();
            let p = p.into_inner();
            let name = p.name.get_ref();
            check_name(name, "pipeline target").map_err(|m| self.err(p.name.span(), m))?;
            if name == MIRROR_ACTION {
                return Err(self.err(p.name.span(), "\"mirror\" is reserved for the sync action in rule tests: choose another target name"));
            }
            if targets.iter().any(|t| &t.name == name) {
                return Err(self.err(
                    p.name.span(),
                    format!("duplicate pipeline target name {name:?}"),
                ));
            }
            let region = known(&p.region)?;
            let kind = match (p.codepipeline, p.codebuild) {
                (Some(pipeline), None) => {
                    check_resource(pipeline.get_ref(), 100, "pipeline")
                        .map_err(|m| self.err(pipeline.span(), m))?;
                    let source_action = match p.source_action {
                        Some(a) => {
                            check_resource(a.get_ref(), 100, "source action")
                                .map_err(|m| self.err(a.span(), m))?;
                            a.into_inner()
                        }
                        None => "Source".to_owned(),
                    };
                    TargetKind::CodePipeline {
                        pipeline: pipeline.into_inner(),
                        source_action,
                    }
                }
                (None, Some(project)) => {
                    if let Some(a) = p.source_action {
                        return Err(self.err(
                            a.span(),
                            "source_action applies to codepipeline targets only",
                        ));
                    }
                    check_resource(project.get_ref(), 255, "CodeBuild project")
                        .map_err(|m| self.err(project.span(), m))?;
                    TargetKind::CodeBuild {
                        project: project.into_inner(),
                    }
                }
                _ => {
                    return Err(self.err(
                        span,
                        format!("pipeline target {name:?} needs exactly one of codepipeline = \"...\" or codebuild = \"...\""),
                    ));
                }
            };
            if p.branches.is_empty() && p.tags.is_empty() {
                return Err(self.err(
                    p.name.span(),
                    format!(
                        "pipeline target {name:?} has no branches and no tags: it could never start"
                    ),
                ));
            }
            if p.paths.is_empty() {
                return Err(self.err(p.name.span(), format!("pipeline target {name:?} has no paths: name the paths whose changes start it (\"**\" for any change)")));
            }
            path_rules.push(self.path_rule(name, &p.paths, &p.exclude)?);
            targets.push(Target {
                name: name.clone(),
                region,
                kind,
                branches: self.filter(&format!("{name}.branches"), &p.branches)?,
                tags: self.filter(&format!("{name}.tags"), &p.tags)?,
            });
        }
        let rules = RuleSet::new(path_rules)
            .map_err(|e| ConfigError::whole(&self.origin, e.to_string()))?;

        // Rule tests.
        let mut tests: Vec<RuleTest> = Vec::new();
        for t in raw.test {
            let t = t.into_inner();
            let name = t.name.get_ref().clone();
            if name.trim().is_empty() {
                return Err(self.err(t.name.span(), "a rule test needs a name"));
            }
            if tests.iter().any(|x| x.name == name) {
                return Err(self.err(t.name.span(), format!("duplicate rule test name {name:?}")));
            }
            let region = match &t.region {
                Some(r) => known(r)?,
                None => primary.clone(),
            };
            let reference = match &t.reference {
                Some(r) => r
                    .get_ref()
                    .parse::<RefName>()
                    .map_err(|e| self.err(r.span(), e.to_string()))?,
                None => RefName::Branch(base_branch.clone()),
            };
            if t.changes.is_empty() {
                return Err(self.err(t.name.span(), format!("rule test {name:?} has no changes")));
            }
            let mut changes = Vec::new();
            for c in &t.changes {
                changes.push(self.change(c)?);
            }
            let mut expect = BTreeSet::new();
            for e in &t.expect {
                let action = e.get_ref();
                if action != MIRROR_ACTION && !targets.iter().any(|t| &t.name == action) {
                    let mut known: Vec<&str> = vec![MIRROR_ACTION];
                    known.extend(targets.iter().map(|t| t.name.as_str()));
                    return Err(self.err(
                        e.span(),
                        format!(
                            "unknown action {action:?} in rule test {name:?} (known: {})",
                            known.join(", ")
                        ),
                    ));
                }
                expect.insert(action.clone());
            }
            tests.push(RuleTest {
                name,
                region,
                reference,
                changes,
                expect,
            });
        }

        Ok(Config {
            origin: self.origin.clone(),
            primary,
            base_branch,
            regions,
            sync: sync_rule,
            targets,
            tests,
            rules,
            warnings,
        })
    }

    fn path_rule(&self, rule: &str, include: &[S], exclude: &[S]) -> Result<PathRule, ConfigError> {
        for g in include.iter().chain(exclude) {
            compile_glob(rule, g.get_ref()).map_err(|e| self.err(g.span(), e.to_string()))?;
        }
        Ok(
            PathRule::new(rule, include.iter().map(|g| g.get_ref().clone()))
                .excluding(exclude.iter().map(|g| g.get_ref().clone())),
        )
    }

    fn filter(&self, rule: &str, patterns: &[S]) -> Result<NameFilter, ConfigError> {
        for g in patterns {
            compile_glob(rule, g.get_ref()).map_err(|e| self.err(g.span(), e.to_string()))?;
        }
        let texts: Vec<String> = patterns.iter().map(|g| g.get_ref().clone()).collect();
        NameFilter::new(rule, &texts).map_err(|e| ConfigError::whole(&self.origin, e.to_string()))
    }

    fn change(&self, c: &Spanned<RawChange>) -> Result<Change, ConfigError> {
        let span = c.span();
        let c = c.get_ref();
        let bad = |m: String| self.err(span.clone(), m);
        if c.path.is_empty() || c.path.starts_with('/') {
            return Err(bad(format!(
                "changed path {:?} must be relative to the repository root",
                c.path
            )));
        }
        let kind = match &c.change {
            None => ChangeKind::Modified,
            Some(k) => ChangeKind::from_name(k).ok_or_else(|| {
                bad(format!(
                    "unknown change {k:?} (use added, modified, deleted, renamed or copied)"
                ))
            })?,
        };
        let needs_old = matches!(kind, ChangeKind::Renamed | ChangeKind::Copied);
        match (&c.old_path, needs_old) {
            (None, true) => {
                return Err(bad(format!(
                    "a {kind} change of {:?} needs old_path",
                    c.path
                )));
            }
            (Some(_), false) => {
                return Err(bad(format!(
                    "old_path is only for renamed or copied changes, not {kind}"
                )));
            }
            _ => {}
        }
        Ok(Change {
            path: RepoPath::from(c.path.as_str()),
            old_path: c.old_path.as_deref().map(RepoPath::from),
            kind,
        })
    }
}

/// The error for an AWS region not in [`regions::KNOWN`], and how to allow it.
fn unknown_aws_region(region: &str, whose: &str) -> String {
    format!(
        "unknown AWS region {region:?} for {whose} (tozai knows the AWS regions open in late 2026): if AWS opened it since, allow it with extra_aws_regions = [{region:?}] at the top of the config"
    )
}

/// Names of regions and targets: a letter or digit, then letters, digits, `-` or `_`.
fn check_name(name: &str, what: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid {what} name {name:?}: use 1-64 letters, digits, '-' or '_', starting with a letter or digit"
        ))
    }
}

/// AWS resource names: 1..=max of letters, digits, `.`, `@`, `-`, `_`.
fn check_resource(name: &str, max: usize, what: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= max
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'@' | b'-' | b'_'));
    if ok {
        Ok(())
    } else {
        Err(format!("invalid {what} name {name:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
primary = "tokyo"
[regions.tokyo]
aws_region = "ap-northeast-1"
repository = "core-infra"
[regions.osaka]
aws_region = "ap-northeast-3"
repository = "core-infra"
[sync]
branches = ["main"]
[sync.to.osaka]
paths = ["common/**", "secondary/**"]
[sync.to.tokyo]
paths = ["common/**", "primary/**"]
"#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/tozai/tozai.toml"))
    }

    #[test]
    fn example_config_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/tozai.toml");
        let c = Config::load(&path).unwrap();
        assert_eq!(c.primary().name, "tokyo");
        assert_eq!(c.standby().name, "osaka");
        assert_eq!(c.targets.len(), 2);
        assert!(c.tests.len() >= 8);
    }

    #[test]
    fn extra_aws_regions_allow_a_new_region() {
        let text = BASE.replace("\"ap-northeast-3\"", "\"ap-northeast-9\"");
        assert!(parse(&text).is_err());
        let c = parse(&format!("extra_aws_regions = [\"ap-northeast-9\"]\n{text}")).unwrap();
        assert_eq!(c.standby().aws_region, "ap-northeast-9");
        assert!(c.warnings.is_empty());
    }

    #[test]
    fn one_aws_region_for_both_is_a_warning() {
        let c = parse(
            &BASE
                .replace("\"ap-northeast-3\"", "\"ap-northeast-1\"")
                .replacen("\"core-infra\"", "\"core-infra-dr\"", 1),
        )
        .unwrap();
        assert_eq!(
            c.warnings,
            [
                "regions tokyo and osaka are both in the AWS region ap-northeast-1: an outage of ap-northeast-1 takes both down"
            ]
        );
    }

    #[test]
    fn failover_is_one_line() {
        let c = parse(&BASE.replace("primary = \"tokyo\"", "primary = \"osaka\"")).unwrap();
        assert_eq!(c.primary().name, "osaka");
        assert_eq!(c.standby().name, "tokyo");
        assert_eq!(c.mirror_destination("osaka").unwrap().name, "tokyo");
        assert!(c.mirror_destination("tokyo").is_none());
    }

    #[test]
    fn fail_over_to_is_the_same_as_editing_the_line() {
        let edited = parse(&BASE.replace("primary = \"tokyo\"", "primary = \"osaka\"")).unwrap();
        let mut switched = parse(BASE).unwrap();
        switched.fail_over_to("osaka").unwrap();
        assert_eq!(switched.primary, edited.primary);
        assert_eq!(switched.regions, edited.regions);
        switched.fail_over_to("osaka").unwrap();
        assert_eq!(switched.primary().name, "osaka", "idempotent");
        let err = switched.fail_over_to("nagoya").unwrap_err();
        assert!(err.contains("nagoya") && err.contains("tokyo"), "{err}");
    }

    #[test]
    fn defaults() {
        let c = parse(BASE).unwrap();
        assert_eq!(c.base_branch, "main");
        assert_eq!(
            c.sync.tags.patterns().collect::<Vec<_>>(),
            ["**"],
            "all tags mirrored"
        );
        assert_eq!(
            c.primary().repository,
            Location::CodeCommit {
                region: "ap-northeast-1".into(),
                name: "core-infra".into()
            }
        );
    }

    #[test]
    fn relative_local_paths_are_relative_to_the_config() {
        let c = parse(&BASE.replacen(
            "repository = \"core-infra\"",
            "repository = \"./repos/tokyo\"",
            1,
        ))
        .unwrap();
        assert_eq!(
            c.primary().repository,
            Location::Local("/etc/tozai/./repos/tokyo".into())
        );
    }

    const PIPE: &str = r#"
[[pipeline]]
name = "tokyo-core"
region = "tokyo"
codepipeline = "deploy"
branches = ["main"]
paths = ["common/**"]
"#;

    /// Each row: what is appended to (or replaced in) the base config, the line the error
    /// must point at, and words it must say.
    #[test]
    fn bad_configs_name_the_line_and_the_value() {
        let rows: Vec<(&str, String, usize, &[&str])> = vec![
            (
                "unknown key",
                BASE.replace(
                    "primary = \"tokyo\"",
                    "primary = \"tokyo\"\ncolour = \"red\"",
                ),
                3,
                &["unknown field", "colour", "\n3 | colour = \"red\"\n"],
            ),
            ("malformed", format!("{BASE}[sync\n"), 15, &["15 | [sync"]),
            (
                "wrong type",
                BASE.replace("branches = [\"main\"]", "branches = \"main\""),
                10,
                &["branches"],
            ),
            (
                "unknown primary",
                BASE.replace("primary = \"tokyo\"", "primary = \"nagoya\""),
                2,
                &["unknown region \"nagoya\"", "tokyo"],
            ),
            (
                "invalid glob",
                BASE.replace("\"secondary/**\"", "\"common/[\""),
                12,
                &["\"common/[\"", "sync.to.osaka"],
            ),
            (
                "misplaced **",
                BASE.replace("\"secondary/**\"", "\"**.yaml\""),
                12,
                &["\"**.yaml\"", "whole path component"],
            ),
            (
                "sync without paths",
                BASE.replace("paths = [\"common/**\", \"secondary/**\"]", "paths = []"),
                11,
                &["sync.to.osaka has no paths"],
            ),
            (
                "missing sync.to",
                BASE.replace(
                    "[sync.to.tokyo]\npaths = [\"common/**\", \"primary/**\"]\n",
                    "",
                ),
                9,
                &["[sync.to.tokyo] is missing", "failover"],
            ),
            (
                "sync.to unknown",
                format!("{BASE}[sync.to.nagoya]\npaths = [\"x/**\"]\n"),
                15,
                &["sync.to.nagoya", "unknown region"],
            ),
            (
                "three regions",
                format!(
                    "{BASE}[regions.nagoya]\naws_region = \"ap-northeast-1\"\nrepository = \"x\"\n"
                ),
                3,
                &["exactly two regions", "found 3"],
            ),
            (
                "bad aws region",
                BASE.replace("\"ap-northeast-3\"", "\"osaka-1\""),
                7,
                &["\"osaka-1\"", "not an AWS region"],
            ),
            (
                "unknown aws region",
                BASE.replace("\"ap-northeast-3\"", "\"ap-northeast-9\""),
                7,
                &[
                    "unknown AWS region \"ap-northeast-9\" for region osaka",
                    "extra_aws_regions = [\"ap-northeast-9\"]",
                ],
            ),
            (
                "unknown aws region of a repository",
                BASE.replacen("\"core-infra\"", "\"codecommit::eu-east-9://x\"", 1),
                5,
                &["unknown AWS region \"eu-east-9\" for region tokyo's repository"],
            ),
            (
                "bad extra region",
                format!("extra_aws_regions = [\"a b\"]\n{BASE}"),
                1,
                &["\"a b\" is not an AWS region name"],
            ),
            (
                "same repository",
                BASE.replace("\"ap-northeast-3\"", "\"ap-northeast-1\""),
                8,
                &[
                    "regions tokyo and osaka use the same repository, codecommit::ap-northeast-1://core-infra",
                ],
            ),
            (
                "same repository, primary last",
                BASE.replace("\"ap-northeast-3\"", "\"ap-northeast-1\"")
                    .replace("primary = \"tokyo\"", "primary = \"osaka\""),
                5,
                &["regions osaka and tokyo use the same repository"],
            ),
            (
                "bad repository",
                BASE.replacen("\"core-infra\"", "\"git@host:x.git\"", 1),
                5,
                &["git@host:x.git", "SSH"],
            ),
            (
                "pipeline unknown region",
                format!(
                    "{BASE}{}",
                    PIPE.replace("region = \"tokyo\"", "region = \"nagoya\"")
                ),
                18,
                &["unknown region \"nagoya\""],
            ),
            (
                "duplicate pipelines",
                format!("{BASE}{PIPE}{PIPE}"),
                24,
                &["duplicate pipeline target name \"tokyo-core\""],
            ),
            (
                "pipeline and build",
                format!(
                    "{BASE}{}",
                    PIPE.replace(
                        "codepipeline = \"deploy\"",
                        "codepipeline = \"d\"\ncodebuild = \"b\""
                    )
                ),
                16,
                &["exactly one of codepipeline"],
            ),
            (
                "pipeline without paths",
                format!(
                    "{BASE}{}",
                    PIPE.replace("paths = [\"common/**\"]", "paths = []")
                ),
                17,
                &["\"tokyo-core\" has no paths"],
            ),
            (
                "reserved name",
                format!(
                    "{BASE}{}",
                    PIPE.replace("name = \"tokyo-core\"", "name = \"mirror\"")
                ),
                17,
                &["reserved"],
            ),
            (
                "bad target name",
                format!(
                    "{BASE}{}",
                    PIPE.replace("name = \"tokyo-core\"", "name = \"a b\"")
                ),
                17,
                &["invalid pipeline target name \"a b\""],
            ),
            (
                "test unknown action",
                format!(
                    "{BASE}{PIPE}[[test]]\nname = \"t\"\nchanges = [\"a\"]\nexpect = [\"osaka-core\"]\n"
                ),
                25,
                &["unknown action \"osaka-core\"", "tokyo-core"],
            ),
            (
                "test rename without old",
                format!(
                    "{BASE}[[test]]\nname = \"t\"\nchanges = [{{ path = \"a\", change = \"renamed\" }}]\nexpect = []\n"
                ),
                17,
                &["needs old_path"],
            ),
            (
                "test bad change",
                format!(
                    "{BASE}[[test]]\nname = \"t\"\nchanges = [{{ path = \"a\", change = \"moved\" }}]\nexpect = []\n"
                ),
                17,
                &["unknown change \"moved\""],
            ),
            (
                "test bad ref",
                format!(
                    "{BASE}[[test]]\nname = \"t\"\nref = \"refs/pull/1\"\nchanges = [\"a\"]\nexpect = []\n"
                ),
                17,
                &["refs/pull/1"],
            ),
            (
                "test no changes",
                format!("{BASE}[[test]]\nname = \"t\"\nchanges = []\nexpect = []\n"),
                16,
                &["has no changes"],
            ),
            (
                "duplicate tests",
                format!(
                    "{BASE}[[test]]\nname = \"t\"\nchanges = [\"a\"]\nexpect = []\n[[test]]\nname = \"t\"\nchanges = [\"a\"]\nexpect = []\n"
                ),
                20,
                &["duplicate rule test name \"t\""],
            ),
        ];
        for (what, text, line, words) in rows {
            let err = parse(&text)
                .err()
                .unwrap_or_else(|| panic!("{what}: accepted"));
            let shown = err.to_string();
            assert!(
                shown.starts_with("/etc/tozai/tozai.toml"),
                "{what}: {shown}"
            );
            if line > 0 {
                assert!(
                    shown.starts_with(&format!("/etc/tozai/tozai.toml:{line}:")),
                    "{what}: expected line {line}: {shown}"
                );
            }
            for w in words {
                assert!(shown.contains(w), "{what}: {shown:?} lacks {w:?}");
            }
        }
    }

    /// Found by `fuzz/` (target `config`; minimized to one NUL byte): toml quotes the
    /// offending line as it is, so a control character in the file reached the message.
    #[test]
    fn errors_show_control_characters_as_pictures() {
        let rows = [
            ("\0".to_owned(), "1 | \u{2400}"),
            ("exclu\u{f}de = 1\n".to_owned(), "exclu\u{240f}de"),
            (
                "primary = 1\t\u{1b}[31m\n".to_owned(),
                "\u{2409}\u{241b}[31m",
            ),
            (
                BASE.replace("[sync.to.tokyo]", "[sync.to.\"\\u001b]2;x\\u0007\"]"),
                "sync.to.\u{241b}]2;x\u{2407} names an unknown region",
            ),
            ("a = [\r\n".to_owned(), "a = ["),
        ];
        for (text, want) in rows {
            let shown = parse(&text).unwrap_err().to_string();
            assert!(shown.contains(want), "{text:?}: {shown:?} lacks {want:?}");
            assert!(
                !shown.chars().any(|c| c.is_control() && c != '\n'),
                "{text:?}: {shown:?}"
            );
        }
    }

    #[test]
    fn sync_reconcile_defaults_to_hourly_and_must_divide_a_day() {
        assert_eq!(parse(BASE).unwrap().sync.reconcile.to_string(), "1h");
        let with = |value: &str| {
            parse(&BASE.replace(
                "branches = [\"main\"]",
                &format!("branches = [\"main\"]\nreconcile = {value}"),
            ))
        };
        assert_eq!(with("\"15m\"").unwrap().sync.reconcile.to_string(), "15m");
        assert_eq!(with("\"1d\"").unwrap().sync.reconcile.to_string(), "1d");
        let e = with("\"7h\"").unwrap_err().to_string();
        assert!(
            e.contains("tozai.toml:11:13: sync.reconcile = \"7h\"")
                && e.contains("divides 24 hours"),
            "{e}"
        );
        let long = with(&format!("\"{}h\"", "9".repeat(5000)))
            .unwrap_err()
            .to_string();
        assert!(long.len() < 400, "the value is cut: {long}");
        assert!(with("60").unwrap_err().to_string().contains("reconcile"));
    }
}
