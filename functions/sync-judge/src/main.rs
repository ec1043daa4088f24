//! The sync-judge Lambda: on a push to the primary's repository, decides by path rules
//! whether to mirror it, and if so publishes `Sync Requested` for the mirror. A thin
//! handler over [`tozai::judge::sync_judge`]; settings in [`tozai::lambda`].

use lambda_runtime::{Diagnostic, Error, LambdaEvent, service_fn};
use serde_json::Value;
use tozai::{judge, lambda};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    lambda::init_logging();
    let config = lambda::config_from_env().map_err(lambda::fatal)?;
    let ignored = lambda::ignored_from_env().map_err(lambda::fatal)?;
    let sdk = aws_config::load_from_env().await;
    let repo = lambda::repo(&sdk, config.primary()).map_err(lambda::fatal)?;
    let store = lambda::store(&sdk).map_err(lambda::fatal)?;
    let events = lambda::events(&sdk);
    let (config, repo, store, events, ignored) = (&config, &repo, &store, &events, &ignored);
    lambda_runtime::run(service_fn(async move |event: LambdaEvent<Value>| {
        let inbound = lambda::inbound(event.payload)?;
        let record = judge::sync_judge(config, repo, store, events, ignored, inbound).await;
        Ok::<judge::DecisionRecord, Diagnostic>(lambda::logged(record)?)
    }))
    .await
}
