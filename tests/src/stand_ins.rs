//! Stand-ins for the AWS APIs tozai calls, on loopback, for real AWS SDK clients (give them
//! [`CodeCommitApi::endpoint_url`] or [`Moto::endpoint_url`] as `endpoint_url`).
//!
//! - [`CodeCommitApi`]: CodeCommit's JSON API (`GetDifferences`, `GetBranch`, `GetCommit`, `GetRepository`,
//!   `GetMergeOptions`, `ListBranches`) answered by `tests/support/codecommit_api.py`, a Python
//!   standard-library server that computes every answer with the git CLI from the bare
//!   repositories `<repos_root>/NAME` (the layout [`GitServer`](crate::server::GitServer)
//!   serves: give both the same directory) and verifies each request's SigV4 signature in
//!   full. What it does where CodeCommit's behaviour is unverified (renames, unrelated
//!   histories) is documented at the top of that file; [`Renames`] chooses the rename shape.
//! - [`Moto`]: `moto_server` (pip package `moto[server]`, in the tests' virtualenv) for
//!   CodePipeline, CodeBuild, DynamoDB, EventBridge, SQS and IAM, with helpers that set up
//!   pipelines, projects and EventBridge-to-SQS captures through the virtualenv's `aws` CLI,
//!   so a test's set-up shares no code with tozai.
//!
//! Both run under a watchdog: the CodeCommit stand-in exits by itself after
//! [`LIFETIME_SECS`] or as soon as the test process is gone; moto runs under
//! `timeout -s KILL 600`. Dropping either kills it by its process id. Missing tools are
//! failures, never skips: the panic says what to install. The virtualenv is
//! `$TOZAI_TEST_VENV`, else `<workspace>/.venv` (`bash scripts/setup-test-env.sh` builds it);
//! the Python for the CodeCommit stand-in is `$TOZAI_TEST_PYTHON`, else `python3`.
//!
//! ```no_run
//! use tozai::git_auth::Credentials;
//! use tozai_tests::stand_ins::{CodeCommitApi, Moto};
//!
//! let repos = tempfile::TempDir::new().unwrap();
//! let credentials = Credentials {
//!     access_key_id: "AKIDTEST".into(),
//!     secret_access_key: "secret".into(),
//!     session_token: None,
//! };
//! let codecommit = CodeCommitApi::start(repos.path(), &[credentials]);
//! // ... an aws-sdk-codecommit client with .endpoint_url(codecommit.endpoint_url()) ...
//! let pages = codecommit.requests_of("GetDifferences").len();
//!
//! let moto = Moto::start();
//! moto.create_codebuild_project("ap-northeast-3", "core-infra-build");
//! let queue = moto.sqs_queue_receiving(
//!     "ap-northeast-3",
//!     "default",
//!     &serde_json::json!({"source": ["tozai"]}),
//! );
//! // ... the code under test puts events with .endpoint_url(moto.endpoint_url()) ...
//! let events = moto.received(&queue);
//! ```

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tempfile::TempDir;
use tozai::git_auth::Credentials;

use crate::server::{AwsCli, find_program, find_python, free_port, process_group};
use crate::tls::{self, Expected, https_exchange};

/// The watchdog: a stand-in stops after this many seconds whatever happens to the test.
pub const LIFETIME_SECS: u32 = 600;
/// The account id moto answers for.
pub const MOTO_ACCOUNT_ID: &str = "123456789012";
/// How long a start may take before it is a failure.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Ports tried when another process takes moto's chosen port first.
const PORT_ATTEMPTS: u32 = 5;

/// How the CodeCommit stand-in reports a rename git detects (CodeCommit's own answer is
/// unverified, see `tests/support/codecommit_api.py`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Renames {
    /// One difference, `changeType` `M`, `beforeBlob` at the old path, `afterBlob` at the new.
    #[default]
    Paired,
    /// A `D` of the old path and an `A` of the new one.
    Split,
}

