//! Path rules: which changed paths a rule selects, and why.
//!
//! A rule has a name, include patterns and exclude patterns. A changed path is *selected*
//! by a rule when at least one include matches it and no exclude does. Every selection is
//! explained: for each rule, which path matched which include pattern, and which paths an
//! exclude removed.
//!
//! # The dialect
//!
//! One dialect everywhere (path rules, branch and tag filters), the one users know from
//! `.gitignore`, GitHub Actions and CodePipeline triggers:
//!
//! | pattern | matches | does not match |
//! |---|---|---|
//! | `*.md` | `README.md` | `docs/guide.md` (`*` never crosses `/`) |
//! | `**/*.md` | `README.md`, `docs/a/guide.md` (`**` is zero or more directories) | `README.txt` |
//! | `common/**` | `common/a.yaml`, `common/x/y/z.yaml` | `commons/a.yaml` |
//! | `primary/*/root.yaml` | `primary/templates/root.yaml` | `primary/root.yaml` |
//! | `{common,primary}/**` | `common/a`, `primary/b` | `secondary/c` |
//! | `file?.txt`, `[ab].yaml` | `file1.txt`, `a.yaml` | `file10.txt`, `c.yaml` |
//! | `**/.env` | `.env`, `app/.env` (dotfiles are ordinary files) | `app/.envrc` |
//!
//! - Matching is case-sensitive and byte-exact: `Common/` is not `common/`, and names that
//!   are not UTF-8 are matched as the bytes git stores.
//! - Excludes beat includes, whatever their order.
//! - Patterns are relative to the repository root. A leading `/`, a trailing `/`, an empty
//!   pattern, and a `**` that is not a whole path component (`**.js`, which globset would
//!   quietly read as `*.js`) are refused with an error naming the rule and the pattern.
//! - A rename or copy is judged by both its old and its new path; a deletion by the path
//!   removed. So moving a file out of `primary/` into `common/` concerns both regions.
//!
//! ```
//! use tozai::change::Change;
//! use tozai::rules::{PathRule, RuleSet};
//!
//! let rules = RuleSet::new([
//!     PathRule::new("tokyo", ["common/**", "primary/**"]).excluding(["**/*.md"]),
//!     PathRule::new("osaka", ["common/**", "secondary/**"]).excluding(["**/*.md"]),
//! ])?;
//! let changes = [
//!     Change::modified("secondary/templates/dns.yaml"),
//!     Change::modified("common/README.md"),
//! ];
//! let judged = rules.judge(&changes);
//! let osaka = judged.outcome("osaka").unwrap();
//! assert!(osaka.selected());
//! assert_eq!(osaka.matches[0].pattern.as_ref(), "secondary/**");
//! assert_eq!(osaka.excluded[0].path.to_string(), "common/README.md");
//! assert!(!judged.outcome("tokyo").unwrap().selected());
//! # Ok::<(), tozai::rules::GlobError>(())
//! ```

use std::sync::Arc;

use globset::{Candidate, GlobBuilder, GlobSet, GlobSetBuilder};
use serde::Serialize;

use crate::change::{Change, RepoPath};

/// A pattern that could not be compiled, with the rule it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid glob {glob:?} in rule {rule:?}: {reason}")]
pub struct GlobError {
    pub rule: String,
    pub glob: String,
    pub reason: String,
}

/// A rule before compilation: a name, includes and excludes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathRule {
    pub name: String,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
}

impl PathRule {
    pub fn new<I, S>(name: &str, include: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            name: name.to_owned(),
            include: include.into_iter().map(Into::into).collect(),
            exclude: Vec::new(),
        }
    }

    pub fn excluding<I, S>(mut self, exclude: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.exclude = exclude.into_iter().map(Into::into).collect();
        self
    }
}

/// Which path matched which pattern of which rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Match {
    pub rule: Arc<str>,
    pub pattern: Arc<str>,
    pub path: RepoPath,
}

/// What one rule made of the changed paths.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RuleOutcome {
    /// Each selected path with the first include pattern (in the rule's order) it matched.
    pub matches: Vec<Match>,
    /// Each path an include matched but an exclude removed, with that exclude.
    pub excluded: Vec<Match>,
}

