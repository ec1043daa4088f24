//! `tozai status`: can we fail over now without losing anything that matters? Every
//! mirrored branch and tag compared across the two regions (a dry-run mirror), and what
//! each standby ref lacks judged by the same rules a push is (`tozai::status`): drift, or
//! a lag only the reconciliation brings, by design. Also lists the backups `--force` left.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use chrono::{DateTime, Utc};
use tozai::adapters::git::Git2Changes;
use tozai::adapters::git_mirror::Git2Mirror;
use tozai::config::Config;
use tozai::judge::base::birth_base;
use tozai::plan::Push;
use tozai::ports::{Mirror, MirrorRequest};
use tozai::refs::{CommitId, RefName};
use tozai::status::{Drift, Facts, LISTED, Lag, Policy, RefState, Status};
use tozai::text::quoted;

#[derive(clap::Args)]
pub struct Options {
    #[command(flatten)]
    pub config: crate::config_file::ConfigArg,
    /// The cache of source repositories (default: the user's cache directory).
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
    #[command(flatten)]
    pub state: crate::mirror::StateArg,
    /// Count any lag as drift, including what only the reconciliation brings by design.
    #[arg(long)]
    pub strict: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(o: Options) -> anyhow::Result<ExitCode> {
    let config = Config::load(&o.config.path)?;
    let cache = crate::mirror::cache_root(o.cache.as_deref())?;
    let ledger = o.state.ledger(&cache, &config.standby().repository)?;
    let (source, target, _aws) =
        crate::mirror::remotes(&config.primary().repository, &config.standby().repository)?;
    let request = MirrorRequest {
        source,
        target,
        selection: config.sync.selection(),
        force: false,
        dry_run: true,
        ledger: Some(ledger),
    };
    let mirror = Git2Mirror::new(cache);
    let outcome = mirror
        .mirror(&request, None)
        .map_err(crate::mirror::mirror_failed)?;
    // The dry run fetched the source into the cache, which holds every commit a standby
    // that is behind lacks.
    let facts = Cache {
        config: &config,
        repository: &outcome.source,
        git: Git2Changes::open(&mirror.cache_dir(&request.source))
            .map_err(crate::OperationFailed::wrap)?,
        runtime: tokio::runtime::Builder::new_current_thread().build()?,
    };
    let policy = Policy {
        reconcile: config.sync.reconcile,
        now: DateTime::<Utc>::from(std::time::SystemTime::now()),
        strict: o.strict,
    };
    let names = (
        config.primary().name.as_str(),
        config.standby().name.as_str(),
    );
    let status = tozai::status::from_outcome(&outcome, names, &facts, &policy)?;
    if o.json {
        crate::output::json(&status)?;
    } else {
        out!("{}", table(&status, &o.config.path.display().to_string()));
    }
    Ok(if status.drift {
        ExitCode::from(crate::EXIT_FAILED)
    } else {
        ExitCode::SUCCESS
    })
}

/// The source's history, in the mirror's cache.
struct Cache<'c> {
    config: &'c Config,
    /// The source, as shown.
    repository: &'c str,
    git: Git2Changes,
    runtime: tokio::runtime::Runtime,
}

impl Cache<'_> {
    /// What a standby that lacks `reference` has of it: a branch's birth base (as the
    /// judges compute it), a tag's merge base with the base branch.
    fn base(&self, reference: &RefName, source: &CommitId) -> anyhow::Result<Option<CommitId>> {
        let base_branch = &self.config.base_branch;
        if reference.is_tag() {
            return Ok(match self.git.branch_head_of(base_branch)? {
                Some(head) => self.git.merge_base_of(&head, source)?,
                None => None,
            });
        }
        let birth = birth_base(&self.git, reference, source, base_branch);
        Ok(self.runtime.block_on(birth)?.0)
    }
}

impl Facts for Cache<'_> {
    type Error = anyhow::Error;

    fn peel(&self, id: &CommitId) -> CommitId {
        self.git.peel_to_commit(id).unwrap_or_else(|_| id.clone())
    }

    fn count(&self, old: &CommitId, new: &CommitId) -> Option<u64> {
        self.git.count_between(old, new).ok()
    }

    fn lag(
        &self,
        reference: &RefName,
        standby: Option<&CommitId>,
        source: &CommitId,
    ) -> anyhow::Result<Lag> {
        let read = || -> anyhow::Result<Lag> {
            let base = match standby {
                Some(s) => Some(s.clone()),
                None => self.base(reference, source)?,
            };
            let lacked = self.git.log_between(base.as_ref(), source, LISTED)?;
            let first = self.git.first_lacking(base.as_ref(), source)?;
            let push = Push {
                repository: self.repository.to_owned(),
                region: self.config.primary().name.clone(),
                reference: reference.clone(),
                before: base,
                after: source.clone(),
            };
            let plan =
                self.runtime
                    .block_on(tozai::service::plan_push(self.config, &self.git, push))?;
            Ok(Lag {
                behind: lacked.total,
                commits: lacked.commits,
                selected_by: tozai::status::selected_by(self.config, &plan),
                since: first.and_then(|(_, time)| DateTime::from_timestamp(time, 0)),
            })
        };
        read()
            .with_context(|| {
                format!(
                    "cannot read what the standby's {} lacks from the source's cache",
                    quoted(&reference.full())
                )
            })
            .map_err(crate::OperationFailed::wrap)
    }
}

