//! `tozai.toml`: `Config::parse` on the text; when it is valid, its rule tests run and a
//! few pushes are planned, so the compiled globs and name filters are exercised.
//!
//! Beyond "no panic": an error's message is non-empty, free of raw control characters
//! and points at a line of the text; parsing twice gives the same config; each rule's
//! judgement (one GlobSet for all rules) agrees with its patterns compiled one by one;
//! each name filter's first match is the first pattern, in order, that matches.
#![no_main]

use std::collections::BTreeSet;
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use tozai::change::{Change, RepoPath};
use tozai::config::{Config, ConfigError, MIRROR_ACTION};
use tozai::plan::{Reason, decide};
use tozai::refs::RefName;
use tozai::rules::NameFilter;
use tozai_fuzz::{check_message, first_match, is_git_path, matchers, paths_from_pattern};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let origin = Path::new("fuzz.toml");
    let config = match Config::parse(text, origin) {
        Ok(c) => c,
        Err(e) => {
            check_error(text, &e);
            return;
        }
    };
    let again = Config::parse(text, origin).expect("the same text parses twice");
    assert_eq!(
        summary(&config),
        summary(&again),
        "parsing is not deterministic"
    );
    check_config(&config);
});

fn check_error(text: &str, e: &ConfigError) {
    let message = e.to_string();
    check_message("config error", &message);
    assert!(
        message.starts_with("fuzz.toml"),
        "the error names the file: {message:?}"
    );
    // Nothing is echoed at length: a message, its excerpt and all, stays under 4 KB.
    assert!(message.len() < 4096, "{} bytes: {message:?}", message.len());
    if let ConfigError::Invalid { line, column, .. } | ConfigError::Syntax { line, column, .. } =
        e
        && *line > 0
    {
        let lines = text.split('\n').count();
        assert!(
            *line >= 1 && *line <= lines,
            "line {line} of {lines}: {message:?}"
        );
        let width = text
            .split('\n')
            .nth(line - 1)
            .map_or(0, |l| l.chars().count());
        assert!(
            *column >= 1 && *column <= width + 1,
            "column {column} of {width}: {message:?}"
        );
    }
}

/// Everything comparable in a config (RuleSet and NameFilter are not `PartialEq`).
fn summary(c: &Config) -> String {
    let mut s = format!(
        "{} {} {:?} {:?}\n",
        c.primary, c.base_branch, c.regions, c.tests
    );
    let names = |f: &NameFilter| f.patterns().collect::<Vec<_>>().join("|");
    s += &format!("sync {} {}\n", names(&c.sync.branches), names(&c.sync.tags));
    for t in &c.targets {
        s += &format!(
            "{} {} {:?} {} {}\n",
            t.name,
            t.region,
            t.kind,
            names(&t.branches),
            names(&t.tags)
        );
    }
    for r in c.rules.names() {
        s += &format!("{r} {:?}\n", c.rules.patterns(r));
    }
    s
}

