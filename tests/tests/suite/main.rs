//! The integration tests: one binary, so that the suite links once (each test binary links
//! the AWS SDK and libgit2). Run one module with `cargo test -p tozai-tests --test suite cli::`.

mod aws_adapters;
mod changes;
mod cli;
mod demo;
mod git_auth;
mod git_server;
mod hostile_inputs;
mod infra;
mod lambdas;
mod mirror_http;
mod mirror_local;
mod reliability;
mod remotes;
mod stand_ins;
mod status_replay;
