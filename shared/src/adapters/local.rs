//! Local stand-ins for the judges' AWS ports, for `tozai demo` (and later commands that
//! reuse its state): no AWS account needed, the same semantics.
//!
//! - [`FileStore`]: the [`CheckpointStore`] as one JSON file under a directory, every
//!   operation under an exclusive lock file, with DynamoDB's conditional-write semantics:
//!   every save is a compare-and-swap on the version read (a first save loses to one
//!   already made, a save naming a stale version loses), and a checkpoint carries its
//!   claimed start (commit, claim time, lease) and last run id as the table's item does;
//! - [`RecordingStarter`]: the [`Starter`] that appends each start as a JSON line to a
//!   file and, when configured, runs a command (`sh -c CMD`) for it; like CodePipeline's
//!   `clientRequestToken`, a start whose token was already recorded returns that run's id
//!   and starts nothing;
//! - [`MemoryBus`]: the [`EventSink`] that keeps what was published, for a dispatcher to
//!   deliver like EventBridge would ([`tozai_event`] builds the envelope).
//!
//! The work is synchronous (small files, a local command): these adapters are for one
//! machine, not for a Lambda.

pub mod ledger;
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::git_auth::civil_from_days;
use crate::ports::{
    Checkpoint, CheckpointStore, EventSink, PendingStart, ServiceError, StartRequest, Starter,
};
use crate::refs::{CommitId, RefName};

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `time` as RFC 3339 in UTC, to the second (`2024-04-01T00:00:00Z`), as EventBridge
/// writes an event's `time`.
pub fn rfc3339(time: SystemTime) -> String {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

// ---------------------------------------------------------------- the checkpoint store

/// A consumer's checkpoint as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct StoredCheckpoint {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    commit: Option<String>,
    version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pending: Option<StoredPending>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    run_id: Option<String>,
    updated_at_ms: u64,
}

/// A claimed start as stored (times in Unix seconds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct StoredPending {
    commit: String,
    claimed_at: u64,
    lease_until: u64,
}

/// Everything a [`FileStore`] holds: the file's JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct StoreContents {
    /// consumer → repository → full ref name → checkpoint.
    #[serde(default)]
    checkpoints: BTreeMap<String, BTreeMap<String, BTreeMap<String, StoredCheckpoint>>>,
}

/// The checkpoint store as `store.json` in a directory, guarded by `store.lock`.
///
/// Every operation takes an exclusive lock on the lock file (so processes and threads
/// sharing the directory never lose each other's writes), reads the file, and replaces it
/// atomically (a temporary file renamed over it) when it changed.
#[derive(Debug, Clone)]
pub struct FileStore {
    dir: PathBuf,
}

impl FileStore {
    /// The file's name in the directory.
    const FILE: &'static str = "store.json";
    const LOCK: &'static str = "store.lock";

    /// A store in `dir`, created if missing.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, ServiceError> {
        let dir = dir.into();
        let store = Self { dir };
        std::fs::create_dir_all(&store.dir)
            .map_err(|e| store.error("cannot create the directory", e))?;
        Ok(store)
    }

    /// The JSON file holding the checkpoints.
    pub fn path(&self) -> PathBuf {
        self.dir.join(Self::FILE)
    }

    fn error(
        &self,
        context: &str,
        e: impl std::error::Error + Send + Sync + 'static,
    ) -> ServiceError {
        ServiceError::new(
            format!("local store {}", self.dir.display()),
            context.to_owned(),
            false,
        )
        .with_source(e)
    }

    /// Everything the store holds, read under the lock.
    #[cfg(test)]
    fn contents(&self) -> Result<StoreContents, ServiceError> {
        self.with(|state| (state.clone(), false))
    }

    /// Runs `f` on the state under the lock; writes the state back when `f` says it
    /// changed it.
    fn with<T>(&self, f: impl FnOnce(&mut StoreContents) -> (T, bool)) -> Result<T, ServiceError> {
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.dir.join(Self::LOCK))
            .map_err(|e| self.error("cannot open the lock file", e))?;
        lock.lock()
            .map_err(|e| self.error("cannot lock the lock file", e))?;
        let path = self.path();
        let mut state = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| self.error(&format!("{} is not a store file", path.display()), e))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => StoreContents::default(),
            Err(e) => return Err(self.error(&format!("cannot read {}", path.display()), e)),
        };
        let (out, changed) = f(&mut state);
        if changed {
            let tmp = self.dir.join(format!("{}.tmp", Self::FILE));
            let mut text = serde_json::to_vec_pretty(&state)
                .map_err(|e| self.error("cannot encode the store", e))?;
            text.push(b'\n');
            std::fs::write(&tmp, text)
                .map_err(|e| self.error(&format!("cannot write {}", tmp.display()), e))?;
            std::fs::rename(&tmp, &path)
                .map_err(|e| self.error(&format!("cannot replace {}", path.display()), e))?;
        }
        drop(lock);
        Ok(out)
    }
}

