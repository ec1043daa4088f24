//! [`FileLedger`]: the [`PushLedger`] as `mirrored.json` in a directory (a [`FileStore`]'s,
//! for the CLI and the demo), guarded by `mirrored.lock` with the store's discipline: every
//! operation takes an exclusive lock on the lock file, reads the file, and replaces it
//! atomically (a temporary file renamed over it) when it changed. The file maps each
//! standby repository to its refs and the commit the mirror last pushed to each:
//!
//! ```json
//! {"codecommit::ap-northeast-3://core-infra": {"refs/heads/main": "8b58…"}}
//! ```

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

use super::FileStore;
use crate::mirror::RefMap;
use crate::ports::{PushLedger, ServiceError};
use crate::refs::{CommitId, RefName};

/// Repository → full ref name → commit, as the file holds it.
type Contents = BTreeMap<String, BTreeMap<String, String>>;

/// What the mirror pushed to one standby repository, in `mirrored.json` under a directory.
#[derive(Debug, Clone)]
pub struct FileLedger {
    dir: PathBuf,
    repository: String,
}

impl FileLedger {
    const FILE: &'static str = "mirrored.json";
    const LOCK: &'static str = "mirrored.lock";

    /// The ledger of the standby `repository` (as tozai names its location) in `dir`,
    /// created if missing.
    pub fn open(
        dir: impl Into<PathBuf>,
        repository: impl Into<String>,
    ) -> Result<Self, ServiceError> {
        let ledger = Self {
            dir: dir.into(),
            repository: repository.into(),
        };
        std::fs::create_dir_all(&ledger.dir)
            .map_err(|e| ledger.error("cannot create the directory", e))?;
        Ok(ledger)
    }

    /// The JSON file holding the records.
    pub fn path(&self) -> PathBuf {
        self.dir.join(Self::FILE)
    }

    fn error(
        &self,
        context: &str,
        e: impl std::error::Error + Send + Sync + 'static,
    ) -> ServiceError {
        ServiceError::new(
            format!("local ledger {}", self.path().display()),
            context.to_owned(),
            false,
        )
        .with_source(e)
    }

    /// Runs `f` on this repository's records under the lock; writes the file back when `f`
    /// says it changed them.
    fn with<T>(
        &self,
        f: impl FnOnce(&mut BTreeMap<String, String>) -> (T, bool),
    ) -> Result<T, ServiceError> {
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.dir.join(Self::LOCK))
            .map_err(|e| self.error("cannot open the lock file", e))?;
        lock.lock()
            .map_err(|e| self.error("cannot lock the lock file", e))?;
        let path = self.path();
        let mut all: Contents = match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|e| self.error("not a ledger file", e))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Contents::new(),
            Err(e) => return Err(self.error("cannot read it", e)),
        };
        let mine = all.entry(self.repository.clone()).or_default();
        let (out, changed) = f(mine);
        if mine.is_empty() {
            all.remove(&self.repository);
        }
        if changed {
            write_atomically(&self.dir, &path, &all)
                .map_err(|e| self.error("cannot write it", e))?;
        }
        drop(lock);
        Ok(out)
    }
}

