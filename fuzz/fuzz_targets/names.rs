//! Names that enter tozai from configs, events and the command line: repository
//! locations, ref names, commit ids and glob patterns. The whole input and each of its
//! lines are tried as each kind; the lines that compile as globs then form a rule (even
//! lines include, odd lines exclude) and a name filter, judged against paths made from
//! the lines.
//!
//! Beyond "no panic": error messages are non-empty and free of raw control characters;
//! a URL's credentials never appear in an error, and `redact` leaves no URL's user part
//! or query string in any text (and changes nothing twice); accepted refs round-trip and are refs
//! git itself would accept; commit ids are normalised full hex; a rule set (one GlobSet)
//! and a name filter agree with their patterns compiled one by one.
#![no_main]

use std::path::Path;

use globset::GlobMatcher;
use libfuzzer_sys::fuzz_target;
use tozai::change::{Change, RepoPath};
use tozai::location::{
    CREDENTIALS_SHOWN, FRAGMENT_SHOWN, Location, QUERY_SHOWN, check_aws_region, check_codecommit_name, redact,
};
use tozai::refs::{CommitId, RefName};
use tozai::rules::{NameFilter, PathRule, RuleSet, compile_glob};
use tozai_fuzz::{check_message, first_match, is_git_path, matchers, paths_from_pattern};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lines: Vec<&str> = text.split('\n').take(12).collect();
    redaction(text);
    for s in std::iter::once(text).chain(lines.iter().copied()) {
        location(s);
        reference(s);
        commit(s);
        let _ = check_aws_region(s).map_err(|m| check_message("region", &m));
        let _ = check_codecommit_name(s).map_err(|m| check_message("repository name", &m));
    }
    globs(&lines);
});

fn location(s: &str) {
    let base = Path::new("/base/dir");
    match Location::parse(s, "ap-northeast-1", base) {
        Err(e) => {
            let message = e.to_string();
            check_message("location error", &message);
            // A URL's credentials and query string are never echoed, whatever else is
            // wrong with it: the location is shown redacted (every reason for a URL with
            // credentials is fixed text), or not at all when its user part holds what
            // ends a URL for `redact` (a space, a quote).
            assert!(
                e.location == redact(s) || e.location == "(a URL with credentials, not shown)",
                "{message:?}"
            );
        }
        Ok(loc) => {
            let shown = loc.to_string();
            assert!(!shown.is_empty());
            assert!(!shown.chars().any(char::is_control), "{shown:?}");
            loc.name();
            match &loc {
                Location::CodeCommit { region, name } => {
                    check_aws_region(region).expect("an accepted region is valid");
                    check_codecommit_name(name).expect("an accepted name is valid");
                    let again = Location::parse(&shown, "us-east-1", base);
                    assert_eq!(again.as_ref(), Ok(&loc), "{shown:?} does not round-trip");
                }
                Location::Url(url) => {
                    // No `@` at all: a password may hold `/`, `?` or `#`.
                    let rest = url.split_once("://").map_or("", |(_, r)| r);
                    assert!(!rest.contains('@'), "credentials accepted: {url:?}");
                    let again = Location::parse(&shown, "us-east-1", base);
                    assert_eq!(again.as_ref(), Ok(&loc), "{shown:?} does not round-trip");
                }
                Location::Local(p) => assert!(p.is_absolute(), "{p:?} is not absolute"),
            }
        }
    }
}

/// `redact`: idempotent; the text outside what it hides is kept; in its output every
/// URL's user part (to its last `@`) is `***@` and every query string or fragment `?***`
/// or `#***` to the end of the URL.
fn redaction(text: &str) {
    let shown = redact(text);
    assert_eq!(redact(&shown), shown, "redact is idempotent on {text:?}");
    if !text.contains("://") {
        assert_eq!(shown, text);
        return;
    }
    let ends = |c: char| {
        c.is_whitespace()
            || c.is_control()
            || matches!(c, '"' | '`' | '<' | '>' | '\u{2400}'..='\u{2421}')
    };
    for token in shown.split(ends).filter(|t| t.contains("://")) {
        // The user part runs from the first `://` to the token's last `@`, past any `/`,
        // `?` or `#` (a password may hold them); then a query string or fragment, the
        // first `?` or `#` after it, runs to the end of the token.
        let first = token.find("://").expect("filtered") + 3;
        let mut after = first;
        if let Some(at) = token[first..].rfind('@').map(|at| first + at) {
            assert_eq!(
                &token[first..=at],
                CREDENTIALS_SHOWN,
                "a user part is left in {token:?}"
            );
            after = at + 1;
        }
        if let Some(q) = token[after..].find(['?', '#']).map(|q| after + q) {
            assert!(
                [QUERY_SHOWN, FRAGMENT_SHOWN].contains(&&token[q..]),
                "a query string or fragment is left in {token:?}"
            );
        }
    }
}

/// git's `check_refname_format` (refs.c), for a full name with at least two components:
/// the rules tozai must not be looser than.
fn git_accepts(full: &str) -> bool {
    if full == "@" || full.ends_with('.') || full.ends_with('/') || full.starts_with('/') {
        return false;
    }
    full.split('/').all(|c| {
        !c.is_empty()
            && !c.starts_with('.')
            && !c.ends_with(".lock")
            && !c.contains("..")
            && !c.contains("@{")
            && !c.bytes().any(|b| {
                b < 0x20
                    || b == 0x7f
                    || matches!(b, b' ' | b':' | b'?' | b'[' | b'\\' | b'^' | b'~' | b'*')
            })
    })
}

