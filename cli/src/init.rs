//! `tozai init`: write a commented `tozai.toml` for the seed's layout (`common/` for both
//! regions, `primary/` for the primary only, `secondary/` for the standby only), with a
//! pipeline target per region and rule tests, asking nothing. `--primary` and `--standby`
//! name the regions (`NAME=AWS_REGION:REPOSITORY`). The text is checked as `tozai check`
//! would before it is written, and an existing file is kept unless `--force`.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use tozai::config::Config;
use tozai::location::check_aws_region;
use tozai::text::quoted;

use crate::config_file::NAME;

#[derive(clap::Args)]
pub struct Options {
    /// The primary region: NAME=AWS_REGION:REPOSITORY (REPOSITORY: a CodeCommit name, or
    /// any form `repository` takes in the config).
    #[arg(
        long,
        value_name = "NAME=AWS_REGION:REPOSITORY",
        default_value = "tokyo=ap-northeast-1:core-infra"
    )]
    pub primary: String,
    /// The standby region, the same way.
    #[arg(
        long,
        value_name = "NAME=AWS_REGION:REPOSITORY",
        default_value = "osaka=ap-northeast-3:core-infra"
    )]
    pub standby: String,
    /// An AWS region newer than tozai's table of known regions, written into the config's
    /// `extra_aws_regions` (repeatable).
    #[arg(long = "extra-aws-region", value_name = "AWS_REGION")]
    pub extra_aws_regions: Vec<String>,
    /// Overwrite an existing tozai.toml.
    #[arg(long)]
    pub force: bool,
}

/// A region as a flag gives it.
struct RegionFlag {
    name: String,
    aws_region: String,
    repository: String,
}

impl RegionFlag {
    fn parse(flag: &str, value: &str) -> anyhow::Result<Self> {
        let shape = || {
            format!(
                "{flag} {value:?}: expected NAME=AWS_REGION:REPOSITORY, like tokyo=ap-northeast-1:core-infra"
            )
        };
        let Some((name, rest)) = value.split_once('=') else {
            bail!(shape());
        };
        let Some((aws_region, repository)) = rest.split_once(':') else {
            bail!(shape());
        };
        let name_ok = !name.is_empty()
            && name.len() <= 64
            && name.starts_with(|c: char| c.is_ascii_alphanumeric())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !name_ok || repository.is_empty() {
            bail!(shape());
        }
        check_aws_region(aws_region).map_err(|m| anyhow::anyhow!("{flag}: {m}"))?;
        Ok(Self {
            name: name.to_owned(),
            aws_region: aws_region.to_owned(),
            repository: repository.to_owned(),
        })
    }
}

pub fn run(o: Options) -> anyhow::Result<ExitCode> {
    let primary = RegionFlag::parse("--primary", &o.primary)?;
    let standby = RegionFlag::parse("--standby", &o.standby)?;
    if primary.name == standby.name {
        bail!(
            "--primary and --standby name the same region {:?}",
            primary.name
        );
    }
    for region in &o.extra_aws_regions {
        check_aws_region(region).map_err(|m| anyhow::anyhow!("--extra-aws-region: {m}"))?;
    }
    let text = render(&primary, &standby, &o.extra_aws_regions);
    let config = Config::parse(&text, Path::new(NAME)).context(
        "the regions given make a config that is not valid (for an AWS region newer than \
             tozai's table, give --extra-aws-region REGION)",
    )?;
    let kept = write(&text, o.force)?;
    outln!(
        "wrote {NAME}: {}, {} pipeline targets, {} rule tests",
        crate::report::regions(&config),
        config.targets.len(),
        config.tests.len()
    );
    if let Some(kept) = kept {
        outln!("{kept}");
    }
    outln!("next: name your pipelines in it, then run `tozai check`");
    Ok(ExitCode::SUCCESS)
}

