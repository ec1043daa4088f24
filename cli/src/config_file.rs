//! Which `tozai.toml` a command reads when it is not given `-c FILE`: the nearest one in
//! the working directory or a parent directory, as git finds `.git`. (`-c FILE` is used
//! as it is, never searched for.)
//!
//! The search stops at the first `tozai.toml` that is there in any form: a directory, a
//! dangling symlink, a symlink loop or an unreadable file of that name is the config
//! found, and loading it says what is wrong with it (exit 2, naming it). Climbing past it
//! would silently read a parent's config, `~/tozai.toml` say, with another standby.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use tozai::text::quoted;

/// The config's file name.
pub const NAME: &str = "tozai.toml";

/// `-c FILE`, for every command that reads a config (but `mirror`, whose `-c` competes
/// with `--from`/`--to`): without it, `main` puts the nearest `tozai.toml` here ([`find`]).
#[derive(clap::Args)]
pub struct ConfigArg {
    /// The config file [default: the nearest tozai.toml, here or in a parent directory].
    #[arg(
        id = "config",
        short = 'c',
        long = "config",
        value_name = "FILE",
        default_value = NAME,
        hide_default_value = true
    )]
    pub path: PathBuf,
}

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

/// The first `dir/tozai.toml` that exists in any form (its symlink metadata reads, or
/// fails for a reason other than "not found"), for `dir` and each of its parents.
pub fn nearest(dir: &Path) -> Option<PathBuf> {
    dir.ancestors().map(|d| d.join(NAME)).find(|candidate| {
        !matches!(std::fs::symlink_metadata(candidate),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound)
    })
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
    }

    /// A `tozai.toml` that is not a readable file stops the search: loading it says
    /// what is wrong, rather than a parent's config being read in its place.
    #[test]
    fn the_search_stops_at_a_config_that_is_not_a_file() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join(NAME), "").unwrap();
        let here = |name: &str| {
            let dir = root.path().join(name);
            std::fs::create_dir(&dir).unwrap();
            dir
        };
        let directory = here("directory");
        std::fs::create_dir(directory.join(NAME)).unwrap();
        let dangling = here("dangling");
        std::os::unix::fs::symlink("gone.toml", dangling.join(NAME)).unwrap();
        let looping = here("loop");
        std::os::unix::fs::symlink(NAME, looping.join(NAME)).unwrap();
        for dir in [directory, dangling, looping] {
            assert_eq!(nearest(&dir), Some(dir.join(NAME)), "{}", dir.display());
        }
    }
}