/// The readable table: the regions, a row per ref (with the first commits a lagging ref
/// lacks), the backups, and a last line that answers "ready to fail over?".
pub fn table(s: &Status, config: &str) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "primary {} ({})\nstandby {} ({})",
        s.primary.name,
        quoted(&s.primary.location),
        s.standby.name,
        quoted(&s.standby.location)
    );
    let names: Vec<String> = s
        .refs
        .iter()
        .map(|r| quoted(&r.reference.full()).into_owned())
        .collect();
    let words: Vec<String> = s.refs.iter().map(word).collect();
    let name_width = names.iter().map(|n| n.chars().count()).max().unwrap_or(0);
    let word_width = words.iter().map(|w| w.len()).max().unwrap_or(0);
    for ((r, name), word) in s.refs.iter().zip(&names).zip(&words) {
        let detail = detail(r, &s.standby.name);
        let _ = writeln!(out, "  {name:<name_width$}  {word:<word_width$}  {detail}");
        out.push_str(&commit_lines(r));
    }
    out.push_str(&backups(s));
    let _ = writeln!(out, "{}", verdict(s, config));
    out
}

/// The state's words: `behind by policy` for a lag only the reconciliation brings;
/// capitals for drift.
fn word(r: &RefState) -> String {
    let word = if r.policy {
        format!("{} by policy", r.state.word())
    } else {
        r.state.word().to_owned()
    };
    if r.drift { word.to_uppercase() } else { word }
}

fn commits(n: u64) -> String {
    match n {
        1 => "1 commit".to_owned(),
        n => format!("{n} commits"),
    }
}

/// What a row says after its state.
fn detail(r: &RefState, standby: &str) -> String {
    let lag = match &r.state {
        Drift::InSync { at } => return format!("at {}", at.short()),
        Drift::Behind { standby, source } => format!(
            "standby {} lacks {} of {}",
            standby.short(),
            commits(r.behind.unwrap_or(0)),
            source.short()
        ),
        Drift::Missing { source } if r.reference.is_tag() => {
            return format!("not on the standby (source at {})", source.short());
        }
        Drift::Missing { source } => format!(
            "not on the standby (source at {}, {} of its own)",
            source.short(),
            commits(r.behind.unwrap_or(0))
        ),
        // Which side moved; both sides' commits follow the line.
        Drift::Diverged {
            standby,
            source,
            cause,
        } => return tozai::divergence::explain(*cause, source.as_ref(), standby),
        Drift::Stale { standby } => {
            return format!(
                "deleted at the source, still on the standby at {}",
                standby.short()
            );
        }
        Drift::Unknown { reason } => return reason.clone(),
    };
    format!("{lag}{}", why(r, standby))
}

/// Why a lag is, or is not, drift.
fn why(r: &RefState, standby: &str) -> String {
    let them = if r.behind == Some(1) { "it" } else { "them" };
    let mut out = if r.matters {
        format!(", changing paths that {} select", r.selected_by.join(", "))
    } else {
        let none = if r.behind == Some(1) {
            "which does not change"
        } else {
            "none of which changes"
        };
        format!(", {none} what {standby} deploys or the sync rule selects")
    };
    match (&r.missed_reconciliation, &r.lag_since) {
        (Some(missed), Some(since)) => {
            let _ = std::fmt::Write::write_fmt(
                &mut out,
                format_args!(
                    ": OVERDUE, the reconciliation at {missed} should have brought {them} (the \
                     lag began by {since}, the committer time of the first commit missing)"
                ),
            );
        }
        _ if r.policy => {
            if let Some(next) = &r.next_reconciliation {
                let brings = if matches!(r.state, Drift::Missing { .. }) {
                    "creates it"
                } else {
                    "brings them"
                };
                let brings = if r.behind == Some(1) && brings == "brings them" {
                    "brings it"
                } else {
                    brings
                };
                let _ = std::fmt::Write::write_fmt(
                    &mut out,
                    format_args!(": the reconciliation at {next} {brings}"),
                );
            }
        }
        _ => {}
    }
    out
}

/// The first commits a lagging ref lacks, one a line: short id and subject.
fn commit_lines(r: &RefState) -> String {
    let mut out = String::new();
    // A diverged ref's, as `git log --left-right` lists them.
    for line in r.log.iter().flat_map(|l| l.lines()) {
        out.push_str(&format!("      {line}\n"));
    }
    for c in &r.commits {
        out.push_str(&format!(
            "      {} {}\n",
            c.commit.short(),
            quoted(&c.subject)
        ));
    }
    let more = r.behind.unwrap_or(0).saturating_sub(r.commits.len() as u64);
    if more > 0 && !r.commits.is_empty() {
        out.push_str(&format!("      ... and {more} more\n"));
    }
    out
}