/// Writes the file, never over an existing one unless `force`; nor, unless `force`, in a
/// directory where a parent's `tozai.toml` applies (the new one would shadow it for every
/// command run here). With `force` the text goes to a temporary file first, then replaces
/// `tozai.toml` by a rename: a full disk or a kill leaves the old config whole, a symlink
/// named `tozai.toml` is replaced rather than followed, and the old one is kept as
/// `tozai.toml.bak`.
fn write(text: &str, force: bool) -> anyhow::Result<Option<&'static str>> {
    if !force {
        let cwd = std::env::current_dir().context("cannot read the working directory")?;
        if let Some(parent) = crate::config_file::nearest(&cwd)
            && parent.parent() != Some(cwd.as_path())
        {
            bail!(
                "{} applies here already (give --force to write another {NAME} here, which \
                 commands run below this directory would read instead)",
                quoted(&parent.display().to_string())
            );
        }
        let mut file = match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(NAME)
        {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                bail!("{NAME} already exists (give --force to overwrite it)")
            }
            other => other
                .with_context(|| format!("cannot create {NAME}"))
                .map_err(crate::OperationFailed::wrap)?,
        };
        file.write_all(text.as_bytes())
            .with_context(|| format!("cannot write {NAME}"))
            .map_err(crate::OperationFailed::wrap)?;
        return Ok(None);
    }
    let temporary = format!("{NAME}.{}.tmp", std::process::id());
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temporary)
        .and_then(|mut f| f.write_all(text.as_bytes()).and_then(|()| f.sync_all()));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temporary);
        return Err(crate::OperationFailed::wrap(
            anyhow::Error::new(e).context(format!("cannot write {temporary}")),
        ));
    }
    let backup = format!("{NAME}.bak");
    let kept = match std::fs::symlink_metadata(NAME) {
        Ok(_) => {
            std::fs::rename(NAME, &backup)
                .with_context(|| format!("cannot keep the old {NAME} as {backup}"))
                .map_err(crate::OperationFailed::wrap)?;
            Some("kept the old one as tozai.toml.bak")
        }
        Err(_) => None,
    };
    std::fs::rename(&temporary, NAME)
        .with_context(|| format!("cannot rename {temporary} to {NAME}"))
        .map_err(crate::OperationFailed::wrap)?;
    Ok(kept)
}

