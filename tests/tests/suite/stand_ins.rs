//! The AWS API stand-ins themselves ([`CodeCommitApi`], [`Moto`]), driven by awscli from the
//! tests' virtualenv (an independent client that signs with botocore) against repositories
//! built with the git CLI: what they answer is checked against git, never against tozai.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tempfile::TempDir;
use tozai::git_auth::Credentials;
use tozai_tests::server::AwsCli;
use tozai_tests::stand_ins::{CodeCommitApi, Moto, Renames, source_and_build_stages};
use tozai_tests::{GitRepo, git_name_status};

const REGION: &str = "ap-northeast-3";
const REPO: &str = "core-infra";

fn key() -> Credentials {
    Credentials {
        access_key_id: "AKIDAPISTANDIN".into(),
        secret_access_key: "api/stand-in+SECRET".into(),
        session_token: None,
    }
}

fn temporary_key() -> Credentials {
    Credentials {
        access_key_id: "ASIAAPISTANDIN".into(),
        secret_access_key: "temporary/secret".into(),
        session_token: Some("IQoJb3JpZ2luX2VjEXAMPLE/TOKEN+with=specials".into()),
    }
}

/// A CodeCommit API stand-in serving a bare clone of `work` as [`REPO`], and awscli.
struct World {
    api: CodeCommitApi,
    aws: AwsCli,
    work: GitRepo,
    _repos: TempDir,
}

impl World {
    fn new(work: GitRepo) -> Self {
        Self::with_renames(work, Renames::Paired)
    }

    fn with_renames(work: GitRepo, renames: Renames) -> Self {
        let repos = TempDir::new().unwrap();
        work.git(&[
            "clone",
            "-q",
            "--bare",
            work.path().to_str().unwrap(),
            repos.path().join(REPO).to_str().unwrap(),
        ]);
        Self {
            api: CodeCommitApi::start_with_renames(
                repos.path(),
                &[key(), temporary_key()],
                renames,
            ),
            aws: AwsCli::find(),
            work,
            _repos: repos,
        }
    }

    /// `aws codecommit OPERATION ARGS...` signed with `credentials`; its JSON answer or its
    /// standard error.
    fn aws_as(
        &self,
        credentials: &Credentials,
        operation: &str,
        args: &[&str],
    ) -> Result<Value, String> {
        let out = self
            .aws
            .command(credentials, REGION)
            .args(["codecommit", operation, "--output", "json"])
            .args(["--endpoint-url", &self.api.endpoint_url()])
            .args(args)
            .output()
            .unwrap();
        if out.status.success() {
            Ok(serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
                panic!(
                    "{operation}: not JSON ({e}): {}",
                    String::from_utf8_lossy(&out.stdout)
                )
            }))
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// `aws codecommit OPERATION --repository-name core-infra ARGS...`, which must succeed.
    fn ok(&self, operation: &str, args: &[&str]) -> Value {
        let mut all = vec!["--repository-name", REPO];
        all.extend_from_slice(args);
        self.aws_as(&key(), operation, &all).unwrap_or_else(|e| {
            panic!(
                "{operation} {args:?} failed:\n{e}\n--- stand-in log\n{}",
                self.api.log()
            )
        })
    }

    /// The exception name of `aws codecommit OPERATION --repository-name core-infra ARGS...`,
    /// which must fail.
    fn error(&self, operation: &str, args: &[&str]) -> String {
        let mut all = vec!["--repository-name", REPO];
        all.extend_from_slice(args);
        let stderr = self
            .aws_as(&key(), operation, &all)
            .expect_err("the call should have failed");
        exception(&stderr)
    }

    fn rev(&self, rev: &str) -> String {
        self.work.rev_parse(rev)
    }

    /// The id of the blob at `path` in HEAD.
    fn blob(&self, path: &str) -> String {
        self.work
            .git(&["rev-parse", "--verify", &format!("HEAD:{path}")])
            .trim()
            .to_owned()
    }
}

/// `ExceptionName` from awscli's `An error occurred (ExceptionName) when calling ...`.
fn exception(stderr: &str) -> String {
    stderr
        .split_once("An error occurred (")
        .and_then(|(_, rest)| rest.split_once(')'))
        .map(|(name, _)| name.to_owned())
        .unwrap_or_else(|| panic!("no AWS error in: {stderr}"))
}

