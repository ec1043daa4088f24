//! Where a repository lives: CodeCommit, another git URL, or a local path.
//!
//! | written as | means |
//! |---|---|
//! | `core-infra` | the CodeCommit repository `core-infra` in the region's own AWS region |
//! | `codecommit::ap-northeast-3://core-infra` | CodeCommit, region given (git-remote-codecommit's spelling) |
//! | `codecommit://core-infra` | CodeCommit in the region's own AWS region |
//! | `https://git-codecommit.ap-northeast-3.amazonaws.com/v1/repos/core-infra` | CodeCommit over HTTPS (in China: `git-codecommit.cn-north-1.amazonaws.com.cn`) |
//! | `https://git.example.com/infra.git`, `http://127.0.0.1:8080/x` | another git server |
//! | `./repos/tokyo`, `/srv/git/infra.git`, `file:///srv/git/infra.git` | a local repository (relative paths are relative to the config file) |
//!
//! A bare word is a CodeCommit name; anything with a `/` is a path. SSH URLs are refused:
//! tozai authenticates to CodeCommit with IAM over HTTPS and keeps no static credentials.
//!
//! ```
//! use std::path::Path;
//! use tozai::location::Location;
//! let loc = Location::parse("core-infra", "ap-northeast-3", Path::new("/etc/tozai")).unwrap();
//! assert_eq!(loc.to_string(), "codecommit::ap-northeast-3://core-infra");
//! let url = "https://git-codecommit.ap-northeast-1.amazonaws.com/v1/repos/core-infra";
//! assert_eq!(Location::parse(url, "ap-northeast-3", Path::new("/")).unwrap(),
//!            Location::CodeCommit { region: "ap-northeast-1".into(), name: "core-infra".into() });
//! ```

use std::fmt;
use std::path::{Path, PathBuf};

/// Why a location was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid repository location {location:?}: {reason}")]
pub struct LocationError {
    pub location: String,
    pub reason: String,
}

/// A repository location.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Location {
    /// A CodeCommit repository, reached with IAM-signed HTTPS.
    CodeCommit { region: String, name: String },
    /// Any other http(s) git URL.
    Url(String),
    /// A repository on this machine.
    Local(PathBuf),
}

impl Location {
    /// Parses a location; `default_region` is used for bare CodeCommit names, `base` for
    /// relative paths.
    pub fn parse(text: &str, default_region: &str, base: &Path) -> Result<Self, LocationError> {
        // A URL with credentials is never echoed, whatever else is wrong with it.
        let shown = if has_credentials(text) {
            CREDENTIALS_HIDDEN
        } else {
            text
        };
        let fail = |reason: &str| LocationError {
            location: shown.to_owned(),
            reason: reason.to_owned(),
        };
        if text.is_empty() {
            return Err(fail("it is empty"));
        }
        if text.chars().any(char::is_control) {
            return Err(fail("it contains a control character"));
        }
        if let Some(rest) = text.strip_prefix("codecommit::") {
            let (region, name) = rest
                .split_once("://")
                .ok_or_else(|| fail("expected codecommit::REGION://NAME"))?;
            check_aws_region(region).map_err(|r| fail(&r))?;
            check_codecommit_name(name).map_err(|r| fail(&r))?;
            return Ok(Self::CodeCommit {
                region: region.to_owned(),
                name: name.to_owned(),
            });
        }
        if let Some(name) = text.strip_prefix("codecommit://") {
            if name.contains('@') {
                return Err(fail(
                    "AWS profiles in locations are not supported: use the AWS_PROFILE environment variable",
                ));
            }
            check_codecommit_name(name).map_err(|r| fail(&r))?;
            return Ok(Self::CodeCommit {
                region: default_region.to_owned(),
                name: name.to_owned(),
            });
        }
        if let Some(path) = text.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(fail("a file:// URL needs an absolute path"));
            }
            return Ok(Self::Local(PathBuf::from(path)));
        }
        if text.starts_with("https://") || text.starts_with("http://") {
            if has_credentials(text) {
                return Err(fail(
                    "credentials in URLs are refused: tozai keeps no static git credentials (CodeCommit uses IAM-signed logins)",
                ));
            }
            return Ok(parse_codecommit_url(text)
                .transpose()
                .map_err(|r| fail(&r))?
                .unwrap_or_else(|| Self::Url(text.to_owned())));
        }
        if text.starts_with("ssh://") || text.starts_with("git@") || text.starts_with("git://") {
            return Err(fail(
                "SSH and git:// are not supported: tozai reaches CodeCommit with IAM-signed HTTPS and keeps no static credentials",
            ));
        }
        if text.contains("://") {
            return Err(fail(
                "unknown scheme: use https://, codecommit::, file:// or a path",
            ));
        }
        if text.starts_with('~') {
            return Err(fail("'~' is not expanded: write the path in full"));
        }
        if text.contains('/') || text.starts_with('.') {
            // `./x` and `a/./b` are `x` and `a/b`: one name for one place in reports and
            // cache names.
            let tidy: PathBuf = Path::new(text)
                .components()
                .filter(|c| !matches!(c, std::path::Component::CurDir))
                .collect();
            return Ok(Self::Local(base.join(tidy)));
        }
        check_codecommit_name(text).map_err(|r| fail(&r))?;
        Ok(Self::CodeCommit {
            region: default_region.to_owned(),
            name: text.to_owned(),
        })
    }

    /// The repository's short name: the CodeCommit name, or the last part of a URL or path.
    pub fn name(&self) -> String {
        match self {
            Self::CodeCommit { name, .. } => name.clone(),
            Self::Url(url) => url
                .trim_end_matches('/')
                .rsplit('/')
                .next()
                .unwrap_or(url)
                .trim_end_matches(".git")
                .to_owned(),
            Self::Local(p) => p
                .file_name()
                .map(|n| n.to_string_lossy().trim_end_matches(".git").to_owned())
                .unwrap_or_else(|| p.display().to_string()),
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::CodeCommit { region, name } => write!(f, "codecommit::{region}://{name}"),
            Self::Url(url) => f.write_str(url),
            Self::Local(p) => write!(f, "{}", p.display()),
        }
    }
}

