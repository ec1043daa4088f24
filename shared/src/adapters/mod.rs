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
pub mod receive_pack;
