//! What a push changed: repository paths and the kind of each change.
//!
//! Paths are raw bytes, as git stores them: a path that is not UTF-8 is matched byte for
//! byte and shown lossily (never a panic). A rename or copy carries its old path too, and
//! both paths count when rules are judged; a deletion counts its (old) path.
//!
//! ```
//! use tozai::change::{Change, ChangeKind};
//! let c = Change::renamed("primary/a.yaml", "common/a.yaml");
//! let seen: Vec<String> = c.judged_paths().map(|p| p.to_string()).collect();
//! assert_eq!(seen, ["common/a.yaml", "primary/a.yaml"]);
//! assert_eq!(c.kind, ChangeKind::Renamed);
//! ```

use std::fmt;
use std::sync::Arc;

use serde::{Serialize, Serializer};

/// A path inside a repository, relative to its root, with no leading slash. Cheap to clone.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RepoPath(Arc<[u8]>);

impl RepoPath {
    /// A path from git's raw bytes.
    pub fn from_bytes(bytes: &[u8]) -> Self {
        Self(Arc::from(bytes))
    }

    /// The raw bytes, exactly as git has them.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The path as UTF-8 when it is valid UTF-8.
    pub fn to_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }

    /// The path as a `std::path::Path` for glob matching, without any conversion.
    #[cfg(unix)]
    pub fn as_path(&self) -> &std::path::Path {
        use std::os::unix::ffi::OsStrExt;
        std::path::Path::new(std::ffi::OsStr::from_bytes(&self.0))
    }
}

impl From<&str> for RepoPath {
    fn from(s: &str) -> Self {
        Self::from_bytes(s.as_bytes())
    }
}

impl fmt::Display for RepoPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&String::from_utf8_lossy(&self.0), f)
    }
}

impl fmt::Debug for RepoPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&String::from_utf8_lossy(&self.0), f)
    }
}

impl Serialize for RepoPath {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&String::from_utf8_lossy(&self.0))
    }
}

/// How a path changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    Added,
    Modified,
    Deleted,
    Renamed,
    Copied,
}

impl ChangeKind {
    /// The one-letter code `git diff --name-status` uses.
    pub fn letter(self) -> char {
        match self {
            Self::Added => 'A',
            Self::Modified => 'M',
            Self::Deleted => 'D',
            Self::Renamed => 'R',
            Self::Copied => 'C',
        }
    }

    /// Parses the names used in configs and JSON (`added`, `modified`, ...).
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "added" => Self::Added,
            "modified" => Self::Modified,
            "deleted" => Self::Deleted,
            "renamed" => Self::Renamed,
            "copied" => Self::Copied,
            _ => return None,
        })
    }
}

impl fmt::Display for ChangeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Added => "added",
            Self::Modified => "modified",
            Self::Deleted => "deleted",
            Self::Renamed => "renamed",
            Self::Copied => "copied",
        })
    }
}

/// One changed path. For a deletion `path` is the path that was removed; for a rename or
/// copy `path` is the new path and `old_path` the old one.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Change {
    pub path: RepoPath,
    pub old_path: Option<RepoPath>,
    #[serde(rename = "change")]
    pub kind: ChangeKind,
}

impl Change {
    pub fn new(kind: ChangeKind, path: impl Into<RepoPath>) -> Self {
        Self {
            path: path.into(),
            old_path: None,
            kind,
        }
    }
    pub fn added(path: &str) -> Self {
        Self::new(ChangeKind::Added, path)
    }
    pub fn modified(path: &str) -> Self {
        Self::new(ChangeKind::Modified, path)
    }
    pub fn deleted(path: &str) -> Self {
        Self::new(ChangeKind::Deleted, path)
    }
    pub fn renamed(old: &str, new: &str) -> Self {
        Self {
            path: new.into(),
            old_path: Some(old.into()),
            kind: ChangeKind::Renamed,
        }
    }

    /// Every path the rules judge for this change: the path, then the old path of a rename
    /// or copy.
    pub fn judged_paths(&self) -> impl Iterator<Item = &RepoPath> {
        std::iter::once(&self.path).chain(self.old_path.as_ref())
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.old_path {
            Some(old) => write!(f, "{} {} -> {}", self.kind.letter(), old, self.path),
            None => write!(f, "{} {}", self.kind.letter(), self.path),
        }
    }
}