/// What an error shows instead of a location with credentials in it.
pub(crate) const CREDENTIALS_HIDDEN: &str = "(a URL with credentials, not shown)";

/// True when `text` is a URL (other than CodeCommit's own `codecommit::` forms, where an
/// `@` names an AWS profile) whose authority has a user part: it may carry a password.
pub(crate) fn has_credentials(text: &str) -> bool {
    if text.starts_with("codecommit:") {
        return false;
    }
    text.split_once("://")
        .is_some_and(|(_, rest)| rest.split('/').next().unwrap_or("").contains('@'))
}

/// `Some` when the URL is CodeCommit's own git endpoint (`git-codecommit.REGION.amazonaws.com`,
/// or `.amazonaws.com.cn` in China); the host must be the one of the region's partition.
fn parse_codecommit_url(url: &str) -> Option<Result<Location, String>> {
    let rest = url.strip_prefix("https://")?;
    let (host, path) = rest.split_once('/')?;
    let in_region = host.strip_prefix("git-codecommit.")?;
    let region = in_region
        .strip_suffix(".amazonaws.com")
        .or_else(|| in_region.strip_suffix(".amazonaws.com.cn"))?;
    let name = path.strip_prefix("v1/repos/")?;
    let checked = check_aws_region(region)
        .and_then(|()| check_codecommit_name(name))
        .and_then(|()| crate::git_auth::git_host(region))
        .and_then(|expected| {
            if expected == host {
                Ok(())
            } else {
                Err(format!(
                    "{host} is not CodeCommit's git host for {region} (that is {expected})"
                ))
            }
        });
    Some(checked.map(|()| Location::CodeCommit {
        region: region.to_owned(),
        name: name.to_owned(),
    }))
}

/// Checks the shape of an AWS region name (`ap-northeast-1`, `us-gov-west-1`).
pub fn check_aws_region(region: &str) -> Result<(), String> {
    let parts: Vec<&str> = region.split('-').collect();
    let ok = parts.len() >= 3
        && parts[0].len() == 2
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts[parts.len() - 1].len() <= 2
        && !parts[parts.len() - 1].is_empty()
        && parts[parts.len() - 1].bytes().all(|b| b.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{region:?} is not an AWS region name (like ap-northeast-1)"
        ))
    }
}

