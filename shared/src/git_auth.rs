//! CodeCommit's git-over-HTTPS login with IAM credentials: no static git credentials.
//!
//! CodeCommit accepts, as the HTTP Basic login of a git request, a password *signed* with the
//! caller's AWS credentials. This module computes it the way awscli's
//! `aws codecommit credential-helper` and git-remote-codecommit do. It is pure: it takes the
//! credentials, the [`GitEndpoint`] and the time, and does no I/O.
//!
//! - **URL**: `https://git-codecommit.REGION.amazonaws.com/v1/repos/NAME` (no `.git`, no
//!   trailing slash), in China `git-codecommit.REGION.amazonaws.com.cn` ([`git_host`]: the
//!   host of the region's partition; the isolated partitions have none). An override prefix
//!   ([`EndpointOverrides`], per region: a FIPS endpoint, a VPC endpoint for the CLI run
//!   inside that VPC (the mirror Lambda runs in none), or `http://127.0.0.1:8080` for a
//!   local stand-in) replaces everything before `/v1/repos/NAME`; an AWS host of
//!   another region is refused, since the password is signed for the repository's region.
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

/// The environment variable the binaries read for an endpoint override prefix that applies
/// to every region: a local stand-in serving both regions. The library never reads the
/// environment: callers hand the values to [`EndpointOverrides::parse`].
pub const ENDPOINT_OVERRIDE_ENV: &str = "TOZAI_CODECOMMIT_ENDPOINT";
/// The environment variable the binaries read for per-region endpoint overrides:
/// `REGION=PREFIX` pairs, comma-separated (`us-east-1=https://git-codecommit-fips.us-east-1.amazonaws.com`).
/// An empty PREFIX keeps that region's own endpoint. A region listed here ignores
/// [`ENDPOINT_OVERRIDE_ENV`].
pub const ENDPOINTS_ENV: &str = "TOZAI_CODECOMMIT_ENDPOINTS";

/// Which git endpoint each AWS region's CodeCommit repositories are reached at, when it is
/// not CodeCommit's own (a FIPS endpoint, a VPC endpoint for the CLI run inside that VPC, a
/// local stand-in).
///
/// ```
/// use tozai::git_auth::EndpointOverrides;
/// let o = EndpointOverrides::parse(
///     Some("http://127.0.0.1:8080"),
///     Some("us-east-1=https://git-codecommit-fips.us-east-1.amazonaws.com, us-west-2="),
/// ).unwrap();
/// assert_eq!(o.for_region("us-east-1"), Some("https://git-codecommit-fips.us-east-1.amazonaws.com"));
/// assert_eq!(o.for_region("us-west-2"), None); // listed empty: CodeCommit's own endpoint
/// assert_eq!(o.for_region("eu-west-1"), Some("http://127.0.0.1:8080"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointOverrides {
    every_region: Option<String>,
    per_region: std::collections::BTreeMap<String, Option<String>>,
}

impl EndpointOverrides {
    /// From the values of [`ENDPOINT_OVERRIDE_ENV`] (`every_region`) and [`ENDPOINTS_ENV`]
    /// (`per_region`); empty values count as unset. Each prefix is checked, and a prefix
    /// that is an AWS host of another region than its key is refused.
    pub fn parse(
        every_region: Option<&str>,
        per_region: Option<&str>,
    ) -> Result<Self, EndpointError> {
        let mut out = Self::default();
        if let Some(prefix) = every_region.map(str::trim).filter(|v| !v.is_empty()) {
            override_host(prefix).map_err(|problem| EndpointError::InvalidSetting {
                variable: ENDPOINT_OVERRIDE_ENV,
                problem: EndpointError::InvalidOverride {
                    value: shown(prefix),
                    problem,
                }
                .to_string(),
            })?;
            out.every_region = Some(prefix.to_owned());
        }
        let pairs = per_region.unwrap_or("").split(',').map(str::trim);
        for pair in pairs.filter(|p| !p.is_empty()) {
            let bad = |problem: String| EndpointError::InvalidSetting {
                variable: ENDPOINTS_ENV,
                problem,
            };
            let (region, prefix) = pair.split_once('=').ok_or_else(|| {
                bad(format!(
                    "{:?} is not REGION=PREFIX (like us-east-1=https://host)",
                    shown(pair)
                ))
            })?;
            let (region, prefix) = (region.trim(), prefix.trim());
            check_aws_region(region).map_err(bad)?;
            if out.per_region.contains_key(region) {
                return Err(bad(format!("{region} is listed twice")));
            }
            let prefix = (!prefix.is_empty()).then(|| prefix.to_owned());
            if let Some(p) = &prefix {
                // The shape, and the region of an AWS host.
                GitEndpoint::codecommit(region, "x", Some(p)).map_err(|e| bad(e.to_string()))?;
            }
            out.per_region.insert(region.to_owned(), prefix);
        }
        Ok(out)
    }

