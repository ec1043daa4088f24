//! `tozai demo`: two local "regions" and a walk through the pushes that show what tozai
//! does, with no AWS account.
//!
//! The demo runs the Lambdas' own code: each push it makes becomes a "CodeCommit
//! Repository State Change" event shaped exactly like AWS's (the region's `aws_region`, the
//! repository's name), parsed with [`tozai::event::from_value`] and handed to
//! [`sync_judge`], [`pipeline_judge`] and [`mirror_job`] over local adapters (a file-backed
//! checkpoint store, a starter that records starts, an in-memory bus, the live git2 mirror
//! on local paths). The events the judges publish are dispatched like EventBridge would:
//! `Sync Requested` to the mirror, and the mirror's push to the standby (as CodeCommit
//! would report it) to the standby's pipeline-judge.
//!
//! The demo checks its own expectations after each step and exits 1 naming the step that
//! misbehaved, so it is a smoke test too.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tozai::adapters::git::Git2Changes;
use tozai::adapters::local::{FileStore, MemoryBus, RecordingStarter, rfc3339, tozai_event};
use tozai::config::Config;
use tozai::event::{Inbound, RefChange, SYNC_REQUESTED};
use tozai::judge::{
    DecisionRecord, IgnoredCallers, SYNC_COMPLETED, SYNC_FAILED, TargetRecord, mirror_job,
    pipeline_judge, sync_judge,
};
use tozai::lambda::LiveMirror;
use tozai::refs::CommitId;

#[derive(clap::Args)]
pub struct Options {
    /// Keep the demo's repositories, config, checkpoints and recorded starts in DIR
    /// (created; a previous demo's DIR is replaced) instead of a temporary directory.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Print each decision record as a JSON line instead of the timeline.
    #[arg(long)]
    pub json: bool,
}

/// The example config the demo runs (its two `repository` lines are rewritten).
const EXAMPLE: &str = include_str!("../../examples/tozai.toml");
/// Marks a directory as the demo's, so that a second run may replace it.
const MARKER: &str = ".tozai-demo";
const ACCOUNT: &str = "111111111111";
const DEVELOPER: &str = "arn:aws:iam::111111111111:user/developer";
const ONCALL: &str = "arn:aws:iam::111111111111:user/osaka-oncall";
/// The mirror's role: its pushes carry this caller, and the sync-judge ignores them.
const MIRROR_ROLE: &str = "tozai-mirror";
const MIRROR_CALLER: &str = "arn:aws:sts::111111111111:assumed-role/tozai-mirror/tozai-mirror";
const MAIN: &str = "refs/heads/main";
const TAG: &str = "v1.0.0";

pub fn run(o: Options) -> anyhow::Result<ExitCode> {
    let (dir, keep) = prepare_dir(o.dir.as_deref())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // The timeline shows what the judges' logs would say; `-v` shows the logs as well.
    let _quiet = (!tracing::enabled!(tracing::Level::INFO))
        .then(|| tracing::dispatcher::set_default(&tracing::Dispatch::none()));
    let started = Instant::now();
    let outcome = runtime.block_on(async {
        let mut demo = Demo::set_up(&dir, o.json).await?;
        demo.walk().await?;
        Ok::<_, anyhow::Error>(demo)
    });
    let demo = match outcome {
        Ok(demo) => demo,
        Err(e) => {
            errln!("tozai demo: the demo's files are in {}", dir.display());
            return Err(e);
        }
    };
    let elapsed = started.elapsed();
    if !o.json {
        demo.summary(keep, elapsed)?;
    }
    if demo.failures.is_empty() {
        if !keep {
            let _ = std::fs::remove_dir_all(&dir);
        }
        Ok(ExitCode::SUCCESS)
    } else {
        for f in &demo.failures {
            errln!("tozai demo: step {f}");
        }
        errln!(
            "tozai demo: {} step(s) did not behave as expected; the demo's files are in {}",
            demo.failures.len(),
            dir.display()
        );
        Ok(ExitCode::from(crate::EXIT_FAILED))
    }
}

/// The demo's directory: `--dir` (created, or a previous demo's replaced), or a new
/// temporary one. Returns it (absolute) and whether to keep it.
fn prepare_dir(dir: Option<&Path>) -> anyhow::Result<(PathBuf, bool)> {
    let (dir, keep) = match dir {
        Some(d) => {
            if d.exists() {
                let mut entries = std::fs::read_dir(d)
                    .with_context(|| format!("--dir {}: cannot read it", d.display()))?;
                if entries.next().is_some() {
                    if !d.join(MARKER).exists() {
                        bail!(
                            "--dir {}: the directory is not empty (give a new or empty directory; a previous demo's is replaced)",
                            d.display()
                        );
                    }
                    std::fs::remove_dir_all(d).with_context(|| {
                        format!("--dir {}: cannot replace the previous demo", d.display())
                    })?;
                }
            }
            std::fs::create_dir_all(d).with_context(|| format!("--dir {}", d.display()))?;
            (d.to_owned(), true)
        }
        None => {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
            let d =
                std::env::temp_dir().join(format!("tozai-demo-{}-{nanos:08x}", std::process::id()));
            std::fs::create_dir(&d)
                .with_context(|| format!("cannot create the directory {}", d.display()))?;
            (d, false)
        }
    };
    let dir = dir
        .canonicalize()
        .with_context(|| format!("--dir {}", dir.display()))?;
    std::fs::write(
        dir.join(MARKER),
        "made by `tozai demo`; a later `tozai demo --dir` here replaces this directory\n",
    )
    .with_context(|| format!("cannot write in {}", dir.display()))?;
    Ok((dir, keep))
}

/// The example config with each region's `repository` rewritten to a local bare
/// repository `./REGION/NAME.git` next to the config; everything else as it is.
fn demo_config() -> anyhow::Result<String> {
    let mut out = String::from(
        "# Written by `tozai demo`: examples/tozai.toml, with each region's repository a local\n\
         # bare repository standing in for CodeCommit.\n\n",
    );
    let mut region: Option<String> = None;
    let mut rewritten = 0;
    for line in EXAMPLE.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            region = t
                .strip_prefix("[regions.")
                .and_then(|r| r.strip_suffix(']'))
                .map(str::to_owned);
        }
        match (&region, t.strip_prefix("repository")) {
            (Some(r), Some(rest)) if rest.trim_start().starts_with('=') => {
                let name = rest
                    .split('"')
                    .nth(1)
                    .filter(|n| !n.is_empty())
                    .context("examples/tozai.toml: a repository line without a quoted name")?;
                let _ = writeln!(
                    out,
                    "repository = \"./{r}/{name}.git\"    # a local bare repository"
                );
                rewritten += 1;
            }
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    if rewritten != 2 {
        bail!("examples/tozai.toml: expected 2 repository lines, found {rewritten}");
    }
    Ok(out)
}

