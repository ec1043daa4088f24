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
//! The walk is data: [`steps::STEPS`] says what each step pushes and which starts, heads
//! and events must come of it; [`Demo::walk`] runs them. The demo checks each step's
//! expectations and exits 1 naming the step that misbehaved, so it is a smoke test too.

mod steps;

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
    DecisionRecord, IgnoredCallers, TargetRecord, mirror_job, pipeline_judge, sync_judge,
};
use tozai::lambda::LiveMirror;
use tozai::refs::CommitId;

use self::steps::{Action, Again, Check, MAIN, Side, Step};

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
/// Who commits: the developer in the primary, the on-call engineer in the standby.
const DEVELOPER_NAME: (&str, &str) = ("Dev Eloper", "developer@example.com");
const ONCALL_NAME: (&str, &str) = ("Osaka On-call", "oncall@example.com");

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
    /// Where each step's starts begin in the recorded starts: (step, index).
    step_starts: Vec<(u32, usize)>,
    /// The commits the steps made, by label.
    commits: BTreeMap<&'static str, String>,
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
            step_starts: Vec::new(),
            commits: BTreeMap::new(),
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
        let w = &self.work.clone();
        std::fs::create_dir_all(w)?;
        self.git.run(w, &["init", "-q", "-b", "main"])?;
        let origin = self.primary.bare.display().to_string();
        self.git.run(w, &["remote", "add", "origin", &origin])?;
        let work = w.clone();
        let seed = self.commit(
            &work,
            DEVELOPER_NAME,
            steps::SEED,
            "core-infra: initial layout",
        )?;
        self.commits.insert("seed", seed.clone());
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

    fn site_of(&self, side: Side) -> &Site {
        self.site(side == Side::Primary)
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

    /// Starts step `step`: prints its title and expectation. The number of starts
    /// recorded so far (the step's own come after).
    fn begin(&mut self, step: u32, title: &str, expected: &str) -> anyhow::Result<usize> {
        let from = self.starter.recorded()?.len();
        self.step_starts.push((step, from));
        self.step = step;
        self.records.clear();
        self.published.clear();
        self.say(format!("\n{step}. {title}\n   expected: {expected}"));
        self.t0 = Instant::now();
        Ok(from)
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
                            "{name} DIVERGED ({}): the standby's {} is not an ancestor of {}; left alone",
                            rr["cause"].as_str().unwrap_or("unknown").replace('_', " "),
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

    /// The starts recorded since `from`, in the order they were made: (target, commit, ref).
    fn starts_since(&self, from: usize) -> anyhow::Result<Vec<(String, String, String)>> {
        Ok(self
            .starter
            .recorded()?
            .into_iter()
            .skip(from)
            .map(|s| (s.target, s.commit, s.reference))
            .collect())
    }

    /// The starts since `from` are exactly `expected` (target, commit, ref), in that order.
    fn expect_starts(
        &self,
        problems: &mut Vec<String>,
        from: usize,
        want: &[(String, String, String)],
    ) -> anyhow::Result<()> {
        let actual = self.starts_since(from)?;
        if actual != want {
            let show = |v: &[(String, String, String)]| {
                if v.is_empty() {
                    "none".to_owned()
                } else {
                    v.iter()
                        .map(|(t, c, r)| format!("{t} at {} ({r})", short(c)))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            };
            problems.push(format!(
                "started {}, expected {}",
                show(&actual),
                show(want)
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

    /// Runs the steps of [`steps::STEPS`] in order, then checks the starts as a whole.
    async fn walk(&mut self) -> anyhow::Result<()> {
        for (n, step) in (1..).zip(steps::STEPS) {
            self.run_step(n, step).await?;
        }
        self.check_transitions()
    }

    /// One step: its title, its actions, then its checks.
    async fn run_step(&mut self, n: u32, step: &Step) -> anyhow::Result<()> {
        let (title, expected) = (self.fill(step.title)?, self.fill(step.expected)?);
        let from = self.begin(n, &title, &expected)?;
        let standby_before = self.git.refs(&self.standby.bare)?;
        for action in step.actions {
            self.act(action).await?;
        }
        let problems = self.check(step, from, &standby_before)?;
        let outcome = self.fill(step.outcome)?;
        self.conclude(&outcome, problems, &format!("{n} ({})", step.name));
        Ok(())
    }

    async fn act(&mut self, action: &Action) -> anyhow::Result<()> {
        let work = self.work.clone();
        match action {
            Action::Commit {
                label,
                files,
                message,
            } => {
                let id = self.commit(&work, DEVELOPER_NAME, files, message)?;
                self.commits.insert(label, id);
            }
            Action::Tag { name, message } => {
                self.git.run(&work, &["tag", "-a", name, "-m", message])?;
            }
            Action::ResetTo(label) => {
                let id = self.commit_of(label)?;
                self.git.run(&work, &["reset", "-q", "--hard", &id])?;
            }
            Action::Push {
                refspecs,
                row: (label, what),
            } => {
                let events = self.push(&work, true, refspecs, DEVELOPER)?;
                let row = (self.step, self.commit_of(label)?, self.fill(what)?);
                self.pushed.push(row);
                self.dispatch(events).await?;
            }
            Action::Hotfix {
                label,
                files,
                message,
                row,
            } => {
                let oncall = self.dir.join("oncall");
                if !oncall.exists() {
                    let standby = self.standby.bare.display().to_string();
                    let into = oncall.display().to_string();
                    self.git.run(&self.dir, &["clone", "-q", &standby, &into])?;
                }
                let id = self.commit(&oncall, ONCALL_NAME, files, message)?;
                self.commits.insert(label, id.clone());
                let events = self.push(&oncall, false, &["main"], ONCALL)?;
                let row = (self.step, id, self.fill(row)?);
                self.pushed.push(row);
                self.dispatch(events).await?;
            }
            Action::Redeliver(again) => {
                let deliveries = again
                    .iter()
                    .flat_map(|a| self.delivered_again(*a))
                    .collect();
                self.dispatch(deliveries).await?;
            }
        }
        Ok(())
    }

    /// Writes `files` in the clone `work` and commits them as `who`: the commit's id.
    fn commit(
        &self,
        work: &Path,
        who: (&str, &str),
        files: &[(&str, steps::Text)],
        message: &str,
    ) -> anyhow::Result<String> {
        for (path, text) in files {
            self.git.write(work, path, &text())?;
        }
        self.git.commit_as(work, who, message)
    }

    /// CodeCommit events delivered in an earlier step, to deliver again.
    fn delivered_again(&self, again: Again) -> Vec<Delivery> {
        let of = |step: u32| {
            self.delivered
                .iter()
                .filter(move |(s, _)| *s == step)
                .map(|(_, d)| d)
        };
        let primary = |d: &&Delivery| self.is_primary(d);
        match again {
            Again::FirstPrimary(step) => of(step).find(primary).into_iter().cloned().collect(),
            Again::LastPrimary(step) => of(step)
                .filter(primary)
                .last()
                .into_iter()
                .cloned()
                .collect(),
            Again::Every(step) => of(step).cloned().collect(),
        }
    }

    /// What went other than `step` expects: its starts since `from`, heads, events, checks.
    fn check(
        &self,
        step: &Step,
        from: usize,
        standby_before: &BTreeMap<String, (String, String)>,
    ) -> anyhow::Result<Vec<String>> {
        let mut p = Vec::new();
        let mut starts = Vec::new();
        for (side, label, reference) in step.starts {
            let target = self.target_in(&self.site_of(*side).name)?;
            starts.push((target, self.commit_of(label)?, (*reference).to_owned()));
        }
        self.expect_starts(&mut p, from, &starts)?;
        for (side, reference, label) in step.heads {
            let want = label.map(|l| self.commit_of(l)).transpose()?;
            self.expect_head(&mut p, self.site_of(*side), reference, want.as_deref())?;
        }
        self.expect_published(&mut p, step.published);
        for check in step.checks {
            match *check {
                Check::Diverged(reference) => {
                    if !self.mirror_reported_diverged(reference) {
                        p.push(format!("the mirror did not report {reference} diverged"));
                    }
                }
                Check::SameTagObject(tag) => {
                    let object = |site: &Site| -> anyhow::Result<Option<String>> {
                        Ok(self.git.refs(&site.bare)?.remove(tag).map(|t| t.0))
                    };
                    if object(&self.primary)? != object(&self.standby)? {
                        p.push(format!(
                            "the standby's {tag} is not the primary's tag object"
                        ));
                    }
                }
                Check::AllHandled => {
                    if !self.records.iter().all(handled) {
                        p.push("a judge did not recognise an event it had handled".into());
                    }
                }
                Check::StandbyUnchanged => {
                    if &self.git.refs(&self.standby.bare)? != standby_before {
                        p.push(format!("{}'s refs moved", self.standby.name));
                    }
                }
            }
        }
        Ok(p)
    }

    /// Every transition started once: no (target, ref) started twice in a row at one
    /// commit (a rewind to a commit started before is a new transition, so starts again).
    fn check_transitions(&mut self) -> anyhow::Result<()> {
        let mut last: BTreeMap<(String, String), String> = BTreeMap::new();
        let mut twice = false;
        for (target, commit, reference) in self.starts_since(0)? {
            twice |= last.insert((target, reference), commit.clone()) == Some(commit);
        }
        if twice {
            self.failures
                .push("(all): a (target, ref) started twice in a row at one commit".into());
        }
        Ok(())
    }

    /// `text` with its placeholders filled in (see [`steps`]).
    fn fill(&self, text: &str) -> anyhow::Result<String> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            let close = after
                .find('}')
                .with_context(|| format!("the demo's steps: an unclosed {{ in {text:?}"))?;
            let value = match &after[..close] {
                "tokyo" => self.primary.name.clone(),
                "osaka" => self.standby.name.clone(),
                "tokyo_target" => self.target_in(&self.primary.name)?,
                "osaka_target" => self.target_in(&self.standby.name)?,
                label => short(&self.commit_of(label)?).to_owned(),
            };
            out.push_str(&value);
            rest = &after[close + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    /// The commit a step made and labelled `label`.
    fn commit_of(&self, label: &str) -> anyhow::Result<String> {
        self.commits
            .get(label)
            .cloned()
            .with_context(|| format!("the demo's steps name a commit {label:?} that no step made"))
    }

    /// True when a mirror run of the current step reported `reference` diverged.
    fn mirror_reported_diverged(&self, reference: &str) -> bool {
        self.records.iter().any(|r| {
            r.function == "mirror"
                && r.mirror.as_ref().is_some_and(|m| {
                    m["refs"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|x| x["ref"] == reference && x["status"] == "diverged")
                })
        })
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
            "\nSummary: pipeline starts per step, region and commit (from {})",
            self.starter.path().display()
        );
        outln!(
            "  {:<4} {:<12}  {:<48} {:<13} {osaka}",
            "step",
            "commit",
            "pushed",
            tokyo
        );
        // A step's starts: from its first to the next step's first.
        let of_step = |step: u32| -> &[tozai::adapters::local::RecordedStart] {
            let at = self.step_starts.iter().position(|(s, _)| *s == step);
            let begin = at.map_or(starts.len(), |i| self.step_starts[i].1);
            let end = at
                .and_then(|i| self.step_starts.get(i + 1))
                .map_or(starts.len(), |(_, from)| *from);
            starts.get(begin..end).unwrap_or_default()
        };
        let cell = |step: u32, region: &str, commit: &str| -> String {
            let names: Vec<String> = of_step(step)
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
                    cell(*step, tokyo, commit),
                    cell(*step, osaka, commit)
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
            "  {} starts in {tokyo}, {} in {osaka}; no transition of a (target, ref) started twice",
            count(tokyo),
            count(osaka)
        );
        let heads = (
            self.git.head(&self.primary.bare, MAIN)?.unwrap_or_default(),
            self.git.head(&self.standby.bare, MAIN)?.unwrap_or_default(),
        );
        if heads.0 == heads.1 {
            outln!("  main: {tokyo} and {osaka} in step at {}", short(&heads.0));
        } else {
            outln!(
                "  main: {tokyo} at {}, {osaka} at {}: NOT in step; the mirror leaves {osaka}'s own commit (the hotfix) alone: merge it into {tokyo}'s main, or overwrite it with `tozai mirror -c tozai.toml --force`",
                short(&heads.0),
                short(&heads.1)
            );
        }
        let d = self.dir.display();
        if keep {
            outln!(
                "\nLook around ({d}):\n  \
                 git -C {d}/{tokyo}/{repo}.git log --oneline --graph --all     the primary\n  \
                 git -C {d}/{osaka}/{repo}.git log --oneline --graph --all     the standby, with the hotfix\n  \
                 cat {d}/starts.jsonl                 every pipeline start (target, commit, ref, token, variables)\n  \
                 cat {d}/state/store.json             the checkpoints: each consumer's last judged head and run, per ref\n  \
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

/// True when a judge found its event handled already: its checkpoint at the ref's head.
fn handled(r: &DecisionRecord) -> bool {
    r.ignored
        .as_deref()
        .is_some_and(|i| i.contains("already handled"))
        || (!r.targets.is_empty()
            && r.targets
                .iter()
                .all(|t| t.result == tozai::judge::TargetResult::AlreadyHandled))
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
        BaseWhy::EventBefore => {
            format!("{} {paths} since the event's old commit {base}", d.changed)
        }
        BaseWhy::MergeBase { branch } => {
            format!("{} {paths} since the merge base with {branch}", d.changed)
        }
        BaseWhy::TipCommit { branch } => format!(
            "{} {paths} in its tip commit ({branch} already holds it)",
            d.changed
        ),
        BaseWhy::WholeTree { because } => format!("{} paths, the whole tree: {because}", d.changed),
    }
}

fn target_text(r: &DecisionRecord, t: &TargetRecord) -> String {
    let at = t
        .commit
        .as_ref()
        .or(r.head.as_ref())
        .map(CommitId::short)
        .unwrap_or("");
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
    use tozai::judge::TargetResult as R;
    match t.result {
        R::Started => format!(
            "{} STARTED ({} {}, run {}) at {at}{}{diff}",
            t.target,
            t.kind,
            t.name,
            t.run_id.as_deref().unwrap_or("?"),
            first_match(&t.matches)
        ),
        R::NotStarted => format!("{} not started: {}{diff}", t.target, t.reason.describe()),
        R::AlreadyHandled => format!(
            "{} not started again: already handled (its checkpoint is at the head {at})",
            t.target
        ),
        R::RefGone => format!("{} not started: the ref no longer exists", t.target),
        R::AlreadyStarted => format!(
            "{} not started again: already started at {at} (run {})",
            t.target,
            t.run_id.as_deref().unwrap_or("?")
        ),
        R::InProgress => format!(
            "{} IN PROGRESS: another invocation is starting it at {at}",
            t.target
        ),
        R::Failed => format!("{} FAILED: {}", t.target, t.error.as_deref().unwrap_or("")),
    }
}
