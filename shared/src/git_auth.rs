//! CodeCommit's git-over-HTTPS login with IAM credentials: no static git credentials.
//!
//! CodeCommit accepts, as the HTTP Basic login of a git request, a password *signed* with the
//! caller's AWS credentials. This module computes it the way awscli's
//! `aws codecommit credential-helper` and git-remote-codecommit do. It is pure: it takes the
//! credentials, the [`GitEndpoint`] and the time, and does no I/O.
//!
//! - **URL**: `https://git-codecommit.REGION.amazonaws.com/v1/repos/NAME` (no `.git`, no
//!   trailing slash). An override prefix (tozai reads it from [`ENDPOINT_OVERRIDE_ENV`],
//!   e.g. `http://127.0.0.1:8080` for a local stand-in or a VPC endpoint) replaces
//!   everything before `/v1/repos/NAME`.
//! - **Username**: the access key id, then `%` and the session token when there is one. The
//!   token is sent, not signed.
//! - **Password**: `TIMESTAMP` + `Z` + the hex SigV4 signature, TIMESTAMP being the UTC time
//!   as `%Y%m%dT%H%M%S`. The signature uses service `codecommit`, scope
//!   `DATE/REGION/codecommit/aws4_request` and a non-standard canonical request with no
//!   payload hash: `"GIT\n/v1/repos/NAME\n\nhost:HOST\n\nhost\n"`, HOST being the URL's host
//!   without the port. A standard SigV4 signer cannot produce it.
//!
//! Passwords are time-bound (CodeCommit refuses them after about 15 minutes): compute one per
//! git operation, never store or log it. `Debug` of [`Credentials`] and of the returned
//! [`GitLogin`] shows `***` instead of secrets.
//!
//! ```
//! use std::time::{Duration, UNIX_EPOCH};
//! use tozai::git_auth::{Credentials, GitEndpoint};
//!
//! let credentials = Credentials {
//!     access_key_id: "AKIDEXAMPLE".into(),
//!     secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
//!     session_token: Some("IQoJb3JpZ2luX2VjEXAMPLE/TOKEN+with=specials".into()),
//! };
//! let endpoint = GitEndpoint::codecommit("eu-west-1", "my-repo", None).unwrap();
//! assert_eq!(endpoint.url, "https://git-codecommit.eu-west-1.amazonaws.com/v1/repos/my-repo");
//!
//! let at = UNIX_EPOCH + Duration::from_secs(1_704_164_645); // 2024-01-02T03:04:05Z
//! let login = endpoint.sign(&credentials, at);
//! assert_eq!(login.username, "AKIDEXAMPLE%IQoJb3JpZ2luX2VjEXAMPLE/TOKEN+with=specials");
//! assert_eq!(
//!     login.password,
//!     "20240102T030405Z22a53126d7537dc0b78e148eca8d1a7ebfde5ed3a0e7abf1fa10f13dcc2d32ea"
//! );
//! assert!(!format!("{login:?}").contains("TOKEN"));
//!
//! // A local stand-in: the URL keeps the port, the signed host does not.
//! let local = GitEndpoint::codecommit("eu-west-1", "my-repo", Some("http://127.0.0.1:8080")).unwrap();
//! assert_eq!(local.url, "http://127.0.0.1:8080/v1/repos/my-repo");
//! assert_eq!(local.host, "127.0.0.1");
//! ```

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{KeyInit, Mac};
use sha2::{Digest, Sha256};

use crate::location::{Location, check_aws_region, check_codecommit_name};
pub use crate::ports::GitLogin;

/// The environment variable the binaries read for the endpoint override prefix. The library
/// never reads it: callers pass its value to [`GitEndpoint::codecommit`].
pub const ENDPOINT_OVERRIDE_ENV: &str = "TOZAI_CODECOMMIT_ENDPOINT";