/// `(changeType, before path, after path)` of each difference.
fn shapes(answer: &Value) -> Vec<(String, Option<String>, Option<String>)> {
    let path = |d: &Value, side: &str| d[side]["path"].as_str().map(str::to_owned);
    answer["differences"]
        .as_array()
        .expect("no differences in the answer")
        .iter()
        .map(|d| {
            (
                d["changeType"].as_str().unwrap().to_owned(),
                path(d, "beforeBlob"),
                path(d, "afterBlob"),
            )
        })
        .collect()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// Two commits: README.md, then README.md modified and 23 files added.
fn wide_repo() -> GitRepo {
    let repo = GitRepo::new();
    repo.write("README.md", "one\n");
    repo.commit("first");
    repo.write("README.md", "two\n");
    for i in 0..23 {
        repo.write(format!("common/f{i:02}.yaml"), format!("n: {i}\n"));
    }
    repo.commit("second");
    repo
}

#[test]
fn get_differences_pages_cover_every_path_exactly_once() {
    let world = World::new(wide_repo());
    let (before, after) = (world.rev("HEAD~1"), world.rev("HEAD"));
    let answer = world.ok(
        "get-differences",
        &[
            "--before-commit-specifier",
            &before,
            "--after-commit-specifier",
            &after,
            "--page-size",
            "5",
        ],
    );

    // git's account of the change, path by path.
    let expected: BTreeMap<String, String> = git_name_status(&world.work, &before, &after)
        .into_iter()
        .map(|(status, path, _)| (text(&path), status.to_string()))
        .collect();
    assert_eq!(expected.len(), 24);
    let mut seen = BTreeMap::new();
    for (change, old, new) in shapes(&answer) {
        let path = new.or(old).unwrap();
        assert!(
            seen.insert(path.clone(), change).is_none(),
            "{path} came twice"
        );
    }
    assert_eq!(seen, expected);

    // 24 differences, 5 a page: 5 pages, each after the first with a fresh NextToken.
    let pages = world.api.requests_of("GetDifferences");
    assert_eq!(pages.len(), 5, "{pages:#?}");
    assert!(pages[0].get("NextToken").is_none());
    let tokens: Vec<&str> = pages[1..]
        .iter()
        .map(|p| {
            p["NextToken"]
                .as_str()
                .expect("a later page without NextToken")
        })
        .collect();
    let mut unique = tokens.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), 4, "{tokens:?}");
    assert!(pages.iter().all(|p| p["MaxResults"] == 5));
}

#[test]
fn get_differences_takes_branches_tags_and_ids() {
    let repo = wide_repo();
    repo.git(&["tag", "v1", "HEAD~1"]);
    let world = World::new(repo);
    let by_id = world.ok(
        "get-differences",
        &[
            "--before-commit-specifier",
            &world.rev("HEAD~1"),
            "--after-commit-specifier",
            &world.rev("HEAD"),
        ],
    );
    for (before, after) in [("v1", "main"), ("refs/tags/v1", "refs/heads/main")] {
        let by_name = world.ok(
            "get-differences",
            &[
                "--before-commit-specifier",
                before,
                "--after-commit-specifier",
                after,
            ],
        );
        assert_eq!(by_name, by_id, "{before}..{after}");
    }
    let first = world.api.requests_of("GetDifferences");
    assert_eq!(
        first.len(),
        3,
        "the default page (100) holds all 24 differences"
    );
}

#[test]
fn a_rename_is_one_modification_with_both_paths() {
    let repo = GitRepo::new();
    repo.write("primary/x.yaml", "a: 1\nb: 2\nc: 3\n");
    repo.write("keep.txt", "keep\n");
    repo.commit("first");
    repo.mv("primary/x.yaml", "common/x.yaml");
    repo.commit("move");
    let world = World::new(repo);
    let answer = world.ok(
        "get-differences",
        &[
            "--before-commit-specifier",
            "HEAD~1",
            "--after-commit-specifier",
            "HEAD",
        ],
    );
    assert_eq!(
        shapes(&answer),
        [(
            "M".to_owned(),
            Some("primary/x.yaml".to_owned()),
            Some("common/x.yaml".to_owned())
        )]
    );
    let d = &answer["differences"][0];
    assert_eq!(d["beforeBlob"]["blobId"], d["afterBlob"]["blobId"]);
    assert_eq!(
        d["afterBlob"]["blobId"],
        world.blob("common/x.yaml").as_str()
    );

    let split = World::with_renames(world.work, Renames::Split);
    let answer = split.ok(
        "get-differences",
        &[
            "--before-commit-specifier",
            "HEAD~1",
            "--after-commit-specifier",
            "HEAD",
        ],
    );
    let mut got = shapes(&answer);
    got.sort();
    assert_eq!(
        got,
        [
            ("A".to_owned(), None, Some("common/x.yaml".to_owned())),
            ("D".to_owned(), Some("primary/x.yaml".to_owned()), None),
        ]
    );
}