fn reference(s: &str) {
    match s.parse::<RefName>() {
        Err(e) => check_message("ref error", &e.to_string()),
        Ok(r) => {
            let full = r.full();
            assert!(
                git_accepts(&full),
                "tozai accepts {full:?}, which git refuses"
            );
            assert_eq!(
                full.parse::<RefName>().as_ref(),
                Ok(&r),
                "{full:?} does not round-trip"
            );
            assert_eq!(r.to_string(), full);
            assert!(full.ends_with(r.short()));
            if !s.starts_with("refs/") {
                assert!(!r.is_tag());
                assert_eq!(r.short(), s);
            } else {
                assert_eq!(full, s);
            }
            let rebuilt = if r.is_tag() {
                RefName::tag(r.short())
            } else {
                RefName::branch(r.short())
            };
            assert_eq!(rebuilt, Ok(r));
        }
    }
}

fn commit(s: &str) {
    match s.parse::<CommitId>() {
        Err(e) => check_message("commit error", &e.to_string()),
        Ok(c) => {
            assert_eq!(c.as_str(), s.to_ascii_lowercase());
            assert!(matches!(c.as_str().len(), 40 | 64));
            assert!(
                c.as_str()
                    .bytes()
                    .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            );
            assert_eq!(c.short().len(), 12);
            assert_eq!(c.as_str().parse::<CommitId>().as_ref(), Ok(&c));
        }
    }
}

fn globs(lines: &[&str]) {
    let mut ok: Vec<(usize, &str)> = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        match compile_glob("fuzz", line) {
            Err(e) => {
                check_message("glob error", &e.to_string());
                assert!(e.to_string().contains("fuzz"), "the rule is named: {e}");
            }
            Ok(_) => {
                assert!(!line.is_empty() && !line.starts_with('/') && !line.ends_with('/'));
                assert!(!line.chars().any(char::is_control));
                ok.push((i, line));
            }
        }
    }
    if ok.is_empty() {
        return;
    }
    // Each accepted pattern compiled alone, once.
    let alone = matchers(ok.iter().map(|&(_, l)| l));
    let split = |parity: usize| -> (Vec<&str>, Vec<GlobMatcher>) {
        ok.iter()
            .zip(&alone)
            .filter(|((i, _), _)| i % 2 == parity)
            .map(|(&(_, l), m)| (l, m.clone()))
            .unzip()
    };
    let (include, include_m) = split(0);
    let (exclude, exclude_m) = split(1);

    let mut texts: Vec<String> = vec!["a".into(), "a/b".into(), ".env".into()];
    for line in lines {
        paths_from_pattern(line, &mut texts);
    }
    texts.retain(|t| is_git_path(t));
    texts.sort();
    texts.dedup();
    let changes: Vec<Change> = texts.iter().map(|t| Change::modified(t)).collect();

    // A rule set of two rules sharing patterns (deduplicated in one GlobSet).
    let rules = RuleSet::new([
        PathRule::new("r", include.iter().copied()).excluding(exclude.iter().copied()),
        PathRule::new("s", exclude.iter().copied()).excluding(include.iter().copied()),
    ]);
    let rules = match rules {
        Ok(r) => r,
        Err(e) => {
            // Each pattern compiled alone; the set can still be too big for the regex engine.
            check_message("rule set error", &e.to_string());
            return;
        }
    };
    let judged = rules.judge(&changes);
    for (name, inc, exc, inc_m, exc_m) in [
        ("r", &include, &exclude, &include_m, &exclude_m),
        ("s", &exclude, &include, &exclude_m, &include_m),
    ] {
        let outcome = judged.outcome(name).unwrap();
        let mut want_matches = Vec::new();
        let mut want_excluded = Vec::new();
        for ch in &changes {
            let path: &RepoPath = &ch.path;
            match (first_match(inc_m, path), first_match(exc_m, path)) {
                (Some(i), None) => want_matches.push((path.to_string(), inc[i].to_owned())),
                (Some(_), Some(x)) => want_excluded.push((path.to_string(), exc[x].to_owned())),
                _ => {}
            }
        }
        let got = |ms: &[tozai::rules::Match]| -> Vec<(String, String)> {
            ms.iter()
                .map(|m| (m.path.to_string(), m.pattern.to_string()))
                .collect()
        };
        assert_eq!(
            got(&outcome.matches),
            want_matches,
            "rule {name}: {inc:?} minus {exc:?}"
        );
        assert_eq!(
            got(&outcome.excluded),
            want_excluded,
            "rule {name}: {inc:?} minus {exc:?}"
        );
    }

    // A name filter over every accepted pattern, in order.
    let patterns: Vec<String> = ok.iter().map(|&(_, l)| l.to_owned()).collect();
    if let Ok(filter) = NameFilter::new("fuzz", &patterns) {
        for t in &texts {
            let want =
                first_match(&alone, &RepoPath::from(t.as_str())).map(|i| patterns[i].as_str());
            assert_eq!(
                filter.first_match(t).map(|p| p.as_ref()),
                want,
                "{patterns:?} on {t:?}"
            );
        }
    }
}