/// A running CodeCommit API stand-in; see the [module documentation](self). Dropping it
/// kills the server.
#[derive(Debug)]
pub struct CodeCommitApi {
    dir: TempDir,
    repos_root: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl CodeCommitApi {
    /// Serves the bare repositories under `repos_root` to requests signed with one of
    /// `credentials` (any region), reporting renames as [`Renames::Paired`].
    pub fn start(repos_root: &Path, credentials: &[Credentials]) -> Self {
        Self::start_with_renames(repos_root, credentials, Renames::Paired)
    }

    /// Like [`start`](Self::start), with the rename shape chosen.
    pub fn start_with_renames(
        repos_root: &Path,
        credentials: &[Credentials],
        renames: Renames,
    ) -> Self {
        let python = find_python();
        let git = find_program("git", &[]).unwrap_or_else(|| {
            panic!("git is not installed: install it (Debian/Ubuntu: apt-get install -y git)")
        });
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("support/codecommit_api.py");
        assert!(script.is_file(), "{} is missing", script.display());
        let repos_root = fs::canonicalize(repos_root)
            .unwrap_or_else(|e| panic!("repos root {} is not usable: {e}", repos_root.display()));
        let dir = tempfile::Builder::new()
            .prefix("tozai-codecommit-api-")
            .tempdir()
            .expect("cannot create the stand-in's temporary directory");
        let token = ready_token("codecommit-api");
        let keys: Vec<Value> = credentials
            .iter()
            .map(|c| {
                json!({
                    "access_key_id": c.access_key_id,
                    "secret_access_key": c.secret_access_key,
                    "session_token": c.session_token,
                })
            })
            .collect();
        let config = json!({
            "repos_root": repos_root,
            "git": git,
            "renames": match renames { Renames::Paired => "paired", Renames::Split => "split" },
            "max_skew_seconds": 900,
            "ready_token": token,
            "credentials": keys,
        });
        let config_file = dir.path().join("config.json");
        fs::write(
            &config_file,
            serde_json::to_vec_pretty(&config).expect("JSON"),
        )
        .expect("cannot write the stand-in's configuration");
        let port_file = dir.path().join("port");
        let cert = tls::run_ca().issue(&["127.0.0.1", "localhost"], dir.path(), "server");
        let log = File::create(dir.path().join("server.log")).expect("cannot create the log");
        let mut child = Command::new(&python)
            .arg(&script)
            .arg("--config")
            .arg(&config_file)
            .arg("--port-file")
            .arg(&port_file)
            .arg("--cert")
            .arg(&cert.chain)
            .arg("--key")
            .arg(&cert.key)
            .args(["--lifetime", &LIFETIME_SECS.to_string()])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("LC_ALL", "C")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("cannot share the log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));

        let deadline = Instant::now() + READY_TIMEOUT;
        let mut api = loop {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "the CodeCommit API stand-in exited ({status}) before it was ready\n{}",
                    read_log(dir.path())
                );
            }
            if let Some(port) = fs::read_to_string(&port_file)
                .ok()
                .and_then(|p| p.trim().parse().ok())
            {
                break Self {
                    dir,
                    repos_root,
                    port,
                    child: Some(child),
                };
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the CodeCommit API stand-in did not listen within {READY_TIMEOUT:?}\n{}",
                    read_log(dir.path())
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let answer = http(api.port, "GET", "/_stand-in/ready", Duration::from_secs(10));
        if !matches!(&answer, Ok((200, body)) if serde_json::from_slice::<Value>(body).ok() == Some(Value::String(token.clone())))
        {
            api.kill();
            panic!(
                "port {} does not answer as this CodeCommit API stand-in: {answer:?}\n{}",
                api.port,
                api.log()
            );
        }
        api
    }

    /// `https://127.0.0.1:PORT`: the `endpoint_url` for a CodeCommit client.
    pub fn endpoint_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Where the served bare repositories are (canonicalised).
    pub fn repos_root(&self) -> &Path {
        &self.repos_root
    }

    /// The server's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Every request received so far, in order: `{"operation", "body", "status", "error",
    /// "access_key_id", "region"}` (`operation` without the `CodeCommit_20150413.` prefix,
    /// `body` the parsed JSON, `error` the exception name or null), refused ones included.
    pub fn requests(&self) -> Vec<Value> {
        let (status, body) = http(
            self.port,
            "GET",
            "/_stand-in/requests",
            Duration::from_secs(30),
        )
        .unwrap_or_else(|e| panic!("cannot read the stand-in's requests: {e}\n{}", self.log()));
        assert_eq!(status, 200, "GET /_stand-in/requests\n{}", self.log());
        match serde_json::from_slice(&body) {
            Ok(Value::Array(requests)) => requests,
            other => panic!("unreadable request list {other:?}\n{}", self.log()),
        }
    }

    /// The bodies of the requests for `operation` (`"GetDifferences"`), in order.
    pub fn requests_of(&self, operation: &str) -> Vec<Value> {
        self.requests()
            .into_iter()
            .filter(|r| r["operation"] == operation)
            .map(|r| r["body"].clone())
            .collect()
    }

    /// Forgets the requests received so far.
    pub fn clear_requests(&self) {
        let answer = http(
            self.port,
            "DELETE",
            "/_stand-in/requests",
            Duration::from_secs(30),
        );
        assert!(
            matches!(answer, Ok((200, _))),
            "DELETE /_stand-in/requests: {answer:?}"
        );
    }

    /// The server's log (one line per request, and any internal error), for failure messages.
    pub fn log(&self) -> String {
        read_log(self.dir.path())
    }

    /// Kills the server (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for CodeCommitApi {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An SQS queue that receives what an EventBridge rule matched; see
/// [`Moto::sqs_queue_receiving`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queue {
    pub region: String,
    pub url: String,
    pub arn: String,
    /// The EventBridge rule that targets the queue.
    pub rule: String,
}

/// One request moto's recorder saw (see [`Moto::recorded_requests`]).
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    pub url: String,
    /// Header names as sent, in the order moto kept them.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RecordedRequest {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The operation of a JSON-protocol request: `X-Amz-Target`'s part after the dot
    /// (`StartPipelineExecution`).
    pub fn operation(&self) -> Option<&str> {
        let target = self.header("X-Amz-Target")?;
        Some(target.rsplit_once('.').map_or(target, |(_, op)| op))
    }

    /// The service prefix of `X-Amz-Target` (`CodePipeline_20150709`).
    pub fn target_prefix(&self) -> Option<&str> {
        Some(self.header("X-Amz-Target")?.split_once('.')?.0)
    }

    /// The body parsed as JSON (null when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// A running `moto_server`; see the [module documentation](self). Dropping it kills it.
#[derive(Debug)]
pub struct Moto {
    dir: TempDir,
    port: u16,
    child: Option<Child>,
    aws: AwsCli,
    pipeline_role: OnceLock<String>,
    codebuild_role: OnceLock<String>,
    rules: AtomicU32,
}

impl Moto {
    /// Starts `moto_server -H 127.0.0.1 -p PORT` from the tests' virtualenv (recording every
    /// request, see [`recorded_requests`](Self::recorded_requests)) and waits until it answers.
    pub fn start() -> Self {
        let moto_server = crate::venv().join("bin").join("moto_server");
        assert!(
            moto_server.is_file(),
            "moto_server is not installed at {}: run `bash scripts/setup-test-env.sh` in the \
             workspace root (it installs moto[server] and awscli from \
             scripts/requirements-test.txt into .venv), or set TOZAI_TEST_VENV to a virtualenv \
             that has them",
            moto_server.display()
        );
        let timeout = find_program("timeout", &[]).unwrap_or_else(|| {
            panic!("`timeout` is not installed: install coreutils (apt-get install -y coreutils)")
        });
        let aws = AwsCli::find();
        let dir = tempfile::Builder::new()
            .prefix("tozai-moto-")
            .tempdir()
            .expect("cannot create moto's temporary directory");
        let cert = tls::run_ca().issue(&["127.0.0.1", "localhost"], dir.path(), "server");
        let mut last = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port();
            let log_path = dir.path().join("server.log");
            let log = File::create(&log_path).expect("cannot create moto's log");
            let mut child = Command::new(&timeout)
                .args(["-s", "KILL", &LIFETIME_SECS.to_string()])
                .arg(&moto_server)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .arg("-c")
                .arg(&cert.chain)
                .arg("-k")
                .arg(&cert.key)
                .env_clear()
                .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                .env("HOME", dir.path())
                .env("LC_ALL", "C.UTF-8")
                .env("PYTHONDONTWRITEBYTECODE", "1")
                .env("MOTO_ENABLE_RECORDING", "true")
                .env("MOTO_RECORDER_FILEPATH", dir.path().join("recording.jsonl"))
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("cannot share moto's log"))
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", timeout.display()));
            let deadline = Instant::now() + READY_TIMEOUT;
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    last = fs::read_to_string(&log_path).unwrap_or_default();
                    if last.contains("in use") {
                        break;
                    }
                    panic!("moto_server exited ({status}) on port {port}:\n{last}");
                }
                // moto's configuration, a JSON object: not some other program on the port.
                if let Ok((200..=299, body)) =
                    http(port, "GET", "/moto-api/config", Duration::from_secs(2))
                    && serde_json::from_slice::<Value>(&body).is_ok_and(|v| v.is_object())
                {
                    let moto = Self {
                        dir,
                        port,
                        child: Some(child),
                        aws,
                        pipeline_role: OnceLock::new(),
                        codebuild_role: OnceLock::new(),
                        rules: AtomicU32::new(0),
                    };
                    moto.reset_recording();
                    return moto;
                }
                if Instant::now() > deadline {
                    kill_group(&mut child);
                    panic!(
                        "moto_server did not answer on port {port} within {READY_TIMEOUT:?}:\n{}",
                        fs::read_to_string(&log_path).unwrap_or_default()
                    );
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        panic!("moto_server found no free port in {PORT_ATTEMPTS} attempts:\n{last}")
    }

    /// `https://127.0.0.1:PORT`: the `endpoint_url` for any client of the services moto fakes.
    pub fn endpoint_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The process id of the `timeout` watchdog moto runs under, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Dummy credentials (moto accepts any).
    pub fn credentials() -> Credentials {
        Credentials {
            access_key_id: "testing".into(),
            secret_access_key: "testing".into(),
            session_token: None,
        }
    }

    /// `aws --endpoint-url <moto> --output json` with [`credentials`](Self::credentials),
    /// `region` and nothing else from the environment: add the service, operation and
    /// arguments.
    pub fn aws_command(&self, region: &str) -> Command {
        let mut cmd = self.aws.command(&Self::credentials(), region);
        cmd.args(["--endpoint-url", &self.endpoint_url(), "--output", "json"])
            .args(["--region", region]);
        cmd
    }

    /// Runs `aws ARGS...` against moto in `region`: its JSON answer (null when it printed
    /// nothing), or the standard error when it fails.
    pub fn try_aws(&self, region: &str, args: &[&str]) -> Result<Value, String> {
        let out = self
            .aws_command(region)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.aws.path().display()));
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        if out.stdout.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&out.stdout).map_err(|e| {
            format!(
                "aws {args:?} printed something that is not JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// [`try_aws`](Self::try_aws), panicking with the command, its error and moto's log.
    pub fn aws(&self, region: &str, args: &[&str]) -> Value {
        self.try_aws(region, args).unwrap_or_else(|e| {
            panic!(
                "aws {args:?} (region {region}) against moto failed:\n{e}\n--- moto log\n{}",
                self.log()
            )
        })
    }

    /// Creates the IAM role `name` trusted by `service` (`codepipeline.amazonaws.com`);
    /// returns its ARN.
    pub fn create_service_role(&self, name: &str, service: &str) -> String {
        let trust = json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Principal": {"Service": service},
                "Action": "sts:AssumeRole",
            }],
        })
        .to_string();
        let answer = self.aws(
            "us-east-1",
            &[
                "iam",
                "create-role",
                "--role-name",
                name,
                "--assume-role-policy-document",
                &trust,
            ],
        );
        answer["Role"]["Arn"]
            .as_str()
            .unwrap_or_else(|| panic!("create-role answered {answer}"))
            .to_owned()
    }

    /// Creates the V2 pipeline `name` in `region` with `stages` (CodePipeline's JSON, e.g.
    /// [`source_and_build_stages`]), a role trusting CodePipeline (created once) and an
    /// artifact bucket name; returns the `pipeline` moto answered.
    pub fn create_pipeline(&self, region: &str, name: &str, stages: &[Value]) -> Value {
        let role = self.pipeline_role.get_or_init(|| {
            self.create_service_role("tozai-test-codepipeline", "codepipeline.amazonaws.com")
        });
        let input = json!({
            "pipeline": {
                "name": name,
                "roleArn": role,
                "artifactStore": {"type": "S3", "location": "tozai-test-artifacts"},
                "pipelineType": "V2",
                "stages": stages,
            }
        })
        .to_string();
        let answer = self.aws(
            region,
            &[
                "codepipeline",
                "create-pipeline",
                "--cli-input-json",
                &input,
            ],
        );
        answer["pipeline"].clone()
    }

    /// Creates the CodeBuild project `name` in `region` (source: the CodeCommit repository
    /// of the same name, no artifacts, a role trusting CodeBuild created once); returns the
    /// `project` moto answered.
    pub fn create_codebuild_project(&self, region: &str, name: &str) -> Value {
        let role = self.codebuild_role.get_or_init(|| {
            self.create_service_role("tozai-test-codebuild", "codebuild.amazonaws.com")
        });
        let input = json!({
            "name": name,
            "source": {
                "type": "CODECOMMIT",
                "location": format!("https://git-codecommit.{region}.amazonaws.com/v1/repos/{name}"),
            },
            "artifacts": {"type": "NO_ARTIFACTS"},
            "environment": {
                "type": "LINUX_CONTAINER",
                "image": "aws/codebuild/standard:7.0",
                "computeType": "BUILD_GENERAL1_SMALL",
            },
            "serviceRole": role,
        })
        .to_string();
        let answer = self.aws(
            region,
            &["codebuild", "create-project", "--cli-input-json", &input],
        );
        answer["project"].clone()
    }

    /// Creates tozai's checkpoint table `name` in DynamoDB in `region`: a string partition
    /// key `pk`, on-demand billing. Returns the `TableDescription` moto answered.
    pub fn create_checkpoint_table(&self, region: &str, name: &str) -> Value {
        let answer = self.aws(
            region,
            &[
                "dynamodb",
                "create-table",
                "--table-name",
                name,
                "--attribute-definitions",
                "AttributeName=pk,AttributeType=S",
                "--key-schema",
                "AttributeName=pk,KeyType=HASH",
                "--billing-mode",
                "PAY_PER_REQUEST",
            ],
        );
        answer["TableDescription"].clone()
    }

    /// Creates an SQS queue in `region` and an EventBridge rule on `event_bus` (created when
    /// it is not `default` and does not exist yet) matching `pattern` (an EventBridge event
    /// pattern) that sends every matching event to the queue. Read it with
    /// [`received`](Self::received).
    pub fn sqs_queue_receiving(&self, region: &str, event_bus: &str, pattern: &Value) -> Queue {
        let n = self.rules.fetch_add(1, Ordering::Relaxed);
        let name = format!("tozai-test-events-{n}");
        if event_bus != "default"
            && let Err(e) =
                self.try_aws(region, &["events", "create-event-bus", "--name", event_bus])
        {
            assert!(
                e.contains("ResourceAlreadyExistsException"),
                "cannot create event bus {event_bus}: {e}"
            );
        }
        let url = self.aws(region, &["sqs", "create-queue", "--queue-name", &name])["QueueUrl"]
            .as_str()
            .expect("create-queue answered no QueueUrl")
            .to_owned();
        let attributes = self.aws(
            region,
            &[
                "sqs",
                "get-queue-attributes",
                "--queue-url",
                &url,
                "--attribute-names",
                "QueueArn",
            ],
        );
        let arn = attributes["Attributes"]["QueueArn"]
            .as_str()
            .expect("get-queue-attributes answered no QueueArn")
            .to_owned();
        self.aws(
            region,
            &[
                "events",
                "put-rule",
                "--name",
                &name,
                "--event-bus-name",
                event_bus,
                "--event-pattern",
                &pattern.to_string(),
            ],
        );
        let targets = json!([{"Id": "sqs", "Arn": arn}]).to_string();
        let answer = self.aws(
            region,
            &[
                "events",
                "put-targets",
                "--rule",
                &name,
                "--event-bus-name",
                event_bus,
                "--targets",
                &targets,
            ],
        );
        assert_eq!(
            answer["FailedEntryCount"], 0,
            "put-targets answered {answer}"
        );
        Queue {
            region: region.to_owned(),
            url,
            arn,
            rule: name,
        }
    }

    /// The messages waiting in `queue`, oldest first as far as SQS tells, each parsed as
    /// JSON (for EventBridge, the whole event) or kept as a string; they are deleted, so the
    /// next call returns only newer ones. Moto delivers synchronously: no waiting needed.
    pub fn received(&self, queue: &Queue) -> Vec<Value> {
        let mut events = Vec::new();
        loop {
            let answer = self.aws(
                &queue.region,
                &[
                    "sqs",
                    "receive-message",
                    "--queue-url",
                    &queue.url,
                    "--max-number-of-messages",
                    "10",
                    "--wait-time-seconds",
                    "0",
                ],
            );
            let messages = answer["Messages"].as_array().cloned().unwrap_or_default();
            if messages.is_empty() {
                return events;
            }
            let mut entries = Vec::new();
            for (i, message) in messages.iter().enumerate() {
                let body = message["Body"].as_str().unwrap_or_default();
                events.push(serde_json::from_str(body).unwrap_or_else(|_| json!(body)));
                entries
                    .push(json!({"Id": i.to_string(), "ReceiptHandle": message["ReceiptHandle"]}));
            }
            self.aws(
                &queue.region,
                &[
                    "sqs",
                    "delete-message-batch",
                    "--queue-url",
                    &queue.url,
                    "--entries",
                    &Value::Array(entries).to_string(),
                ],
            );
        }
    }

    /// Every request moto received since it started or since
    /// [`reset_recording`](Self::reset_recording), in order, from moto's recorder
    /// (`/moto-api/recorder/download-recording`). The helpers' own requests are included.
    pub fn recorded_requests(&self) -> Vec<RecordedRequest> {
        let (status, body) = http(
            self.port,
            "GET",
            "/moto-api/recorder/download-recording",
            Duration::from_secs(30),
        )
        .unwrap_or_else(|e| panic!("cannot download moto's recording: {e}"));
        assert_eq!(status, 200, "download-recording answered {status}");
        String::from_utf8_lossy(&body)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|line| {
                let entry: Value = serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("unreadable recording line ({e}): {line}"));
                let text = entry["body"].as_str().unwrap_or_default();
                let body = if entry["body_encoded"] == true {
                    base64_decode(text)
                        .unwrap_or_else(|| panic!("recorded body is not base64: {text}"))
                } else {
                    text.as_bytes().to_vec()
                };
                RecordedRequest {
                    method: entry["method"].as_str().unwrap_or_default().to_owned(),
                    url: entry["url"].as_str().unwrap_or_default().to_owned(),
                    headers: entry["headers"]
                        .as_object()
                        .map(|h| {
                            h.iter()
                                .map(|(k, v)| {
                                    (k.clone(), v.as_str().unwrap_or_default().to_owned())
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                    body,
                }
            })
            .collect()
    }

    /// The recorded JSON-protocol requests for `operation` (`StartPipelineExecution`): their
    /// bodies, in order.
    pub fn recorded(&self, operation: &str) -> Vec<Value> {
        self.recorded_requests()
            .iter()
            .filter(|r| r.operation() == Some(operation))
            .map(RecordedRequest::json)
            .collect()
    }

    /// Forgets the recorded requests (`/moto-api/recorder/reset-recording`).
    pub fn reset_recording(&self) {
        let answer = http(
            self.port,
            "POST",
            "/moto-api/recorder/reset-recording",
            Duration::from_secs(30),
        );
        assert!(
            matches!(answer, Ok((200, _))),
            "reset-recording answered {answer:?}"
        );
    }

    /// moto's output, for failure messages.
    pub fn log(&self) -> String {
        read_log(self.dir.path())
    }

    /// Kills moto and its watchdog (SIGKILL to the watchdog's process group).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_group(&mut child);
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.kill();
    }
}

