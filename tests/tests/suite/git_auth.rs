//! tozai's CodeCommit git password against outside references: the value FACTS.md records,
//! and awscli's own credential helper (`aws codecommit credential-helper get`) as an oracle
//! for other keys, tokens, regions, repositories, hosts and times.
//!
//! awscli signs with the current time, so each row records the time around the call, finds
//! the second awscli used from its password's timestamp, and signs that second with tozai.

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tozai::git_auth::{self, Credentials, GitEndpoint, GitLogin};
use tozai_tests::server::AwsCli;

const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const TOKEN: &str = "IQoJb3JpZ2luX2VjEXAMPLE/TOKEN+with=specials";

fn credentials(key: &str, secret: &str, token: Option<&str>) -> Credentials {
    Credentials {
        access_key_id: key.into(),
        secret_access_key: secret.into(),
        session_token: token.map(Into::into),
    }
}

#[test]
fn reference_value_from_facts() {
    let endpoint = GitEndpoint::codecommit("eu-west-1", "my-repo", None).unwrap();
    assert_eq!(endpoint.host, "git-codecommit.eu-west-1.amazonaws.com");
    let at = UNIX_EPOCH + Duration::from_secs(1_704_164_645);
    assert_eq!(git_auth::timestamp(at), "20240102T030405");
    let login = endpoint.sign(&credentials("AKIDEXAMPLE", SECRET, Some(TOKEN)), at);
    assert_eq!(login.username, format!("AKIDEXAMPLE%{TOKEN}"));
    assert_eq!(
        login.password,
        "20240102T030405Z22a53126d7537dc0b78e148eca8d1a7ebfde5ed3a0e7abf1fa10f13dcc2d32ea"
    );
}

/// What awscli's helper answered, and the interval it signed in.
struct Oracle {
    login: GitLogin,
    before: SystemTime,
    after: SystemTime,
}

/// Runs `aws [--region R] codecommit credential-helper get [--ignore-host-check]` the way
/// git does, with `protocol`, `host` and `path` on stdin.
fn awscli_login(
    aws: &AwsCli,
    creds: &Credentials,
    protocol: &str,
    host: &str,
    path: &str,
    region_flag: Option<&str>,
) -> Oracle {
    let mut cmd = aws.command(creds, region_flag.unwrap_or("us-east-1"));
    if let Some(region) = region_flag {
        cmd.args(["--region", region]);
    }
    cmd.args(["codecommit", "credential-helper", "get"]);
    if region_flag.is_some() {
        cmd.arg("--ignore-host-check");
    }
    let before = SystemTime::now();
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", aws.path().display()));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("protocol={protocol}\nhost={host}\npath={path}\n\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let after = SystemTime::now();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "awscli's credential helper failed for host {host}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let field = |name: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("awscli gave no {name} for host {host}"))
            .to_owned()
    };
    Oracle {
        login: GitLogin {
            username: field("username"),
            password: field("password"),
        },
        before,
        after,
    }
}

/// The second, between `before` and `after`, whose timestamp starts `password`.
fn signing_time(oracle: &Oracle) -> SystemTime {
    let secs = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap().as_secs();
    (secs(oracle.before)..=secs(oracle.after) + 1)
        .map(|s| UNIX_EPOCH + Duration::from_secs(s))
        .find(|&t| {
            oracle
                .login
                .password
                .starts_with(&format!("{}Z", git_auth::timestamp(t)))
        })
        .unwrap_or_else(|| {
            panic!(
                "awscli's password timestamp {:?} is not within the call",
                oracle.login.password.get(..16)
            )
        })
}

#[test]
fn agrees_with_awscli_credential_helper() {
    let aws = AwsCli::find();
    let long_name = "n".repeat(100);
    // (key, secret, token, region, repository)
    let rows: [(&str, &str, Option<&str>, &str, &str); 6] = [
        ("AKIDEXAMPLE", SECRET, Some(TOKEN), "eu-west-1", "my-repo"),
        ("AKIDEXAMPLE", SECRET, None, "eu-west-1", "my-repo"),
        (
            "AKIAIOSFODNN7EXAMPLE",
            "je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY",
            None,
            "ap-northeast-3",
            "core-infra",
        ),
        (
            "ASIAEXAMPLE2",
            "s+e/c=r%e:t",
            Some("FwoGZXIvYXdzE%token:with/odd+chars=="),
            "us-east-1",
            "a.b_c-d",
        ),
        ("ASIAEXAMPLE3", "x", Some("t"), "us-gov-west-1", "X"),
        ("AKIDLONG", SECRET, None, "ap-southeast-2", &long_name),
    ];
    for (key, secret, token, region, name) in rows {
        let creds = credentials(key, secret, token);
        let endpoint = GitEndpoint::codecommit(region, name, None).unwrap();
        let oracle = awscli_login(
            &aws,
            &creds,
            "https",
            &endpoint.host,
            endpoint.path.trim_start_matches('/'),
            None,
        );
        let ours = endpoint.sign(&creds, signing_time(&oracle));
        assert_eq!(ours.username, oracle.login.username, "{region} {name}");
        assert!(
            ours.password == oracle.login.password,
            "tozai and awscli disagree on the password for {key} in {region}, {name}"
        );
    }
}

/// FIPS and VPC endpoint hosts: awscli reads the region from them, tozai is given it; both
/// sign the host as written.
#[test]
fn agrees_with_awscli_on_other_codecommit_hosts() {
    let aws = AwsCli::find();
    let creds = credentials("AKIDEXAMPLE", SECRET, Some(TOKEN));
    let rows = [
        (
            "us-east-1",
            "https://git-codecommit-fips.us-east-1.amazonaws.com",
        ),
        (
            "eu-central-1",
            "https://vpce-0123456789abcdef0-abcdefgh.git-codecommit.eu-central-1.vpce.amazonaws.com",
        ),
    ];
    for (region, prefix) in rows {
        let endpoint = GitEndpoint::codecommit(region, "repo", Some(prefix)).unwrap();
        let oracle = awscli_login(&aws, &creds, "https", &endpoint.host, "v1/repos/repo", None);
        let ours = endpoint.sign(&creds, signing_time(&oracle));
        assert_eq!(ours.username, oracle.login.username, "{prefix}");
        assert!(
            ours.password == oracle.login.password,
            "tozai and awscli disagree on the password for {prefix}"
        );
    }
}

/// A local stand-in: awscli (with `--ignore-host-check`) and tozai both drop the port from
/// the signed host.
#[test]
fn agrees_with_awscli_on_a_local_endpoint_with_a_port() {
    let aws = AwsCli::find();
    for token in [None, Some(TOKEN)] {
        let creds = credentials("AKIDLOCAL", "local-secret", token);
        let endpoint =
            GitEndpoint::codecommit("eu-west-1", "mirror", Some("http://127.0.0.1:8080")).unwrap();
        assert_eq!(endpoint.host, "127.0.0.1");
        let oracle = awscli_login(
            &aws,
            &creds,
            "http",
            "127.0.0.1:8080",
            "v1/repos/mirror",
            Some("eu-west-1"),
        );
        let ours = endpoint.sign(&creds, signing_time(&oracle));
        assert_eq!(ours.username, oracle.login.username);
        assert!(
            ours.password == oracle.login.password,
            "tozai and awscli disagree on the password for a local endpoint (token: {})",
            token.is_some()
        );
    }
}
