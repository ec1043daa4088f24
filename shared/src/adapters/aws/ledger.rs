//! [`DynamoLedger`]: the [`PushLedger`] in the checkpoint table ([`DynamoStore`]'s), for
//! the mirror Lambda. One item per standby ref: `pk = ["mirrored", REPOSITORY, REF]` (a
//! JSON array, like the checkpoints', so no name collides with another), `commit` (what
//! the mirror last pushed there, or is pushing), `also` while a push is in flight (a list
//! of one string: the owned value the push replaces) and `updated_at`. The record's values
//! are `also`'s, then `commit`; an item without `also` (every item written before records
//! could hold two values) is a record of one. A forgotten ref's item is deleted.
//!
//! Reads are `BatchGetItem` (strongly consistent, 100 keys a call), writes
//! `BatchWriteItem` (25 a call, one request per ref). Keys or items DynamoDB leaves
//! unprocessed (throttling, the 16 MB answer limit) are sent again with backoff; still
//! unprocessed after the last wait, the call fails, transient.
//!
//! The port is synchronous (the mirror runs on a blocking thread), so each call runs on the
//! runtime whose [`Handle`] the ledger was given, as CodeCommit's `GetRepository` does for
//! the default branch: a multi-thread runtime, or one whose `block_on` awaits the mirror's
//! blocking task (the Lambda's). Never call it from a task on that runtime.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeValue, DeleteRequest, KeysAndAttributes, PutRequest, WriteRequest,
};
use tokio::runtime::Handle;

use super::{DynamoStore, now_secs, service_error};
use crate::mirror::{OwnedRefs, Record};
use crate::ports::{PushLedger, ServiceError};
use crate::refs::{CommitId, RefName};

/// A string attribute of an item.
fn string<'a>(
    item: &'a std::collections::HashMap<String, AttributeValue>,
    name: &str,
) -> Option<&'a str> {
    item.get(name)?.as_s().ok().map(String::as_str)
}

/// Keys per `BatchGetItem` (DynamoDB's limit).
const GET_BATCH: usize = 100;
/// Requests per `BatchWriteItem` (DynamoDB's limit).
const WRITE_BATCH: usize = 25;

type Item = HashMap<String, AttributeValue>;

/// What the mirror pushed to one standby repository, in the checkpoint table.
#[derive(Debug, Clone)]
pub struct DynamoLedger {
    store: DynamoStore,
    repository: String,
    runtime: Handle,
    /// Waits before sending unprocessed keys or items again; one attempt more than waits.
    backoff: Vec<Duration>,
}

impl DynamoStore {
    /// The ledger of the standby `repository` (as tozai names its location), whose calls
    /// run on `runtime`.
    pub fn ledger(&self, repository: impl Into<String>, runtime: Handle) -> DynamoLedger {
        DynamoLedger {
            store: self.clone(),
            repository: repository.into(),
            runtime,
            backoff: (0..7).map(|i| Duration::from_millis(50 << i)).collect(),
        }
    }
}

impl DynamoLedger {
    /// Other waits between attempts (tests: none).
    pub fn with_backoff(mut self, waits: Vec<Duration>) -> Self {
        self.backoff = waits;
        self
    }

    fn key(&self, reference: &RefName) -> String {
        serde_json::json!(["mirrored", self.repository, reference.full()]).to_string()
    }

    fn pk(key: &str) -> Item {
        HashMap::from([("pk".to_owned(), AttributeValue::S(key.to_owned()))])
    }

    fn unprocessed(&self, operation: &str, left: usize) -> ServiceError {
        ServiceError::new(
            self.store.service(),
            format!(
                "{operation}: {left} left unprocessed after {} attempts (throttled)",
                self.backoff.len() + 1
            ),
            true,
        )
    }

