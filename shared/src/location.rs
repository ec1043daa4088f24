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
        // A URL's credentials and query string are never echoed, whatever else is wrong;
        // a location with a user part and a character that ends a URL for `redact` (a
        // password may hold a space or a quote) is not shown at all.
        let breaks = |c: char| c.is_whitespace() || c.is_control() || "\"`<>".contains(c);
        let shown = if has_credentials(text) && text.chars().any(breaks) {
            std::borrow::Cow::Borrowed(CREDENTIALS_HIDDEN)
        } else {
            redact(text)
        };
        let fail = |reason: &str| LocationError {
            location: shown.clone().into_owned(),
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

impl Location {
    /// The location as text output and logs show it: [`Display`](fmt::Display) with the
    /// secrets a URL may carry (credentials, a query string) [redacted](redact).
    pub fn shown(&self) -> String {
        redact(&self.to_string()).into_owned()
    }

    /// The repository this location names, however it was written, so that two locations
    /// can be compared: CodeCommit as region and name; a URL as [`normal_url`] spells it
    /// (default port dropped) and without a trailing `/` or `.git`; a local path absolute, with `.`,
    /// `..` and symlinks resolved as far as it exists (this reads the file system).
    pub fn canonical(&self) -> Location {
        match self {
            Self::CodeCommit { .. } => self.clone(),
            Self::Url(url) => Self::Url(canonical_url(url)),
            Self::Local(path) => Self::Local(canonical_path(path)),
        }
    }
}

fn canonical_url(url: &str) -> String {
    let url = normal_url(url);
    let url = url.strip_suffix(".git").unwrap_or(&url);
    url.trim_end_matches('/').to_owned()
}

/// A URL as one spelling of it: its scheme and authority in lower case, without the
/// scheme's default port (`:443` for https, `:80` for http) and without trailing `/`s
/// (a query string or fragment is kept as it is). Text without `://` is returned as it is.
/// Repositories are compared ([`Location::canonical`]) and source caches named with it.
///
/// ```
/// use tozai::location::normal_url;
/// assert_eq!(normal_url("HTTPS://Git.Example.com:443/x/"), "https://git.example.com/x");
/// assert_eq!(normal_url("http://h:8080/x"), "http://h:8080/x");
/// ```
pub fn normal_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let scheme = scheme.to_ascii_lowercase();
    let (authority, path) = rest.split_at(rest.find(['/', '?', '#']).unwrap_or(rest.len()));
    let authority = authority.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "https" => Some(":443"),
        "http" => Some(":80"),
        _ => None,
    };
    let authority = default_port
        .and_then(|port| authority.strip_suffix(port))
        .unwrap_or(&authority);
    format!("{scheme}://{authority}{}", path.trim_end_matches('/'))
}

fn canonical_path(path: &Path) -> PathBuf {
    let absolute = std::env::current_dir()
        .map(|cwd| cwd.join(path))
        .unwrap_or_else(|_| path.to_owned());
    if let Ok(real) = absolute.canonicalize() {
        return real;
    }
    // Not there (yet): `.` and `..` resolved by their names, then the part that exists
    // resolved on disk.
    let mut tidy = PathBuf::new();
    for c in absolute.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                tidy.pop();
            }
            c => tidy.push(c),
        }
    }
    let mut missing = Vec::new();
    let mut existing = tidy.as_path();
    loop {
        if let Ok(real) = existing.canonicalize() {
            return missing.iter().rev().fold(real, |p, c| p.join(c));
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                missing.push(name.to_owned());
                existing = parent;
            }
            _ => return tidy,
        }
    }
}

/// What a URL's user part (`user:password@`) is shown as.
pub const CREDENTIALS_SHOWN: &str = "***@";
/// What a URL's query string (and a fragment after it) is shown as.
pub const QUERY_SHOWN: &str = "?***";
/// What a URL's fragment, without a query string before it, is shown as.
pub const FRAGMENT_SHOWN: &str = "#***";