    /// Reads both settings through `lookup` (the environment, in the binaries).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, EndpointError> {
        Self::parse(
            lookup(ENDPOINT_OVERRIDE_ENV).as_deref(),
            lookup(ENDPOINTS_ENV).as_deref(),
        )
    }

    /// The override prefix for `region`'s repositories; `None`: CodeCommit's own endpoint.
    pub fn for_region(&self, region: &str) -> Option<&str> {
        match self.per_region.get(region) {
            Some(listed) => listed.as_deref(),
            None => self.every_region.as_deref(),
        }
    }
}

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

/// A setting's value as errors show it: never with the credentials a URL may carry.
fn shown(value: &str) -> String {
    if crate::location::has_credentials(value) || value.contains('@') {
        crate::location::CREDENTIALS_HIDDEN.to_owned()
    } else {
        value.to_owned()
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
    /// An endpoint setting (an environment variable) is malformed.
    #[error("{variable}: {problem}")]
    InvalidSetting {
        variable: &'static str,
        problem: String,
    },
    /// The location is not a CodeCommit repository, or its region or name is malformed.
    #[error("no CodeCommit git endpoint for {location}: {reason}")]
    InvalidLocation { location: String, reason: String },
}

/// What is wrong with an endpoint override prefix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
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
    /// An AWS host of another region: its signature and its repositories are that region's.
    #[error(
        "it is an endpoint of {host_region}, not of {region}: give each region its own endpoint in {ENDPOINTS_ENV}"
    )]
    OtherRegion { host_region: String, region: String },
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
                let host = git_host(region).map_err(bad_location)?;
                (format!("https://{host}{path}"), host)
            }
            Some(prefix) => {
                let invalid = |problem| EndpointError::InvalidOverride {
                    value: shown(prefix),
                    problem,
                };
                let host = override_host(prefix).map_err(invalid)?;
                if let Some(other) = aws_host_region(&host).filter(|r| r != region) {
                    return Err(invalid(OverrideProblem::OtherRegion {
                        host_region: other,
                        region: region.to_owned(),
                    }));
                }
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

/// CodeCommit's git host for `region`, in the region's partition:
/// `git-codecommit.REGION.amazonaws.com` (the `aws` and `aws-us-gov` partitions) or
/// `git-codecommit.REGION.amazonaws.com.cn` (`aws-cn`: `cn-north-1`, `cn-northwest-1`).
/// Regions of the isolated partitions (`us-iso-*`, `us-isob-*`, `us-isof-*`, `eu-isoe-*`)
/// and of the European Sovereign Cloud (`eusc-*`, whose hosts are under `amazonaws.eu`)
/// are refused: CodeCommit documents no git endpoint there.
pub fn git_host(region: &str) -> Result<String, String> {
    check_aws_region(region)?;
    match Partition::of(region) {
        Partition::Aws | Partition::AwsUsGov => {
            Ok(format!("git-codecommit.{region}.amazonaws.com"))
        }
        Partition::AwsCn => Ok(format!("git-codecommit.{region}.amazonaws.com.cn")),
        Partition::Isolated => Err(format!(
            "{region} is in an isolated AWS partition, where CodeCommit has no documented git \
             endpoint: set {ENDPOINTS_ENV} to reach it"
        )),
        Partition::AwsEusc => Err(format!(
            "{region} is in the AWS European Sovereign Cloud, where CodeCommit has no \
             documented git endpoint: set {ENDPOINTS_ENV} to reach it"
        )),
    }
}

/// The AWS partitions, as far as CodeCommit's git hosts differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Partition {
    /// `aws`: git hosts under `amazonaws.com`.
    Aws,
    /// `aws-cn`: `cn-*`, git hosts under `amazonaws.com.cn`.
    AwsCn,
    /// `aws-us-gov`: `us-gov-*`, git hosts under `amazonaws.com`.
    AwsUsGov,
    /// `aws-iso`, `aws-iso-b`, `aws-iso-e`, `aws-iso-f`: no documented CodeCommit git host.
    Isolated,
    /// `aws-eusc`: `eusc-*`, hosts under `amazonaws.eu`; no documented CodeCommit git host.
    AwsEusc,
}

