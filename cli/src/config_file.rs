//! Which `tozai.toml` a command reads when it is not given `-c FILE`: the nearest one in
//! the working directory or a parent directory, as git finds `.git`. (`-c FILE` is used
//! as it is, never searched for.)

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use tozai::text::quoted;

/// The config's file name.
pub const NAME: &str = "tozai.toml";

/// The nearest `tozai.toml` from the working directory up: `tozai.toml` when it is in the
/// working directory itself, otherwise its absolute path.
pub fn find() -> anyhow::Result<PathBuf> {
    let cwd = std::env::current_dir().context("cannot read the working directory")?;
    match nearest(&cwd) {
        Some(found) if found.parent() == Some(cwd.as_path()) => Ok(PathBuf::from(NAME)),
        Some(found) => Ok(found),
        None => bail!(
            "no {NAME} in {} or any parent directory (give -c FILE, or run tozai init)",
            quoted(&cwd.display().to_string())
        ),
    }
}

/// The first `dir/tozai.toml` that is a file, for `dir` and each of its parents.
fn nearest(dir: &Path) -> Option<PathBuf> {
    dir.ancestors()
        .map(|d| d.join(NAME))
        .find(|candidate| candidate.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nearest_wins() {
        let root = tempfile::tempdir().unwrap();
        let deep = root.path().join("a/b/c");
        std::fs::create_dir_all(&deep).unwrap();
        std::fs::write(root.path().join(NAME), "").unwrap();
        assert_eq!(nearest(&deep), Some(root.path().join(NAME)));
        std::fs::write(root.path().join("a").join(NAME), "").unwrap();
        assert_eq!(nearest(&deep), Some(root.path().join("a").join(NAME)));
        // a directory of that name is not a config
        std::fs::create_dir(deep.join(NAME)).unwrap();
        assert_eq!(nearest(&deep), Some(root.path().join("a").join(NAME)));
    }
}
