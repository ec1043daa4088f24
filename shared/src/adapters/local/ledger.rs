//! [`FileLedger`]: the [`PushLedger`] as `mirrored.json` in a directory (a [`FileStore`]'s,
//! for the CLI and the demo), guarded by `mirrored.lock` with the store's discipline: every
//! operation takes an exclusive lock on the lock file, reads the file, and replaces it
//! atomically (a temporary file renamed over it) when it changed. The file maps each
//! standby repository to its refs and the commit the mirror last pushed to each; while a
//! push is in flight, a ref maps to the list of values it may hold (the owned value the
//! push replaces, then the new one):
//!
//! ```json
//! {"codecommit::ap-northeast-3://core-infra": {
//!   "refs/heads/main": "8b58…",
//!   "refs/heads/release/1.4": ["1c0f…", "9e2d…"]
//! }}
//! ```
//!
//! A file written before records could hold two values (every ref a string) reads as it
//! is: a record of one value is still written as a string.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::FileStore;
use crate::mirror::{OwnedRefs, Record};
use crate::ports::{PushLedger, ServiceError};
use crate::refs::{CommitId, RefName};

/// Repository → full ref name → its values, as the file holds them.
type Contents = BTreeMap<String, BTreeMap<String, Values>>;

/// One ref's recorded values: a string when there is one (the only form before records
/// could hold two), else a list.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
enum Values {
    One(String),
    Several(Vec<String>),
}

impl Values {
    fn of(values: &[CommitId]) -> Self {
        match values {
            [one] => Self::One(one.to_string()),
            several => Self::Several(several.iter().map(CommitId::to_string).collect()),
        }
    }

    fn as_slice(&self) -> &[String] {
        match self {
            Self::One(one) => std::slice::from_ref(one),
            Self::Several(several) => several,
        }
    }
}

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
        f: impl FnOnce(&mut BTreeMap<String, Values>) -> (T, bool),
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
    fn recorded(&self, refs: &[RefName]) -> Result<OwnedRefs, ServiceError> {
        let found = self.with(|mine| {
            let found: Vec<(RefName, Values)> = refs
                .iter()
                .filter_map(|r| mine.get(&r.full()).map(|v| (r.clone(), v.clone())))
                .collect();
            (found, false)
        })?;
        found
            .into_iter()
            .filter(|(_, values)| !values.as_slice().is_empty())
            .map(|(r, values)| {
                let commits = (values.as_slice().iter())
                    .map(|c| c.parse::<CommitId>())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| {
                        self.error(
                            &format!("{} of {} has no valid commit", r.full(), self.repository),
                            e,
                        )
                    })?;
                Ok((r, commits))
            })
            .collect()
    }

    fn record(&self, records: &[Record]) -> Result<(), ServiceError> {
        if records.is_empty() {
            return Ok(());
        }
        self.with(|mine| {
            for (r, values) in records {
                if values.is_empty() {
                    mine.remove(&r.full());
                } else {
                    mine.insert(r.full(), Values::of(values));
                }
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
                (main.clone(), vec![commit(1)]),
                (tag.clone(), vec![commit(2)]),
            ])
            .unwrap();
        ledger.record(&[(main.clone(), vec![commit(3)])]).unwrap();
        let got = ledger
            .recorded(&[main.clone(), tag.clone(), other.clone()])
            .unwrap();
        assert_eq!(
            got,
            OwnedRefs::from([
                (main.clone(), vec![commit(3)]),
                (tag.clone(), vec![commit(2)])
            ])
        );
        ledger
            .record(&[(tag.clone(), vec![]), (other.clone(), vec![])])
            .unwrap();
        assert_eq!(
            ledger.recorded(&[main.clone(), tag]).unwrap(),
            OwnedRefs::from([(main, vec![commit(3)])])
        );
    }

    #[test]
    fn each_repository_has_its_own_records_in_one_readable_file() {
        let dir = tempfile::TempDir::new().unwrap();
        let store = FileStore::open(dir.path()).unwrap();
        let (osaka, tokyo) = (store.ledger("osaka"), store.ledger("tokyo"));
        let main = r("refs/heads/main");
        osaka.record(&[(main.clone(), vec![commit(1)])]).unwrap();
        tokyo.record(&[(main.clone(), vec![commit(2)])]).unwrap();
        assert_eq!(
            osaka.recorded(std::slice::from_ref(&main)).unwrap()[&main],
            [commit(1)]
        );
        assert_eq!(
            tokyo.recorded(std::slice::from_ref(&main)).unwrap()[&main],
            [commit(2)]
        );
        let text = std::fs::read_to_string(dir.path().join("mirrored.json")).unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json["osaka"]["refs/heads/main"], commit(1).to_string());
        assert!(
            !dir.path().join("store.json").exists(),
            "the checkpoints' file is not touched"
        );
        tokyo.record(&[(main.clone(), vec![])]).unwrap();
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
                        ledger.record(&[(name, vec![commit(t * 10 + i)])]).unwrap();
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
    fn a_push_in_flight_records_two_values_and_a_settled_record_one_string() {
        let dir = tempfile::TempDir::new().unwrap();
        let ledger = FileLedger::open(dir.path(), "osaka").unwrap();
        let main = r("refs/heads/main");
        let json = || -> serde_json::Value {
            serde_json::from_slice(&std::fs::read(ledger.path()).unwrap()).unwrap()
        };
        ledger
            .record(&[(main.clone(), vec![commit(1), commit(2)])])
            .unwrap();
        assert_eq!(
            ledger.recorded(std::slice::from_ref(&main)).unwrap()[&main],
            [commit(1), commit(2)]
        );
        assert_eq!(
            json()["osaka"]["refs/heads/main"],
            serde_json::json!([commit(1).to_string(), commit(2).to_string()])
        );
        ledger.record(&[(main.clone(), vec![commit(2)])]).unwrap();
        assert_eq!(json()["osaka"]["refs/heads/main"], commit(2).to_string());
        assert_eq!(
            ledger.recorded(std::slice::from_ref(&main)).unwrap()[&main],
            [commit(2)]
        );
    }

    #[test]
    fn a_file_written_before_records_held_two_values_reads_as_it_is() {
        let dir = tempfile::TempDir::new().unwrap();
        let ledger = FileLedger::open(dir.path(), "osaka").unwrap();
        let old = format!(r#"{{"osaka": {{"refs/heads/main": "{}"}}}}"#, commit(1));
        std::fs::write(ledger.path(), old).unwrap();
        let (main, x) = (r("refs/heads/main"), r("refs/heads/x"));
        assert_eq!(
            ledger.recorded(std::slice::from_ref(&main)).unwrap(),
            OwnedRefs::from([(main.clone(), vec![commit(1)])])
        );
        ledger.record(&[(x.clone(), vec![commit(2)])]).unwrap();
        assert_eq!(ledger.recorded(&[main, x]).unwrap().len(), 2);
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(ledger.path()).unwrap()).unwrap();
        assert_eq!(json["osaka"]["refs/heads/main"], commit(1).to_string());
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
        let two = format!(
            r#"{{"osaka": {{"refs/heads/main": ["{}", "nope"]}}}}"#,
            commit(1)
        );
        std::fs::write(ledger.path(), two).unwrap();
        let e = ledger.recorded(&[r("refs/heads/main")]).unwrap_err();
        assert!(e.to_string().contains("refs/heads/main of osaka"), "{e}");
    }
}