/// `text` with the secrets of every URL in it hidden: the user part of a URL's authority
/// (`https://user:password@host` → `https://***@host`, up to the URL's last `@`, so that a
/// password holding `/`, `?` or `#` is hidden whole; a path or query holding an `@` is
/// hidden with it) and its query string, with the fragment (`?token=...` → `?***`; a
/// fragment alone: `#frag` → `#***`). A URL is found by its `://` and ends at whitespace,
/// a control character (or its Unicode picture, `␛`), a double quote, a backtick, `<` or
/// `>` (not at `'`, which a password or a query may hold as it is). Text without `://` is returned as
/// it is. Every error excerpt, warning and report that may hold a location goes through
/// this one function.
///
/// ```
/// use tozai::location::redact;
/// assert_eq!(redact("cannot reach https://me:pw@git.example.com/x.git?token=t now"),
///            "cannot reach https://***@git.example.com/x.git?*** now");
/// assert_eq!(redact("repository = \"core-infra\""), "repository = \"core-infra\"");
/// ```
pub fn redact(text: &str) -> std::borrow::Cow<'_, str> {
    let hidden = secrets(text);
    if hidden.is_empty() {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (range, shown) in hidden {
        out.push_str(&text[at..range.start]);
        out.push_str(shown);
        at = range.end;
    }
    out.push_str(&text[at..]);
    std::borrow::Cow::Owned(out)
}

/// The byte ranges of `text` that [`redact`] hides, in order and not overlapping, each with
/// what is shown instead ([`CREDENTIALS_SHOWN`] or [`QUERY_SHOWN`]). Linear in the text.
pub fn secrets(text: &str) -> Vec<(std::ops::Range<usize>, &'static str)> {
    // A control character's picture (`␛`, as config errors show one) ends a URL too, so
    // that redacting a message already made printable changes nothing.
    let ends_url = |c: char| {
        c.is_whitespace()
            || c.is_control()
            || matches!(c, '"' | '`' | '<' | '>' | '\u{2400}'..='\u{2421}')
    };
    let mut found = Vec::new();
    let mut start = 0;
    while start < text.len() {
        let end = text[start..]
            .find(ends_url)
            .map_or(text.len(), |i| start + i);
        let token = &text[start..end];
        if token.contains("://") {
            url_secrets(token, start, &mut found);
        }
        // Past the token and the one character that ended it.
        start = end + text[end..].chars().next().map_or(1, char::len_utf8);
    }
    found
}

/// The secrets of one line of a config file, for its excerpt: [`secrets`], and also, when
/// the line holds a `://` followed anywhere by an `@`, everything from that `://` to the
/// line's last `@`, whatever lies between: a password holding a space or a `"` (not valid
/// in a URL, but written by hand) is hidden whole too. Over-redacting is the safe side.
pub fn line_secrets(line: &str) -> Vec<(std::ops::Range<usize>, &'static str)> {
    let found = secrets(line);
    let Some(scheme) = line.find("://") else {
        return found;
    };
    let authority = scheme + 3;
    let Some(last_at) = line[authority..].rfind('@') else {
        return found;
    };
    let mut user = authority..authority + last_at + 1;
    let mut kept = Vec::with_capacity(found.len() + 1);
    for (range, shown) in found {
        if range.end <= user.start || range.start >= user.end {
            kept.push((range, shown));
        } else {
            // Overlapping secrets are hidden as one.
            user = user.start.min(range.start)..user.end.max(range.end);
        }
    }
    kept.push((user, CREDENTIALS_SHOWN));
    kept.sort_by_key(|(range, _)| range.start);
    kept
}