impl FileStore {
    /// A stored checkpoint as a [`Checkpoint`]; an invalid commit is an error naming the
    /// checkpoint, the field and the value.
    fn parsed(
        &self,
        key: (&str, &str, &RefName),
        c: StoredCheckpoint,
    ) -> Result<Checkpoint, ServiceError> {
        let (consumer, repository, reference) = key;
        let commit = |field: &str, text: &str| {
            text.parse::<CommitId>().map_err(|e| {
                self.error(
                    &format!(
                        "checkpoint {consumer} of {repository} {reference}: {field} {text:?} is not a commit id"
                    ),
                    e,
                )
            })
        };
        Ok(Checkpoint {
            commit: c
                .commit
                .as_deref()
                .map(|t| commit("commit", t))
                .transpose()?,
            version: c.version,
            pending: match c.pending {
                None => None,
                Some(p) => Some(PendingStart {
                    commit: commit("pending.commit", &p.commit)?,
                    claimed_at: p.claimed_at,
                    lease_until: p.lease_until,
                }),
            },
            run_id: c.run_id,
        })
    }
}

impl CheckpointStore for FileStore {
    async fn load(
        &self,
        consumer: &str,
        repository: &str,
        reference: &RefName,
    ) -> Result<Option<Checkpoint>, ServiceError> {
        let stored = self.with(|s| {
            let found = s
                .checkpoints
                .get(consumer)
                .and_then(|r| r.get(repository))
                .and_then(|r| r.get(&reference.full()))
                .cloned();
            (found, false)
        })?;
        stored
            .map(|c| self.parsed((consumer, repository, reference), c))
            .transpose()
    }

    async fn save(
        &self,
        consumer: &str,
        repository: &str,
        reference: &RefName,
        next: &Checkpoint,
        expected: Option<&Checkpoint>,
    ) -> Result<bool, ServiceError> {
        self.with(|s| {
            let slot = s
                .checkpoints
                .entry(consumer.to_owned())
                .or_default()
                .entry(repository.to_owned())
                .or_default();
            let current = slot.get(&reference.full());
            // DynamoDB's conditions: `attribute_not_exists(pk)`, or `version = :expected`.
            let holds = match (current, expected) {
                (None, None) => true,
                (Some(c), Some(e)) => c.version == e.version,
                _ => false,
            };
            if !holds {
                return (false, false);
            }
            slot.insert(
                reference.full(),
                StoredCheckpoint {
                    commit: next.commit.as_ref().map(|c| c.to_string()),
                    version: expected.map_or(1, |e| e.version + 1),
                    pending: next.pending.as_ref().map(|p| StoredPending {
                        commit: p.commit.to_string(),
                        claimed_at: p.claimed_at,
                        lease_until: p.lease_until,
                    }),
                    run_id: next.run_id.clone(),
                    updated_at_ms: now_ms(),
                },
            );
            (true, true)
        })
    }
}

// ---------------------------------------------------------------- the starter

/// One start as [`RecordingStarter`] writes it: a line of its file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedStart {
    pub run_id: String,
    pub target: String,
    /// `codepipeline` or `codebuild`.
    pub kind: String,
    /// The pipeline or project.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_action: Option<String>,
    pub commit: String,
    #[serde(rename = "ref")]
    pub reference: String,
    pub token: String,
    pub variables: BTreeMap<String, String>,
    /// When it started (milliseconds since the Unix epoch).
    pub at_ms: u64,
}

/// The longest run id taken from a command's output.
const RUN_ID_MAX: usize = 200;

/// Records each start as a JSON line in a file and, when configured, runs a command.
///
/// The command runs as `sh -c CMD` with the pipeline variables in its environment
/// (`TOZAI_COMMIT_ID`, `TOZAI_REF`, `TOZAI_MATCHED_RULES`, `TOZAI_MATCHED_PATHS`) and
/// `TOZAI_TARGET`, `TOZAI_KIND`, `TOZAI_PIPELINE` (the pipeline or project), `TOZAI_TOKEN`;
/// the run id is the last line it prints on standard output (`local-N` when it prints
/// nothing). A command that fails is a failed start: nothing is recorded.
#[derive(Debug, Clone)]
pub struct RecordingStarter {
    file: PathBuf,
    command: Option<String>,
}