#[test]
fn without_a_before_commit_every_file_is_added() {
    let repo = GitRepo::new();
    repo.write("README.md", "hello\n");
    repo.write("bin/deploy.sh", "#!/bin/sh\n");
    repo.git(&["add", "bin/deploy.sh"]);
    repo.chmod_x("bin/deploy.sh");
    std::os::unix::fs::symlink("README.md", repo.path().join("link.md")).unwrap();
    repo.commit("first");
    repo.write("common/a.yaml", "a: 1\n");
    repo.commit("second");
    let world = World::new(repo);
    let answer = world.ok("get-differences", &["--after-commit-specifier", "main"]);
    let mut got: Vec<(String, String, String, String)> = answer["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            assert!(d.get("beforeBlob").is_none(), "{d}");
            let after = &d["afterBlob"];
            (
                d["changeType"].as_str().unwrap().to_owned(),
                after["path"].as_str().unwrap().to_owned(),
                after["mode"].as_str().unwrap().to_owned(),
                after["blobId"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    got.sort();
    let blob = |path: &str| world.blob(path);
    assert_eq!(
        got,
        [
            (
                "A".into(),
                "README.md".into(),
                "100644".into(),
                blob("README.md")
            ),
            (
                "A".into(),
                "bin/deploy.sh".into(),
                "100755".into(),
                blob("bin/deploy.sh")
            ),
            (
                "A".into(),
                "common/a.yaml".into(),
                "100644".into(),
                blob("common/a.yaml")
            ),
            (
                "A".into(),
                "link.md".into(),
                "120000".into(),
                blob("link.md")
            ),
        ]
    );
}

#[test]
fn get_differences_paths_narrow_the_answer() {
    let world = World::new(wide_repo());
    let answer = world.ok(
        "get-differences",
        &[
            "--before-commit-specifier",
            "HEAD~1",
            "--after-commit-specifier",
            "HEAD",
            "--after-path",
            "common",
        ],
    );
    let got = shapes(&answer);
    assert_eq!(got.len(), 23);
    assert!(
        got.iter()
            .all(|(_, _, p)| p.as_deref().unwrap().starts_with("common/"))
    );
    assert_eq!(
        world.error(
            "get-differences",
            &[
                "--after-commit-specifier",
                "HEAD",
                "--after-path",
                "nowhere"
            ],
        ),
        "PathDoesNotExistException"
    );
}

#[test]
fn errors_carry_codecommits_exception_names() {
    let world = World::new(wide_repo());
    let unknown = "0123456789abcdef0123456789abcdef01234567";
    let cases: Vec<(&str, Vec<String>, &str)> = vec![
        (
            "get-differences",
            vec!["--after-commit-specifier".into(), unknown.into()],
            "CommitDoesNotExistException",
        ),
        (
            "get-differences",
            vec!["--after-commit-specifier".into(), "no-such-branch".into()],
            "CommitDoesNotExistException",
        ),
        (
            "get-differences",
            vec![
                "--before-commit-specifier".into(),
                world.blob("README.md"),
                "--after-commit-specifier".into(),
                "main".into(),
            ],
            "InvalidCommitException",
        ),
        (
            "get-differences",
            vec![
                "--cli-input-json".into(),
                r#"{"afterCommitSpecifier": ""}"#.into(),
            ],
            "CommitRequiredException",
        ),
        (
            "get-branch",
            vec!["--branch-name".into(), "nope".into()],
            "BranchDoesNotExistException",
        ),
        (
            "get-commit",
            vec!["--commit-id".into(), unknown.into()],
            "CommitIdDoesNotExistException",
        ),
        (
            "get-commit",
            vec!["--commit-id".into(), "main".into()],
            "InvalidCommitIdException",
        ),
    ];
    for (operation, args, expected) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_eq!(
            &world.error(operation, &args),
            expected,
            "{operation} {args:?}"
        );
    }

    let missing = world
        .aws_as(
            &key(),
            "get-branch",
            &["--repository-name", "no-such-repo", "--branch-name", "main"],
        )
        .unwrap_err();
    assert_eq!(exception(&missing), "RepositoryDoesNotExistException");

    // A NextToken is only good for the request it came from.
    let page = world.ok(
        "get-differences",
        &[
            "--after-commit-specifier",
            "HEAD",
            "--no-paginate",
            "--cli-input-json",
            r#"{"MaxResults": 2}"#,
        ],
    );
    let token = page["NextToken"]
        .as_str()
        .expect("a first page of 2 has a NextToken");
    let good = world.ok(
        "get-differences",
        &[
            "--after-commit-specifier",
            "HEAD",
            "--no-paginate",
            "--cli-input-json",
            &json!({"MaxResults": 2, "NextToken": token}).to_string(),
        ],
    );
    assert_eq!(good["differences"].as_array().unwrap().len(), 2);
    assert_ne!(good["differences"], page["differences"]);
    for input in [
        json!({"NextToken": token, "beforeCommitSpecifier": "HEAD~1"}),
        json!({"NextToken": "not-a-token"}),
    ] {
        assert_eq!(
            world.error(
                "get-differences",
                &[
                    "--after-commit-specifier",
                    "HEAD",
                    "--no-paginate",
                    "--cli-input-json",
                    &input.to_string()
                ],
            ),
            "InvalidContinuationTokenException",
            "{input}"
        );
    }
    let refused: Vec<Value> = world
        .api
        .requests()
        .into_iter()
        .filter(|r| r["status"] != 200)
        .collect();
    assert!(refused.iter().all(|r| r["status"] == 400), "{refused:#?}");
}

#[test]
fn get_branch_and_get_commit_match_git() {
    let repo = GitRepo::new();
    repo.write("a.txt", "a\n");
    repo.commit("first");
    repo.branch("feature");
    repo.write("b.txt", "b\n");
    repo.commit("feature work");
    repo.switch("main");
    repo.write("c.txt", "c\n");
    repo.commit("main work");
    let merge = repo.merge_no_ff("feature", "Merge feature\n\nwith a body");
    let world = World::new(repo);

    for branch in ["main", "feature"] {
        assert_eq!(
            world.ok("get-branch", &["--branch-name", branch]),
            json!({"branch": {"branchName": branch, "commitId": world.rev(branch)}})
        );
    }

    let commit = world.ok("get-commit", &["--commit-id", &merge])["commit"].clone();
    let date = world
        .work
        .git(&["log", "-1", "--format=%ad", "--date=raw", &merge]);
    let person = json!({"name": "Tozai Test", "email": "test@tozai.invalid", "date": date.trim()});
    assert_eq!(date.trim(), "1711929600 +0900");
    assert_eq!(
        commit,
        json!({
            "commitId": merge,
            "treeId": world.rev(&format!("{merge}^{{tree}}")),
            "parents": [world.rev("HEAD^1"), world.rev("HEAD^2")],
            "message": "Merge feature\n\nwith a body",
            "author": person,
            "committer": person,
            "additionalData": "",
        })
    );
}

#[test]
fn get_merge_options_reports_the_merge_base() {
    let repo = GitRepo::new();
    repo.write("a.txt", "a\n");
    let base = repo.commit("base");
    repo.branch("ahead");
    repo.write("b.txt", "b\n");
    let ahead = repo.commit("ahead");
    repo.switch("main");
    repo.branch("diverged");
    repo.write("c.txt", "c\n");
    let diverged = repo.commit("diverged");
    repo.branch("conflict");
    repo.write("b.txt", "not b\n");
    let conflict = repo.commit("conflicting b.txt");
    repo.git(&["switch", "-q", "--orphan", "unrelated"]);
    repo.write("z.txt", "z\n");
    let unrelated = repo.commit("unrelated root");
    let world = World::new(repo);
    let options = |source: &str, destination: &str| {
        world.ok(
            "get-merge-options",
            &[
                "--source-commit-specifier",
                source,
                "--destination-commit-specifier",
                destination,
            ],
        )
    };

    // main is an ancestor of ahead: a fast-forward is possible.
    assert_eq!(
        options("ahead", "main"),
        json!({
            "mergeOptions": ["FAST_FORWARD_MERGE", "SQUASH_MERGE", "THREE_WAY_MERGE"],
            "sourceCommitId": ahead,
            "destinationCommitId": base,
            "baseCommitId": base,
        })
    );
    // Diverged, no conflict: no fast-forward; the base is where they forked.
    assert_eq!(
        options(&ahead, &diverged),
        json!({
            "mergeOptions": ["SQUASH_MERGE", "THREE_WAY_MERGE"],
            "sourceCommitId": ahead,
            "destinationCommitId": diverged,
            "baseCommitId": base,
        })
    );
    // Both add b.txt differently: nothing merges without a conflict resolution.
    assert_eq!(options("ahead", "conflict")["mergeOptions"], json!([]));
    assert_eq!(
        options("ahead", "conflict")["destinationCommitId"],
        conflict.as_str()
    );
    // No common ancestor.
    assert_eq!(
        world.error(
            "get-merge-options",
            &[
                "--source-commit-specifier",
                &unrelated,
                "--destination-commit-specifier",
                "main",
            ],
        ),
        "TipsDivergenceExceededException"
    );
}

#[test]
fn requests_must_carry_a_valid_signature_from_a_known_key() {
    let world = World::new(wide_repo());
    let branch = ["--repository-name", REPO, "--branch-name", "main"];
    let refused = |credentials: &Credentials, extra: &[&str]| {
        let mut args = branch.to_vec();
        args.extend_from_slice(extra);
        exception(&world.aws_as(credentials, "get-branch", &args).unwrap_err())
    };
    assert_eq!(
        refused(&key(), &["--no-sign-request"]),
        "MissingAuthenticationTokenException"
    );
    let wrong_secret = Credentials {
        secret_access_key: "not the secret".into(),
        ..key()
    };
    assert_eq!(refused(&wrong_secret, &[]), "InvalidSignatureException");
    let unknown = Credentials {
        access_key_id: "AKIDUNKNOWN".into(),
        ..key()
    };
    assert_eq!(refused(&unknown, &[]), "UnrecognizedClientException");
    let no_token = Credentials {
        session_token: None,
        ..temporary_key()
    };
    assert_eq!(refused(&no_token, &[]), "UnrecognizedClientException");

    // A temporary key with its token works, in any region.
    world
        .aws_as(&temporary_key(), "get-branch", &branch)
        .unwrap();
    let mut other_region = branch.to_vec();
    other_region.extend_from_slice(&["--region", "ap-northeast-1"]);
    world.aws_as(&key(), "get-branch", &other_region).unwrap();

    let requests = world.api.requests();
    let summary: Vec<(Value, Value, Value)> = requests
        .iter()
        .map(|r| (r["status"].clone(), r["error"].clone(), r["region"].clone()))
        .collect();
    assert_eq!(
        summary,
        [
            (
                json!(403),
                json!("MissingAuthenticationTokenException"),
                Value::Null
            ),
            (json!(403), json!("InvalidSignatureException"), Value::Null),
            (
                json!(403),
                json!("UnrecognizedClientException"),
                Value::Null
            ),
            (
                json!(403),
                json!("UnrecognizedClientException"),
                Value::Null
            ),
            (json!(200), Value::Null, json!(REGION)),
            (json!(200), Value::Null, json!("ap-northeast-1")),
        ]
    );
    assert!(requests.iter().all(|r| r["operation"] == "GetBranch"));
    world.api.clear_requests();
    assert!(world.api.requests().is_empty());
}

#[test]
fn the_codecommit_stand_in_stops_when_dropped() {
    let repos = TempDir::new().unwrap();
    let api = CodeCommitApi::start(repos.path(), &[key()]);
    let pid = api.pid().unwrap();
    let port = api.port();
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    drop(api);
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "pid {pid} still runs"
    );
    assert_port_closes(port, "the CodeCommit API stand-in");
}

#[test]
fn moto_delivers_eventbridge_events_to_an_sqs_queue() {
    let mut moto = Moto::start();
    let pattern = json!({
        "source": ["aws.codecommit"],
        "detail-type": ["CodeCommit Repository State Change"],
    });
    let queue = moto.sqs_queue_receiving(REGION, "default", &pattern);
    let tozai_bus = moto.sqs_queue_receiving(REGION, "tozai", &json!({"source": ["tozai"]}));
    let entries = json!([
        {
            "Source": "aws.codecommit",
            "DetailType": "CodeCommit Repository State Change",
            "Detail": json!({"event": "referenceUpdated", "referenceName": "main"}).to_string(),
        },
        {"Source": "something.else", "DetailType": "Other", "Detail": "{}"},
        {
            "Source": "tozai",
            "DetailType": "Sync Requested",
            "Detail": json!({"commitId": "abc"}).to_string(),
            "EventBusName": "tozai",
        },
    ]);
    let answer = moto.aws(
        REGION,
        &["events", "put-events", "--entries", &entries.to_string()],
    );
    assert_eq!(answer["FailedEntryCount"], 0, "{answer}");

    let events = moto.received(&queue);
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(
        events[0]["detail-type"],
        "CodeCommit Repository State Change"
    );
    assert_eq!(events[0]["detail"]["referenceName"], "main");
    assert_eq!(events[0]["region"], REGION);
    assert!(
        moto.received(&queue).is_empty(),
        "received messages are deleted"
    );
    let synced = moto.received(&tozai_bus);
    assert_eq!(synced.len(), 1, "{synced:#?}");
    assert_eq!(synced[0]["detail"]["commitId"], "abc");

    let puts = moto.recorded("PutEvents");
    assert_eq!(puts.len(), 1);
    assert_eq!(puts[0]["Entries"].as_array().unwrap().len(), 3);

    let pid = moto.pid().unwrap();
    let port = moto.port();
    moto.kill();
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "moto's watchdog {pid} still runs"
    );
    assert_port_closes(port, "moto");
}

