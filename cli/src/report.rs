//! Readable reports for people; `--json` prints the library's types instead.
//!
//! Paths and ref names are shown with [`quoted`] (git's `core.quotePath`), so a file name
//! holding an escape sequence or a newline can neither recolour the terminal nor forge a
//! line; locations are [shown](tozai::location::Location::shown) without their secrets.

use std::collections::BTreeSet;
use std::fmt::Write;

use tozai::change::{Change, RepoPath};
use tozai::config::{Config, MIRROR_ACTION, sync_rule_name};
use tozai::plan::{Decisions, Plan, Reason, TargetDecision};
use tozai::rules::Match;
use tozai::text::quoted;

/// How many paths a report lists before it summarises.
const SHOWN: usize = 20;

pub fn region_names(config: &Config) -> String {
    let names: Vec<&str> = config.regions.iter().map(|r| r.name.as_str()).collect();
    names.join(", ")
}

/// One line about the config.
pub fn summary(config: &Config) -> String {
    format!(
        "{}: {}; {}; {}",
        config.origin,
        regions(config),
        plural(config.targets.len(), "pipeline target"),
        plural(config.tests.len(), "rule test")
    )
}

/// `primary NAME (AWS_REGION, LOCATION), standby NAME (AWS_REGION, LOCATION)`.
pub fn regions(config: &Config) -> String {
    let (p, s) = (config.primary(), config.standby());
    format!(
        "primary {} ({}, {}), standby {} ({}, {})",
        p.name,
        p.aws_region,
        p.repository.shown(),
        s.name,
        s.aws_region,
        s.repository.shown(),
    )
}

/// A path as text output shows it.
pub fn path(p: &RepoPath) -> String {
    quoted(&p.to_string()).into_owned()
}

/// A changed path as `git diff --name-status` shows it: `M path`, `R old -> new`.
fn change(c: &Change) -> String {
    match &c.old_path {
        Some(old) => format!("{} {} -> {}", c.kind.letter(), path(old), path(&c.path)),
        None => format!("{} {}", c.kind.letter(), path(&c.path)),
    }
}

fn plural(n: usize, noun: &str) -> String {
    format!("{n} {noun}{}", if n == 1 { "" } else { "s" })
}

pub fn set(actions: &BTreeSet<String>) -> String {
    if actions.is_empty() {
        "(nothing)".to_owned()
    } else {
        actions.iter().cloned().collect::<Vec<_>>().join(", ")
    }
}

/// Why an action was or was not taken, in one line, naming the path and pattern that
/// decided it, or the patterns that nothing matched.
pub fn why(config: &Config, d: &Decisions, action: &str) -> String {
    if action == MIRROR_ACTION {
        let rule = d.sync.to.as_deref().map(sync_rule_name);
        let branches = config.sync.branches.patterns().collect::<Vec<_>>();
        let tags = config.sync.tags.patterns().collect::<Vec<_>>();
        return explain(
            config,
            rule.as_deref(),
            (&branches, &tags),
            (d.sync.mirror, d.sync.reason),
            &d.sync.matches,
            &d.sync.excluded,
        );
    }
    let found = d
        .pipelines
        .iter()
        .chain(&d.after_mirror)
        .find(|p| p.target == action);
    match (found, config.targets.iter().find(|t| t.name == action)) {
        (Some(p), Some(t)) => {
            let branches = t.branches.patterns().collect::<Vec<_>>();
            let tags = t.tags.patterns().collect::<Vec<_>>();
            explain(
                config,
                Some(&p.target),
                (&branches, &tags),
                (p.start, p.reason),
                &p.matches,
                &p.excluded,
            )
        }
        _ if !d.sync.mirror => {
            "its region is reached only through the mirror, which was not taken".to_owned()
        }
        _ => "it is not a target of the regions this push reaches".to_owned(),
    }
}