impl RecordingStarter {
    /// Appends to `file` (created when missing, with its directory).
    pub fn new(file: impl Into<PathBuf>) -> Self {
        Self {
            file: file.into(),
            command: None,
        }
    }

    /// Also runs `command` (`sh -c`) for each start.
    pub fn with_command(mut self, command: impl Into<String>) -> Self {
        self.command = Some(command.into());
        self
    }

    /// The file the starts are recorded in.
    pub fn path(&self) -> &Path {
        &self.file
    }

    fn error(&self, context: String, transient: bool) -> ServiceError {
        ServiceError::new(
            format!("local starter {}", self.file.display()),
            context,
            transient,
        )
    }

    fn open(&self) -> Result<File, ServiceError> {
        if let Some(parent) = self.file.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                self.error(format!("cannot create {}", parent.display()), false)
                    .with_source(e)
            })?;
        }
        OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&self.file)
            .map_err(|e| {
                self.error("cannot open the file".into(), false)
                    .with_source(e)
            })
    }

    fn parse(&self, text: &str) -> Result<Vec<RecordedStart>, ServiceError> {
        text.lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(n, line)| {
                serde_json::from_str(line).map_err(|e| {
                    self.error(format!("line {} is not a recorded start", n + 1), false)
                        .with_source(e)
                })
            })
            .collect()
    }

    /// Every start recorded so far, in order (none when the file does not exist).
    pub fn recorded(&self) -> Result<Vec<RecordedStart>, ServiceError> {
        match std::fs::read_to_string(&self.file) {
            Ok(text) => self.parse(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(self
                .error("cannot read the file".into(), false)
                .with_source(e)),
        }
    }

    fn run_command(&self, command: &str, r: &StartRequest) -> Result<Option<String>, ServiceError> {
        let shown = format!("command `{command}`");
        let mut cmd = std::process::Command::new("sh");
        cmd.arg("-c")
            .arg(command)
            .stdin(std::process::Stdio::null())
            .envs(r.variables.iter().map(|(k, v)| (k, v)))
            .env("TOZAI_TARGET", &r.target)
            .env("TOZAI_KIND", r.kind.label())
            .env("TOZAI_PIPELINE", &r.name)
            .env("TOZAI_TOKEN", &r.token);
        let out = cmd.output().map_err(|e| {
            self.error(format!("cannot run {shown}"), false)
                .with_source(e)
        })?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            return Err(self.error(
                format!("{shown} failed ({}): {}", out.status, tail.join(" / ")),
                false,
            ));
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        Ok(stdout
            .lines()
            .map(str::trim)
            .rfind(|l| !l.is_empty())
            .map(|l| l.chars().take(RUN_ID_MAX).collect()))
    }

    fn start_now(&self, r: &StartRequest) -> Result<String, ServiceError> {
        let mut file = self.open()?;
        file.lock().map_err(|e| {
            self.error("cannot lock the file".into(), false)
                .with_source(e)
        })?;
        let mut text = String::new();
        file.read_to_string(&mut text).map_err(|e| {
            self.error("cannot read the file".into(), false)
                .with_source(e)
        })?;
        let recorded = self.parse(&text)?;
        // The same token is the same start (CodePipeline's `clientRequestToken`,
        // CodeBuild's `idempotencyToken`): its run, not a second one.
        if let Some(done) = recorded.iter().find(|s| s.token == r.token) {
            return Ok(done.run_id.clone());
        }
        let run_id = match &self.command {
            Some(command) => self.run_command(command, r)?,
            None => None,
        }
        .unwrap_or_else(|| format!("local-{}", recorded.len() + 1));
        let line = RecordedStart {
            run_id: run_id.clone(),
            target: r.target.clone(),
            kind: r.kind.label().to_owned(),
            name: r.name.clone(),
            source_action: r.source_action.clone(),
            commit: r.commit.to_string(),
            reference: r.reference.full(),
            token: r.token.clone(),
            variables: r.variables.iter().cloned().collect(),
            at_ms: now_ms(),
        };
        let mut bytes = serde_json::to_vec(&line).map_err(|e| {
            self.error("cannot encode the start".into(), false)
                .with_source(e)
        })?;
        bytes.push(b'\n');
        file.write_all(&bytes)
            .and_then(|()| file.flush())
            .map_err(|e| {
                self.error("cannot append the start".into(), false)
                    .with_source(e)
            })?;
        Ok(run_id)
    }
}

impl Starter for RecordingStarter {
    async fn start(&self, request: &StartRequest) -> Result<String, ServiceError> {
        self.start_now(request)
    }