    /// The recorded values of `refs`, a batch of keys at a time.
    async fn read(&self, refs: &[RefName]) -> Result<OwnedRefs, ServiceError> {
        let keys: BTreeMap<String, &RefName> = refs.iter().map(|r| (self.key(r), r)).collect();
        let names: Vec<&String> = keys.keys().collect();
        let mut out = OwnedRefs::new();
        for batch in names.chunks(GET_BATCH) {
            for item in self.get_batch(batch).await? {
                let Some(reference) = string(&item, "pk").and_then(|k| keys.get(k)) else {
                    continue;
                };
                let values = values(&item)
                    .ok_or_else(|| self.store.invalid(&self.key(reference), "no valid commit"))?;
                out.insert((*reference).clone(), values);
            }
        }
        Ok(out)
    }

    /// One `BatchGetItem` of at most [`GET_BATCH`] keys, with its unprocessed keys again.
    async fn get_batch(&self, keys: &[&String]) -> Result<Vec<Item>, ServiceError> {
        let table = &self.store.table;
        let mut pending: Vec<Item> = keys.iter().map(|k| Self::pk(k)).collect();
        let mut items = Vec::new();
        for attempt in 0..=self.backoff.len() {
            if attempt > 0 {
                tokio::time::sleep(self.backoff[attempt - 1]).await;
            }
            let wanted = KeysAndAttributes::builder()
                .set_keys(Some(std::mem::take(&mut pending)))
                .consistent_read(true)
                .build()
                .map_err(|e| {
                    ServiceError::new(self.store.service(), "BatchGetItem", false).with_source(e)
                })?;
            let answer = (self.store.client.batch_get_item())
                .request_items(table, wanted)
                .send()
                .await
                .map_err(|e| service_error(&self.store.service(), "BatchGetItem".into(), e))?;
            items.extend(
                answer
                    .responses
                    .and_then(|mut r| r.remove(table))
                    .unwrap_or_default(),
            );
            pending = (answer.unprocessed_keys)
                .and_then(|mut u| u.remove(table))
                .map(|k| k.keys)
                .unwrap_or_default();
            if pending.is_empty() {
                return Ok(items);
            }
        }
        Err(self.unprocessed("BatchGetItem", pending.len()))
    }

    /// Writes every record, the last one of each ref (a batch may not name a key twice).
    async fn write(&self, records: &[Record]) -> Result<(), ServiceError> {
        let last: BTreeMap<String, &[CommitId]> = (records.iter())
            .map(|(r, values)| (self.key(r), values.as_slice()))
            .collect();
        let now = AttributeValue::N(now_secs().to_string());
        let mut requests = Vec::with_capacity(last.len());
        for (key, values) in last {
            let built = match values.split_last() {
                Some((commit, also)) => {
                    let mut item = Self::pk(&key);
                    item.insert("commit".into(), AttributeValue::S(commit.to_string()));
                    if !also.is_empty() {
                        let also = also.iter().map(|c| AttributeValue::S(c.to_string()));
                        item.insert("also".into(), AttributeValue::L(also.collect()));
                    }
                    item.insert("updated_at".into(), now.clone());
                    let put = PutRequest::builder().set_item(Some(item)).build();
                    put.map(|p| WriteRequest::builder().put_request(p).build())
                }
                None => {
                    let delete = DeleteRequest::builder()
                        .set_key(Some(Self::pk(&key)))
                        .build();
                    delete.map(|d| WriteRequest::builder().delete_request(d).build())
                }
            };
            requests.push(built.map_err(|e| {
                ServiceError::new(self.store.service(), format!("BatchWriteItem {key}"), false)
                    .with_source(e)
            })?);
        }
        for batch in requests.chunks(WRITE_BATCH) {
            self.write_batch(batch.to_vec()).await?;
        }
        Ok(())
    }

    /// One `BatchWriteItem` of at most [`WRITE_BATCH`] requests, with its unprocessed items
    /// again.
    async fn write_batch(&self, mut pending: Vec<WriteRequest>) -> Result<(), ServiceError> {
        let table = &self.store.table;
        for attempt in 0..=self.backoff.len() {
            if attempt > 0 {
                tokio::time::sleep(self.backoff[attempt - 1]).await;
            }
            let answer = (self.store.client.batch_write_item())
                .request_items(table, std::mem::take(&mut pending))
                .send()
                .await
                .map_err(|e| service_error(&self.store.service(), "BatchWriteItem".into(), e))?;
            pending = (answer.unprocessed_items)
                .and_then(|mut u| u.remove(table))
                .unwrap_or_default();
            if pending.is_empty() {
                return Ok(());
            }
        }
        Err(self.unprocessed("BatchWriteItem", pending.len()))
    }
}