fn explain(
    config: &Config,
    rule: Option<&str>,
    (branches, tags): (&[&str], &[&str]),
    (taken, reason): (bool, Reason),
    matches: &[Match],
    excluded: &[Match],
) -> String {
    let mut s = reason.describe().to_owned();
    let list = |v: &[&str]| {
        if v.is_empty() {
            "none".to_owned()
        } else {
            v.join(", ")
        }
    };
    if let Some(m) = matches.first().filter(|_| taken) {
        let _ = write!(s, " ({} matched {:?})", path(&m.path), m.pattern.as_ref());
    } else if let Some(m) = excluded.first() {
        let _ = write!(
            s,
            " ({} excluded by {:?})",
            path(&m.path),
            m.pattern.as_ref()
        );
    } else if reason == Reason::BranchNotSelected {
        let _ = write!(s, " (its branches: {})", list(branches));
    } else if reason == Reason::TagNotSelected {
        let _ = write!(s, " (its tags: {})", list(tags));
    } else if let Some((include, _)) = rule.and_then(|r| config.rules.patterns(r)) {
        let _ = write!(s, " (its paths: {})", list(&include));
    }
    s
}

pub fn plan(plan: &Plan) -> String {
    let mut out = String::new();
    let push = &plan.push;
    let range = match &push.before {
        Some(b) => format!("{}..{}", b.short(), push.after.short()),
        None => format!("(no base)..{}", push.after.short()),
    };
    let _ = writeln!(
        out,
        "push to {} {} {}  ({})",
        push.region,
        quoted(&push.reference.full()),
        range,
        tozai::location::redact(&push.repository)
    );
    let n = plan.changed.len();
    let _ = writeln!(out, "{n} changed path{}", if n == 1 { "" } else { "s" });
    for c in plan.changed.iter().take(SHOWN) {
        let _ = writeln!(out, "  {}", change(c));
    }
    more(&mut out, plan.changed.len());

    let d = &plan.decisions;
    let _ = writeln!(out);
    match &d.sync.to {
        Some(to) => {
            let verdict = if d.sync.mirror { "MIRROR" } else { "no mirror" };
            let _ = writeln!(out, "{verdict} to {to}: {}", d.sync.reason.describe());
            matches(&mut out, &d.sync.matches, &d.sync.excluded);
        }
        None => {
            let _ = writeln!(out, "no mirror: {}", d.sync.reason.describe());
        }
    }
    targets(
        &mut out,
        &format!("pipelines in {}", push.region),
        &d.pipelines,
    );
    if let Some(to) = d.sync.to.as_ref().filter(|_| d.sync.mirror) {
        targets(
            &mut out,
            &format!("after the mirror, pipelines in {to}"),
            &d.after_mirror,
        );
    }
    out
}

fn targets(out: &mut String, title: &str, list: &[TargetDecision]) {
    let _ = writeln!(out, "\n{title}:");
    if list.is_empty() {
        let _ = writeln!(out, "  (no targets)");
    }
    for t in list {
        let verdict = if t.start { "START" } else { "skip " };
        let _ = writeln!(
            out,
            "  {verdict} {} ({} {}): {}",
            t.target,
            t.kind,
            t.name,
            t.reason.describe()
        );
        matches(out, &t.matches, &t.excluded);
    }
}

fn matches(out: &mut String, matched: &[Match], excluded: &[Match]) {
    for m in matched.iter().take(SHOWN) {
        let _ = writeln!(
            out,
            "      {}  matched {:?} ({})",
            path(&m.path),
            m.pattern.as_ref(),
            m.rule
        );
    }
    more(out, matched.len());
    for m in excluded.iter().take(SHOWN) {
        let _ = writeln!(
            out,
            "      {}  excluded by {:?} ({})",
            path(&m.path),
            m.pattern.as_ref(),
            m.rule
        );
    }
    more(out, excluded.len());
}

fn more(out: &mut String, n: usize) {
    if n > SHOWN {
        let _ = writeln!(out, "      ... and {} more (--json lists all)", n - SHOWN);
    }
}
