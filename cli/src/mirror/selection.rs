//! `tozai mirror --ref`: which branches and tags the arguments name.
//!
//! Each argument is `refs/heads/GLOB` (branches), `refs/tags/GLOB` (tags) or a bare `GLOB`,
//! which names branches when any branch matches it and otherwise tags: a tag's short name
//! (`v1.2.0`) names the tag, and a name that is both a branch and a tag names the branch,
//! with a note saying so.
//!
//! With a config (`-c`), the arguments narrow what its sync rule selects: an argument
//! without glob characters outside `sync.branches` / `sync.tags` is refused before
//! anything is read ([`outside_config`]), and the others are matched against the refs the
//! config selects only. An argument that matches no ref, on the source or on the standby
//! (whose ref the source deleted), is refused ([`resolve`]) before anything is pushed.
//!
//! ```text
//! tozai mirror -c tozai.toml --ref main --ref 'release/*'   # narrows sync.branches
//! tozai mirror -c tozai.toml --ref v1.2.0                   # the tag v1.2.0
//! tozai mirror --from A --to B --ref feature/x              # any ref: no config
//! ```

use std::collections::BTreeSet;

use tozai::mirror::RefSelection;
use tozai::refs::RefName;
use tozai::rules::NameFilter;
use tozai::text::quoted;

/// What one `--ref` argument may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Branches,
    Tags,
    /// A bare name: branches, else tags.
    Either,
}

/// One `--ref` argument, compiled.
#[derive(Debug, Clone)]
pub struct RefArg {
    /// As given, for messages.
    text: String,
    /// Its glob over short names.
    glob: String,
    kind: Kind,
    filter: NameFilter,
}

/// The refs the arguments name, and the notes on how a bare name was resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub refs: BTreeSet<RefName>,
    pub notes: Vec<String>,
}

impl RefArg {
    /// Parses the `--ref` arguments; `refs/` other than heads and tags is refused.
    pub fn parse_all(args: &[String]) -> anyhow::Result<Vec<Self>> {
        args.iter().map(|a| Self::parse(a)).collect()
    }

    fn parse(text: &str) -> anyhow::Result<Self> {
        let (kind, glob) = if let Some(t) = text.strip_prefix("refs/tags/") {
            (Kind::Tags, t)
        } else if let Some(b) = text.strip_prefix("refs/heads/") {
            (Kind::Branches, b)
        } else if text.starts_with("refs/") {
            anyhow::bail!(
                "--ref {}: only refs/heads/... and refs/tags/... are mirrored",
                quoted(text)
            );
        } else {
            (Kind::Either, text)
        };
        Ok(Self {
            text: text.to_owned(),
            glob: glob.to_owned(),
            kind,
            filter: NameFilter::new("--ref", &[glob.to_owned()])?,
        })
    }

    /// True when the argument is one name, not a pattern.
    fn is_literal(&self) -> bool {
        !self.glob.contains(['*', '?', '[', ']', '{', '}', '\\'])
    }

    fn matches(&self, r: &RefName) -> bool {
        let kind_ok = match self.kind {
            Kind::Branches => !r.is_tag(),
            Kind::Tags => r.is_tag(),
            Kind::Either => true,
        };
        kind_ok && self.filter.first_match(r.short()).is_some()
    }
}

/// What the arguments could name at most, for a first look at both sides (without a
/// config): a bare name as a branch and as a tag.
pub fn widest(args: &[RefArg]) -> anyhow::Result<RefSelection> {
    let globs = |want: Kind| -> Vec<String> {
        (args.iter())
            .filter(|a| a.kind == want || a.kind == Kind::Either)
            .map(|a| a.glob.clone())
            .collect()
    };
    Ok(RefSelection {
        branches: Some(NameFilter::new("--ref", &globs(Kind::Branches))?),
        tags: Some(NameFilter::new("--ref", &globs(Kind::Tags))?),
    })
}

/// The first argument naming one ref that `config` does not select, if any.
pub fn outside_config<'a>(args: &'a [RefArg], config: &RefSelection) -> Option<&'a str> {
    let selected = |kind: Kind, name: &str| {
        let as_branch = RefName::branch(name).is_ok_and(|r| config.selects(&r));
        let as_tag = RefName::tag(name).is_ok_and(|r| config.selects(&r));
        match kind {
            Kind::Branches => as_branch,
            Kind::Tags => as_tag,
            Kind::Either => as_branch || as_tag,
        }
    };
    (args.iter())
        .find(|a| a.is_literal() && !selected(a.kind, &a.glob))
        .map(|a| a.text.as_str())
}

/// The refs, among `seen` (the source's and the standby's selected refs), that the
/// arguments name; `Err` with the first argument that names none.
pub fn resolve<'a>(args: &'a [RefArg], seen: &[RefName]) -> Result<Resolved, &'a str> {
    let mut resolved = Resolved {
        refs: BTreeSet::new(),
        notes: Vec::new(),
    };
    for arg in args {
        let hits: Vec<&RefName> = seen.iter().filter(|r| arg.matches(r)).collect();
        let (tags, branches): (Vec<&RefName>, Vec<&RefName>) =
            hits.into_iter().partition(|r| r.is_tag());
        let chosen = match (branches.is_empty(), tags.is_empty()) {
            (true, true) => return Err(&arg.text),
            (false, true) => branches,
            (true, false) => tags,
            (false, false) => {
                // Only a bare name can match both.
                resolved.notes.push(both_note(arg));
                branches
            }
        };
        resolved.refs.extend(chosen.into_iter().cloned());
    }
    Ok(resolved)
}