/// An item's recorded values: `also`'s, then `commit`; `None` when one is not a commit id.
fn values(item: &Item) -> Option<Vec<CommitId>> {
    let commit = string(item, "commit")?.parse::<CommitId>().ok()?;
    let also = match item.get("also") {
        None => &Vec::new(),
        Some(also) => also.as_l().ok()?,
    };
    let mut values = (also.iter())
        .map(|v| v.as_s().ok()?.parse::<CommitId>().ok())
        .collect::<Option<Vec<_>>>()?;
    values.push(commit);
    Some(values)
}

impl PushLedger for DynamoLedger {
    fn recorded(&self, refs: &[RefName]) -> Result<OwnedRefs, ServiceError> {
        if refs.is_empty() {
            return Ok(OwnedRefs::new());
        }
        self.runtime.block_on(self.read(refs))
    }

    fn record(&self, records: &[Record]) -> Result<(), ServiceError> {
        if records.is_empty() {
            return Ok(());
        }
        self.runtime.block_on(self.write(records))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use aws_sdk_dynamodb::operation::batch_get_item::{BatchGetItemInput, BatchGetItemOutput};
    use aws_sdk_dynamodb::operation::batch_write_item::{
        BatchWriteItemInput, BatchWriteItemOutput,
    };
    use aws_smithy_mocks::{RuleMode, mock, mock_client};

    use super::*;

    const TABLE: &str = "tozai-checkpoints";

    fn commit(n: usize) -> CommitId {
        format!("{:040x}", n + 1).parse().unwrap()
    }

    fn branch(n: usize) -> RefName {
        RefName::branch(&format!("b/{n:03}")).unwrap()
    }

    /// Runs `f` as the mirror does: on a blocking thread of a current-thread runtime
    /// whose `block_on` awaits it.
    fn on_the_mirrors_thread<T: Send + 'static>(
        client: aws_sdk_dynamodb::Client,
        f: impl FnOnce(DynamoLedger) -> T + Send + 'static,
    ) -> T {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let ledger = DynamoStore::new(client, TABLE)
            .ledger(
                "codecommit::ap-northeast-3://core",
                runtime.handle().clone(),
            )
            .with_backoff(vec![Duration::ZERO; 3]);
        runtime
            .block_on(async move { tokio::task::spawn_blocking(move || f(ledger)).await })
            .unwrap()
    }

    /// The `pk` of every key of a BatchGetItem.
    fn asked(req: &BatchGetItemInput) -> Vec<String> {
        req.request_items().unwrap()[TABLE]
            .keys()
            .iter()
            .map(|k| k["pk"].as_s().unwrap().clone())
            .collect()
    }

    fn item(pk: &str, n: usize) -> Item {
        HashMap::from([
            ("pk".to_owned(), AttributeValue::S(pk.to_owned())),
            (
                "commit".to_owned(),
                AttributeValue::S(commit(n).to_string()),
            ),
        ])
    }

    /// The ref number in a key (`["mirrored","…","refs/heads/b/007"]` → 7).
    fn number(pk: &str) -> usize {
        pk.trim_end_matches("\"]")
            .rsplit('/')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    }