fn write_atomically(dir: &Path, path: &Path, contents: &Contents) -> std::io::Result<()> {
    let tmp = dir.join(format!("{}.tmp", FileLedger::FILE));
    let mut text = serde_json::to_vec_pretty(contents)?;
    text.push(b'\n');
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

impl FileStore {
    /// The ledger of the standby `repository`, kept beside this store's checkpoints.
    pub fn ledger(&self, repository: impl Into<String>) -> FileLedger {
        FileLedger {
            dir: self.dir.clone(),
            repository: repository.into(),
        }
    }
}

impl PushLedger for FileLedger {
    fn recorded(&self, refs: &[RefName]) -> Result<RefMap, ServiceError> {
        let found = self.with(|mine| {
            let found: Vec<(RefName, String)> = refs
                .iter()
                .filter_map(|r| mine.get(&r.full()).map(|c| (r.clone(), c.clone())))
                .collect();
            (found, false)
        })?;
        found
            .into_iter()
            .map(|(r, c)| {
                let commit: CommitId = c.parse().map_err(|e| {
                    self.error(
                        &format!("{} of {} has no valid commit", r.full(), self.repository),
                        e,
                    )
                })?;
                Ok((r, commit))
            })
            .collect()
    }

    fn record(&self, changes: &[(RefName, Option<CommitId>)]) -> Result<(), ServiceError> {
        if changes.is_empty() {
            return Ok(());
        }
        self.with(|mine| {
            for (r, commit) in changes {
                match commit {
                    Some(c) => mine.insert(r.full(), c.to_string()),
                    None => mine.remove(&r.full()),
                };
            }
            ((), true)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit(n: u8) -> CommitId {
        format!("{n:02x}").repeat(20).parse().unwrap()
    }

    fn r(name: &str) -> RefName {
        name.parse().unwrap()
    }

    #[test]
    fn records_are_read_back_and_a_deletion_forgets_one() {
        let dir = tempfile::TempDir::new().unwrap();
        let ledger = FileLedger::open(dir.path(), "codecommit::ap-northeast-3://core").unwrap();
        let (main, tag, other) = (r("refs/heads/main"), r("refs/tags/v1"), r("refs/heads/x"));
        assert!(
            ledger
                .recorded(std::slice::from_ref(&main))
                .unwrap()
                .is_empty(),
            "nothing yet"
        );
        ledger
            .record(&[
                (main.clone(), Some(commit(1))),
                (tag.clone(), Some(commit(2))),
            ])
            .unwrap();
        ledger.record(&[(main.clone(), Some(commit(3)))]).unwrap();
        let got = ledger
            .recorded(&[main.clone(), tag.clone(), other.clone()])
            .unwrap();
        assert_eq!(
            got,
            RefMap::from([(main.clone(), commit(3)), (tag.clone(), commit(2))])
        );
        ledger
            .record(&[(tag.clone(), None), (other.clone(), None)])
            .unwrap();
        assert_eq!(
            ledger.recorded(&[main.clone(), tag]).unwrap(),
            RefMap::from([(main, commit(3))])
        );
    }

    #[test]
    fn each_repository_has_its_own_records_in_one_readable_file() {
        let dir = tempfile::TempDir::new().unwrap();
        let store = FileStore::open(dir.path()).unwrap();
        let (osaka, tokyo) = (store.ledger("osaka"), store.ledger("tokyo"));
        let main = r("refs/heads/main");
        osaka.record(&[(main.clone(), Some(commit(1)))]).unwrap();
        tokyo.record(&[(main.clone(), Some(commit(2)))]).unwrap();
        assert_eq!(
            osaka.recorded(std::slice::from_ref(&main)).unwrap()[&main],
            commit(1)
        );
        assert_eq!(
            tokyo.recorded(std::slice::from_ref(&main)).unwrap()[&main],
            commit(2)
        );
        let text = std::fs::read_to_string(dir.path().join("mirrored.json")).unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json["osaka"]["refs/heads/main"], commit(1).to_string());
        assert!(
            !dir.path().join("store.json").exists(),
            "the checkpoints' file is not touched"
        );
        tokyo.record(&[(main.clone(), None)]).unwrap();
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(osaka.path()).unwrap()).unwrap();
        assert!(
            json.get("tokyo").is_none(),
            "an empty repository is dropped: {json}"
        );
    }

    #[test]
    fn concurrent_records_from_threads_are_all_kept() {
        let dir = tempfile::TempDir::new().unwrap();
        let ledger = FileLedger::open(dir.path(), "osaka").unwrap();
        std::thread::scope(|s| {
            for t in 0..8u8 {
                let ledger = ledger.clone();
                s.spawn(move || {
                    for i in 0..10u8 {
                        let name = r(&format!("refs/heads/t{t}/{i}"));
                        ledger.record(&[(name, Some(commit(t * 10 + i)))]).unwrap();
                    }
                });
            }
        });
        let all: Vec<RefName> = (0..8)
            .flat_map(|t| (0..10).map(move |i| r(&format!("refs/heads/t{t}/{i}"))))
            .collect();
        assert_eq!(ledger.recorded(&all).unwrap().len(), 80);
    }

    #[test]
    fn a_corrupt_file_or_commit_is_an_error_naming_the_file() {
        let dir = tempfile::TempDir::new().unwrap();
        let ledger = FileLedger::open(dir.path(), "osaka").unwrap();
        std::fs::write(ledger.path(), "{not json").unwrap();
        let e = ledger.recorded(&[r("refs/heads/main")]).unwrap_err();
        assert!(e.to_string().contains("mirrored.json"), "{e}");
        assert!(!e.transient);
        std::fs::write(ledger.path(), r#"{"osaka": {"refs/heads/main": "nope"}}"#).unwrap();
        let e = ledger.recorded(&[r("refs/heads/main")]).unwrap_err();
        assert!(e.to_string().contains("refs/heads/main of osaka"), "{e}");
    }
}
