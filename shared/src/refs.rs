//! Names of git references and commits, checked when they enter tozai.
//!
//! tozai replicates and judges only branches (`refs/heads/*`) and tags (`refs/tags/*`).
//! A short name (`main`) means a branch. Names follow git's `check-ref-format` rules, so a
//! hostile name from an event (`../x`, control characters, `@{`) is refused, not used.
//!
//! ```
//! use tozai::refs::RefName;
//! let r: RefName = "refs/tags/v1.2".parse().unwrap();
//! assert!(r.is_tag());
//! assert_eq!(r.short(), "v1.2");
//! assert_eq!("main".parse::<RefName>().unwrap().full(), "refs/heads/main");
//! assert!("refs/heads/../evil".parse::<RefName>().is_err());
//! ```

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};

/// Why a reference or commit name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefError {
    #[error("invalid reference name {name:?}: {why}")]
    InvalidRef { name: String, why: &'static str },
    #[error(
        "reference {name:?} is neither a branch (refs/heads/...) nor a tag (refs/tags/...); tozai mirrors only those"
    )]
    NotBranchOrTag { name: String },
    #[error("invalid commit id {value:?}: expected 40 (SHA-1) or 64 (SHA-256) hexadecimal digits")]
    InvalidCommit { value: String },
}

/// A branch or a tag.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RefName {
    Branch(String),
    Tag(String),
}

/// The branch prefix under which `--force` keeps what it discards on a standby
/// (`refs/heads/tozai-backup/...`). A branch, not a namespace of its own: CodeCommit is not
/// documented to accept refs outside `refs/heads/` and `refs/tags/`.
pub const BACKUP_PREFIX: &str = "tozai-backup/";

impl RefName {
    /// A branch from its short name, checked.
    pub fn branch(short: &str) -> Result<Self, RefError> {
        check_component_chain(short, short)?;
        Ok(Self::Branch(short.to_owned()))
    }

    /// A tag from its short name, checked.
    pub fn tag(short: &str) -> Result<Self, RefError> {
        check_component_chain(short, short)?;
        Ok(Self::Tag(short.to_owned()))
    }

    /// The short name: `main`, `v1.2`.
    pub fn short(&self) -> &str {
        match self {
            Self::Branch(s) | Self::Tag(s) => s,
        }
    }

    /// The full name: `refs/heads/main`, `refs/tags/v1.2`.
    pub fn full(&self) -> String {
        match self {
            Self::Branch(s) => format!("refs/heads/{s}"),
            Self::Tag(s) => format!("refs/tags/{s}"),
        }
    }

    pub fn is_tag(&self) -> bool {
        matches!(self, Self::Tag(_))
    }

    /// True for a backup `tozai mirror --force` left on a standby (a branch under
    /// [`BACKUP_PREFIX`]): never mirrored, deleted or deployed by tozai.
    pub fn is_backup(&self) -> bool {
        matches!(self, Self::Branch(b) if b.starts_with(BACKUP_PREFIX))
    }

    /// `branch` or `tag`, as in CodeCommit's events.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Branch(_) => "branch",
            Self::Tag(_) => "tag",
        }
    }
}

impl FromStr for RefName {
    type Err = RefError;

    /// `refs/heads/X` and `refs/tags/X` are taken as they are; any other `refs/...` is
    /// refused; a name without `refs/` is a branch.
    fn from_str(name: &str) -> Result<Self, RefError> {
        if let Some(short) = name.strip_prefix("refs/heads/") {
            check_component_chain(name, short)?;
            Ok(Self::Branch(short.to_owned()))
        } else if let Some(short) = name.strip_prefix("refs/tags/") {
            check_component_chain(name, short)?;
            Ok(Self::Tag(short.to_owned()))
        } else if name.starts_with("refs/") {
            Err(RefError::NotBranchOrTag {
                name: name.to_owned(),
            })
        } else {
            Self::branch(name)
        }
    }
}

impl fmt::Display for RefName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full())
    }
}

