//! tozai keeps a standby AWS region's CodeCommit repositories and deployments in step with
//! the primary's, for warm-standby disaster recovery.
//!
//! This library is the one code path behind the Lambdas and the `tozai` CLI:
//!
//! - the domain, pure: [`change`] (what a push changed), [`refs`] (branch, tag and commit
//!   names), [`location`] (where a repository lives, and how it is shown without its
//!   secrets), [`regions`] (the AWS regions tozai knows), [`rules`] (the path-rule dialect
//!   and engine), [`config`] (`tozai.toml`), [`plan`] (what a push triggers, explained),
//!   [`ruletest`] (the users' rule tests), [`mirror`] (what to do with each ref, never
//!   rewinding), [`divergence`] (why a ref diverged, and each side's commits) and
//!   [`git_auth`] (CodeCommit's SigV4 git password);
//! - [`ports`]: the capabilities the domain needs from outside, as traits;
//! - [`adapters`]: those capabilities over real technology (git2 behind the `git`
//!   feature, so the judges need not link libgit2), and [`remote`], which turns locations
//!   into signed git remotes (AWS credentials behind the `aws` feature);
//! - [`service`]: the use cases the Lambdas and the CLI share;
//! - [`text`]: values cut to fit a service's limits, with a visible marker.

pub mod adapters;
pub mod change;
pub mod config;
pub mod divergence;
pub mod event;
pub mod git_auth;
pub mod judge;
#[cfg(feature = "aws")]
pub mod lambda;
pub mod location;
pub mod mirror;
pub mod plan;
pub mod ports;
pub mod refs;
pub mod regions;
pub mod remote;
pub mod rules;
pub mod ruletest;
pub mod service;
pub mod status;
pub mod text;