/// The backups `--force` left on the standby, if any.
fn backups(s: &Status) -> String {
    if s.backups.is_empty() {
        return String::new();
    }
    let mut out = "backups on the standby (kept by --force):\n".to_owned();
    for b in &s.backups {
        out.push_str(&format!(
            "  {} at {}\n",
            quoted(&b.reference.full()),
            b.commit.short()
        ));
    }
    out
}

/// The last line: ready to fail over, or not.
/// What an operator can do about the drift shown: a mirror fast-forwards what is behind or
/// missing; a diverged or stale ref needs a decision (`--force` keeps a backup).
fn remedies(s: &Status, config: &str) -> String {
    let drifting = |kind: fn(&Drift) -> bool| s.refs.iter().any(|r| r.drift && kind(&r.state));
    let mut out = Vec::new();
    if drifting(|d| matches!(d, Drift::Behind { .. } | Drift::Missing { .. })) {
        out.push(format!(
            "`tozai mirror -c {config}` fast-forwards what is behind or missing"
        ));
    }
    if drifting(|d| matches!(d, Drift::Diverged { .. } | Drift::Stale { .. })) {
        out.push(format!(
            "a diverged or stale ref is left alone until you decide: `tozai mirror -c {config} \
             --force` backs up the standby's commits, then overwrites or deletes it"
        ));
    }
    if out.is_empty() {
        out.push("see above".to_owned());
    }
    out.join("; ")
}

fn verdict(s: &Status, config: &str) -> String {
    let total = s.refs.len();
    if total == 0 {
        return "no mirrored branch or tag exists yet".to_owned();
    }
    let refs = |n: usize| {
        if n == 1 {
            "1 ref".to_owned()
        } else {
            format!("{n} refs")
        }
    };
    let drifted = s.drifted();
    if drifted > 0 {
        return format!(
            "DRIFT: {drifted} of {total} refs: the standby is not ready to fail over ({})",
            remedies(s, &quoted(config))
        );
    }
    if s.in_sync {
        return format!("the standby is current: {} in sync", refs(total));
    }
    let count = |missing: bool| {
        s.refs
            .iter()
            .filter(|r| r.policy && matches!(r.state, Drift::Missing { .. }) == missing)
            .count()
    };
    let lags: Vec<String> = [(count(false), "behind"), (count(true), "missing")]
        .into_iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{} {what} by policy", refs(n)))
        .collect();
    format!(
        "the standby is ready to fail over: nothing it needs is missing ({} until the \
         reconciliation at {})",
        lags.join(", "),
        s.next_reconciliation
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tozai::mirror::Backup;
    use tozai::status::{Side, UtcTime};

    fn c(n: u8) -> CommitId {
        format!("{n:02x}").repeat(20).parse().unwrap()
    }

    fn status(refs: Vec<RefState>, backups: Vec<Backup>) -> Status {
        let side = |name: &str| Side {
            name: name.into(),
            location: format!("./{name}.git"),
        };
        Status {
            primary: side("tokyo"),
            standby: side("osaka"),
            reconcile: "1h".into(),
            next_reconciliation: UtcTime("2024-04-01T14:00:00Z".parse().unwrap()),
            strict: false,
            in_sync: refs.iter().all(|r| !r.state.lags() && !r.drift),
            drift: refs.iter().any(|r| r.drift),
            refs,
            backups,
        }
    }

    fn in_sync(name: &str, at: CommitId) -> RefState {
        RefState {
            reference: name.parse().unwrap(),
            source: Some(at.clone()),
            standby: Some(at.clone()),
            ahead: Some(0),
            behind: Some(0),
            commits: Vec::new(),
            matters: false,
            selected_by: Vec::new(),
            policy: false,
            lag_since: None,
            next_reconciliation: None,
            overdue: false,
            missed_reconciliation: None,
            drift: false,
            cause: None,
            log: None,
            state: Drift::InSync { at },
        }
    }

    #[test]
    fn the_table_lists_the_backups_force_left() {
        let backups = vec![
            Backup {
                reference: "refs/heads/tozai-backup/main/20240401T1300Z"
                    .parse()
                    .unwrap(),
                commit: c(7),
            },
            Backup {
                reference: "refs/heads/tozai-backup/say\"hi\"".parse().unwrap(),
                commit: c(8),
            },
        ];
        let shown = table(
            &status(vec![in_sync("refs/heads/main", c(1))], backups),
            "tozai.toml",
        );
        assert_eq!(
            shown,
            format!(
                "primary tokyo (./tokyo.git)\nstandby osaka (./osaka.git)\n  \
                 refs/heads/main  in sync  at {}\nbackups on the standby (kept by --force):\n  \
                 refs/heads/tozai-backup/main/20240401T1300Z at {}\n  \
                 \"refs/heads/tozai-backup/say\\\"hi\\\"\" at {}\n\
                 the standby is current: 1 ref in sync\n",
                c(1).short(),
                c(7).short(),
                c(8).short()
            )
        );
    }

    #[test]
    fn no_backups_no_section() {
        let shown = table(
            &status(vec![in_sync("refs/heads/main", c(1))], Vec::new()),
            "tozai.toml",
        );
        assert!(!shown.contains("backups"), "{shown}");
    }
}