impl Serialize for RefName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.full())
    }
}

/// git's `check-ref-format` rules, applied to the part after `refs/heads/` or `refs/tags/`.
fn check_component_chain(whole: &str, short: &str) -> Result<(), RefError> {
    let bad = |why| {
        Err(RefError::InvalidRef {
            name: whole.to_owned(),
            why,
        })
    };
    if short.is_empty() {
        return bad("the name is empty");
    }
    if short.len() > 1024 {
        return bad("longer than 1024 bytes");
    }
    if short.chars().any(|c| c.is_control() || c == ' ') {
        return bad("contains a space or a control character");
    }
    if short.contains(['~', '^', ':', '?', '*', '[', '\\']) {
        return bad("contains one of ~ ^ : ? * [ \\");
    }
    if short.contains("..") {
        return bad("contains '..'");
    }
    if short.contains("@{") || short == "@" {
        return bad("contains '@{' or is '@'");
    }
    if short.starts_with('/') || short.ends_with('/') || short.contains("//") {
        return bad("has an empty path component");
    }
    if short.ends_with('.') {
        return bad("ends with '.'");
    }
    for part in short.split('/') {
        if part.starts_with('.') {
            return bad("a path component starts with '.'");
        }
        if part.ends_with(".lock") {
            return bad("a path component ends with '.lock'");
        }
    }
    Ok(())
}

/// A full commit id in lowercase hexadecimal.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CommitId(String);

impl CommitId {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 12 digits, for reports.
    pub fn short(&self) -> &str {
        &self.0[..12]
    }
}

impl FromStr for CommitId {
    type Err = RefError;
    fn from_str(value: &str) -> Result<Self, RefError> {
        let ok = matches!(value.len(), 40 | 64) && value.bytes().all(|b| b.is_ascii_hexdigit());
        if !ok {
            return Err(RefError::InvalidCommit {
                value: value.chars().take(80).collect(),
            });
        }
        Ok(Self(value.to_ascii_lowercase()))
    }
}

impl fmt::Display for CommitId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for CommitId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ref_names_table() {
        let ok = [
            ("main", "refs/heads/main"),
            ("refs/heads/release/2024-04", "refs/heads/release/2024-04"),
            ("refs/tags/v1.0.0", "refs/tags/v1.0.0"),
            ("refs/heads/機能/東西", "refs/heads/機能/東西"),
        ];
        for (input, full) in ok {
            assert_eq!(input.parse::<RefName>().unwrap().full(), full, "{input}");
        }
        let bad = [
            "refs/heads/",
            "refs/heads/a..b",
            "refs/heads/a b",
            "refs/heads/a\u{7}",
            "refs/heads/.hidden",
            "refs/heads/x.lock",
            "refs/heads/x/",
            "refs/heads/a//b",
            "refs/heads/a@{1}",
            "refs/heads/a:b",
            "refs/remotes/origin/main",
            "refs/pull/1/head",
            "../../etc/passwd",
            "",
        ];
        for input in bad {
            assert!(
                input.parse::<RefName>().is_err(),
                "{input:?} should be refused"
            );
        }
    }

    #[test]
    fn hidden_refs_are_named_in_the_error() {
        let err = "refs/notes/commits".parse::<RefName>().unwrap_err();
        assert!(err.to_string().contains("refs/notes/commits"), "{err}");
    }

    #[test]
    fn commit_ids_are_full_hex() {
        let id: CommitId = "F485FCC95A795517F279D0A877227E51208B0DFC".parse().unwrap();
        assert_eq!(id.as_str(), "f485fcc95a795517f279d0a877227e51208b0dfc");
        assert_eq!(id.short(), "f485fcc95a79");
        for bad in [
            "",
            "f485fcc",
            "g485fcc95a795517f279d0a877227e51208b0dfc",
            "HEAD",
        ] {
            assert!(bad.parse::<CommitId>().is_err(), "{bad:?}");
        }
    }
}