/// The watchdog a stand-in runs under is always reaped; what shows the server itself
/// stopped is its port, closed (SIGKILL is asynchronous: give the group a moment to exit).
fn assert_port_closes(port: u16, what: &str) {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok() {
        assert!(
            Instant::now() < deadline,
            "{what} still accepts connections on port {port} after it was stopped"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn moto_creates_and_starts_pipelines_and_builds() {
    let moto = Moto::start();
    let project = moto.create_codebuild_project(REGION, "core-infra-build");
    assert_eq!(project["name"], "core-infra-build");
    let pipeline = moto.create_pipeline(
        REGION,
        "core-infra-deploy",
        &source_and_build_stages(REPO, "main", "core-infra-build"),
    );
    assert_eq!(pipeline["name"], "core-infra-deploy");
    moto.reset_recording();

    let commit = "0123456789abcdef0123456789abcdef01234567";
    let started = moto.aws(
        REGION,
        &[
            "codepipeline",
            "start-pipeline-execution",
            "--name",
            "core-infra-deploy",
            "--client-request-token",
            &format!("tozai-{commit}"),
        ],
    );
    let execution = started["pipelineExecutionId"].as_str().unwrap();
    let executions = moto.aws(
        REGION,
        &[
            "codepipeline",
            "list-pipeline-executions",
            "--pipeline-name",
            "core-infra-deploy",
        ],
    );
    assert_eq!(
        executions["pipelineExecutionSummaries"][0]["pipelineExecutionId"],
        execution
    );
    let missing = moto
        .try_aws(
            REGION,
            &["codepipeline", "start-pipeline-execution", "--name", "nope"],
        )
        .unwrap_err();
    assert!(missing.contains("PipelineNotFoundException"), "{missing}");
    // Pipelines are per region.
    let elsewhere = moto
        .try_aws(
            "ap-northeast-1",
            &[
                "codepipeline",
                "get-pipeline",
                "--name",
                "core-infra-deploy",
            ],
        )
        .unwrap_err();
    assert!(
        elsewhere.contains("PipelineNotFoundException"),
        "{elsewhere}"
    );

    let build = moto.aws(
        REGION,
        &[
            "codebuild",
            "start-build",
            "--project-name",
            "core-infra-build",
            "--source-version",
            commit,
        ],
    );
    assert_eq!(build["build"]["sourceVersion"], commit);

    let starts = moto.recorded("StartPipelineExecution");
    assert_eq!(starts.len(), 2, "{starts:#?}");
    assert_eq!(starts[0]["name"], "core-infra-deploy");
    assert_eq!(starts[0]["clientRequestToken"], format!("tozai-{commit}"));
    let recorded = moto.recorded_requests();
    let builds: Vec<_> = recorded
        .iter()
        .filter(|r| r.operation() == Some("StartBuild"))
        .collect();
    assert_eq!(builds.len(), 1);
    assert_eq!(builds[0].target_prefix(), Some("CodeBuild_20161006"));
    assert_eq!(builds[0].method, "POST");
}
