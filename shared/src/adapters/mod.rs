//! Adapters: the ports over real technology. Named after the technology they use.

#[cfg(feature = "aws")]
pub mod aws;
#[cfg(feature = "git")]
pub mod git;
#[cfg(feature = "git")]
pub mod git_mirror;
#[cfg(feature = "git")]
pub mod local;
#[cfg(feature = "git")]
pub mod local_push;
#[cfg(feature = "git")]
pub mod receive_pack;

/// An error and its sources, joined with ": " (`connecting: dns error: no such host`).
#[cfg(any(feature = "aws", feature = "git"))]
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        out.push_str(": ");
        out.push_str(&s.to_string());
        next = s.source();
    }
    out
}
