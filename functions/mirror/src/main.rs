//! The mirror Lambda: on `Sync Requested`, and on a branch or tag deleted in the primary's
//! repository, mirrors that ref to the standby (git2, IAM-signed HTTPS, fast-forward only,
//! deleting only what it pushed: its ledger is in `TOZAI_TABLE`) and publishes
//! `Sync Completed` or `Sync Failed`. A thin handler over
//! [`tozai::judge::mirror_job`]; settings in [`tozai::lambda`].

use lambda_runtime::{Diagnostic, Error, LambdaEvent, service_fn};
use serde_json::Value;
use tozai::{judge, lambda};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    // Before anything can start a thread: libgit2's first use may set SSL_CERT_FILE.
    tozai::adapters::git_mirror::init_tls();
    lambda::init_logging();
    let config = lambda::config_from_env().map_err(lambda::fatal)?;
    let sdk = aws_config::load_from_env().await;
    let mirror = lambda::LiveMirror::from_config(&config, &sdk).map_err(lambda::fatal)?;
    let events = lambda::events(&sdk);
    let (config, mirror, events) = (&config, &mirror, &events);
    lambda_runtime::run(service_fn(async move |event: LambdaEvent<Value>| {
        let inbound = lambda::inbound(event.payload)?;
        let record = judge::mirror_job(config, mirror, events, inbound).await;
        Ok::<judge::DecisionRecord, Diagnostic>(lambda::logged(record)?)
    }))
    .await
}