/// CodePipeline stages for a pipeline fed by a CodeCommit branch: `Source` (action `Source`,
/// `PollForSourceChanges` false) and `Build` (CodeBuild `project`).
pub fn source_and_build_stages(repository: &str, branch: &str, project: &str) -> Vec<Value> {
    vec![
        json!({
            "name": "Source",
            "actions": [{
                "name": "Source",
                "actionTypeId": {
                    "category": "Source", "owner": "AWS", "provider": "CodeCommit", "version": "1"
                },
                "configuration": {
                    "RepositoryName": repository,
                    "BranchName": branch,
                    "PollForSourceChanges": "false",
                },
                "outputArtifacts": [{"name": "SourceOutput"}],
                "runOrder": 1,
            }],
        }),
        json!({
            "name": "Build",
            "actions": [{
                "name": "Build",
                "actionTypeId": {
                    "category": "Build", "owner": "AWS", "provider": "CodeBuild", "version": "1"
                },
                "configuration": {"ProjectName": project},
                "inputArtifacts": [{"name": "SourceOutput"}],
                "runOrder": 1,
            }],
        }),
    ]
}

/// A token only this start knows.
fn ready_token(what: &str) -> String {
    format!(
        "tozai-{what} {} {}",
        std::process::id(),
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    )
}