    async fn find_run(
        &self,
        request: &StartRequest,
        since: u64,
    ) -> Result<Option<String>, ServiceError> {
        Ok(self
            .recorded()?
            .into_iter()
            .rfind(|s| {
                s.target == request.target
                    && s.kind == request.kind.label()
                    && s.name == request.name
                    && s.commit == request.commit.as_str()
                    && s.reference == request.reference.full()
                    && s.at_ms >= since * 1000
            })
            .map(|s| s.run_id))
    }
}

// ---------------------------------------------------------------- the event bus

/// Keeps each published event (detail-type, detail) until a dispatcher takes it.
#[derive(Debug, Default)]
pub struct MemoryBus {
    events: Mutex<Vec<(String, serde_json::Value)>>,
}

impl MemoryBus {
    pub fn new() -> Self {
        Self::default()
    }

    /// Removes and returns what was published since the last call, in order.
    pub fn take(&self) -> Vec<(String, serde_json::Value)> {
        std::mem::take(&mut *self.events.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// What is waiting to be taken, in order.
    #[cfg(test)]
    fn pending(&self) -> Vec<(String, serde_json::Value)> {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl EventSink for MemoryBus {
    async fn publish(
        &self,
        detail_type: &str,
        detail: &serde_json::Value,
    ) -> Result<(), ServiceError> {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((detail_type.to_owned(), detail.clone()));
        Ok(())
    }
}

/// One of tozai's own events (source `tozai`) as EventBridge delivers it to a target.
pub fn tozai_event(
    detail_type: &str,
    detail: &serde_json::Value,
    aws_region: &str,
    account: &str,
    id: &str,
) -> serde_json::Value {
    serde_json::json!({
        "version": "0",
        "id": id,
        "detail-type": detail_type,
        "source": crate::event::TOZAI_SOURCE,
        "account": account,
        "time": rfc3339(SystemTime::now()),
        "region": aws_region,
        "resources": [],
        "detail": detail,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::ports::RunKind;

    fn commit(n: u32) -> CommitId {
        format!("{n:040x}").parse().unwrap()
    }

    fn main() -> RefName {
        "refs/heads/main".parse().unwrap()
    }

    fn store() -> (tempfile::TempDir, FileStore) {
        let tmp = tempfile::TempDir::new().unwrap();
        let store = FileStore::open(tmp.path().join("state")).unwrap();
        (tmp, store)
    }

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_711_929_600 + 3 * 3600 + 4 * 60 + 5);
        assert_eq!(rfc3339(t), "2024-04-01T03:04:05Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00Z");
    }

    /// A checkpoint at `commit` with nothing pending.
    fn at(n: u32) -> Checkpoint {
        Checkpoint::at(commit(n))
    }

    /// A checkpoint still at `last` with a start of `pending` claimed at 1,000 s.
    fn claimed(last: Option<u32>, pending: u32, run_id: Option<&str>) -> Checkpoint {
        Checkpoint {
            commit: last.map(commit),
            version: 0,
            pending: Some(PendingStart {
                commit: commit(pending),
                claimed_at: 1_000,
                lease_until: 1_120,
            }),
            run_id: run_id.map(str::to_owned),
        }
    }

    /// `checkpoint` as the store reads it back at `version`.
    fn stored(checkpoint: Checkpoint, version: u64) -> Checkpoint {
        Checkpoint {
            version,
            ..checkpoint
        }
    }

    #[tokio::test]
    async fn a_save_is_a_compare_and_swap_on_the_version_read() {
        let (_tmp, s) = store();
        assert_eq!(s.load("sync", "core-infra", &main()).await.unwrap(), None);
        assert!(
            s.save("sync", "core-infra", &main(), &at(1), None)
                .await
                .unwrap()
        );
        // Another invocation also saw no checkpoint: its first save loses.
        assert!(
            !s.save("sync", "core-infra", &main(), &at(2), None)
                .await
                .unwrap()
        );
        let v1 = s
            .load("sync", "core-infra", &main())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(v1, stored(at(1), 1));
        assert!(
            s.save("sync", "core-infra", &main(), &at(3), Some(&v1))
                .await
                .unwrap()
        );
        // v1 is stale now, whatever it would write.
        assert!(
            !s.save("sync", "core-infra", &main(), &at(4), Some(&v1))
                .await
                .unwrap()
        );
        let v2 = s
            .load("sync", "core-infra", &main())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            v2,
            stored(at(3), 2),
            "the version is the store's: 1, then 2"
        );
        // The version `next` carries is ignored: the store sets it from `expected`.
        let claiming_v9 = Checkpoint {
            version: 9,
            ..at(5)
        };
        assert!(
            s.save("sync", "core-infra", &main(), &claiming_v9, Some(&v2))
                .await
                .unwrap()
        );
        let v3 = s
            .load("sync", "core-infra", &main())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(v3, stored(at(5), 3));
        // Naming a version of a checkpoint that does not exist loses too.
        assert!(
            !s.save("target:x", "core-infra", &main(), &at(6), Some(&v2))
                .await
                .unwrap()
        );
        assert_eq!(
            s.load("target:x", "core-infra", &main()).await.unwrap(),
            None
        );
        // Consumers, repositories and refs are separate keys.
        let tag: RefName = "refs/tags/v1".parse().unwrap();
        assert_eq!(s.load("sync", "core-infra", &tag).await.unwrap(), None);
        assert_eq!(s.load("sync", "other", &main()).await.unwrap(), None);
        assert_eq!(
            s.load("target:tokyo-core", "core-infra", &main())
                .await
                .unwrap(),
            None
        );
    }

    #[tokio::test]
    async fn a_claimed_start_and_the_last_run_id_round_trip() {
        let (tmp, s) = store();
        let t = "target:tokyo-core";
        // A first claim: no commit judged yet, a start pending.
        let first = claimed(None, 1, None);
        assert!(
            s.save(t, "core-infra", &main(), &first, None)
                .await
                .unwrap()
        );
        let v1 = s.load(t, "core-infra", &main()).await.unwrap().unwrap();
        assert_eq!(v1, stored(first, 1));
        // Recorded: the head moves, the claim goes, the run id stays.
        let recorded = Checkpoint {
            run_id: Some("exec-1".into()),
            ..at(1)
        };
        assert!(
            s.save(t, "core-infra", &main(), &recorded, Some(&v1))
                .await
                .unwrap()
        );
        let v2 = s.load(t, "core-infra", &main()).await.unwrap().unwrap();
        assert_eq!(v2, stored(recorded, 2));
        // The next claim keeps both the last head and the last run id.
        let next = claimed(Some(1), 2, Some("exec-1"));
        assert!(
            s.save(t, "core-infra", &main(), &next, Some(&v2))
                .await
                .unwrap()
        );
        let v3 = s.load(t, "core-infra", &main()).await.unwrap().unwrap();
        assert_eq!(v3, stored(next, 3));

        // In the file, readable JSON; read back by another store on the directory.
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(s.path()).unwrap()).unwrap();
        let item = &json["checkpoints"][t]["core-infra"]["refs/heads/main"];
        assert_eq!(item["commit"], commit(1).as_str());
        assert_eq!(item["version"], 3);
        assert_eq!(item["run_id"], "exec-1");
        assert_eq!(
            item["pending"],
            serde_json::json!({"commit": commit(2).as_str(), "claimed_at": 1000, "lease_until": 1120})
        );
        let again = FileStore::open(tmp.path().join("state")).unwrap();
        assert_eq!(
            again.load(t, "core-infra", &main()).await.unwrap(),
            Some(v3)
        );
        // Nothing pending, no run: the fields are left out, not written as null.
        s.save("sync", "core-infra", &main(), &at(4), None)
            .await
            .unwrap();
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(s.path()).unwrap()).unwrap();
        let sync = json["checkpoints"]["sync"]["core-infra"]["refs/heads/main"]
            .as_object()
            .unwrap();
        let mut fields: Vec<&str> = sync.keys().map(String::as_str).collect();
        fields.sort();
        assert_eq!(fields, ["commit", "updated_at_ms", "version"]);
    }

    /// Threads racing to save from the same read: exactly one wins each round, and the
    /// losers' writes never show.
    #[test]
    fn concurrent_saves_from_one_version_have_exactly_one_winner() {
        const THREADS: u32 = 8;
        let (_tmp, s) = store();
        let race = |expected: Option<Checkpoint>, round: u32| -> Vec<u32> {
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(THREADS as usize));
            let threads: Vec<_> = (0..THREADS)
                .map(|n| {
                    let (s, expected, barrier) = (s.clone(), expected.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        let rt = tokio::runtime::Builder::new_current_thread()
                            .build()
                            .unwrap();
                        let next = claimed(None, round * 100 + n, Some(&format!("run-{n}")));
                        barrier.wait();
                        let won = rt
                            .block_on(s.save(
                                "target:t",
                                "core-infra",
                                &main(),
                                &next,
                                expected.as_ref(),
                            ))
                            .unwrap();
                        won.then_some(n)
                    })
                })
                .collect();
            threads
                .into_iter()
                .filter_map(|t| t.join().unwrap())
                .collect()
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let mut expected = None;
        for round in 1..=3 {
            let winners = race(expected.clone(), round);
            assert_eq!(winners.len(), 1, "round {round}: {winners:?}");
            let now = rt
                .block_on(s.load("target:t", "core-infra", &main()))
                .unwrap()
                .unwrap();
            let n = winners[0];
            assert_eq!(
                now,
                stored(
                    claimed(None, round * 100 + n, Some(&format!("run-{n}"))),
                    u64::from(round)
                ),
                "round {round}: the winner's write, and only it"
            );
            expected = Some(now);
        }
    }