fn check_config(c: &Config) {
    assert_eq!(c.regions.len(), 2);
    assert_eq!(c.primary().name, c.primary);
    assert_ne!(c.primary().name, c.standby().name);
    assert_eq!(
        c.mirror_destination(&c.primary).map(|r| &r.name),
        Some(&c.standby().name)
    );
    for r in &c.regions {
        assert!(!r.repository.to_string().is_empty());
        r.repository.name();
    }

    // Rule tests, as `tozai check` runs them.
    for result in tozai::ruletest::run(c) {
        let actions = result.decisions.actions();
        assert_eq!(result.actual, actions);
        let missing: BTreeSet<_> = result.missing().collect();
        let unexpected: BTreeSet<_> = result.unexpected().collect();
        assert_eq!(result.passed(), missing.is_empty() && unexpected.is_empty());
        for a in &actions {
            assert!(
                a == MIRROR_ACTION || c.targets.iter().any(|t| &t.name == a),
                "{a}"
            );
        }
    }

    // Candidate paths: the tests' paths, every pattern's own text and plain variants.
    let mut texts: Vec<String> = ["README.md", "common/a.yaml", "primary/x/y.md", ".env", "a"]
        .map(String::from)
        .to_vec();
    for t in &c.tests {
        for ch in &t.changes {
            texts.extend(ch.judged_paths().map(|p| p.to_string()));
        }
    }
    for rule in c.rules.names() {
        let (inc, exc) = c.rules.patterns(rule).expect("a listed rule has patterns");
        for p in inc.iter().chain(&exc) {
            paths_from_pattern(p, &mut texts);
        }
    }
    texts.retain(|t| is_git_path(t));
    texts.sort();
    texts.dedup();
    texts.truncate(64);
    let changes: Vec<Change> = texts.iter().map(|t| Change::modified(t)).collect();

    // The whole rule set (one GlobSet) against each rule's patterns alone.
    let judged = c.rules.judge(&changes);
    for rule in c.rules.names() {
        let (inc, exc) = c.rules.patterns(rule).unwrap();
        let (inc_m, exc_m) = (matchers(inc.iter().copied()), matchers(exc.iter().copied()));
        let outcome = judged.outcome(rule).expect("a listed rule has an outcome");
        let mut want_matches = Vec::new();
        let mut want_excluded = Vec::new();
        for ch in &changes {
            let path: &RepoPath = &ch.path;
            match (first_match(&inc_m, path), first_match(&exc_m, path)) {
                (Some(i), None) => want_matches.push((path.to_string(), inc[i].to_owned())),
                (Some(_), Some(x)) => want_excluded.push((path.to_string(), exc[x].to_owned())),
                _ => {}
            }
        }
        let got = |ms: &[tozai::rules::Match]| -> Vec<(String, String)> {
            ms.iter()
                .map(|m| {
                    assert_eq!(m.rule.as_ref(), rule);
                    (m.path.to_string(), m.pattern.to_string())
                })
                .collect()
        };
        assert_eq!(got(&outcome.matches), want_matches, "rule {rule} matches");
        assert_eq!(
            got(&outcome.excluded),
            want_excluded,
            "rule {rule} excludes"
        );
        assert_eq!(judged.selected(rule), Some(!want_matches.is_empty()));
    }

    // Name filters against their patterns alone.
    let mut names: Vec<String> = vec![c.base_branch.clone(), "main".into(), "v1.0.0".into()];
    for t in &c.tests {
        names.push(t.reference.short().to_owned());
    }
    let mut filters = vec![&c.sync.branches, &c.sync.tags];
    for t in &c.targets {
        filters.push(&t.branches);
        filters.push(&t.tags);
    }
    for f in &filters {
        for p in f.patterns() {
            let mut v = Vec::new();
            paths_from_pattern(p, &mut v);
            names.extend(v);
        }
    }
    // Refs never have a `..` (nor, so, a `.` or `..` component).
    names.retain(|n| is_git_path(n));
    names.sort();
    names.dedup();
    names.truncate(64);
    for f in &filters {
        let patterns: Vec<&str> = f.patterns().collect();
        let m = matchers(patterns.iter().copied());
        assert_eq!(f.is_empty(), patterns.is_empty());
        for n in &names {
            let want = first_match(&m, &RepoPath::from(n.as_str())).map(|i| patterns[i]);
            assert_eq!(
                f.first_match(n).map(|p| p.as_ref()),
                want,
                "filter {patterns:?} on {n:?}"
            );
        }
    }

    // Plan pushes of those paths to each region, on the base branch and on a tag.
    let refs = [
        RefName::Branch(c.base_branch.clone()),
        RefName::tag("v1.0.0").unwrap(),
    ];
    for region in &c.regions {
        for r in &refs {
            let d = decide(c, &region.name, r, &changes).expect("a known region");
            assert_eq!(d.sync.mirror, d.sync.to.is_some() && d.sync.mirror);
            if region.name != c.primary {
                assert!(!d.sync.mirror, "a push to the standby is never mirrored");
            }
            if !d.sync.mirror {
                assert!(d.after_mirror.is_empty() || d.after_mirror.iter().all(|t| !t.start));
            }
            assert_eq!(
                d.sync.mirror,
                matches!(d.sync.reason, Reason::PathsMatched | Reason::TagPolicy),
                "{:?}",
                d.sync
            );
            for p in &d.pipelines {
                assert_eq!(p.region, region.name);
            }
            for p in d.pipelines.iter().chain(&d.after_mirror) {
                assert_eq!(p.start, p.reason == Reason::PathsMatched, "{p:?}");
                assert_eq!(p.start, !p.matches.is_empty() && p.start, "{p:?}");
            }
            decide(c, &region.name, r, &[]).expect("a known region");
        }
    }
    assert!(decide(c, "no-such-region!", &refs[0], &changes).is_err());
}
