//! Use cases: the domain composed with ports. The Lambdas and the CLI call these, so local
//! runs and AWS runs share one code path.

use crate::config::Config;
use crate::plan::{Plan, Push};
use crate::ports::{ChangeError, ChangeSource};

/// Why a push could not be planned.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Changes(#[from] ChangeError),
    #[error(transparent)]
    UnknownRegion(#[from] crate::plan::UnknownRegion),
}

/// Lists the push's changes through `source` and plans it.
pub async fn plan_push(
    config: &Config,
    source: &impl ChangeSource,
    push: Push,
) -> Result<Plan, PlanError> {
    let changes = source.changes(push.before.as_ref(), &push.after).await?;
    tracing::debug!(
        repository = %push.repository,
        reference = %push.reference,
        changed = changes.len(),
        "listed changes"
    );
    Ok(Plan::new(config, push, changes)?)
}