    /// Regression: a store written before the checkpoints carried their claims (a
    /// `covered_from` per checkpoint, claims under `starts`) still loads; its claims are
    /// dropped at the next save (each judge claims again on its ref).
    #[tokio::test]
    async fn a_store_file_of_the_previous_format_still_loads() {
        let (_tmp, s) = store();
        let old = serde_json::json!({
            "checkpoints": {
                "sync": {"core-infra": {"refs/heads/main": {
                    "commit": commit(2).as_str(),
                    "version": 4,
                    "covered_from": commit(1).as_str(),
                    "updated_at_ms": 1_700_000_000_000u64,
                }}},
                "target:tokyo-core": {"core-infra": {"refs/heads/main": {
                    "commit": commit(2).as_str(),
                    "version": 1,
                    "updated_at_ms": 1_700_000_000_000u64,
                }}},
            },
            "starts": {"tokyo-core": {
                commit(2).as_str(): {"state": "started", "run_id": "exec-1", "started_at_ms": 1},
                commit(3).as_str(): {"state": "starting", "lease_until_ms": 2},
            }},
        });
        std::fs::write(s.path(), serde_json::to_vec_pretty(&old).unwrap()).unwrap();
        let sync = s
            .load("sync", "core-infra", &main())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(sync, stored(at(2), 4));
        let target = s
            .load("target:tokyo-core", "core-infra", &main())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(target, stored(at(2), 1));
        // Saving from what was read works, and writes the current format.
        assert!(
            s.save("sync", "core-infra", &main(), &at(3), Some(&sync))
                .await
                .unwrap()
        );
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(s.path()).unwrap()).unwrap();
        assert!(json.get("starts").is_none(), "{json}");
        assert!(
            json["checkpoints"]["sync"]["core-infra"]["refs/heads/main"]
                .get("covered_from")
                .is_none()
        );
        assert_eq!(
            s.contents().unwrap().checkpoints["target:tokyo-core"]["core-infra"]["refs/heads/main"]
                .version,
            1,
            "the other checkpoints are kept"
        );
    }

    #[tokio::test]
    async fn a_corrupt_store_file_is_an_error_naming_it() {
        let (_tmp, s) = store();
        std::fs::write(s.path(), "{not json").unwrap();
        let err = s.load("sync", "core-infra", &main()).await.unwrap_err();
        let shown = format!("{err}");
        assert!(shown.contains("store.json"), "{shown}");
        assert!(!err.transient);
    }

    #[tokio::test]
    async fn an_invalid_commit_in_the_file_is_an_error_naming_the_checkpoint_and_value() {
        let (_tmp, s) = store();
        for (field, value, item) in [
            (
                "commit",
                "not-a-commit",
                serde_json::json!({"commit": "not-a-commit", "version": 1, "updated_at_ms": 0}),
            ),
            (
                "pending.commit",
                "zz",
                serde_json::json!({"version": 1, "updated_at_ms": 0,
                    "pending": {"commit": "zz", "claimed_at": 1, "lease_until": 2}}),
            ),
        ] {
            let file = serde_json::json!({"checkpoints": {"target:t": {"core-infra": {"refs/heads/main": item}}}});
            std::fs::write(s.path(), file.to_string()).unwrap();
            let err = s.load("target:t", "core-infra", &main()).await.unwrap_err();
            let shown = err.to_string();
            for part in ["target:t", "core-infra", "refs/heads/main", field, value] {
                assert!(shown.contains(part), "{field}: {part} in {shown}");
            }
            assert!(!err.transient, "{shown}");
        }
    }

    fn request(target: &str, c: &CommitId) -> StartRequest {
        StartRequest::new(
            target,
            RunKind::CodePipeline,
            "core-infra-deploy",
            Some("Source".into()),
            c.clone(),
            main(),
            vec![
                ("TOZAI_COMMIT_ID".into(), c.to_string()),
                ("TOZAI_REF".into(), "refs/heads/main".into()),
                ("TOZAI_MATCHED_RULES".into(), "tokyo-core:common/**".into()),
                ("TOZAI_MATCHED_PATHS".into(), "common/a.yaml".into()),
            ],
        )
    }

    #[tokio::test]
    async fn starts_are_recorded_as_json_lines_and_a_known_token_starts_nothing() {
        let tmp = tempfile::TempDir::new().unwrap();
        let starter = RecordingStarter::new(tmp.path().join("runs/starts.jsonl"));
        assert!(starter.recorded().unwrap().is_empty());
        let r1 = request("tokyo-core", &commit(1));
        assert_eq!(starter.start(&r1).await.unwrap(), "local-1");
        assert_eq!(
            starter
                .start(&request("osaka-core", &commit(1)))
                .await
                .unwrap(),
            "local-2"
        );
        // A retry with the same token: the same run, no second line.
        assert_eq!(starter.start(&r1).await.unwrap(), "local-1");
        let recorded = starter.recorded().unwrap();
        assert_eq!(recorded.len(), 2);
        assert_eq!(recorded[0].target, "tokyo-core");
        assert_eq!(recorded[0].commit, commit(1).as_str());
        assert_eq!(recorded[0].reference, "refs/heads/main");
        assert_eq!(recorded[0].kind, "codepipeline");
        assert_eq!(recorded[0].name, "core-infra-deploy");
        assert_eq!(recorded[0].source_action.as_deref(), Some("Source"));
        assert_eq!(recorded[0].token, r1.token);
        assert_eq!(recorded[0].variables["TOZAI_COMMIT_ID"], commit(1).as_str());
        let text = std::fs::read_to_string(starter.path()).unwrap();
        assert_eq!(text.lines().count(), 2);
        let line: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(line["ref"], "refs/heads/main");
        assert_eq!(line["run_id"], "local-1");
    }

    /// A recorded start of `r` as its line in the file, at `at_ms`.
    fn line(r: &StartRequest, run_id: &str, at_ms: u64) -> String {
        let recorded = RecordedStart {
            run_id: run_id.into(),
            target: r.target.clone(),
            kind: r.kind.label().into(),
            name: r.name.clone(),
            source_action: r.source_action.clone(),
            commit: r.commit.to_string(),
            reference: r.reference.full(),
            token: r.token.clone(),
            variables: r.variables.iter().cloned().collect(),
            at_ms,
        };
        serde_json::to_string(&recorded).unwrap()
    }

    #[tokio::test]
    async fn find_run_matches_the_target_commit_and_ref_of_runs_begun_since() {
        let tmp = tempfile::TempDir::new().unwrap();
        let starter = RecordingStarter::new(tmp.path().join("starts.jsonl"));
        let r = request("tokyo-core", &commit(1));
        // Nothing recorded (no file yet): nothing found.
        assert_eq!(starter.find_run(&r, 0).await.unwrap(), None);

        let release: RefName = "refs/heads/release/1".parse().unwrap();
        let on_release = StartRequest {
            reference: release.clone(),
            ..r.clone()
        };
        let other_target = request("osaka-core", &commit(1));
        let other_commit = request("tokyo-core", &commit(2));
        let lines = [
            line(&r, "old", 1_000_000),
            line(&r, "exec-1", 2_000_000),
            line(&on_release, "release-run", 3_000_000),
            line(&other_target, "osaka-run", 3_000_000),
            line(&other_commit, "later-commit", 3_000_000),
            // The same start with another sequence (token): still the run of that start.
            line(&r.clone().with_sequence(7), "exec-2", 2_500_000),
        ];
        std::fs::write(starter.path(), lines.join("\n") + "\n").unwrap();

        // Since 1,000 s: the newest run of (target, commit, ref), whatever its token.
        assert_eq!(
            starter.find_run(&r, 1_000).await.unwrap().as_deref(),
            Some("exec-2")
        );
        // A request without variables (what the judge probes with) finds it too.
        let bare = StartRequest {
            variables: Vec::new(),
            ..r.clone()
        }
        .with_sequence(0);
        assert_eq!(
            starter.find_run(&bare, 1_000).await.unwrap().as_deref(),
            Some("exec-2")
        );
        // `since` is inclusive, in seconds; a run begun before it is not the claim's.
        assert_eq!(
            starter.find_run(&r, 2_500).await.unwrap().as_deref(),
            Some("exec-2")
        );
        assert_eq!(starter.find_run(&r, 2_501).await.unwrap(), None);
        // Another ref at the same commit, another target, another commit: their own runs.
        assert_eq!(
            starter.find_run(&on_release, 0).await.unwrap().as_deref(),
            Some("release-run")
        );
        assert_eq!(
            starter.find_run(&other_target, 0).await.unwrap().as_deref(),
            Some("osaka-run")
        );
        let tag = StartRequest {
            reference: "refs/tags/v1".parse().unwrap(),
            ..r.clone()
        };
        assert_eq!(starter.find_run(&tag, 0).await.unwrap(), None);
        let codebuild = StartRequest {
            kind: RunKind::CodeBuild,
            ..r.clone()
        };
        assert_eq!(starter.find_run(&codebuild, 0).await.unwrap(), None);

        // A start made now is found from the second it was made.
        let fresh = request("tokyo-core", &commit(9));
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let id = starter.start(&fresh).await.unwrap();
        assert_eq!(starter.find_run(&fresh, since).await.unwrap(), Some(id));
        assert_eq!(starter.find_run(&fresh, since + 60).await.unwrap(), None);
    }

    #[tokio::test]
    async fn find_run_over_a_corrupt_file_is_an_error_naming_the_line() {
        let tmp = tempfile::TempDir::new().unwrap();
        let starter = RecordingStarter::new(tmp.path().join("starts.jsonl"));
        let r = request("tokyo-core", &commit(1));
        std::fs::write(starter.path(), line(&r, "exec-1", 0) + "\n{oops\n").unwrap();
        let err = starter.find_run(&r, 0).await.unwrap_err();
        let shown = err.to_string();
        assert!(
            shown.contains("line 2") && shown.contains("starts.jsonl"),
            "{shown}"
        );
        assert!(!err.transient);
    }

    #[tokio::test]
    async fn a_configured_command_runs_with_the_variables_and_names_the_run() {
        let tmp = tempfile::TempDir::new().unwrap();
        let seen = tmp.path().join("seen");
        let starter = RecordingStarter::new(tmp.path().join("starts.jsonl")).with_command(
            format!(
                "echo \"$TOZAI_TARGET $TOZAI_COMMIT_ID $TOZAI_REF $TOZAI_PIPELINE $TOZAI_KIND $TOZAI_MATCHED_PATHS\" > '{}'; echo building >&2; echo; echo exec-42; echo",
                seen.display()
            ),
        );
        let r = request("osaka-core", &commit(3));
        assert_eq!(starter.start(&r).await.unwrap(), "exec-42");
        assert_eq!(
            std::fs::read_to_string(&seen).unwrap().trim(),
            format!(
                "osaka-core {} refs/heads/main core-infra-deploy codepipeline common/a.yaml",
                commit(3)
            )
        );
        assert_eq!(starter.recorded().unwrap()[0].run_id, "exec-42");

        // Printing nothing: a generated id.
        let quiet = RecordingStarter::new(tmp.path().join("quiet.jsonl")).with_command("true");
        assert_eq!(quiet.start(&r).await.unwrap(), "local-1");
    }

    #[tokio::test]
    async fn a_failing_command_is_a_failed_start_and_records_nothing() {
        let tmp = tempfile::TempDir::new().unwrap();
        let starter = RecordingStarter::new(tmp.path().join("starts.jsonl"))
            .with_command("echo no such pipeline >&2; exit 3");
        let err = starter
            .start(&request("tokyo-core", &commit(1)))
            .await
            .unwrap_err();
        let shown = err.to_string();
        assert!(shown.contains("no such pipeline"), "{shown}");
        assert!(!err.transient);
        assert!(starter.recorded().unwrap().is_empty());
    }

    #[tokio::test]
    async fn the_bus_keeps_events_until_taken_and_they_parse_as_eventbridge_delivers_them() {
        let bus = MemoryBus::new();
        let detail = serde_json::json!({
            "repository": "core-infra", "ref": "refs/heads/main",
            "commit": commit(1).as_str(), "reason": "changed paths match its rule",
        });
        bus.publish(crate::event::SYNC_REQUESTED, &detail)
            .await
            .unwrap();
        bus.publish("Sync Completed", &serde_json::json!({"status": "in_sync"}))
            .await
            .unwrap();
        assert_eq!(bus.pending().len(), 2);
        let taken = bus.take();
        assert_eq!(taken.len(), 2);
        assert_eq!(taken[0].0, "Sync Requested");
        assert!(bus.take().is_empty());
        let event = tozai_event(
            &taken[0].0,
            &taken[0].1,
            "ap-northeast-1",
            "111111111111",
            "e-1",
        );
        match crate::event::from_value(event).unwrap() {
            crate::event::Inbound::SyncRequested { request: s, .. } => {
                assert_eq!(s.repository, "core-infra");
                assert_eq!(s.commit.as_deref(), Some(commit(1).as_str()));
            }
            other => panic!("{other:?}"),
        }
    }
}