impl RuleOutcome {
    /// True when at least one path was selected.
    pub fn selected(&self) -> bool {
        !self.matches.is_empty()
    }
}

/// The outcome of every rule of a [`RuleSet`] for one list of changes.
///
/// Explanations are kept compact (which path, which pattern) and become [`Match`] values
/// when an outcome is read, so judging many paths stays cheap.
#[derive(Debug, Clone)]
pub struct Judgement<'c> {
    rules: &'c RuleSet,
    changes: &'c [Change],
    outcomes: Vec<Compact>,
}

/// One rule's selections and exclusions as (judged path, pattern position in the rule).
#[derive(Debug, Clone, Default)]
struct Compact {
    matches: Vec<(u32, u32)>,
    excluded: Vec<(u32, u32)>,
}

impl Judgement<'_> {
    fn index(&self, rule: &str) -> Option<usize> {
        self.rules.names.iter().position(|n| n.as_ref() == rule)
    }

    /// True when the rule with this name selected at least one path.
    pub fn selected(&self, rule: &str) -> Option<bool> {
        Some(!self.outcomes[self.index(rule)?].matches.is_empty())
    }

    /// The outcome of the rule with this name, with its explanations.
    pub fn outcome(&self, rule: &str) -> Option<RuleOutcome> {
        let i = self.index(rule)?;
        Some(self.expand(i, &self.outcomes[i]))
    }

    /// Takes the outcome of the rule with this name out of the judgement.
    pub fn take(&mut self, rule: &str) -> Option<RuleOutcome> {
        let i = self.index(rule)?;
        let compact = std::mem::take(&mut self.outcomes[i]);
        Some(self.expand(i, &compact))
    }

    fn expand(&self, rule: usize, compact: &Compact) -> RuleOutcome {
        let name = &self.rules.names[rule];
        let patterns = &self.rules.rule_patterns[rule];
        let to_match = |&(path, pos): &(u32, u32)| {
            let change = &self.changes[(path / 2) as usize];
            let path = if path % 2 == 0 {
                &change.path
            } else {
                change.old_path.as_ref().expect("odd indices are old paths")
            };
            Match {
                rule: Arc::clone(name),
                pattern: Arc::clone(&patterns[pos as usize]),
                path: path.clone(),
            }
        };
        RuleOutcome {
            matches: compact.matches.iter().map(to_match).collect(),
            excluded: compact.excluded.iter().map(to_match).collect(),
        }
    }
}

/// One use of a distinct glob: by which rule, as include or exclude, at which position in
/// that rule's patterns (includes first, then excludes).
#[derive(Debug, Clone, Copy)]
struct Use {
    rule: u32,
    position: u32,
    exclude: bool,
}

/// Compiled rules, judged together in one pass over the paths.
///
/// A glob several rules share (`**/*.md` in every exclude list, say) is compiled and
/// matched once.
#[derive(Debug, Clone)]
pub struct RuleSet {
    names: Vec<Arc<str>>,
    /// Each rule's patterns: includes in order, then excludes in order.
    rule_patterns: Vec<Vec<Arc<str>>>,
    /// Each rule's number of includes (the first ones in `rule_patterns`).
    include_counts: Vec<usize>,
    /// For each distinct glob in the set, who uses it.
    uses: Vec<Vec<Use>>,
    set: GlobSet,
}

const NONE: u32 = u32::MAX;

