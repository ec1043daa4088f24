//! The integration tests: one binary, so that the suite links once (each test binary links
//! the AWS SDK and libgit2). Run one module with `cargo test -p tozai-tests --test suite cli::`.
//!
//! Every stand-in serves HTTPS with a certificate from a CA made for this run: it is
//! installed before `main`, as `SSL_CERT_FILE`, the only way tozai and the AWS SDK are told
//! to trust it (see `tozai_tests::tls`).

#[ctor::ctor(unsafe)]
fn install_test_ca() {
    tozai_tests::tls::install();
}

mod aws_adapters;
mod changes;
mod cli;
mod cli_diverge;
mod cli_hygiene;
mod cli_replay;
mod cli_status;
mod demo;
mod git_auth;
mod git_server;
mod hostile_inputs;
mod infra;
mod lambdas;
mod mirror_hooks;
mod mirror_http;
mod mirror_local;
mod reliability;
mod remotes;
mod stand_ins;
mod status_replay;
mod tls;