impl Partition {
    /// The partition of a region name (assumed well formed).
    pub fn of(region: &str) -> Self {
        let first_two: Vec<&str> = region.splitn(3, '-').take(2).collect();
        match first_two.as_slice() {
            ["cn", ..] => Self::AwsCn,
            ["eusc", ..] => Self::AwsEusc,
            [_, "gov"] => Self::AwsUsGov,
            [_, area] if area.starts_with("iso") => Self::Isolated,
            _ => Self::Aws,
        }
    }
}

/// The AWS region an AWS host name is in (`git-codecommit-fips.us-east-1.amazonaws.com`,
/// `vpce-0a-b.git-codecommit.us-east-1.vpce.amazonaws.com` → `us-east-1`); `None` for
/// another host.
fn aws_host_region(host: &str) -> Option<String> {
    let host = host.to_ascii_lowercase();
    let rest = host
        .strip_suffix(".amazonaws.com")
        .or_else(|| host.strip_suffix(".amazonaws.com.cn"))?;
    rest.split('.')
        .find(|label| check_aws_region(label).is_ok())
        .map(str::to_owned)
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
    fn each_partition_has_its_git_host() {
        let rows = [
            ("us-east-1", Ok("git-codecommit.us-east-1.amazonaws.com")),
            (
                "ap-northeast-3",
                Ok("git-codecommit.ap-northeast-3.amazonaws.com"),
            ),
            (
                "cn-north-1",
                Ok("git-codecommit.cn-north-1.amazonaws.com.cn"),
            ),
            (
                "cn-northwest-1",
                Ok("git-codecommit.cn-northwest-1.amazonaws.com.cn"),
            ),
            (
                "us-gov-west-1",
                Ok("git-codecommit.us-gov-west-1.amazonaws.com"),
            ),
            (
                "us-gov-east-1",
                Ok("git-codecommit.us-gov-east-1.amazonaws.com"),
            ),
            ("us-iso-east-1", Err("isolated AWS partition")),
            ("us-isob-east-1", Err("isolated AWS partition")),
            ("eu-isoe-west-1", Err("isolated AWS partition")),
            ("us-isof-south-1", Err("isolated AWS partition")),
            ("eusc-de-east-1", Err("European Sovereign Cloud")),
        ];
        for (region, want) in rows {
            let got = GitEndpoint::codecommit(region, "r", None);
            match (want, got) {
                (Ok(host), Ok(e)) => {
                    assert_eq!(e.host, host, "{region}");
                    assert_eq!(e.url, format!("https://{host}/v1/repos/r"));
                    assert_eq!(e.region, region);
                }
                (Err(why), Err(e)) => {
                    let e = e.to_string();
                    assert!(e.contains(why) && e.contains(region), "{region}: {e}");
                    assert!(e.contains(ENDPOINTS_ENV), "says what to do: {e}");
                }
                (want, got) => panic!("{region}: want {want:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn an_aws_endpoint_of_another_region_is_refused() {
        let rows = [
            (
                "us-west-2",
                "https://git-codecommit-fips.us-east-1.amazonaws.com",
                Some("us-east-1"),
            ),
            (
                "us-east-1",
                "https://git-codecommit-fips.us-east-1.amazonaws.com",
                None,
            ),
            (
                "cn-north-1",
                "https://git-codecommit.cn-northwest-1.amazonaws.com.cn",
                Some("cn-northwest-1"),
            ),
            (
                "ap-northeast-3",
                "https://vpce-0abc-def.git-codecommit.ap-northeast-1.vpce.amazonaws.com",
                Some("ap-northeast-1"),
            ),
            (
                "us-east-1",
                "https://VPCE-1.GIT-CODECOMMIT.US-EAST-1.VPCE.AMAZONAWS.COM",
                None,
            ),
            // Not an AWS host: a stand-in serves any region.
            ("us-west-2", "http://us-east-1.example.com:8080", None),
        ];
        for (region, prefix, other) in rows {
            match (GitEndpoint::codecommit(region, "r", Some(prefix)), other) {
                (Ok(e), None) => assert_eq!(e.region, region),
                (Err(e), Some(other)) => assert_eq!(
                    e,
                    EndpointError::InvalidOverride {
                        value: prefix.into(),
                        problem: OverrideProblem::OtherRegion {
                            host_region: other.into(),
                            region: region.into()
                        }
                    },
                    "{region} {prefix}"
                ),
                (got, want) => panic!("{region} {prefix}: {got:?}, want other region {want:?}"),
            }
        }
    }

    #[test]
    fn endpoint_overrides_are_per_region_with_a_shared_fallback() {
        let fips_east = "https://git-codecommit-fips.us-east-1.amazonaws.com";
        let fips_west = "https://git-codecommit-fips.us-west-2.amazonaws.com";
        let both = format!("us-east-1={fips_east}, us-west-2={fips_west}");
        let east_and_west_default = format!("us-east-1={fips_east},us-west-2=");
        let east_only = format!("us-east-1={fips_east},");
        let stand_in = Some("http://127.0.0.1:9");
        let rows = [
            (None, None, [None, None, None]),
            (Some(""), Some(" "), [None, None, None]),
            (stand_in, None, [stand_in; 3]),
            (
                None,
                Some(both.as_str()),
                [Some(fips_east), Some(fips_west), None],
            ),
            (
                stand_in,
                Some(east_and_west_default.as_str()),
                [Some(fips_east), None, stand_in],
            ),
            (
                None,
                Some(east_only.as_str()),
                [Some(fips_east), None, None],
            ),
        ];
        for (every, per, want) in rows {
            let o = EndpointOverrides::parse(every, per).unwrap();
            let got = ["us-east-1", "us-west-2", "eu-west-1"].map(|r| o.for_region(r));
            assert_eq!(got, want, "{every:?} {per:?}");
        }
        let env = |name: &str| (name == ENDPOINTS_ENV).then(|| format!("us-west-2={fips_west}"));
        let o = EndpointOverrides::from_lookup(env).unwrap();
        assert_eq!(o.for_region("us-west-2"), Some(fips_west));
    }

    #[test]
    fn bad_endpoint_settings_name_the_variable_and_the_value() {
        let rows = [
            (None, Some("us-east-1"), ENDPOINTS_ENV, "not REGION=PREFIX"),
            (
                None,
                Some("tokyo=http://h"),
                ENDPOINTS_ENV,
                "\"tokyo\" is not an AWS region",
            ),
            (
                None,
                Some("us-east-1=ftp://h"),
                ENDPOINTS_ENV,
                "\"ftp://h\"",
            ),
            (
                None,
                Some("us-east-1=http://h,us-east-1=http://i"),
                ENDPOINTS_ENV,
                "listed twice",
            ),
            (
                None,
                Some("us-west-2=https://git-codecommit.us-east-1.amazonaws.com"),
                ENDPOINTS_ENV,
                "an endpoint of us-east-1, not of us-west-2",
            ),
            (
                Some("http://h/x"),
                None,
                ENDPOINT_OVERRIDE_ENV,
                "\"http://h/x\"",
            ),
        ];
        for (every, per, variable, why) in rows {
            let e = EndpointOverrides::parse(every, per).unwrap_err();
            assert!(
                matches!(&e, EndpointError::InvalidSetting { variable: v, .. } if *v == variable),
                "{e:?}"
            );
            let e = e.to_string();
            assert!(
                e.starts_with(variable) && e.contains(why),
                "{every:?} {per:?}: {e}"
            );
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
                    value: shown(value),
                    problem
                },
                "{value}"
            );
            if value.contains('@') {
                assert!(
                    !err.to_string().contains("pw"),
                    "a password is never shown: {err}"
                );
            } else {
                assert!(err.to_string().contains(&format!("{value:?}")), "{err}");
            }
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