/// The secrets of the URL in one token (no character that ends a URL), at `offset`: the
/// user part, from its first `://` to the token's LAST `@`, whatever lies between (a
/// password may hold `/`, `?` and `#`: CodeCommit's generated ones are base64, with `/`);
/// then, after that `@` (or the `://`), everything from the first `?` (query string) or
/// `#` (fragment) to the end of the token, nested URLs and all. A path or query holding an
/// `@` is hidden with the user part: over-redacting is the safe side.
fn url_secrets(
    token: &str,
    offset: usize,
    found: &mut Vec<(std::ops::Range<usize>, &'static str)>,
) {
    let Some(scheme_end) = token.find("://") else {
        return;
    };
    let authority = scheme_end + 3;
    let mut after = authority;
    if let Some(at) = token[authority..].rfind('@') {
        after = authority + at + 1;
        found.push((offset + authority..offset + after, CREDENTIALS_SHOWN));
    }
    if let Some(i) = token[after..].find(['?', '#']) {
        let tail = after + i;
        let shown = if token[tail..].starts_with('?') {
            QUERY_SHOWN
        } else {
            FRAGMENT_SHOWN
        };
        found.push((offset + tail..offset + token.len(), shown));
    }
}

/// What an error shows instead of a location with credentials in it.
pub(crate) const CREDENTIALS_HIDDEN: &str = "(a URL with credentials, not shown)";

/// True when `text` is a URL (other than CodeCommit's own `codecommit::` forms, where an
/// `@` names an AWS profile) with a user part as [`redact`] finds one (up to its last `@`,
/// past any `/`, `?` or `#`): it may carry a password. A URL whose path or query holds an
/// `@` is refused with it: the safe side.
pub(crate) fn has_credentials(text: &str) -> bool {
    if text.starts_with("codecommit:") {
        return false;
    }
    text.split_once("://")
        .is_some_and(|(_, rest)| rest.contains('@'))
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

/// Checks the shape of an AWS region name (`ap-northeast-1`, `us-gov-west-1`, the
/// European Sovereign Cloud's `eusc-de-east-1`): a first part of 2 to 4 letters.
pub fn check_aws_region(region: &str) -> Result<(), String> {
    let parts: Vec<&str> = region.split('-').collect();
    let ok = parts.len() >= 3
        && (2..=4).contains(&parts[0].len())
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
        assert!(
            err.contains("\"https://***@git.example.com/x.git\""),
            "{err}"
        );
        assert!(!err.contains("s3cret"), "the secret is never echoed: {err}");
        for (input, why) in rows {
            let err = parse(input).unwrap_err().to_string();
            assert!(err.contains(why), "{input:?}: {err}");
            // as written, but for what looks like a URL's user part
            let shown = format!("{:?}", redact(input));
            assert!(err.contains(&shown), "{err}");
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
            (
                "https://user:s3c/r3t@git.example.com/x.git",
                "credentials in URLs",
            ),
            (
                "https://user:s3c#r3t@git.example.com/x.git",
                "credentials in URLs",
            ),
            (
                "https://user:s3c?r3t@git.example.com/x.git",
                "credentials in URLs",
            ),
        ];
        // A password holding what ends a URL for `redact`: not shown at all.
        for input in [
            "https://bob:Sup3r SECRET@h/x.git",
            "https://bob:Sup3r\"SECRET@h/x.git",
            "https://bob:Sup3r`SECRET@h/x.git",
        ] {
            let err = parse(input).unwrap_err().to_string();
            assert!(!err.contains("SECRET"), "the secret is echoed: {err}");
            assert!(err.contains(CREDENTIALS_HIDDEN), "{err}");
        }
        for (input, why) in rows {
            let err = parse(input).unwrap_err().to_string();
            assert!(err.contains(why), "{input:?}: {err}");
            for part in ["s3cret", "s3c", "r3t"] {
                assert!(!err.contains(part), "the secret is echoed: {err}");
            }
            assert!(
                err.contains("://***@") || err.contains(CREDENTIALS_HIDDEN),
                "{err}"
            );
        }
    }

    #[test]
    fn redact_table() {
        let rows = [
            ("no url here", "no url here"),
            (
                "https://git.example.com/x.git",
                "https://git.example.com/x.git",
            ),
            ("https://u:pw@h/x", "https://***@h/x"),
            ("https://u:p@ss@h/x", "https://***@h/x"),
            ("https://h/x.git?token=abc&b=1", "https://h/x.git?***"),
            ("https://h?token=abc", "https://h?***"),
            ("https://u:pw@h/x?t=1#f", "https://***@h/x?***"),
            // a query holding an `@` is hidden as if it were a user part: the safe side
            ("https://h?u=a@b/x", "https://***@b/x"),
            ("https://h/x#frag", "https://h/x#***"),
            ("https://h/x#a?b", "https://h/x#***"),
            ("https://h/x?a#b", "https://h/x?***"),
            // a password holding `/`, `#` or `?` (CodeCommit's generated ones are base64)
            (
                "https://user-at-123:AbC/dEf+g=@git-codecommit.us-east-1.amazonaws.com/v1/repos/x",
                "https://***@git-codecommit.us-east-1.amazonaws.com/v1/repos/x",
            ),
            ("https://u:a#b@h/x", "https://***@h/x"),
            ("https://u:a?b@h/x", "https://***@h/x"),
            ("https://u:a/?#b@h/x?t=1", "https://***@h/x?***"),
            ("https://u:a@b/c@h/x#f", "https://***@h/x#***"),
            // in an excerpt, quoted, with more text around it
            (
                "repository = \"https://u:pw@h/x.git?t=1\" x",
                "repository = \"https://***@h/x.git?***\" x",
            ),
            (
                "cannot reach http://127.0.0.1:1/x.git?token=abc while fetching",
                "cannot reach http://127.0.0.1:1/x.git?*** while fetching",
            ),
            // a URL nested in another's path, and another after it
            ("https://proxy/https://u:pw@h/x", "https://***@h/x"),
            (
                "https://proxy/https://h/x?t=1",
                "https://proxy/https://h/x?***",
            ),
            (
                "a https://u:pw@h b https://h/x?t=1 c",
                "a https://***@h b https://h/x?*** c",
            ),
            (
                "log\u{1b}[0mhttps://u:pw@h\u{1b}[2m",
                "log\u{1b}[0mhttps://***@h\u{1b}[2m",
            ),
            ("https://h/x?t=1\u{1b}[2J\"", "https://h/x?***\u{1b}[2J\""),
            (
                "https://h/x?t=1\u{241b}[2J\"",
                "https://h/x?***\u{241b}[2J\"",
            ),
            // a `'` is a legal character of a password and of a query
            ("https://bob:Sup3r'SECRET2@h/x.git", "https://***@h/x.git"),
            (
                "http://127.0.0.1:1/x.git?token=ab'SECRETTAIL",
                "http://127.0.0.1:1/x.git?***",
            ),
            (
                "repository = 'https://u:pw@h/x' x",
                "repository = 'https://***@h/x' x",
            ),
            // CodeCommit's own forms carry no secret
            (
                "codecommit::ap-northeast-1://core-infra",
                "codecommit::ap-northeast-1://core-infra",
            ),
            ("a?b https://h", "a?b https://h"),
            ("://u:pw@h", "://***@h"),
            (
                "東京 https://u:pw@東京/x?t=東京",
                "東京 https://***@東京/x?***",
            ),
        ];
        for (text, want) in rows {
            assert_eq!(redact(text), want, "{text:?}");
            assert_eq!(redact(want), want, "idempotent: {want:?}");
        }
    }

    #[test]
    fn redact_is_linear_on_hostile_text() {
        let text = "://a/".repeat(400_000) + "?x";
        let started = std::time::Instant::now();
        assert!(redact(&text).ends_with("?***"));
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn canonical_locations() {
        let url = |s: &str| Location::Url(s.into()).canonical();
        assert_eq!(
            url("https://GIT.example.com/infra.git/"),
            url("https://git.example.com/infra")
        );
        assert_ne!(
            url("https://git.example.com/Infra"),
            url("https://git.example.com/infra")
        );
        // the scheme's default port is the same repository; another port is not
        let rows = [
            ("https://git.example.com:443/infra", true),
            ("HTTPS://GIT.example.com:443/infra.git/", true),
            ("https://git.example.com:8443/infra", false),
            ("http://git.example.com:80/infra", false),
        ];
        for (other, same) in rows {
            let eq = url(other) == url("https://git.example.com/infra");
            assert_eq!(eq, same, "{other}");
        }
        assert_eq!(
            url("http://h:80/x"),
            Location::Url("http://h/x".into()).canonical()
        );
        assert_ne!(url("http://h:443/x"), url("http://h/x"));
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.git");
        std::fs::create_dir(&real).unwrap();
        std::os::unix::fs::symlink(&real, dir.path().join("link.git")).unwrap();
        let local = |p: PathBuf| Location::Local(p).canonical();
        let want = local(real.clone());
        assert_eq!(local(dir.path().join("link.git")), want);
        assert_eq!(local(dir.path().join("x/../real.git/")), want);
        assert_eq!(local(dir.path().join("./real.git")), want);
        assert_eq!(
            local(dir.path().join("gone/../new.git")),
            local(dir.path().join("new.git"))
        );
    }

    #[test]
    fn regions_shape() {
        for ok in [
            "ap-northeast-1",
            "ap-northeast-3",
            "us-gov-west-1",
            "eu-central-2",
            "eusc-de-east-1",
        ] {
            assert!(check_aws_region(ok).is_ok(), "{ok}");
        }
        for bad in [
            "tokyo",
            "ap-northeast",
            "AP-NORTHEAST-1",
            "ap-northeast-123",
            "a-b-1",
            "eusco-de-east-1",
        ] {
            assert!(check_aws_region(bad).is_err(), "{bad}");
        }
    }
}
