//! Invariants shared by tozai's fuzz targets.

use globset::GlobMatcher;
use tozai::change::RepoPath;
use tozai::rules::compile_glob;

/// An error message a person or a log pipeline reads: not empty, and no raw control
/// character but newline, so a hostile input can neither forge log lines nor drive a
/// terminal.
pub fn check_message(what: &str, message: &str) {
    assert!(!message.trim().is_empty(), "{what}: empty error message");
    if let Some(c) = message.chars().find(|&c| c.is_control() && c != '\n') {
        panic!("{what}: error message contains the raw control character {c:?}: {message:?}");
    }
}

/// Each pattern compiled on its own (no GlobSet), as the reference for rule sets and
/// name filters, which compile many patterns together.
pub fn matchers<'a>(patterns: impl IntoIterator<Item = &'a str>) -> Vec<GlobMatcher> {
    patterns
        .into_iter()
        .map(|p| {
            compile_glob("fuzz", p)
                .unwrap_or_else(|e| panic!("{p:?} was accepted in a set but not alone: {e}"))
                .compile_matcher()
        })
        .collect()
}

/// The position of the first pattern, in order, that matches the path.
pub fn first_match(matchers: &[GlobMatcher], path: &RepoPath) -> Option<usize> {
    matchers.iter().position(|m| m.is_match(path.as_path()))
}

/// What a rule should make of one path, by the README's definition: selected when an
/// include matches and no exclude does. Returns (first include, first exclude) positions.
pub fn reference_judgement(
    include: &[GlobMatcher],
    exclude: &[GlobMatcher],
    path: &RepoPath,
) -> (Option<usize>, Option<usize>) {
    (first_match(include, path), first_match(exclude, path))
}

/// A path git can store in a tree: relative, no empty, `.` or `..` component, no NUL.
/// (Only such paths reach the rules. globset's `GlobSet` and a lone `GlobMatcher` disagree
/// on a trailing `..` component: `*/..` matches `a/..` alone but not in a set.)
pub fn is_git_path(path: &str) -> bool {
    !path.is_empty()
        && !path.contains('\0')
        && path
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
}

/// Candidate paths derived from pattern texts: the pattern itself, with its wildcards
/// replaced by plain characters, and a few neighbours.
pub fn paths_from_pattern(pattern: &str, out: &mut Vec<String>) {
    out.push(pattern.to_owned());
    let plain: String = pattern
        .chars()
        .filter(|c| !matches!(c, '{' | '}' | '[' | ']' | '\\'))
        .map(|c| match c {
            '*' | '?' => 'a',
            ',' => '/',
            c => c,
        })
        .collect();
    out.push(plain.replace("aa/", "a/b/"));
    out.push(format!("{plain}/x"));
    out.push(format!("x/{plain}"));
    out.push(plain);
}
