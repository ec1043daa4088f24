//! The pipeline-judge Lambda, deployed in each region: on a push to its region's
//! repository, starts each of the region's targets whose files changed, pinned to the
//! commit, at most once per (target, commit). A thin handler over
//! [`tozai::judge::pipeline_judge`]; settings in [`tozai::lambda`].

use lambda_runtime::{Diagnostic, Error, LambdaEvent, service_fn};
use serde_json::Value;
use tozai::{judge, lambda};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    lambda::init_logging();
    let config = lambda::config_from_env().map_err(lambda::fatal)?;
    let served = lambda::served_region(&config).map_err(lambda::fatal)?;
    let region = served.name.clone();
    let sdk = aws_config::load_from_env().await;
    let repo = lambda::repo(&sdk, served).map_err(lambda::fatal)?;
    let store = lambda::store(&sdk).map_err(lambda::fatal)?;
    let starter = lambda::starter(&sdk);
    let (config, region, repo, store, starter) = (&config, &region, &repo, &store, &starter);
    lambda_runtime::run(service_fn(async move |event: LambdaEvent<Value>| {
        let inbound = lambda::inbound(event.payload)?;
        let record = judge::pipeline_judge(config, region, repo, store, starter, inbound).await;
        Ok::<judge::DecisionRecord, Diagnostic>(lambda::logged(record)?)
    }))
    .await
}