fn both_note(arg: &RefArg) -> String {
    let shown = quoted(&arg.text);
    if arg.is_literal() {
        format!(
            "--ref {shown} names both a branch and a tag: mirroring the branch refs/heads/{shown} (write refs/tags/{shown} for the tag)"
        )
    } else {
        format!(
            "--ref {shown} matches both branches and tags: mirroring the branches (write refs/tags/{shown} for the tags)"
        )
    }
}

/// `sync.branches: main, release/*; sync.tags: v*`, for messages.
pub fn describe(config: &RefSelection) -> String {
    let list = |f: &Option<NameFilter>| match f {
        None => "(all)".to_owned(),
        Some(f) if f.is_empty() => "(none)".to_owned(),
        Some(f) => f
            .patterns()
            .map(|p| quoted(p))
            .collect::<Vec<_>>()
            .join(", "),
    };
    format!(
        "sync.branches: {}; sync.tags: {}",
        list(&config.branches),
        list(&config.tags)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<RefArg> {
        let owned: Vec<String> = a.iter().map(|s| s.to_string()).collect();
        RefArg::parse_all(&owned).unwrap()
    }

    fn refs(r: &[&str]) -> Vec<RefName> {
        r.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn names(r: &Resolved) -> Vec<String> {
        r.refs.iter().map(RefName::full).collect()
    }

    fn config() -> RefSelection {
        RefSelection {
            branches: Some(NameFilter::new("b", &["main".into(), "release/*".into()]).unwrap()),
            tags: Some(NameFilter::new("t", &["v*".into()]).unwrap()),
        }
    }

    #[test]
    fn a_bare_name_is_a_branch_else_a_tag() {
        let seen = refs(&["refs/heads/main", "refs/tags/v1.2.0", "refs/tags/main2"]);
        let r = resolve(&args(&["main", "v1.2.0"]), &seen).unwrap();
        assert_eq!(names(&r), ["refs/heads/main", "refs/tags/v1.2.0"]);
        assert!(r.notes.is_empty());
    }

    #[test]
    fn a_name_of_both_takes_the_branch_with_a_note() {
        let seen = refs(&["refs/heads/v2", "refs/tags/v2"]);
        let r = resolve(&args(&["v2"]), &seen).unwrap();
        assert_eq!(names(&r), ["refs/heads/v2"]);
        assert_eq!(
            r.notes,
            [
                "--ref v2 names both a branch and a tag: mirroring the branch refs/heads/v2 (write refs/tags/v2 for the tag)"
            ]
        );
        let r = resolve(&args(&["refs/tags/v2"]), &seen).unwrap();
        assert_eq!(
            names(&r),
            ["refs/tags/v2"],
            "a full name is never ambiguous"
        );
        assert!(r.notes.is_empty());
    }

    #[test]
    fn globs_match_within_their_kind() {
        let seen = refs(&[
            "refs/heads/release/1",
            "refs/heads/release/2",
            "refs/tags/v1",
        ]);
        let r = resolve(&args(&["release/*", "refs/tags/*"]), &seen).unwrap();
        assert_eq!(
            names(&r),
            [
                "refs/heads/release/1",
                "refs/heads/release/2",
                "refs/tags/v1"
            ]
        );
    }

    #[test]
    fn an_argument_matching_nothing_is_named() {
        let seen = refs(&["refs/heads/main"]);
        assert_eq!(
            resolve(&args(&["main", "release/none"]), &seen),
            Err("release/none")
        );
        assert_eq!(
            resolve(&args(&["refs/tags/main"]), &seen),
            Err("refs/tags/main")
        );
    }

    #[test]
    fn literal_names_outside_the_config_are_found_before_anything_is_read() {
        let c = config();
        assert_eq!(
            outside_config(&args(&["main", "feature/x"]), &c),
            Some("feature/x")
        );
        assert_eq!(outside_config(&args(&["v1.2.0", "release/7"]), &c), None);
        assert_eq!(
            outside_config(&args(&["refs/heads/v1"]), &c),
            Some("refs/heads/v1")
        );
        assert_eq!(
            outside_config(&args(&["refs/tags/main"]), &c),
            Some("refs/tags/main")
        );
        assert_eq!(
            outside_config(&args(&["feature/*"]), &c),
            None,
            "a pattern is checked against the refs it matches"
        );
    }

    #[test]
    fn refs_other_than_heads_and_tags_are_refused() {
        let e = RefArg::parse_all(&["refs/notes/x".into()]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--ref refs/notes/x: only refs/heads/... and refs/tags/... are mirrored"
        );
    }

    #[test]
    fn the_configs_patterns_are_described() {
        assert_eq!(
            describe(&config()),
            "sync.branches: main, release/*; sync.tags: v*"
        );
    }
}