impl RuleSet {
    /// Compiles the rules; the first bad pattern is an error naming its rule.
    pub fn new(rules: impl IntoIterator<Item = PathRule>) -> Result<Self, GlobError> {
        let mut names = Vec::new();
        let mut rule_patterns = Vec::new();
        let mut include_counts = Vec::new();
        let mut uses: Vec<Vec<Use>> = Vec::new();
        let mut distinct: std::collections::HashMap<String, usize> = Default::default();
        let mut builder = GlobSetBuilder::new();
        for rule in rules {
            let index = u32::try_from(names.len()).expect("fewer than 4 billion rules");
            let tagged = rule
                .include
                .iter()
                .map(|p| (p, false))
                .chain(rule.exclude.iter().map(|p| (p, true)));
            let mut patterns = Vec::new();
            for (position, (text, exclude)) in tagged.enumerate() {
                let glob = compile_glob(&rule.name, text)?;
                let slot = *distinct.entry(text.clone()).or_insert_with(|| {
                    builder.add(glob);
                    uses.push(Vec::new());
                    uses.len() - 1
                });
                uses[slot].push(Use {
                    rule: index,
                    position: position as u32,
                    exclude,
                });
                patterns.push(Arc::from(text.as_str()));
            }
            names.push(Arc::from(rule.name.as_str()));
            rule_patterns.push(patterns);
            include_counts.push(rule.include.len());
        }
        let set = builder.build().map_err(|e| GlobError {
            rule: String::new(),
            glob: e.glob().unwrap_or_default().to_owned(),
            reason: e.kind().to_string(),
        })?;
        Ok(Self {
            names,
            rule_patterns,
            include_counts,
            uses,
            set,
        })
    }

    /// The include and exclude patterns of the rule with this name.
    pub fn patterns(&self, rule: &str) -> Option<(Vec<&str>, Vec<&str>)> {
        let i = self.names.iter().position(|n| n.as_ref() == rule)?;
        let (include, exclude) = self.rule_patterns[i].split_at(self.include_counts[i]);
        fn texts(v: &[Arc<str>]) -> Vec<&str> {
            v.iter().map(|p| p.as_ref()).collect()
        }
        Some((texts(include), texts(exclude)))
    }

    /// The rule names, in the order given.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(|n| n.as_ref())
    }

    /// Judges every changed path (both paths of a rename) against every rule.
    pub fn judge<'c>(&'c self, changes: &'c [Change]) -> Judgement<'c> {
        let n = self.names.len();
        let mut outcomes = vec![Compact::default(); n];
        // Per rule, for the current path: the first include and exclude position seen.
        let mut first_include = vec![NONE; n];
        let mut first_exclude = vec![NONE; n];
        let mut touched: Vec<u32> = Vec::new();
        let mut hits: Vec<usize> = Vec::new();
        for (i, change) in changes.iter().enumerate() {
            let judged = std::iter::once((0u32, &change.path))
                .chain(change.old_path.as_ref().map(|p| (1u32, p)));
            for (which, path) in judged {
                let id = u32::try_from(i).expect("fewer than 2 billion changes") * 2 + which;
                let candidate = Candidate::new(path.as_path());
                self.set.matches_candidate_into(&candidate, &mut hits);
                for &hit in &hits {
                    for u in &self.uses[hit] {
                        let rule = u.rule as usize;
                        if first_include[rule] == NONE && first_exclude[rule] == NONE {
                            touched.push(u.rule);
                        }
                        let slot = if u.exclude {
                            &mut first_exclude[rule]
                        } else {
                            &mut first_include[rule]
                        };
                        // positions, not glob ids, so "first" follows the rule's own order
                        *slot = (*slot).min(u.position);
                    }
                }
                for &rule in &touched {
                    let rule = rule as usize;
                    let (inc, exc) = (first_include[rule], first_exclude[rule]);
                    first_include[rule] = NONE;
                    first_exclude[rule] = NONE;
                    if inc == NONE {
                        continue; // only an exclude matched: nothing was removed
                    }
                    if exc == NONE {
                        outcomes[rule].matches.push((id, inc));
                    } else {
                        outcomes[rule].excluded.push((id, exc));
                    }
                }
                touched.clear();
            }
        }
        Judgement {
            rules: self,
            changes,
            outcomes,
        }
    }
}

/// A filter on names (branches, tags) in the same dialect as paths.
#[derive(Debug, Clone)]
pub struct NameFilter {
    patterns: Vec<Arc<str>>,
    set: GlobSet,
}

impl NameFilter {
    /// Compiles the patterns of the filter called `rule` (for error messages).
    pub fn new(rule: &str, patterns: &[String]) -> Result<Self, GlobError> {
        let mut builder = GlobSetBuilder::new();
        for p in patterns {
            builder.add(compile_glob(rule, p)?);
        }
        let set = builder.build().map_err(|e| GlobError {
            rule: rule.to_owned(),
            glob: e.glob().unwrap_or_default().to_owned(),
            reason: e.kind().to_string(),
        })?;
        Ok(Self {
            patterns: patterns.iter().map(|p| Arc::from(p.as_str())).collect(),
            set,
        })
    }