/// AWS credentials to sign with. `Debug` hides the secret and the token.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"***")
            .field("session_token", &self.session_token.as_ref().map(|_| "***"))
            .finish()
    }
}

#[cfg(feature = "aws")]
impl From<&aws_credential_types::Credentials> for Credentials {
    fn from(c: &aws_credential_types::Credentials) -> Self {
        Self {
            access_key_id: c.access_key_id().to_owned(),
            secret_access_key: c.secret_access_key().to_owned(),
            session_token: c.session_token().map(str::to_owned),
        }
    }
}

/// Why no CodeCommit git endpoint could be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    /// The override prefix is not a plain `http(s)://HOST[:PORT]`.
    #[error("invalid CodeCommit endpoint override {value:?}: {problem}")]
    InvalidOverride {
        value: String,
        problem: OverrideProblem,
    },
    /// The location is not a CodeCommit repository, or its region or name is malformed.
    #[error("no CodeCommit git endpoint for {location}: {reason}")]
    InvalidLocation { location: String, reason: String },
}

/// What is wrong with an endpoint override prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OverrideProblem {
    #[error("the scheme must be http:// or https://")]
    Scheme,
    #[error("it has no host")]
    NoHost,
    #[error("the port must be a number from 1 to 65535")]
    Port,
    #[error("credentials (user@) are not allowed in it")]
    Userinfo,
    #[error(
        "it must not have a path, query or fragment: tozai appends /v1/repos/NAME (give only scheme://host[:port])"
    )]
    Path,
}

/// Where git reaches one CodeCommit repository, and what gets signed for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitEndpoint {
    /// The URL git connects to: `https://git-codecommit.REGION.amazonaws.com/v1/repos/NAME`
    /// or `<override>/v1/repos/NAME`.
    pub url: String,
    /// The host that is signed: the URL's host without the port.
    pub host: String,
    /// The region in the signature's scope.
    pub region: String,
    /// The path that is signed: `/v1/repos/NAME`.
    pub path: String,
}

impl GitEndpoint {
    /// The endpoint of the CodeCommit repository `name` in `region`. `override_prefix`
    /// (`scheme://host[:port]`, an optional trailing `/`) replaces CodeCommit's own host.
    pub fn codecommit(
        region: &str,
        name: &str,
        override_prefix: Option<&str>,
    ) -> Result<Self, EndpointError> {
        let bad_location = |reason: String| EndpointError::InvalidLocation {
            location: format!("codecommit::{region}://{name}"),
            reason,
        };
        check_aws_region(region).map_err(bad_location)?;
        check_codecommit_name(name).map_err(bad_location)?;
        let path = format!("/v1/repos/{name}");
        let (url, host) = match override_prefix {
            None => {
                let host = format!("git-codecommit.{region}.amazonaws.com");
                (format!("https://{host}{path}"), host)
            }
            Some(prefix) => {
                let host =
                    override_host(prefix).map_err(|problem| EndpointError::InvalidOverride {
                        value: prefix.to_owned(),
                        problem,
                    })?;
                (format!("{}{path}", prefix.trim_end_matches('/')), host)
            }
        };
        Ok(Self {
            url,
            host,
            region: region.to_owned(),
            path,
        })
    }

    /// The endpoint of a [`Location::CodeCommit`]; other locations are refused.
    pub fn for_location(
        location: &Location,
        override_prefix: Option<&str>,
    ) -> Result<Self, EndpointError> {
        match location {
            Location::CodeCommit { region, name } => {
                Self::codecommit(region, name, override_prefix)
            }
            other => Err(EndpointError::InvalidLocation {
                location: other.to_string(),
                reason: "it is not a CodeCommit repository".to_owned(),
            }),
        }
    }

    /// The login for one git operation at time `at` (use the current time).
    pub fn sign(&self, credentials: &Credentials, at: SystemTime) -> GitLogin {
        sign(credentials, &self.region, &self.host, &self.path, at)
    }
}