/// A TOML basic string holding `value` exactly.
fn toml_string(value: &str) -> String {
    let mut out = String::from("\"");
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The template with its placeholders filled in, in one pass: a value is never read
/// again for placeholders (a repository path holding `@SR@` is written as it is).
fn render(primary: &RegionFlag, standby: &RegionFlag, extra_aws_regions: &[String]) -> String {
    let extra = if extra_aws_regions.is_empty() {
        String::new()
    } else {
        let regions: Vec<String> = extra_aws_regions.iter().map(|r| toml_string(r)).collect();
        format!(
            "\n# AWS regions newer than tozai's table of known regions.\nextra_aws_regions = [{}]\n",
            regions.join(", ")
        )
    };
    let values = [
        ("@PA@", primary.aws_region.clone()),
        ("@SA@", standby.aws_region.clone()),
        ("@PR@", toml_string(&primary.repository)),
        ("@SR@", toml_string(&standby.repository)),
        ("@P@", primary.name.clone()),
        ("@S@", standby.name.clone()),
        ("@EXTRA@", extra),
    ];
    let mut out = String::with_capacity(TEMPLATE.len() + 256);
    let mut rest = TEMPLATE;
    while let Some(at) = rest.find('@') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        match values.iter().find(|(key, _)| rest.starts_with(key)) {
            Some((key, value)) => {
                out.push_str(value);
                rest = &rest[key.len()..];
            }
            None => {
                out.push('@');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

const TEMPLATE: &str = r#"# tozai.toml, written by `tozai init`. Check it with `tozai check`; reference: tozai's README.
#
# The layout it assumes, one CloudFormation repository:
#   common/     what both regions deploy
#   primary/    what only the primary (@P@) deploys
#   secondary/  what only the standby (@S@) deploys

# The one line a failover changes: the standby is the other region.
primary = "@P@"

# New branches are compared with this branch to find what they changed.
base_branch = "main"
@EXTRA@
[regions.@P@]
aws_region = "@PA@"
repository = @PR@

[regions.@S@]
aws_region = "@SA@"
repository = @SR@

# What is mirrored from the primary to the standby.
[sync]
branches = ["main", "release/*"]
tags = ["v*"]                         # tags matching these are always mirrored

# Keyed by the region that receives the mirror, so a failover needs no edit here:
# mirror into @S@ when a push changes what @S@ deploys...
[sync.to.@S@]
paths = ["common/**", "secondary/**"]
exclude = ["**/*.md", "docs/**"]

# ...and into @P@ once @S@ is the primary.
[sync.to.@P@]
paths = ["common/**", "primary/**"]
exclude = ["**/*.md", "docs/**"]

# The pipelines tozai starts in each region when their files change: name yours.
[[pipeline]]
name = "@P@-core"
region = "@P@"
codepipeline = "@P@-deploy"           # a CodePipeline (V2); or codebuild = "project"
branches = ["main"]
paths = ["common/**", "primary/**"]
exclude = ["**/*.md", "docs/**"]

[[pipeline]]
name = "@S@-core"
region = "@S@"
codepipeline = "@S@-deploy"
branches = ["main"]
paths = ["common/**", "secondary/**"]
exclude = ["**/*.md", "docs/**"]
tags = ["v*"]                         # opts in: a release tag redeploys @S@

# Rule tests: a push of these changes must cause exactly these actions ("mirror", and
# the pipeline targets started in either region). `tozai check` runs them.

[[test]]
name = "a common change mirrors and deploys both regions"
changes = ["common/templates/vpc.yaml"]
expect = ["mirror", "@P@-core", "@S@-core"]

[[test]]
name = "a primary change deploys @P@ only and is not mirrored"
changes = ["primary/templates/root.yaml"]
expect = ["@P@-core"]

[[test]]
name = "a secondary change mirrors and deploys @S@ only"
changes = ["secondary/templates/root.yaml"]
expect = ["mirror", "@S@-core"]

[[test]]
name = "deleting a secondary/ template redeploys @S@"
changes = [{ path = "secondary/templates/old-stack.yaml", change = "deleted" }]
expect = ["mirror", "@S@-core"]

[[test]]
name = "moving a template from primary/ to common/ concerns both regions"
changes = [{ path = "common/templates/queue.yaml", change = "renamed", old_path = "primary/templates/queue.yaml" }]
expect = ["mirror", "@P@-core", "@S@-core"]

[[test]]
name = "documentation triggers nothing"
changes = ["common/README.md", "docs/runbook.md"]
expect = []

[[test]]
name = "a feature branch is neither mirrored nor deployed"
ref = "refs/heads/feature/new-queue"
changes = ["common/templates/queue.yaml"]
expect = []

[[test]]
name = "a release branch is mirrored but deploys nowhere"
ref = "refs/heads/release/2024-04"
changes = ["common/templates/queue.yaml"]
expect = ["mirror"]

[[test]]
name = "a release tag is mirrored and redeploys only the target that opted in"
ref = "refs/tags/v1.4.0"
changes = ["common/templates/vpc.yaml"]
expect = ["mirror", "@S@-core"]

[[test]]
name = "a direct push to @S@ deploys @S@ and is never mirrored back"
region = "@S@"
changes = ["secondary/templates/root.yaml"]
expect = ["@S@-core"]
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_take_name_region_and_repository() {
        let r = RegionFlag::parse(
            "--standby",
            "osaka=ap-northeast-3:codecommit::ap-northeast-3://x",
        )
        .unwrap();
        assert_eq!(
            (
                r.name.as_str(),
                r.aws_region.as_str(),
                r.repository.as_str()
            ),
            ("osaka", "ap-northeast-3", "codecommit::ap-northeast-3://x")
        );
        for bad in [
            "osaka",
            "osaka=ap-northeast-3",
            "=ap-northeast-3:x",
            "a b=ap-northeast-3:x",
            "o=ap-northeast-3:",
        ] {
            assert!(RegionFlag::parse("--standby", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_defaults_make_a_valid_config_whose_tests_pass() {
        let o = |s: &str| RegionFlag::parse("--x", s).unwrap();
        let text = render(
            &o("tokyo=ap-northeast-1:core-infra"),
            &o("osaka=ap-northeast-3:a\"b\\c"),
            &[],
        );
        assert!(text.contains("repository = \"a\\\"b\\\\c\""), "{text}");
        let text = render(
            &o("tokyo=ap-northeast-1:core-infra"),
            &o("osaka=ap-northeast-3:core-infra"),
            &[],
        );
        assert!(!text.contains('@'), "every placeholder is filled: {text}");
        let config = Config::parse(&text, Path::new(NAME)).unwrap();
        let results = tozai::ruletest::run(&config);
        assert_eq!(results.len(), 10);
        assert!(results.iter().all(|r| r.passed()));
    }

    /// Regression (second review): placeholders were replaced one after another, so a
    /// value holding one (`@SR@`) was filled in again.
    #[test]
    fn a_value_holding_a_placeholder_is_written_as_it_is() {
        let o = |s: &str| RegionFlag::parse("--x", s).unwrap();
        let text = render(
            &o("tokyo=ap-northeast-1:./t@SR@.git"),
            &o("osaka=ap-northeast-3:./o.git"),
            &[],
        );
        assert!(text.contains("repository = \"./t@SR@.git\""), "{text}");
        assert!(text.contains("repository = \"./o.git\""), "{text}");
    }

    /// A region newer than tozai's table: `--extra-aws-region` writes the key that allows
    /// it, and the config then passes.
    #[test]
    fn an_extra_aws_region_is_written_at_the_top() {
        let o = |s: &str| RegionFlag::parse("--x", s).unwrap();
        let (tokyo, newer) = (
            o("tokyo=ap-northeast-1:core-infra"),
            o("osaka=xx-new-1:core-infra"),
        );
        let refused = render(&tokyo, &newer, &[]);
        assert!(Config::parse(&refused, Path::new(NAME)).is_err());
        let text = render(&tokyo, &newer, &["xx-new-1".to_owned()]);
        assert!(
            text.contains("\nextra_aws_regions = [\"xx-new-1\"]\n"),
            "{text}"
        );
        Config::parse(&text, Path::new(NAME)).unwrap();
    }
}