    /// The first pattern (in order) that matches the name.
    pub fn first_match(&self, name: &str) -> Option<&Arc<str>> {
        let hits = self.set.matches(name);
        hits.first().map(|&i| &self.patterns[i])
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    pub fn patterns(&self) -> impl Iterator<Item = &str> {
        self.patterns.iter().map(|p| p.as_ref())
    }
}

/// The longest pattern accepted, in bytes (PATH_MAX).
pub const MAX_PATTERN: usize = 4096;

/// Compiles one pattern in tozai's dialect, refusing the mistakes globset lets through.
pub fn compile_glob(rule: &str, text: &str) -> Result<globset::Glob, GlobError> {
    let fail = |reason: &str| GlobError {
        rule: rule.to_owned(),
        glob: text.to_owned(),
        reason: reason.to_owned(),
    };
    if text.is_empty() {
        return Err(fail("the pattern is empty"));
    }
    if let Some(c) = text.chars().find(|c| c.is_control()) {
        return Err(fail(&format!(
            "the pattern contains the control character U+{:04X}",
            c as u32
        )));
    }
    if text.len() > MAX_PATTERN {
        return Err(fail(&format!(
            "the pattern is {} bytes long; the limit is {MAX_PATTERN} (git's own path limit)",
            text.len()
        )));
    }
    if text.starts_with('/') {
        return Err(fail(
            "patterns are relative to the repository root: remove the leading '/'",
        ));
    }
    if text.ends_with('/') {
        return Err(fail(
            "a pattern ending in '/' matches no file: write 'dir/**' for everything under a directory",
        ));
    }
    if has_misplaced_double_star(text) {
        return Err(fail(
            "'**' must be a whole path component, as in 'a/**/b' or '**/*.js'; use '*' to stay within one directory",
        ));
    }
    GlobBuilder::new(text)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map_err(|e| fail(&e.kind().to_string()))
}

/// True when a run of two or more `*` is not a whole `/`-separated component
/// (escapes and character classes are skipped).
fn has_misplaced_double_star(text: &str) -> bool {
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'[' => {
                // skip the class; a ']' right after '[' or '[!' is literal
                let mut j = i + 1;
                if j < b.len() && (b[j] == b'!' || b[j] == b'^') {
                    j += 1;
                }
                if j < b.len() && b[j] == b']' {
                    j += 1;
                }
                while j < b.len() && b[j] != b']' {
                    j += 1;
                }
                i = j + 1;
            }
            b'*' => {
                let start = i;
                while i < b.len() && b[i] == b'*' {
                    i += 1;
                }
                if i - start >= 2 {
                    let before_ok = start == 0 || matches!(b[start - 1], b'/' | b'{' | b',');
                    let after_ok = i == b.len() || matches!(b[i], b'/' | b'}' | b',');
                    if !(before_ok && after_ok) || i - start > 2 {
                        return true;
                    }
                }
            }
            _ => i += 1,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::ChangeKind;

    fn selects(patterns: &[&str], excludes: &[&str], path: &str) -> bool {
        let rules = RuleSet::new([
            PathRule::new("r", patterns.iter().copied()).excluding(excludes.iter().copied())
        ])
        .unwrap();
        rules
            .judge(&[Change::modified(path)])
            .outcome("r")
            .unwrap()
            .selected()
    }

    #[test]
    fn dialect_table() {
        #[rustfmt::skip]
        let rows: &[(&str, &str, bool)] = &[
            // pattern              path                                   selected
            ("*.md",                "README.md",                           true),
            ("*.md",                "docs/guide.md",                       false), // * does not cross /
            ("*",                   "common/a.yaml",                       false),
            ("common/*",            "common/a.yaml",                       true),
            ("common/*",            "common/templates/a.yaml",             false),
            ("**/*.md",             "README.md",                           true),  // ** is zero dirs too
            ("**/*.md",             "docs/a/b/guide.md",                   true),
            ("common/**",           "common/a.yaml",                       true),
            ("common/**",           "common/x/y/z.yaml",                   true),
            ("common/**",           "commons/a.yaml",                      false),
            ("common/**/root.yaml", "common/root.yaml",                    true),
            ("common/**/root.yaml", "common/a/b/root.yaml",                true),
            ("primary/*/root.yaml", "primary/root.yaml",                   false),
            ("{common,primary}/**", "primary/b.yaml",                      true),
            ("{common,primary}/**", "secondary/b.yaml",                    false),
            ("file?.txt",           "file1.txt",                           true),
            ("file?.txt",           "file10.txt",                          false),
            ("file?.txt",           "dir/x.txt",                           false),
            ("[ab].yaml",           "a.yaml",                              true),
            ("[ab].yaml",           "c.yaml",                              false),
            ("**/.env",             ".env",                                true),  // dotfiles are ordinary
            ("*",                   ".gitignore",                          true),
            ("**/.env",             "app/.envrc",                          false),
            ("common/**",           "Common/a.yaml",                       false), // case-sensitive
            ("共通/**",             "共通/テンプレート/東京.yaml",          true),  // Japanese
            ("common/**",           "common/my templates/a b.yaml",        true),  // spaces
            ("common/my templates/*", "common/my templates/a b.yaml",      true),
            ("a\\*b",               "a*b",                                 true),  // escape
            ("a\\*b",               "axb",                                 false),
        ];
        for &(pattern, path, want) in rows {
            assert_eq!(
                selects(&[pattern], &[], path),
                want,
                "{pattern:?} on {path:?}"
            );
        }
    }

    #[test]
    fn exclude_beats_include() {
        assert!(!selects(&["common/**"], &["**/*.md"], "common/README.md"));
        assert!(selects(&["common/**"], &["**/*.md"], "common/a.yaml"));
        // order of declaration does not matter
        assert!(!selects(
            &["**/*.md", "common/**"],
            &["common/**"],
            "common/README.md"
        ));
    }

    #[test]
    fn explanation_names_rule_pattern_and_path() {
        let rules = RuleSet::new([
            PathRule::new("osaka", ["common/**", "secondary/**"]).excluding(["**/*.md"])
        ])
        .unwrap();
        let changes = [
            Change::modified("secondary/a.yaml"),
            Change::modified("common/b.yaml"),
            Change::modified("common/notes.md"),
            Change::modified("primary/c.yaml"),
        ];
        let j = rules.judge(&changes);
        let o = j.outcome("osaka").unwrap();
        let got: Vec<(&str, String)> = o
            .matches
            .iter()
            .map(|m| (m.pattern.as_ref(), m.path.to_string()))
            .collect();
        assert_eq!(
            got,
            [
                ("secondary/**", "secondary/a.yaml".to_owned()),
                ("common/**", "common/b.yaml".to_owned())
            ]
        );
        assert_eq!(o.excluded.len(), 1);
        assert_eq!(o.excluded[0].pattern.as_ref(), "**/*.md");
        assert_eq!(o.excluded[0].path.to_string(), "common/notes.md");
        assert!(o.matches.iter().all(|m| m.rule.as_ref() == "osaka"));
    }

    #[test]
    fn an_exclude_alone_removes_nothing() {
        let rules =
            RuleSet::new([PathRule::new("r", ["common/**"]).excluding(["**/*.md"])]).unwrap();
        let changes = [Change::modified("docs/x.md")];
        let j = rules.judge(&changes);
        assert_eq!(j.outcome("r").unwrap(), RuleOutcome::default());
    }

    fn seed_rules() -> RuleSet {
        RuleSet::new([
            PathRule::new("tokyo", ["common/**", "primary/**"]),
            PathRule::new("osaka", ["common/**", "secondary/**"]),
        ])
        .unwrap()
    }

    #[test]
    fn rename_out_of_primary_into_common_triggers_both_regions() {
        let rules = seed_rules();
        let changes = [Change::renamed("primary/a.yaml", "common/a.yaml")];
        let j = rules.judge(&changes);
        assert!(j.outcome("tokyo").unwrap().selected());
        let osaka = j.outcome("osaka").unwrap();
        assert_eq!(osaka.matches.len(), 1);
        assert_eq!(osaka.matches[0].path.to_string(), "common/a.yaml");
        // tokyo saw both paths
        assert_eq!(j.outcome("tokyo").unwrap().matches.len(), 2);
    }

    #[test]
    fn rename_counts_old_and_new_path() {
        let rules = seed_rules();
        let changes = [Change::renamed("secondary/a.yaml", "docs/a.yaml")];
        let j = rules.judge(&changes);
        assert!(
            j.outcome("osaka").unwrap().selected(),
            "old path still concerns osaka"
        );
        assert!(!j.outcome("tokyo").unwrap().selected());
    }

    #[test]
    fn deleting_a_secondary_file_triggers_the_standby() {
        let rules = seed_rules();
        let changes = [Change::deleted("secondary/templates/dr.yaml")];
        let j = rules.judge(&changes);
        assert!(j.outcome("osaka").unwrap().selected());
        assert!(!j.outcome("tokyo").unwrap().selected());
    }

    #[test]
    fn non_utf8_paths_match_by_bytes_without_panic() {
        let rules = seed_rules();
        let path = RepoPath::from_bytes(b"common/caf\xe9.yaml");
        let changes = [Change {
            path,
            old_path: None,
            kind: ChangeKind::Added,
        }];
        let j = rules.judge(&changes);
        let m = &j.outcome("tokyo").unwrap().matches[0];
        assert_eq!(m.path.as_bytes(), b"common/caf\xe9.yaml");
        assert_eq!(m.path.to_string(), "common/caf\u{fffd}.yaml");
    }

    #[test]
    fn invalid_glob_error_names_rule_and_glob() {
        #[rustfmt::skip]
        let rows = [
            ("common/[",   "unclosed character class"),
            ("**.js",      "whole path component"),
            ("a/**b",      "whole path component"),
            ("a/***/b",    "whole path component"),
            ("/common/**", "leading '/'"),
            ("common/",    "ending in '/'"),
            ("",           "empty"),
            ("{a,b",       "unclosed alternate"),
        ];
        for (glob, reason) in rows {
            let err = RuleSet::new([PathRule::new("sync", [glob])]).unwrap_err();
            assert_eq!(err.rule, "sync");
            assert_eq!(err.glob, glob);
            let text = err.to_string();
            assert!(text.contains(reason), "{glob:?}: {text}");
            assert!(
                text.contains(&format!("{glob:?}")) && text.contains("\"sync\""),
                "{text}"
            );
        }
    }

    #[test]
    fn double_star_inside_classes_and_alternates_is_fine() {
        for ok in ["{**/a,b}", "[*][*]", "a/\\*\\*b", "**", "**/x", "x/**"] {
            assert!(compile_glob("r", ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn shared_globs_keep_each_rules_own_order() {
        let rules = RuleSet::new([
            PathRule::new("one", ["**/*.yaml", "common/**"]),
            PathRule::new("two", ["common/**", "**/*.yaml"]).excluding(["**/*.md"]),
            PathRule::new("three", ["docs/**"]).excluding(["**/*.md"]),
        ])
        .unwrap();
        let changes = [
            Change::modified("common/x.yaml"),
            Change::modified("docs/a.md"),
        ];
        let j = rules.judge(&changes);
        assert_eq!(
            j.outcome("one").unwrap().matches[0].pattern.as_ref(),
            "**/*.yaml"
        );
        assert_eq!(
            j.outcome("two").unwrap().matches[0].pattern.as_ref(),
            "common/**"
        );
        let three = j.outcome("three").unwrap();
        assert!(three.matches.is_empty());
        assert_eq!(three.excluded[0].pattern.as_ref(), "**/*.md");
        assert_eq!(three.excluded[0].path.to_string(), "docs/a.md");
        assert_eq!(
            rules.patterns("two").unwrap(),
            (vec!["common/**", "**/*.yaml"], vec!["**/*.md"])
        );
    }

    #[test]
    fn name_filter_reports_first_pattern() {
        let f = NameFilter::new("branches", &["main".into(), "release/*".into()]).unwrap();
        assert_eq!(
            f.first_match("release/2024").map(|p| p.as_ref()),
            Some("release/*")
        );
        assert_eq!(f.first_match("release/2024/hotfix"), None);
        assert_eq!(f.first_match("feature/x"), None);
    }
}