    #[test]
    fn reads_go_100_keys_at_a_time_and_unprocessed_keys_are_asked_again() {
        let seen: Arc<Mutex<Vec<Vec<String>>>> = Arc::default();
        let log = seen.clone();
        let rule =
            mock!(aws_sdk_dynamodb::Client::batch_get_item).then_compute_output(move |req| {
                let keys = asked(req);
                let first = log.lock().unwrap().is_empty();
                log.lock().unwrap().push(keys.clone());
                // The first call answers half and leaves the rest unprocessed; every ref with
                // an even number has a record.
                let (answer, left) = keys.split_at(if first { keys.len() / 2 } else { keys.len() });
                let items = (answer.iter())
                    .filter(|k| number(k).is_multiple_of(2))
                    .map(|k| item(k, number(k)))
                    .collect();
                let left: Vec<Item> = left.iter().map(|k| DynamoLedger::pk(k)).collect();
                let mut out = BatchGetItemOutput::builder().responses(TABLE, items);
                if !left.is_empty() {
                    let keys = KeysAndAttributes::builder()
                        .set_keys(Some(left))
                        .build()
                        .unwrap();
                    out = out.unprocessed_keys(TABLE, keys);
                }
                out.build()
            });
        let client = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&rule]);
        let refs: Vec<RefName> = (0..250).map(branch).collect();
        let got = on_the_mirrors_thread(client, move |l| l.recorded(&refs).unwrap());
        let want: OwnedRefs = (0..250)
            .filter(|n| n % 2 == 0)
            .map(|n| (branch(n), vec![commit(n)]))
            .collect();
        assert_eq!(got, want);
        let calls = seen.lock().unwrap();
        let sizes: Vec<usize> = calls.iter().map(Vec::len).collect();
        assert_eq!(
            sizes,
            [100, 50, 100, 50],
            "the first batch's unprocessed half again"
        );
        assert!(calls[0].ends_with(&calls[1]), "{:?}", calls[1]);
        assert!(
            calls[0][0]
                .starts_with(r#"["mirrored","codecommit::ap-northeast-3://core","refs/heads/b/"#)
        );
    }

    #[test]
    fn writes_go_25_at_a_time_the_last_change_of_a_ref_wins_and_deletions_delete() {
        let seen: Arc<Mutex<Vec<BatchWriteItemInput>>> = Arc::default();
        let log = seen.clone();
        let rule =
            mock!(aws_sdk_dynamodb::Client::batch_write_item).then_compute_output(move |req| {
                let mut calls = log.lock().unwrap();
                calls.push(req.clone());
                let requests = &req.request_items().unwrap()[TABLE];
                let mut out = BatchWriteItemOutput::builder();
                if calls.len() == 1 {
                    // The first call leaves its last two requests unprocessed.
                    out = out.unprocessed_items(TABLE, requests[requests.len() - 2..].to_vec());
                }
                out.build()
            });
        let client = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&rule]);
        let mut changes: Vec<Record> = (0..60).map(|n| (branch(n), vec![commit(n)])).collect();
        changes.push((branch(0), vec![]));
        on_the_mirrors_thread(client, move |l| l.record(&changes).unwrap());
        let calls = seen.lock().unwrap();
        let sizes: Vec<usize> = calls
            .iter()
            .map(|c| c.request_items().unwrap()[TABLE].len())
            .collect();
        assert_eq!(sizes, [25, 2, 25, 10]);
        let first = &calls[0].request_items().unwrap()[TABLE];
        assert_eq!(&calls[1].request_items().unwrap()[TABLE][..], &first[23..]);
        let deleted = first[0]
            .delete_request()
            .expect("b/000's last change deletes it");
        assert!(
            deleted.key()["pk"]
                .as_s()
                .unwrap()
                .ends_with(r#"refs/heads/b/000"]"#)
        );
        let put = first[1].put_request().unwrap().item();
        assert_eq!(put["commit"].as_s().unwrap(), &commit(1).to_string());
        assert!(put.contains_key("updated_at"));
        assert!(!put.contains_key("also"), "a record of one value: {put:?}");
    }

    #[test]
    fn a_push_in_flight_keeps_the_value_it_replaces_in_also() {
        let seen: Arc<Mutex<Vec<BatchWriteItemInput>>> = Arc::default();
        let log = seen.clone();
        let rule =
            mock!(aws_sdk_dynamodb::Client::batch_write_item).then_compute_output(move |req| {
                log.lock().unwrap().push(req.clone());
                BatchWriteItemOutput::builder().build()
            });
        let client = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&rule]);
        on_the_mirrors_thread(client, |l| {
            l.record(&[(branch(1), vec![commit(1), commit(2)])])
                .unwrap();
            l.record(&[(branch(1), vec![commit(2)])]).unwrap();
        });
        let calls = seen.lock().unwrap();
        let item = |n: usize| {
            calls[n].request_items().unwrap()[TABLE][0]
                .put_request()
                .unwrap()
                .item()
                .clone()
        };
        let (intent, settled) = (item(0), item(1));
        assert_eq!(intent["commit"].as_s().unwrap(), &commit(2).to_string());
        assert_eq!(
            intent["also"].as_l().unwrap(),
            &[AttributeValue::S(commit(1).to_string())]
        );
        assert_eq!(settled["commit"].as_s().unwrap(), &commit(2).to_string());
        assert!(!settled.contains_key("also"), "{settled:?}");
    }

    #[test]
    fn items_with_and_without_also_are_read_and_a_bad_value_in_also_is_an_error() {
        let with_also = |pk: &str, also: &[AttributeValue]| {
            let mut i = item(pk, 2);
            i.insert("also".into(), AttributeValue::L(also.to_vec()));
            i
        };
        let rule =
            mock!(aws_sdk_dynamodb::Client::batch_get_item).then_compute_output(move |req| {
                let items = (asked(req).iter())
                    .map(|k| match number(k) {
                        // Written before records could hold two values: `commit` only.
                        0 => item(k, 0),
                        1 => with_also(k, &[AttributeValue::S(commit(1).to_string())]),
                        _ => with_also(k, &[AttributeValue::S("nope".into())]),
                    })
                    .collect();
                BatchGetItemOutput::builder()
                    .responses(TABLE, items)
                    .build()
            });
        let client = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&rule]);
        let (got, bad) = on_the_mirrors_thread(client, |l| {
            (
                l.recorded(&[branch(0), branch(1)]).unwrap(),
                l.recorded(&[branch(2)]).unwrap_err(),
            )
        });
        assert_eq!(
            got,
            OwnedRefs::from([
                (branch(0), vec![commit(0)]),
                (branch(1), vec![commit(1), commit(2)]),
            ])
        );
        assert!(!bad.transient, "{bad}");
        assert!(bad.to_string().contains("refs/heads/b/002"), "{bad}");
    }

    #[test]
    fn throttling_and_keys_never_processed_are_transient_and_a_bad_item_is_not() {
        let throttled = mock!(aws_sdk_dynamodb::Client::batch_get_item)
            .match_requests(|r| asked(r).len() == 1)
            .then_error(|| {
                aws_sdk_dynamodb::operation::batch_get_item::BatchGetItemError::ProvisionedThroughputExceededException(
                    aws_sdk_dynamodb::types::error::ProvisionedThroughputExceededException::builder()
                        .message("slow down")
                        .build(),
                )
            });
        let client = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&throttled]);
        let e = on_the_mirrors_thread(client, |l| l.recorded(&[branch(1)]).unwrap_err());
        assert!(e.transient, "{e}");

        let stuck = mock!(aws_sdk_dynamodb::Client::batch_write_item).then_compute_output(|req| {
            let requests = req.request_items().unwrap()[TABLE].clone();
            BatchWriteItemOutput::builder()
                .unprocessed_items(TABLE, requests)
                .build()
        });
        let client = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&stuck]);
        let e = on_the_mirrors_thread(client, |l| {
            l.record(&[(branch(1), vec![commit(1)])]).unwrap_err()
        });
        assert!(e.transient, "{e}");
        assert!(e.to_string().contains("after 4 attempts"), "{e}");

        let bad = mock!(aws_sdk_dynamodb::Client::batch_get_item).then_compute_output(|req| {
            let pk = asked(req)[0].clone();
            let mut bad = item(&pk, 1);
            bad.insert("commit".into(), AttributeValue::S("nope".into()));
            BatchGetItemOutput::builder()
                .responses(TABLE, vec![bad])
                .build()
        });
        let client = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&bad]);
        let e = on_the_mirrors_thread(client, |l| l.recorded(&[branch(1)]).unwrap_err());
        assert!(!e.transient, "{e}");
        assert!(e.to_string().contains("refs/heads/b/001"), "{e}");
    }
}