/// The host of an override prefix, without the port; checks the prefix's shape.
fn override_host(prefix: &str) -> Result<String, OverrideProblem> {
    let rest = prefix
        .strip_prefix("https://")
        .or_else(|| prefix.strip_prefix("http://"))
        .ok_or(OverrideProblem::Scheme)?;
    let (authority, path) = match rest.find(['/', '?', '#']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if !(path.is_empty() || path == "/") {
        return Err(OverrideProblem::Path);
    }
    if authority.contains('@') {
        return Err(OverrideProblem::Userinfo);
    }
    let (host, port) = if authority.starts_with('[') {
        // A bracketed IPv6 literal: the brackets belong to the host.
        let end = authority.find(']').ok_or(OverrideProblem::NoHost)?;
        let (host, after) = authority.split_at(end + 1);
        match after {
            "" => (host, None),
            _ => (
                host,
                Some(after.strip_prefix(':').ok_or(OverrideProblem::Port)?),
            ),
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() || host == "[]" || host.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(OverrideProblem::NoHost);
    }
    if let Some(port) = port {
        let ok = !port.is_empty()
            && port.bytes().all(|b| b.is_ascii_digit())
            && matches!(port.parse::<u16>(), Ok(p) if p > 0);
        if !ok {
            return Err(OverrideProblem::Port);
        }
    }
    Ok(host.to_owned())
}

/// The login for a CodeCommit git request: `host` without the port, `path` as
/// `/v1/repos/NAME`. Times before 1970 are signed as 1970 (and refused by CodeCommit).
pub fn sign(
    credentials: &Credentials,
    region: &str,
    host: &str,
    path: &str,
    at: SystemTime,
) -> GitLogin {
    let timestamp = timestamp(at);
    let date = &timestamp[..timestamp.len() - 7];
    let canonical_request = format!("GIT\n{path}\n\nhost:{host}\n\nhost\n");
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{timestamp}\n{date}/{region}/codecommit/aws4_request\n{}",
        hex(&Sha256::digest(canonical_request.as_bytes()))
    );
    let mut key = hmac_sha256(
        format!("AWS4{}", credentials.secret_access_key).as_bytes(),
        date.as_bytes(),
    );
    for part in [region, "codecommit", "aws4_request"] {
        key = hmac_sha256(&key, part.as_bytes());
    }
    let signature = hex(&hmac_sha256(&key, string_to_sign.as_bytes()));
    let username = match &credentials.session_token {
        Some(token) => format!("{}%{token}", credentials.access_key_id),
        None => credentials.access_key_id.clone(),
    };
    GitLogin {
        username,
        password: format!("{timestamp}Z{signature}"),
    }
}

/// The UTC time as SigV4 writes it (`%Y%m%dT%H%M%S`, no `Z`): `20240102T030405`.
pub fn timestamp(at: SystemTime) -> String {
    let secs = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, for non-negative counts).
pub(crate) fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097; // day of era, 0..=146096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // year of era
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of year from March 1st
    let mp = (5 * doy + 2) / 153; // month from March, 0..=11
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac =
        hmac::Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn example(token: Option<&str>) -> Credentials {
        Credentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            session_token: token.map(Into::into),
        }
    }

    const TOKEN: &str = "IQoJb3JpZ2luX2VjEXAMPLE/TOKEN+with=specials";

    #[test]
    fn reference_value_from_facts() {
        let endpoint = GitEndpoint::codecommit("eu-west-1", "my-repo", None).unwrap();
        let login = endpoint.sign(&example(Some(TOKEN)), at(1_704_164_645));
        assert_eq!(login.username, format!("AKIDEXAMPLE%{TOKEN}"));
        assert_eq!(
            login.password,
            "20240102T030405Z22a53126d7537dc0b78e148eca8d1a7ebfde5ed3a0e7abf1fa10f13dcc2d32ea"
        );
    }

    #[test]
    fn session_token_is_sent_not_signed() {
        let endpoint = GitEndpoint::codecommit("eu-west-1", "my-repo", None).unwrap();
        let with = endpoint.sign(&example(Some(TOKEN)), at(1_704_164_645));
        let without = endpoint.sign(&example(None), at(1_704_164_645));
        assert_eq!(without.username, "AKIDEXAMPLE");
        assert_eq!(with.password, without.password);
    }

    #[test]
    fn every_signed_input_changes_the_password() {
        let base = || {
            sign(
                &example(None),
                "eu-west-1",
                "git-codecommit.eu-west-1.amazonaws.com",
                "/v1/repos/my-repo",
                at(1_704_164_645),
            )
            .password
        };
        let mut other_secret = example(None);
        other_secret.secret_access_key.push('x');
        let variants = [
            sign(
                &other_secret,
                "eu-west-1",
                "git-codecommit.eu-west-1.amazonaws.com",
                "/v1/repos/my-repo",
                at(1_704_164_645),
            ),
            sign(
                &example(None),
                "eu-west-2",
                "git-codecommit.eu-west-1.amazonaws.com",
                "/v1/repos/my-repo",
                at(1_704_164_645),
            ),
            sign(
                &example(None),
                "eu-west-1",
                "127.0.0.1",
                "/v1/repos/my-repo",
                at(1_704_164_645),
            ),
            sign(
                &example(None),
                "eu-west-1",
                "git-codecommit.eu-west-1.amazonaws.com",
                "/v1/repos/my-repo2",
                at(1_704_164_645),
            ),
            sign(
                &example(None),
                "eu-west-1",
                "git-codecommit.eu-west-1.amazonaws.com",
                "/v1/repos/my-repo",
                at(1_704_164_646),
            ),
        ];
        let base = base();
        for (i, v) in variants.iter().enumerate() {
            assert_ne!(v.password[16..], base[16..], "variant {i}");
        }
    }

    #[test]
    fn timestamps_table() {
        let rows = [
            (0, "19700101T000000"),
            (1_704_164_645, "20240102T030405"),
            (951_782_400, "20000229T000000"), // leap day of a century leap year
            (4_107_542_400, "21000301T000000"), // 2100 is not a leap year
            (1_709_251_199, "20240229T235959"),
            (1_735_689_599, "20241231T235959"),
            (1_735_689_600, "20250101T000000"),
            (253_402_300_799, "99991231T235959"),
        ];
        for (secs, want) in rows {
            assert_eq!(timestamp(at(secs)), want, "{secs}");
        }
        let before_epoch = UNIX_EPOCH - Duration::from_secs(5);
        assert_eq!(timestamp(before_epoch), "19700101T000000");
    }

    #[test]
    fn civil_from_days_matches_a_day_by_day_walk() {
        let (mut y, mut m, mut d) = (1970, 1, 1);
        for days in 0..200_000 {
            assert_eq!(civil_from_days(days), (y, m, d), "day {days}");
            let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
            let len = match m {
                2 if leap => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            d += 1;
            if d > len {
                (d, m) = (1, m + 1);
                if m > 12 {
                    (m, y) = (1, y + 1);
                }
            }
        }
    }

    #[test]
    fn endpoints_table() {
        let rows = [
            (
                "ap-northeast-3",
                "core-infra",
                None,
                "https://git-codecommit.ap-northeast-3.amazonaws.com/v1/repos/core-infra",
                "git-codecommit.ap-northeast-3.amazonaws.com",
            ),
            (
                "eu-west-1",
                "r",
                Some("http://127.0.0.1:8080"),
                "http://127.0.0.1:8080/v1/repos/r",
                "127.0.0.1",
            ),
            (
                "eu-west-1",
                "r",
                Some("http://127.0.0.1:8080/"),
                "http://127.0.0.1:8080/v1/repos/r",
                "127.0.0.1",
            ),
            (
                "us-east-1",
                "r",
                Some("https://vpce-0abc-def.git-codecommit.us-east-1.vpce.amazonaws.com"),
                "https://vpce-0abc-def.git-codecommit.us-east-1.vpce.amazonaws.com/v1/repos/r",
                "vpce-0abc-def.git-codecommit.us-east-1.vpce.amazonaws.com",
            ),
            (
                "us-east-1",
                "r",
                Some("http://[::1]:9000"),
                "http://[::1]:9000/v1/repos/r",
                "[::1]",
            ),
        ];
        for (region, name, prefix, url, host) in rows {
            let e = GitEndpoint::codecommit(region, name, prefix).unwrap();
            assert_eq!((e.url.as_str(), e.host.as_str()), (url, host), "{prefix:?}");
            assert_eq!(e.path, format!("/v1/repos/{name}"));
            assert_eq!(e.region, region);
        }
    }

    #[test]
    fn bad_overrides_name_the_value() {
        use OverrideProblem::*;
        let rows = [
            ("ftp://host", Scheme),
            ("127.0.0.1:8080", Scheme),
            ("HTTP://host", Scheme),
            ("http://", NoHost),
            ("http://:8080", NoHost),
            ("http:///", NoHost),
            ("http://[::1", NoHost),
            ("http://host:", Port),
            ("http://host:0", Port),
            ("http://host:99999", Port),
            ("http://host:80a", Port),
            ("http://[::1]x", Port),
            ("http://user:pw@host", Userinfo),
            ("http://host/v1/repos", Path),
            ("http://host/git/", Path),
            ("http://host?x=1", Path),
            ("http://host#x", Path),
        ];
        for (value, problem) in rows {
            let err = GitEndpoint::codecommit("eu-west-1", "r", Some(value)).unwrap_err();
            assert_eq!(
                err,
                EndpointError::InvalidOverride {
                    value: value.into(),
                    problem
                },
                "{value}"
            );
            assert!(err.to_string().contains(&format!("{value:?}")), "{err}");
        }
    }

    #[test]
    fn only_codecommit_locations_have_endpoints() {
        let cc = Location::CodeCommit {
            region: "ap-northeast-1".into(),
            name: "core".into(),
        };
        assert_eq!(
            GitEndpoint::for_location(&cc, None).unwrap().url,
            "https://git-codecommit.ap-northeast-1.amazonaws.com/v1/repos/core"
        );
        let rows = [
            (
                Location::Url("https://example.com/x.git".into()),
                "not a CodeCommit repository",
            ),
            (
                Location::Local("/srv/x".into()),
                "not a CodeCommit repository",
            ),
            (
                Location::CodeCommit {
                    region: "tokyo".into(),
                    name: "core".into(),
                },
                "not an AWS region",
            ),
            (
                Location::CodeCommit {
                    region: "ap-northeast-1".into(),
                    name: "a/b".into(),
                },
                "not a CodeCommit repository name",
            ),
        ];
        for (location, why) in rows {
            let err = GitEndpoint::for_location(&location, None)
                .unwrap_err()
                .to_string();
            assert!(err.contains(why), "{location}: {err}");
        }
    }

    #[test]
    fn debug_hides_secrets() {
        let creds = example(Some(TOKEN));
        let shown = format!("{creds:?}");
        assert!(shown.contains("AKIDEXAMPLE"), "{shown}");
        for secret in [
            creds.secret_access_key.as_str(),
            TOKEN,
            "EXAMPLEKEY",
            "TOKEN",
        ] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(format!("{:?}", example(None)).contains("session_token: None"));

        let login = GitEndpoint::codecommit("eu-west-1", "my-repo", None)
            .unwrap()
            .sign(&creds, at(1_704_164_645));
        let shown = format!("{login:?} {login:#?}");
        for secret in [login.password.as_str(), "20240102", TOKEN, "TOKEN"] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }
}