/// CodeCommit's repository name rules: 1-100 of letters, digits, `.`, `_`, `-`; not
/// ending in `.git`.
pub fn check_codecommit_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && !name.ends_with(".git")
        && name != "."
        && name != "..";
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a CodeCommit repository name (1-100 letters, digits, '.', '_' or '-', not ending in .git)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Location, LocationError> {
        Location::parse(s, "ap-northeast-1", Path::new("/cfg"))
    }

    #[test]
    fn locations_table() {
        let cc = |r: &str, n: &str| Location::CodeCommit {
            region: r.into(),
            name: n.into(),
        };
        let rows = [
            ("core-infra", cc("ap-northeast-1", "core-infra")),
            (
                "codecommit::ap-northeast-3://core",
                cc("ap-northeast-3", "core"),
            ),
            ("codecommit://core", cc("ap-northeast-1", "core")),
            (
                "https://git-codecommit.us-east-1.amazonaws.com/v1/repos/r",
                cc("us-east-1", "r"),
            ),
            (
                "http://127.0.0.1:8080/v1/repos/r",
                Location::Url("http://127.0.0.1:8080/v1/repos/r".into()),
            ),
            (
                "./repos/tokyo",
                Location::Local("/cfg/./repos/tokyo".into()),
            ),
            (
                "https://git-codecommit.cn-north-1.amazonaws.com.cn/v1/repos/r",
                cc("cn-north-1", "r"),
            ),
            (
                "https://git-codecommit.cn-northwest-1.amazonaws.com.cn/v1/repos/r",
                cc("cn-northwest-1", "r"),
            ),
            (
                "https://git-codecommit.us-gov-west-1.amazonaws.com/v1/repos/r",
                cc("us-gov-west-1", "r"),
            ),
            ("/srv/git/x.git", Location::Local("/srv/git/x.git".into())),
            ("file:///srv/x", Location::Local("/srv/x".into())),
        ];
        for (input, want) in rows {
            assert_eq!(parse(input).unwrap(), want, "{input}");
        }
    }

    #[test]
    fn bad_locations_say_why() {
        let rows = [
            ("", "empty"),
            ("git@github.com:a/b.git", "SSH"),
            ("ssh://host/x", "SSH"),
            ("codecommit::tokyo://x", "not an AWS region"),
            (
                "codecommit::ap-northeast-1://a b",
                "not a CodeCommit repository name",
            ),
            ("codecommit://me@repo", "profiles"),
            ("ftp://x/y", "unknown scheme"),
            ("~/x", "'~'"),
            ("repo.git", "not a CodeCommit repository name"),
            (
                "https://git-codecommit.ap-northeast-1.amazonaws.com/v1/repos/",
                "not a CodeCommit",
            ),
            ("a\nb", "control"),
            (
                "https://git-codecommit.cn-north-1.amazonaws.com/v1/repos/r",
                "is not CodeCommit's git host for cn-north-1 (that is git-codecommit.cn-north-1.amazonaws.com.cn)",
            ),
            (
                "https://git-codecommit.us-east-1.amazonaws.com.cn/v1/repos/r",
                "(that is git-codecommit.us-east-1.amazonaws.com)",
            ),
            (
                "https://git-codecommit.us-iso-east-1.amazonaws.com/v1/repos/r",
                "isolated AWS partition",
            ),
        ];
        let secret = "https://user:s3cret@git.example.com/x.git";
        let err = parse(secret).unwrap_err().to_string();
        assert!(err.contains("credentials in URLs are refused"), "{err}");
        assert!(!err.contains("s3cret"), "the secret is never echoed: {err}");
        for (input, why) in rows {
            let err = parse(input).unwrap_err().to_string();
            assert!(err.contains(why), "{input:?}: {err}");
            assert!(err.contains(&format!("{input:?}")), "{err}");
        }
    }

    /// Found by `fuzz/` (target `names`): a URL with credentials that was refused for
    /// another reason first (a control character) echoed its password in the error.
    #[test]
    fn credentials_are_not_echoed_whatever_the_error() {
        // The minimized input, as the fuzzer found it.
        let err = parse("http://ser:s3@\0").unwrap_err().to_string();
        assert!(!err.contains("ser:s3"), "the secret is echoed: {err}");
        let rows = [
            ("https://user:s3cret@git\0/x.git", "control"),
            ("https://user:s3cret@git.example.com/x\n.git", "control"),
            ("ssh://user:s3cret@git.example.com/x.git", "SSH"),
            ("ftp://user:s3cret@git.example.com/x", "unknown scheme"),
            (
                "https://user:s3cret@git.example.com/x.git",
                "credentials in URLs",
            ),
        ];
        for (input, why) in rows {
            let err = parse(input).unwrap_err().to_string();
            assert!(err.contains(why), "{input:?}: {err}");
            assert!(!err.contains("s3cret"), "the secret is echoed: {err}");
            assert!(err.contains("with credentials, not shown"), "{err}");
        }
    }

    #[test]
    fn regions_shape() {
        for ok in [
            "ap-northeast-1",
            "ap-northeast-3",
            "us-gov-west-1",
            "eu-central-2",
        ] {
            assert!(check_aws_region(ok).is_ok(), "{ok}");
        }
        for bad in [
            "tokyo",
            "ap-northeast",
            "AP-NORTHEAST-1",
            "ap-northeast-123",
            "a-b-1",
        ] {
            assert!(check_aws_region(bad).is_err(), "{bad}");
        }
    }
}