fn read_log(dir: &Path) -> String {
    fs::read_to_string(dir.join("server.log")).unwrap_or_default()
}

/// Kills `child` (a `timeout` watchdog) and its process group, after checking that the group
/// really is the watchdog's own, then reaps it.
fn kill_group(child: &mut Child) {
    let pid = child.id();
    if process_group(pid) == Some(pid) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .stderr(Stdio::null())
            .status();
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// One HTTP/1.0 request without a body to 127.0.0.1:`port` over TLS (the server's
/// certificate checked against the run's CA): the status and the body.
fn http(port: u16, method: &str, path: &str, timeout: Duration) -> std::io::Result<(u16, Vec<u8>)> {
    let request =
        format!("{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\n\r\n");
    let answer = https_exchange(port, &Expected::run_ca(), request.as_bytes(), timeout)?;
    let unreadable = || std::io::Error::other("unreadable HTTP answer");
    let end = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(unreadable)?;
    let status = std::str::from_utf8(&answer[..end])
        .ok()
        .and_then(|head| head.split(' ').nth(1)?.parse().ok())
        .ok_or_else(unreadable)?;
    Ok((status, answer[end + 4..].to_vec()))
}

/// Standard base64 (padding optional, whitespace ignored).
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
    {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = acc << 6 | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::base64_decode;

    #[test]
    fn base64_decodes_with_and_without_padding() {
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64_decode("aGVsbG8").unwrap(), b"hello");
        assert_eq!(base64_decode("").unwrap(), b"");
        assert_eq!(base64_decode("YWJj\nZA==").unwrap(), b"abcd");
        assert!(base64_decode("a$b").is_none());
    }
}