// ---------------------------------------------------------------- git

/// The git CLI, isolated from the user's configuration, with fixed identities and dates
/// (so the demo's commit ids are the same on every run).
struct Git {
    minute: std::cell::Cell<u32>,
}

impl Git {
    fn run_as(&self, dir: &Path, who: (&str, &str), args: &[&str]) -> anyhow::Result<String> {
        let minute = self.minute.get();
        self.minute.set(minute + 1);
        let date = format!(
            "2024-04-01T{:02}:{:02}:00+09:00",
            9 + minute / 60,
            minute % 60
        );
        let mut cmd = Command::new("git");
        cmd.arg("-C").arg(dir).args(args);
        for var in [
            "GIT_DIR",
            "GIT_WORK_TREE",
            "GIT_INDEX_FILE",
            "GIT_OBJECT_DIRECTORY",
            "GIT_ALTERNATE_OBJECT_DIRECTORIES",
            "GIT_CEILING_DIRECTORIES",
            "GIT_CONFIG",
            "GIT_CONFIG_COUNT",
            "GIT_CONFIG_PARAMETERS",
        ] {
            cmd.env_remove(var);
        }
        cmd.env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_AUTHOR_NAME", who.0)
            .env("GIT_AUTHOR_EMAIL", who.1)
            .env("GIT_COMMITTER_NAME", who.0)
            .env("GIT_COMMITTER_EMAIL", who.1)
            .env("GIT_AUTHOR_DATE", &date)
            .env("GIT_COMMITTER_DATE", &date)
            .env("LC_ALL", "C");
        let shown = format!("git {}", args.join(" "));
        let out = match cmd.output() {
            Ok(out) => out,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                bail!("the demo needs the git CLI: `git` was not found on PATH")
            }
            Err(e) => {
                return Err(crate::OperationFailed::wrap(
                    anyhow::Error::new(e).context(format!("cannot run {shown}")),
                ));
            }
        };
        if !out.status.success() {
            return Err(crate::OperationFailed::wrap(anyhow::anyhow!(
                "{shown} (in {}) failed: {}",
                dir.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn run(&self, dir: &Path, args: &[&str]) -> anyhow::Result<String> {
        self.run_as(dir, ("Dev Eloper", "developer@example.com"), args)
    }

    /// Branches and tags: full name -> (the object it points at, the commit it peels to).
    fn refs(&self, repo: &Path) -> anyhow::Result<BTreeMap<String, (String, String)>> {
        let text = self.run(
            repo,
            &[
                "for-each-ref",
                "--format=%(refname) %(objectname) %(*objectname)",
                "refs/heads",
                "refs/tags",
            ],
        )?;
        Ok(text
            .lines()
            .filter_map(|l| {
                let mut parts = l.split(' ');
                let name = parts.next()?.to_owned();
                let object = parts.next()?.to_owned();
                let peeled = parts
                    .next()
                    .filter(|p| !p.is_empty())
                    .unwrap_or(&object)
                    .to_owned();
                Some((name, (object, peeled)))
            })
            .collect())
    }

    /// The commit a ref peels to, if it exists.
    fn head(&self, repo: &Path, reference: &str) -> anyhow::Result<Option<String>> {
        Ok(self.refs(repo)?.remove(reference).map(|(_, peeled)| peeled))
    }

    fn write(&self, work: &Path, path: &str, text: &str) -> anyhow::Result<()> {
        let file = work.join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&file, text).with_context(|| format!("cannot write {}", file.display()))
    }

    fn commit_as(&self, work: &Path, who: (&str, &str), message: &str) -> anyhow::Result<String> {
        self.run_as(work, who, &["add", "-A"])?;
        self.run_as(work, who, &["commit", "-q", "--no-verify", "-m", message])?;
        Ok(self.run(work, &["rev-parse", "HEAD"])?.trim().to_owned())
    }
}

// ---------------------------------------------------------------- the example repository

const README: &str = "# core-infra\n\nCloudFormation for the core system, deployed in Tokyo (primary) and Osaka (warm standby):\n\n- `common/`: templates both regions deploy\n- `primary/`: Tokyo only\n- `secondary/`: Osaka only\n";

const RUNBOOK: &str = "# Failover runbook\n\n1. Check the standby is current: `tozai status -c tozai.toml`.\n2. Change `primary = \"tokyo\"` to `primary = \"osaka\"` in tozai.toml and deploy it.\n";

const VPC: &str = "AWSTemplateFormatVersion: \"2010-09-09\"\nDescription: The core VPC (both regions)\nParameters:\n  CidrBlock:\n    Type: String\nResources:\n  Vpc:\n    Type: AWS::EC2::VPC\n    Properties:\n      CidrBlock: !Ref CidrBlock\n      EnableDnsSupport: true\n";

const QUEUE: &str = "AWSTemplateFormatVersion: \"2010-09-09\"\nDescription: The order queue (both regions)\nResources:\n  Orders:\n    Type: AWS::SQS::Queue\n    Properties:\n      VisibilityTimeout: 60\n";

fn root(region: &str, cidr: &str, count: u32) -> String {
    format!(
        "AWSTemplateFormatVersion: \"2010-09-09\"\nDescription: {region}'s root stack\nResources:\n  Network:\n    Type: AWS::CloudFormation::Stack\n    Properties:\n      TemplateURL: ../../common/templates/vpc.yaml\n      Parameters:\n        CidrBlock: {cidr}\n  Queue:\n    Type: AWS::CloudFormation::Stack\n    Properties:\n      TemplateURL: ../../common/templates/queue.yaml\n  App:\n    Type: AWS::ECS::Service\n    Properties:\n      DesiredCount: {count}\n"
    )
}

// ---------------------------------------------------------------- events

/// A "CodeCommit Repository State Change" event, exactly as AWS's sample is shaped.
#[allow(clippy::too_many_arguments)]
fn state_change(
    id: &str,
    aws_region: &str,
    repository: &str,
    repository_id: &str,
    reference: &str,
    old: Option<&str>,
    new: Option<&str>,
    caller: &str,
) -> Value {
    let event = match (old, new) {
        (None, _) => "referenceCreated",
        (Some(_), Some(_)) => "referenceUpdated",
        (Some(_), None) => "referenceDeleted",
    };
    let (kind, short) = match reference.strip_prefix("refs/tags/") {
        Some(t) => ("tag", t),
        None => ("branch", reference.trim_start_matches("refs/heads/")),
    };
    let mut detail = json!({
        "callerUserArn": caller,
        "event": event,
        "referenceFullName": reference,
        "referenceName": short,
        "referenceType": kind,
        "repositoryId": repository_id,
        "repositoryName": repository,
    });
    if let Some(o) = old {
        detail["oldCommitId"] = json!(o);
    }
    if let Some(n) = new {
        detail["commitId"] = json!(n);
    }
    json!({
        "version": "0",
        "id": id,
        "detail-type": "CodeCommit Repository State Change",
        "source": "aws.codecommit",
        "account": ACCOUNT,
        "time": rfc3339(std::time::SystemTime::now()),
        "region": aws_region,
        "resources": [format!("arn:aws:codecommit:{aws_region}:{ACCOUNT}:{repository}")],
        "detail": detail,
    })
}

/// What EventBridge has to deliver.
#[derive(Debug, Clone)]
enum Delivery {
    /// A CodeCommit event from the region (config name) whose repository changed.
    CodeCommit { region: String, event: Value },
    /// One of tozai's own events.
    Tozai { detail_type: String, detail: Value },
}

/// One region: its config name, AWS region, and local repository.
struct Site {
    name: String,
    aws_region: String,
    repository: String,
    repository_id: &'static str,
    bare: PathBuf,
    changes: Git2Changes,
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

// ---------------------------------------------------------------- the demo

struct Demo {
    dir: PathBuf,
    json: bool,
    config: Config,
    primary: Site,
    standby: Site,
    store: FileStore,
    starter: RecordingStarter,
    bus: MemoryBus,
    mirror: LiveMirror,
    ignored: IgnoredCallers,
    git: Git,
    /// The developer's clone of the primary.
    work: PathBuf,
    /// The step being run, and when its push began.
    step: u32,
    t0: Instant,
    events: u32,
    /// `N. title: problem`, for each step that misbehaved.
    failures: Vec<String>,
    /// What each step pushed, for the summary: (step, commit, what).
    pushed: Vec<(u32, String, String)>,
    /// The records of the current step.
    records: Vec<DecisionRecord>,
    /// tozai's events published during the current step.
    published: Vec<(String, Value)>,
    /// Every CodeCommit event delivered, with its step (to deliver some again).
    delivered: Vec<(u32, Delivery)>,
}

impl Demo {
    async fn set_up(dir: &Path, json: bool) -> anyhow::Result<Self> {
        let git = Git {
            minute: std::cell::Cell::new(0),
        };
        let config_path = dir.join("tozai.toml");
        std::fs::write(&config_path, demo_config()?)
            .with_context(|| format!("cannot write {}", config_path.display()))?;
        let config = Config::load(&config_path)?;
        let site = |region: &tozai::config::Region, id| -> anyhow::Result<Site> {
            let tozai::location::Location::Local(bare) = &region.repository else {
                bail!("region {}'s repository is not a local path", region.name);
            };
            std::fs::create_dir_all(bare)?;
            git.run(bare, &["init", "-q", "--bare", "-b", "main"])?;
            // `./tokyo/x.git` relative to the config: shown without the `./`.
            let bare: PathBuf = bare.components().collect();
            Ok(Site {
                name: region.name.clone(),
                aws_region: region.aws_region.clone(),
                repository: region.repository.name(),
                repository_id: id,
                changes: Git2Changes::open(&bare)?,
                bare,
            })
        };
        let primary = site(config.primary(), "280e6f04-7a9c-4c72-8d8f-947d83e21a96")?;
        let standby = site(config.standby(), "6b1f0a53-2d8e-4c1b-9a47-3e5d7c90f812")?;
        let store = FileStore::open(dir.join("state"))?;
        let target = config.standby().repository.clone();
        let mirror = LiveMirror {
            access: None,
            source: config.primary().repository.clone(),
            ledger: Some(std::sync::Arc::new(store.ledger(target.to_string()))),
            target,
            cache: dir.join("cache"),
            force: false,
            dry_run: false,
        };
        let mut demo = Self {
            dir: dir.to_owned(),
            json,
            store,
            starter: RecordingStarter::new(dir.join("starts.jsonl")),
            bus: MemoryBus::new(),
            mirror,
            ignored: IgnoredCallers::parse(MIRROR_ROLE).map_err(anyhow::Error::msg)?,
            work: dir.join("work"),
            git,
            config,
            primary,
            standby,
            step: 0,
            t0: Instant::now(),
            events: 0,
            failures: Vec::new(),
            pushed: Vec::new(),
            records: Vec::new(),
            published: Vec::new(),
            delivered: Vec::new(),
        };
        demo.seed().await?;
        Ok(demo)
    }

    fn say(&self, text: impl AsRef<str>) {
        if !self.json {
            outln!("{}", text.as_ref());
        }
    }

    /// One timeline line: milliseconds since the step began, the region, what happened.
    fn line(&self, region: &str, text: impl AsRef<str>) {
        let ms = self.t0.elapsed().as_millis();
        self.say(format!("  +{ms:>4} ms  {region:<12} {}", text.as_ref()));
    }

    /// The example repository in the primary, and the standby's first copy.
    async fn seed(&mut self) -> anyhow::Result<()> {
        let w = &self.work;
        std::fs::create_dir_all(w)?;
        self.git.run(w, &["init", "-q", "-b", "main"])?;
        let origin = self.primary.bare.display().to_string();
        self.git.run(w, &["remote", "add", "origin", &origin])?;
        for (path, text) in [
            ("README.md", README.to_owned()),
            ("docs/runbook.md", RUNBOOK.to_owned()),
            ("common/templates/vpc.yaml", VPC.to_owned()),
            ("common/templates/queue.yaml", QUEUE.to_owned()),
            (
                "primary/templates/root.yaml",
                root("Tokyo", "10.0.0.0/16", 4),
            ),
            (
                "secondary/templates/root.yaml",
                root("Osaka", "10.1.0.0/16", 2),
            ),
        ] {
            self.git.write(w, path, &text)?;
        }
        let seed = self.git.commit_as(
            w,
            ("Dev Eloper", "developer@example.com"),
            "core-infra: initial layout",
        )?;
        self.git.run(w, &["push", "-q", "origin", "main"])?;

        let tests = tozai::ruletest::run(&self.config);
        let passed = tests.iter().filter(|t| t.passed()).count();
        self.say(format!(
            "tozai demo: two local regions, the Lambdas' own code, no AWS account\n\n\
             config   {} (examples/tozai.toml with local repositories: {passed} of {} rule tests pass)\n\
             {:<8} {} ({}), the primary\n\
             {:<8} {} ({}), the standby\n\
             starts   {} (the recording starter: one JSON line per pipeline start)\n\
             state    {} (checkpoints and start claims, DynamoDB's conditional writes)\n\n\
             Each step makes its pushes with git, then hands the events CodeCommit would send to the\n\
             judges, as EventBridge would. Timeline: ms since the step began, region, what happened.\n",
            self.dir.join("tozai.toml").display(),
            tests.len(),
            self.primary.name,
            self.primary.bare.display(),
            self.primary.aws_region,
            self.standby.name,
            self.standby.bare.display(),
            self.standby.aws_region,
            self.starter.path().display(),
            self.store.path().display(),
        ));
        if passed != tests.len() {
            self.failures
                .push("0 (setup): the example config's rule tests fail".to_owned());
        }

        // The initial mirror is the mirror's scheduled reconciliation (before the event
        // rules exist, so nothing is judged).
        self.say(format!(
            "0. Setup: the example repository pushed to {}; the standby's first copy made by the mirror's\n   \
             scheduled reconciliation (tozai's event rules do not exist yet: nothing is judged)",
            self.primary.name
        ));
        self.t0 = Instant::now();
        let schedule = json!({
            "version": "0", "id": "demo-schedule", "detail-type": "Scheduled Event",
            "source": "aws.events", "account": ACCOUNT,
            "time": rfc3339(std::time::SystemTime::now()),
            "region": self.primary.aws_region,
            "resources": [format!("arn:aws:events:{}:{ACCOUNT}:rule/tozai-reconcile", self.primary.aws_region)],
            "detail": {},
        });
        let inbound = tozai::event::from_value(schedule)?;
        let result = mirror_job(&self.config, &self.mirror, &self.bus, inbound).await;
        self.judged(result);
        let published = self.bus.take();
        self.show_published(&published);
        let problems = {
            let mut p = Vec::new();
            self.expect_head(&mut p, &self.standby, MAIN, Some(&seed))?;
            p
        };
        self.conclude(
            &format!(
                "{}'s main is {}'s, at {}",
                self.standby.name,
                self.primary.name,
                short(&seed)
            ),
            problems,
            "0 (setup)",
        );
        Ok(())
    }

    /// The primary's site, or the standby's.
    fn site(&self, primary: bool) -> &Site {
        if primary {
            &self.primary
        } else {
            &self.standby
        }
    }

    fn next_id(&mut self) -> String {
        self.events += 1;
        format!("demo-{:04}", self.events)
    }

    /// The events CodeCommit sends for what changed between two snapshots of a region's refs.
    fn ref_events(
        &mut self,
        at: &str,
        before: &BTreeMap<String, (String, String)>,
        after: &BTreeMap<String, (String, String)>,
        caller: &str,
    ) -> Vec<Delivery> {
        let mut names: Vec<&String> = before.keys().chain(after.keys()).collect();
        names.sort();
        names.dedup();
        let mut out = Vec::new();
        for name in names {
            let old = before.get(name);
            let new = after.get(name);
            if old.map(|o| &o.0) == new.map(|n| &n.0) {
                continue;
            }
            let id = self.next_id();
            let site = self.site(at == self.primary.name);
            let event = state_change(
                &id,
                &site.aws_region,
                &site.repository,
                site.repository_id,
                name,
                old.map(|o| o.1.as_str()),
                new.map(|n| n.1.as_str()),
                caller,
            );
            out.push(Delivery::CodeCommit {
                region: at.to_owned(),
                event,
            });
        }
        out
    }

    /// Pushes `refspecs` from `clone` to `site`'s repository, as `caller`; the events
    /// CodeCommit would send.
    fn push(
        &mut self,
        clone: &Path,
        to_primary: bool,
        refspecs: &[&str],
        caller: &str,
    ) -> anyhow::Result<Vec<Delivery>> {
        let site = self.site(to_primary);
        let (bare, name) = (site.bare.clone(), site.name.clone());
        let before = self.git.refs(&bare)?;
        let mut args = vec!["push", "-q", "origin"];
        args.extend_from_slice(refspecs);
        self.git.run(clone, &args)?;
        let after = self.git.refs(&bare)?;
        Ok(self.ref_events(&name, &before, &after, caller))
    }

    fn begin(&mut self, step: u32, title: &str, expected: &str) {
        self.step = step;
        self.records.clear();
        self.published.clear();
        self.say(format!("\n{step}. {title}\n   expected: {expected}"));
        self.t0 = Instant::now();
    }

    /// Keeps a judge's record (and prints it), or reports its error.
    fn judged(&mut self, result: Result<DecisionRecord, tozai::judge::JudgeError>) {
        match result {
            Ok(record) => {
                if self.json {
                    outln!(
                        "{}",
                        json!({
                            "step": self.step,
                            "elapsed_ms": self.t0.elapsed().as_millis() as u64,
                            "decision": record,
                        })
                    );
                } else {
                    self.show(&record);
                }
                self.records.push(record);
            }
            Err(e) => {
                let text = format!(
                    "ERROR: {e} ({})",
                    if e.is_transient() {
                        "EventBridge would retry"
                    } else {
                        "not retried"
                    }
                );
                if self.json {
                    errln!("tozai demo: step {}: {text}", self.step);
                }
                self.line("", &text);
                self.failures
                    .push(format!("{}: a judge failed: {e}", self.step));
            }
        }
    }

    /// Dispatches deliveries (and what they cause) like EventBridge would.
    async fn dispatch(&mut self, deliveries: Vec<Delivery>) -> anyhow::Result<()> {
        let mut queue: VecDeque<Delivery> = deliveries.into();
        while let Some(delivery) = queue.pop_front() {
            match delivery {
                Delivery::CodeCommit { region, event } => {
                    self.delivered.push((
                        self.step,
                        Delivery::CodeCommit {
                            region: region.clone(),
                            event: event.clone(),
                        },
                    ));
                    self.show_push(&region, &event);
                    let primary = region == self.primary.name;
                    let inbound = tozai::event::from_value(event.clone())?;
                    if primary {
                        let result = sync_judge(
                            &self.config,
                            &self.primary.changes,
                            &self.store,
                            &self.bus,
                            &self.ignored,
                            inbound.clone(),
                        )
                        .await;
                        self.judged(result);
                        queue.extend(self.take_published());
                    }
                    // The mirror also hears of deletions in the primary (none in the demo).
                    let deleted = primary
                        && matches!(
                            &inbound,
                            Inbound::RefChanged(e) if matches!(e.change, RefChange::Deleted { .. })
                        );
                    let site = self.site(primary);
                    let result = pipeline_judge(
                        &self.config,
                        &site.name,
                        &site.changes,
                        &self.store,
                        &self.starter,
                        inbound,
                    )
                    .await;
                    self.judged(result);
                    if deleted {
                        queue.extend(self.run_mirror(event).await?);
                    }
                }
                Delivery::Tozai {
                    detail_type,
                    detail,
                } => {
                    let id = self.next_id();
                    let event = tozai_event(
                        &detail_type,
                        &detail,
                        &self.primary.aws_region,
                        ACCOUNT,
                        &id,
                    );
                    queue.extend(self.run_mirror(event).await?);
                }
            }
        }
        Ok(())
    }

    /// tozai's events published since the last call: shown, kept for the step's checks,
    /// and `Sync Requested` returned for delivery to the mirror.
    fn take_published(&mut self) -> Vec<Delivery> {
        let published = self.bus.take();
        self.show_published(&published);
        let mut out = Vec::new();
        for (detail_type, detail) in published {
            if detail_type == SYNC_REQUESTED {
                out.push(Delivery::Tozai {
                    detail_type: detail_type.clone(),
                    detail: detail.clone(),
                });
            }
            self.published.push((detail_type, detail));
        }
        out
    }

    /// Runs the mirror on an event; the standby's pushes it made, as CodeCommit reports
    /// them (by the mirror's role).
    async fn run_mirror(&mut self, event: Value) -> anyhow::Result<Vec<Delivery>> {
        let before = self.git.refs(&self.standby.bare)?;
        let inbound: Inbound = tozai::event::from_value(event)?;
        let result = mirror_job(&self.config, &self.mirror, &self.bus, inbound).await;
        self.judged(result);
        let mut out = self.take_published();
        let after = self.git.refs(&self.standby.bare)?;
        let standby = self.standby.name.clone();
        out.extend(self.ref_events(&standby, &before, &after, MIRROR_CALLER));
        Ok(out)
    }

    // ---------------------------------------------------------------- the timeline

    fn show_push(&self, region: &str, event: &Value) {
        let d = &event["detail"];
        let text = |k: &str| d[k].as_str().unwrap_or("").to_owned();
        let caller = text("callerUserArn");
        let who = caller.rsplit('/').next().unwrap_or(&caller).to_owned();
        let (old, new) = (text("oldCommitId"), text("commitId"));
        let what = match text("event").as_str() {
            "referenceCreated" => format!("created at {}", short(&new)),
            "referenceDeleted" => format!("deleted (was {})", short(&old)),
            _ => format!("{}..{}", short(&old), short(&new)),
        };
        self.line(
            region,
            format!(
                "push: {} {} {what} by {who}  [event {} {}]",
                text("referenceType"),
                text("referenceName"),
                event["id"].as_str().unwrap_or(""),
                text("event"),
            ),
        );
    }

    fn show_published(&self, published: &[(String, Value)]) {
        let region = format!("{}>{}", self.primary.name, self.standby.name);
        for (detail_type, detail) in published {
            let what = match detail_type.as_str() {
                SYNC_REQUESTED => format!(
                    "{} at {}",
                    detail["ref"].as_str().unwrap_or(""),
                    short(detail["commit"].as_str().unwrap_or(""))
                ),
                _ => format!(
                    "{} ({})",
                    detail["ref"].as_str().unwrap_or("every selected ref"),
                    detail["status"].as_str().unwrap_or("")
                ),
            };
            let region = if detail_type == SYNC_REQUESTED {
                self.primary.name.as_str()
            } else {
                region.as_str()
            };
            self.line(region, format!("event bus: {detail_type}: {what}"));
        }
    }

    fn show(&self, r: &DecisionRecord) {
        let region = r.region.clone().unwrap_or_default();
        match r.function {
            "sync-judge" => {
                if let Some(why) = &r.ignored {
                    self.line(&region, format!("sync-judge: nothing to do: {why}"));
                    return;
                }
                let Some(sync) = &r.sync else { return };
                let diff = r
                    .diffs
                    .first()
                    .map(|d| format!(" [{}]", diff_text(d)))
                    .unwrap_or_default();
                let matched = first_match(&sync.decision.matches);
                if sync.requested {
                    self.line(
                        &region,
                        format!(
                            "sync-judge: MIRROR to {}: {}{matched}{diff}",
                            sync.decision.to.as_deref().unwrap_or("?"),
                            sync.decision.reason.describe()
                        ),
                    );
                } else {
                    self.line(
                        &region,
                        format!(
                            "sync-judge: not mirrored: {}{diff}",
                            sync.decision.reason.describe()
                        ),
                    );
                }
            }
            "pipeline-judge" => {
                if let Some(why) = &r.ignored {
                    self.line(&region, format!("pipeline-judge: nothing to do: {why}"));
                    return;
                }
                for t in &r.targets {
                    self.line(&region, format!("pipeline-judge: {}", target_text(r, t)));
                }
            }
            "mirror" => {
                let region = format!("{}>{}", self.primary.name, self.standby.name);
                if let Some(why) = &r.ignored {
                    self.line(&region, format!("mirror: nothing to do: {why}"));
                    return;
                }
                let Some(m) = &r.mirror else { return };
                if let Some(e) = m["error"].as_str() {
                    self.line(&region, format!("mirror: FAILED: {e}"));
                    return;
                }
                for rr in m["refs"].as_array().into_iter().flatten() {
                    let name = rr["ref"].as_str().unwrap_or("");
                    let s = |k: &str| short(rr[k].as_str().unwrap_or("")).to_owned();
                    let text = match rr["status"].as_str().unwrap_or("") {
                        "created" => format!("{name} created at {}", s("new")),
                        "updated" => {
                            format!("{name} updated {}..{} (fast-forward)", s("old"), s("new"))
                        }
                        "deleted" => format!("{name} deleted (was {})", s("old")),
                        "diverged" => format!(
                            "{name} DIVERGED: the standby's {} is not an ancestor of {}; left alone",
                            s("standby"),
                            s("source")
                        ),
                        "rejected" => {
                            format!("{name} REJECTED: {}", rr["reason"].as_str().unwrap_or(""))
                        }
                        other => format!("{name} {other}"),
                    };
                    self.line(&region, format!("mirror: {text}"));
                }
                // Unchanged refs are only counted (the record lists what changed or failed).
                let count = |n: &serde_json::Value, what: &str| {
                    n.as_u64().filter(|n| *n > 0).map(|n| format!("{n} {what}"))
                };
                let summary: Vec<String> = [
                    count(&m["counts"]["unchanged"], "unchanged"),
                    count(&m["counts"]["kept"], "kept"),
                    count(&m["refs_not_listed"], "more changed or failed, not listed"),
                    Some(format!(
                        "sent {} objects in {} ms",
                        m["objects_sent"], m["elapsed_ms"]
                    )),
                ]
                .into_iter()
                .flatten()
                .collect();
                self.line(&region, format!("mirror: {}", summary.join("; ")));
            }
            other => self.line(&region, format!("{other}: {}", r.to_json())),
        }
    }

    // ---------------------------------------------------------------- checks

    fn expect_head(
        &self,
        problems: &mut Vec<String>,
        site: &Site,
        reference: &str,
        expected: Option<&str>,
    ) -> anyhow::Result<()> {
        let actual = self.git.head(&site.bare, reference)?;
        if actual.as_deref() != expected {
            problems.push(format!(
                "{}'s {reference} is at {}, expected {}",
                site.name,
                actual.as_deref().map_or("nothing", short),
                expected.map_or("nothing", short)
            ));
        }
        Ok(())
    }

    /// The starts recorded since `from`: (target, commit).
    fn starts_since(&self, from: usize) -> anyhow::Result<Vec<(String, String)>> {
        Ok(self
            .starter
            .recorded()?
            .into_iter()
            .skip(from)
            .map(|s| (s.target, s.commit))
            .collect())
    }

    fn expect_starts(
        &self,
        problems: &mut Vec<String>,
        from: usize,
        expected: &[(&str, &str)],
    ) -> anyhow::Result<()> {
        let mut actual = self.starts_since(from)?;
        actual.sort();
        let mut want: Vec<(String, String)> = expected
            .iter()
            .map(|(t, c)| ((*t).to_owned(), (*c).to_owned()))
            .collect();
        want.sort();
        if actual != want {
            let show = |v: &[(String, String)]| {
                if v.is_empty() {
                    "none".to_owned()
                } else {
                    v.iter()
                        .map(|(t, c)| format!("{t} at {}", short(c)))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            };
            problems.push(format!(
                "started {}, expected {}",
                show(&actual),
                show(&want)
            ));
        }
        Ok(())
    }

    fn expect_published(&self, problems: &mut Vec<String>, expected: &[&str]) {
        let actual: Vec<&str> = self.published.iter().map(|(t, _)| t.as_str()).collect();
        if actual != expected {
            problems.push(format!(
                "published [{}], expected [{}]",
                actual.join(", "),
                expected.join(", ")
            ));
        }
    }

    fn conclude(&mut self, ok: &str, problems: Vec<String>, step: &str) {
        if problems.is_empty() {
            self.say(format!("   => as expected: {ok}"));
        } else {
            self.say(format!("   => NOT AS EXPECTED: {}", problems.join("; ")));
            self.failures
                .push(format!("{step}: {}", problems.join("; ")));
        }
    }

    fn target_in(&self, region: &str) -> anyhow::Result<String> {
        self.config
            .targets_in(region)
            .next()
            .map(|t| t.name.clone())
            .with_context(|| format!("the example config has no target in {region}"))
    }

    // ---------------------------------------------------------------- the steps

    /// Commits `files` in the developer's clone and pushes `refspecs` to the primary.
    fn primary_push(
        &mut self,
        files: &[(&str, String)],
        message: &str,
        what: &str,
    ) -> anyhow::Result<(String, Vec<Delivery>)> {
        let work = self.work.clone();
        for (path, text) in files {
            self.git.write(&work, path, text)?;
        }
        let commit = self
            .git
            .commit_as(&work, ("Dev Eloper", "developer@example.com"), message)?;
        let events = self.push(&work, true, &["main"], DEVELOPER)?;
        self.pushed
            .push((self.step, commit.clone(), what.to_owned()));
        Ok((commit, events))
    }

    async fn walk(&mut self) -> anyhow::Result<()> {
        let (tokyo, osaka) = (self.primary.name.clone(), self.standby.name.clone());
        let tokyo_target = self.target_in(&tokyo)?;
        let osaka_target = self.target_in(&osaka)?;

        // 1. common/
        self.begin(
            1,
            &format!("A change under common/, pushed to {tokyo}'s main"),
            &format!("mirrored to {osaka}; {tokyo_target} and {osaka_target} start, once each"),
        );
        let from = self.starter.recorded()?.len();
        let (c1, step1_events) = self.primary_push(
            &[(
                "common/templates/vpc.yaml",
                VPC.replace(
                    "EnableDnsSupport: true\n",
                    "EnableDnsSupport: true\n      EnableDnsHostnames: true\n",
                ),
            )],
            "vpc: enable DNS hostnames",
            "common/templates/vpc.yaml",
        )?;
        self.dispatch(step1_events).await?;
        let mut p = Vec::new();
        self.expect_starts(&mut p, from, &[(&tokyo_target, &c1), (&osaka_target, &c1)])?;
        self.expect_head(&mut p, &self.standby, MAIN, Some(&c1))?;
        self.expect_published(&mut p, &[SYNC_REQUESTED, SYNC_COMPLETED]);
        self.conclude(
            &format!(
                "mirrored ({osaka}'s main = {tokyo}'s = {}); {tokyo_target} and {osaka_target} started at {}",
                short(&c1),
                short(&c1)
            ),
            p,
            "1 (a common/ change)",
        );

        // 2. primary/
        self.begin(
            2,
            &format!("A change under primary/, pushed to {tokyo}'s main"),
            &format!("{tokyo_target} starts; not mirrored; nothing happens in {osaka}"),
        );
        let from = self.starter.recorded()?.len();
        let (c2, events) = self.primary_push(
            &[(
                "primary/templates/root.yaml",
                root("Tokyo", "10.0.0.0/16", 6),
            )],
            "tokyo: scale the app to 6 tasks",
            "primary/templates/root.yaml",
        )?;
        self.dispatch(events).await?;
        let mut p = Vec::new();
        self.expect_starts(&mut p, from, &[(&tokyo_target, &c2)])?;
        self.expect_head(&mut p, &self.standby, MAIN, Some(&c1))?;
        self.expect_published(&mut p, &[]);
        self.conclude(
            &format!(
                "{tokyo_target} started at {}; not mirrored ({osaka}'s main stays at {})",
                short(&c2),
                short(&c1)
            ),
            p,
            "2 (a primary/ change)",
        );

        // 3. secondary/
        self.begin(
            3,
            &format!("A change under secondary/, pushed to {tokyo}'s main"),
            &format!(
                "mirrored (carrying step 2's commit along); {osaka_target} starts, {tokyo_target} does not"
            ),
        );
        let from = self.starter.recorded()?.len();
        let (c3, events) = self.primary_push(
            &[(
                "secondary/templates/root.yaml",
                root("Osaka", "10.1.0.0/16", 3),
            )],
            "osaka: keep 3 tasks warm",
            "secondary/templates/root.yaml",
        )?;
        self.dispatch(events).await?;
        let mut p = Vec::new();
        self.expect_starts(&mut p, from, &[(&osaka_target, &c3)])?;
        self.expect_head(&mut p, &self.standby, MAIN, Some(&c3))?;
        self.expect_published(&mut p, &[SYNC_REQUESTED, SYNC_COMPLETED]);
        self.conclude(
            &format!(
                "mirrored ({osaka}'s main = {}); {osaka_target} started at {}; {tokyo_target} did not start",
                short(&c3),
                short(&c3)
            ),
            p,
            "3 (a secondary/ change)",
        );

        // 4. a release tag
        self.begin(
            4,
            &format!("Release notes under docs/ and the tag {TAG}, pushed to {tokyo} together"),
            &format!(
                "the docs change triggers nothing; the tag is mirrored and {osaka_target} (which opts into tags) starts; {tokyo_target} does not (tags never start it)"
            ),
        );
        let from = self.starter.recorded()?.len();
        let work = self.work.clone();
        self.git.write(
            &work,
            "docs/release-notes.md",
            "# 1.0.0\n\n- DNS hostnames in the VPC\n- Tokyo runs 6 tasks, Osaka keeps 3 warm\n",
        )?;
        let c4 = self.git.commit_as(
            &work,
            ("Dev Eloper", "developer@example.com"),
            "docs: release notes for 1.0.0",
        )?;
        self.git
            .run(&work, &["tag", "-a", TAG, "-m", "core-infra 1.0.0"])?;
        let events = self.push(&work, true, &["main", TAG], DEVELOPER)?;
        self.pushed.push((
            self.step,
            c4.clone(),
            format!("docs/release-notes.md, tag {TAG}"),
        ));
        self.dispatch(events).await?;
        let tag_ref = format!("refs/tags/{TAG}");
        let mut p = Vec::new();
        self.expect_starts(&mut p, from, &[(&osaka_target, &c4)])?;
        self.expect_head(&mut p, &self.standby, &tag_ref, Some(&c4))?;
        self.expect_head(&mut p, &self.standby, MAIN, Some(&c3))?;
        self.expect_published(&mut p, &[SYNC_REQUESTED, SYNC_COMPLETED]);
        let tag_objects = (
            self.git.refs(&self.primary.bare)?.remove(&tag_ref),
            self.git.refs(&self.standby.bare)?.remove(&tag_ref),
        );
        if tag_objects.0.map(|t| t.0) != tag_objects.1.map(|t| t.0) {
            p.push(format!(
                "the standby's {tag_ref} is not the primary's tag object"
            ));
        }
        self.conclude(
            &format!(
                "{TAG} mirrored; {osaka_target} started at {} for the tag; nothing started for the docs change",
                short(&c4)
            ),
            p,
            "4 (a release tag)",
        );

        // 5. a standby pushed to directly, then a change on the primary
        self.begin(
            5,
            &format!(
                "Someone pushes a hotfix straight to {osaka}'s main; then a common/ change reaches {tokyo}"
            ),
            &format!(
                "{osaka_target} deploys the hotfix; the mirror reports main DIVERGED, publishes Sync Failed and leaves {osaka} alone; {tokyo_target} starts"
            ),
        );
        let from = self.starter.recorded()?.len();
        let oncall = self.dir.join("oncall");
        let standby_url = self.standby.bare.display().to_string();
        self.git.run(
            &self.dir,
            &["clone", "-q", &standby_url, &oncall.display().to_string()],
        )?;
        self.git.write(
            &oncall,
            "secondary/templates/hotfix.yaml",
            "AWSTemplateFormatVersion: \"2010-09-09\"\nDescription: Osaka hotfix made during an incident\nResources:\n  Alarm:\n    Type: AWS::CloudWatch::Alarm\n    Properties:\n      MetricName: Errors\n      Namespace: Core\n      Threshold: 1\n      EvaluationPeriods: 1\n      ComparisonOperator: GreaterThanThreshold\n      Statistic: Sum\n      Period: 60\n",
        )?;
        let hotfix = self.git.commit_as(
            &oncall,
            ("Osaka On-call", "oncall@example.com"),
            "osaka: hotfix alarm (made in the standby)",
        )?;
        let events = self.push(&oncall, false, &["main"], ONCALL)?;
        self.pushed.push((
            self.step,
            hotfix.clone(),
            format!("secondary/templates/hotfix.yaml, pushed to {osaka}"),
        ));
        self.dispatch(events).await?;
        let (c5, events) = self.primary_push(
            &[(
                "common/templates/queue.yaml",
                QUEUE.replace("VisibilityTimeout: 60", "VisibilityTimeout: 120"),
            )],
            "queue: longer visibility timeout",
            "common/templates/queue.yaml",
        )?;
        self.dispatch(events).await?;
        let mut p = Vec::new();
        self.expect_starts(
            &mut p,
            from,
            &[(&osaka_target, &hotfix), (&tokyo_target, &c5)],
        )?;
        self.expect_head(&mut p, &self.standby, MAIN, Some(&hotfix))?;
        self.expect_head(&mut p, &self.primary, MAIN, Some(&c5))?;
        self.expect_published(&mut p, &[SYNC_REQUESTED, SYNC_FAILED]);
        let diverged = self.records.iter().any(|r| {
            r.function == "mirror"
                && r.mirror.as_ref().is_some_and(|m| {
                    m["refs"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|x| x["ref"] == MAIN && x["status"] == "diverged")
                })
        });
        if !diverged {
            p.push("the mirror did not report main diverged".into());
        }
        self.conclude(
            &format!(
                "main DIVERGED and left alone ({osaka}'s main is still the hotfix {}); Sync Failed published; {tokyo_target} started at {}, {osaka_target} did not",
                short(&hotfix),
                short(&c5)
            ),
            p,
            "5 (a standby pushed to directly)",
        );

        // 6. at least once
        self.begin(
            6,
            "At least once: EventBridge delivers step 5's push again, and step 1's events (both regions) late",
            "nothing starts again, nothing is mirrored again, nothing rolls back",
        );
        let from = self.starter.recorded()?.len();
        let standby_before = self.git.refs(&self.standby.bare)?;
        // The same events (same ids): step 5's last push to the primary, then every
        // CodeCommit event of step 1, in both regions.
        let mut again: Vec<Delivery> = self
            .delivered
            .iter()
            .rev()
            .find(|(step, d)| *step == 5 && self.is_primary(d))
            .map(|(_, d)| d.clone())
            .into_iter()
            .collect();
        again.extend(
            self.delivered
                .iter()
                .filter(|(step, _)| *step == 1)
                .map(|(_, d)| d.clone()),
        );
        self.dispatch(again).await?;
        let mut p = Vec::new();
        self.expect_starts(&mut p, from, &[])?;
        self.expect_published(&mut p, &[]);
        if self.git.refs(&self.standby.bare)? != standby_before {
            p.push(format!("{osaka}'s refs moved"));
        }
        let handled = self.records.iter().all(|r| {
            r.ignored
                .as_deref()
                .is_some_and(|i| i.contains("already handled"))
                || (!r.targets.is_empty()
                    && r.targets.iter().all(|t| t.result == "already_handled"))
        });
        if !handled {
            p.push("a judge did not recognise an event it had handled".into());
        }
        self.conclude(
            "every judge recognised events it had handled: no second start, no second mirror",
            p,
            "6 (at-least-once delivery)",
        );

        // Every (target, commit) started exactly once.
        let mut all = self.starts_since(0)?;
        let n = all.len();
        all.sort();
        all.dedup();
        if all.len() != n {
            self.failures
                .push("(all): a (target, commit) started more than once".into());
        }
        Ok(())
    }

    fn is_primary(&self, d: &Delivery) -> bool {
        matches!(d, Delivery::CodeCommit { region, .. } if *region == self.primary.name)
    }

    // ---------------------------------------------------------------- the summary

    fn summary(&self, keep: bool, elapsed: std::time::Duration) -> anyhow::Result<()> {
        let starts = self.starter.recorded()?;
        let region_of = |target: &str| {
            self.config
                .targets
                .iter()
                .find(|t| t.name == target)
                .map(|t| t.region.clone())
                .unwrap_or_default()
        };
        let (tokyo, osaka) = (&self.primary.name, &self.standby.name);
        outln!(
            "\nSummary: pipeline starts per region and commit (from {})",
            self.starter.path().display()
        );
        outln!(
            "  {:<4} {:<12}  {:<48} {:<13} {osaka}",
            "step",
            "commit",
            "pushed",
            tokyo
        );
        let cell = |region: &str, commit: &str| -> String {
            let names: Vec<String> = starts
                .iter()
                .filter(|s| s.commit == commit && region_of(&s.target) == region)
                .map(|s| {
                    if s.reference.starts_with("refs/tags/") {
                        format!("{} (tag)", s.target)
                    } else {
                        s.target.clone()
                    }
                })
                .collect();
            if names.is_empty() {
                "-".to_owned()
            } else {
                names.join(", ")
            }
        };
        for (step, commit, what) in &self.pushed {
            outln!(
                "{}",
                format!(
                    "  {:<4} {:<12}  {:<48} {:<13} {}",
                    step,
                    short(commit),
                    what,
                    cell(tokyo, commit),
                    cell(osaka, commit)
                )
                .trim_end()
            );
        }
        let count = |region: &str| {
            starts
                .iter()
                .filter(|s| region_of(&s.target) == region)
                .count()
        };
        outln!(
            "  {} starts in {tokyo}, {} in {osaka}; each (target, commit) at most once; step 6's redeliveries started nothing",
            count(tokyo),
            count(osaka)
        );
        let heads = (
            self.git.head(&self.primary.bare, MAIN)?.unwrap_or_default(),
            self.git.head(&self.standby.bare, MAIN)?.unwrap_or_default(),
        );
        outln!(
            "  main: {tokyo} at {}, {osaka} at {} (the hotfix: merge it into {tokyo}'s main, or overwrite it with `tozai mirror -c tozai.toml --force`)",
            short(&heads.0),
            short(&heads.1)
        );
        let d = self.dir.display();
        if keep {
            outln!(
                "\nLook around ({d}):\n  \
                 git -C {d}/{tokyo}/{repo}.git log --oneline --graph --all     the primary\n  \
                 git -C {d}/{osaka}/{repo}.git log --oneline --graph --all     the standby, with the hotfix\n  \
                 cat {d}/starts.jsonl                 every pipeline start (target, commit, ref, token, variables)\n  \
                 cat {d}/state/store.json             the checkpoints and start records\n  \
                 cat {d}/state/mirrored.json          what the mirror pushed to each of {osaka}'s refs\n  \
                 tozai plan -c {d}/tozai.toml --repo {d}/work HEAD      what the last push triggers\n  \
                 tozai mirror -c {d}/tozai.toml --dry-run --cache {d}/cache --state {d}/state      the mirror's view: main diverged",
                repo = self.primary.repository,
            );
        } else {
            outln!(
                "\nThe demo ran in a temporary directory, now removed; `tozai demo --dir DIR` keeps the repositories, the starts and the checkpoints to look at."
            );
        }
        if self.failures.is_empty() {
            outln!(
                "\nEvery step behaved as expected ({:.1} s).",
                elapsed.as_secs_f64()
            );
        } else {
            outln!(
                "\n{} step(s) did NOT behave as expected.",
                self.failures.len()
            );
        }
        Ok(())
    }
}

fn first_match(matches: &[tozai::rules::Match]) -> String {
    match matches {
        [] => String::new(),
        [m, rest @ ..] => format!(
            " ({} by {} {}{})",
            m.path,
            m.rule,
            m.pattern,
            if rest.is_empty() {
                String::new()
            } else {
                format!(", +{} more", rest.len())
            }
        ),
    }
}

fn diff_text(d: &tozai::judge::DiffRecord) -> String {
    use tozai::judge::BaseWhy;
    let paths = if d.changed == 1 { "path" } else { "paths" };
    let base = d.base.as_ref().map(CommitId::short).unwrap_or("");
    match &d.why {
        BaseWhy::Checkpoint => format!("{} {paths} since its checkpoint {base}", d.changed),
        BaseWhy::EventBefore { .. } => {
            format!("{} {paths} since the event's old commit {base}", d.changed)
        }
        BaseWhy::MergeBase { branch } => {
            format!("{} {paths} since the merge base with {branch}", d.changed)
        }
        BaseWhy::WholeTree { because } => format!("{} paths, the whole tree: {because}", d.changed),
    }
}

fn target_text(r: &DecisionRecord, t: &TargetRecord) -> String {
    let at = r.after.as_ref().map(CommitId::short).unwrap_or("");
    let diff = r
        .diffs
        .iter()
        .find(|d| {
            d.consumers
                .iter()
                .any(|c| c == &format!("target:{}", t.target))
        })
        .map(|d| format!(" [{}]", diff_text(d)))
        .unwrap_or_default();
    match t.result {
        "started" => format!(
            "{} STARTED ({} {}, run {}) at {at}{}{diff}",
            t.target,
            t.kind,
            t.name,
            t.run_id.as_deref().unwrap_or("?"),
            first_match(&t.matches)
        ),
        "not_started" => format!("{} not started: {}{diff}", t.target, t.reason.describe()),
        "already_handled" => format!(
            "{} not started again: already handled (its checkpoint is at or past {at})",
            t.target
        ),
        "already_started" => format!(
            "{} not started again: already started at {at} (run {})",
            t.target,
            t.run_id.as_deref().unwrap_or("?")
        ),
        other => format!(
            "{} {}: {}",
            t.target,
            other.to_uppercase(),
            t.error.as_deref().unwrap_or("")
        ),
    }
}
