//! The demo's data: the example repository, and the walk as a table of steps (what each
//! pushes, and the starts, heads and events that must come of it). The runner in
//! [`super`] makes the pushes, hands their events to the Lambdas' code and checks the
//! outcome; nothing here decides anything.
//!
//! Texts name things by placeholder, filled in by the runner: `{tokyo}` and `{osaka}` (the
//! primary's and the standby's config names), `{tokyo_target}` and `{osaka_target}` (each
//! region's pipeline target), and a commit's label (`{warm}`) for its short id.

/// The commit a step made, by the label it gave it (`seed` is the setup's).
pub type Label = &'static str;

pub const MAIN: &str = "refs/heads/main";
pub const RC_TAG: &str = "v1.0.0-rc.1";
pub const RC_REF: &str = "refs/tags/v1.0.0-rc.1";
pub const TAG: &str = "v1.0.0";
pub const TAG_REF: &str = "refs/tags/v1.0.0";

/// A region, by its role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Primary,
    Standby,
}

/// A file's content, made when it is written.
pub type Text = fn() -> String;

/// What a step does, in order.
pub enum Action {
    /// Writes `files` in the developer's clone of the primary and commits them as `label`.
    Commit {
        label: Label,
        files: &'static [(&'static str, Text)],
        message: &'static str,
    },
    /// Tags the developer's `HEAD` (an annotated tag).
    Tag {
        name: &'static str,
        message: &'static str,
    },
    /// Moves the developer's `main` back to an earlier commit (push it with `+main`).
    ResetTo(Label),
    /// Pushes `refspecs` from the developer's clone to the primary and delivers the events;
    /// `row` is the summary's line for it: the commit and what was pushed.
    Push {
        refspecs: &'static [&'static str],
        row: (Label, &'static str),
    },
    /// Osaka's on-call commits `files` in a clone of the standby as `label`, pushes `main`
    /// straight to the standby, and the events are delivered.
    Hotfix {
        label: Label,
        files: &'static [(&'static str, Text)],
        message: &'static str,
        row: &'static str,
    },
    /// Delivers CodeCommit events of earlier steps again, with their ids.
    Redeliver(&'static [Again]),
}

/// Events delivered again.
#[derive(Debug, Clone, Copy)]
pub enum Again {
    /// The first event from the primary in a step.
    FirstPrimary(u32),
    /// The last event from the primary in a step.
    LastPrimary(u32),
    /// Every CodeCommit event of a step, in both regions.
    Every(u32),
}

/// Checks beyond the starts, heads and events.
#[derive(Debug, Clone, Copy)]
pub enum Check {
    /// A mirror run reported this ref diverged.
    Diverged(&'static str),
    /// The standby's tag is the primary's very tag object.
    SameTagObject(&'static str),
    /// Every judge found the event handled (its checkpoint at the ref's head).
    AllHandled,
    /// No standby ref moved during the step.
    StandbyUnchanged,
}

pub struct Step {
    /// For the failure report: `N (name)`.
    pub name: &'static str,
    pub title: &'static str,
    pub expected: &'static str,
    pub actions: &'static [Action],
    /// Every start the step makes, in order: the region whose target starts, at which
    /// commit, for which ref.
    pub starts: &'static [(Side, Label, &'static str)],
    /// Refs that must be at a commit (`None`: must not exist) after the step.
    pub heads: &'static [(Side, &'static str, Option<Label>)],
    /// tozai's events published, in order.
    pub published: &'static [&'static str],
    pub checks: &'static [Check],
    /// What is said when the step behaved as expected.
    pub outcome: &'static str,
}

const REQUESTED: &str = tozai::event::SYNC_REQUESTED;
const COMPLETED: &str = tozai::judge::SYNC_COMPLETED;
const FAILED: &str = tozai::judge::SYNC_FAILED;

/// The walk, step 1 onwards (step 0, the setup, seeds [`SEED`] and mirrors it).
pub const STEPS: &[Step] = &[
    Step {
        name: "a common/ change",
        title: "A change under common/, pushed to {tokyo}'s main",
        expected: "mirrored to {osaka}; {tokyo_target} and {osaka_target} start, once each",
        actions: &[
            Action::Commit {
                label: "vpc",
                files: &[("common/templates/vpc.yaml", vpc_dns_hostnames)],
                message: "vpc: enable DNS hostnames",
            },
            Action::Push {
                refspecs: &["main"],
                row: ("vpc", "common/templates/vpc.yaml"),
            },
        ],
        starts: &[(Side::Primary, "vpc", MAIN), (Side::Standby, "vpc", MAIN)],
        heads: &[(Side::Standby, MAIN, Some("vpc"))],
        published: &[REQUESTED, COMPLETED],
        checks: &[],
        outcome: "mirrored ({osaka}'s main = {tokyo}'s = {vpc}); {tokyo_target} and {osaka_target} started at {vpc}",
    },
    Step {
        name: "a primary/ change",
        title: "A change under primary/, pushed to {tokyo}'s main",
        expected: "{tokyo_target} starts; not mirrored; nothing happens in {osaka}",
        actions: &[
            Action::Commit {
                label: "scale",
                files: &[("primary/templates/root.yaml", tokyo_6_tasks)],
                message: "tokyo: scale the app to 6 tasks",
            },
            Action::Push {
                refspecs: &["main"],
                row: ("scale", "primary/templates/root.yaml"),
            },
        ],
        starts: &[(Side::Primary, "scale", MAIN)],
        heads: &[(Side::Standby, MAIN, Some("vpc"))],
        published: &[],
        checks: &[],
        outcome: "{tokyo_target} started at {scale}; not mirrored ({osaka}'s main stays at {vpc})",
    },
    Step {
        name: "a secondary/ change",
        title: "A change under secondary/, pushed to {tokyo}'s main",
        expected: "mirrored (carrying step 2's commit along); {osaka_target} starts, {tokyo_target} does not",
        actions: &[
            Action::Commit {
                label: "warm",
                files: &[("secondary/templates/root.yaml", osaka_3_tasks)],
                message: "osaka: keep 3 tasks warm",
            },
            Action::Push {
                refspecs: &["main"],
                row: ("warm", "secondary/templates/root.yaml"),
            },
        ],
        starts: &[(Side::Standby, "warm", MAIN)],
        heads: &[(Side::Standby, MAIN, Some("warm"))],
        published: &[REQUESTED, COMPLETED],
        checks: &[],
        outcome: "mirrored ({osaka}'s main = {warm}); {osaka_target} started at {warm}; {tokyo_target} did not start",
    },
    Step {
        name: "a tag on a deployed commit",
        title: "The release candidate tag v1.0.0-rc.1, pushed to {tokyo} at main's head {warm}, which {osaka_target} deployed in step 3",
        expected: "the tag is mirrored, and {osaka_target} (which opts into tags) starts for it at {warm}: a tag is a ref of its own; {tokyo_target} does not (tags never start it)",
        actions: &[
            Action::Tag {
                name: RC_TAG,
                message: "core-infra 1.0.0-rc.1",
            },
            Action::Push {
                refspecs: &[RC_TAG],
                row: ("warm", "tag v1.0.0-rc.1 (step 3's commit)"),
            },
        ],
        starts: &[(Side::Standby, "warm", RC_REF)],
        heads: &[
            (Side::Standby, RC_REF, Some("warm")),
            (Side::Standby, MAIN, Some("warm")),
        ],
        published: &[REQUESTED, COMPLETED],
        checks: &[Check::SameTagObject(RC_REF)],
        outcome: "v1.0.0-rc.1 mirrored; {osaka_target} started at {warm} for the tag, though its main started there in step 3",
    },
    Step {
        name: "a release tag",
        title: "Release notes under docs/ and the tag v1.0.0, pushed to {tokyo} together",
        expected: "the docs change triggers nothing; the tag is mirrored and {osaka_target} (which opts into tags) starts; {tokyo_target} does not (tags never start it)",
        actions: &[
            Action::Commit {
                label: "notes",
                files: &[("docs/release-notes.md", release_notes)],
                message: "docs: release notes for 1.0.0",
            },
            Action::Tag {
                name: TAG,
                message: "core-infra 1.0.0",
            },
            Action::Push {
                refspecs: &["main", TAG],
                row: ("notes", "docs/release-notes.md, tag v1.0.0"),
            },
        ],
        starts: &[(Side::Standby, "notes", TAG_REF)],
        heads: &[
            (Side::Standby, TAG_REF, Some("notes")),
            (Side::Standby, MAIN, Some("warm")),
        ],
        published: &[REQUESTED, COMPLETED],
        checks: &[Check::SameTagObject(TAG_REF)],
        outcome: "v1.0.0 mirrored; {osaka_target} started at {notes} for the tag; nothing started for the docs change",
    },
    Step {
        name: "a standby pushed to directly",
        title: "Someone pushes a hotfix straight to {osaka}'s main; then a common/ change reaches {tokyo}",
        expected: "{osaka_target} deploys the hotfix; the mirror reports main DIVERGED, publishes Sync Failed and leaves {osaka} alone; {tokyo_target} starts",
        actions: &[
            Action::Hotfix {
                label: "hotfix",
                files: &[("secondary/templates/hotfix.yaml", hotfix_alarm)],
                message: "osaka: hotfix alarm (made in the standby)",
                row: "secondary/templates/hotfix.yaml, pushed to {osaka}",
            },
            Action::Commit {
                label: "queue",
                files: &[("common/templates/queue.yaml", queue_longer_timeout)],
                message: "queue: longer visibility timeout",
            },
            Action::Push {
                refspecs: &["main"],
                row: ("queue", "common/templates/queue.yaml"),
            },
        ],
        starts: &[
            (Side::Standby, "hotfix", MAIN),
            (Side::Primary, "queue", MAIN),
        ],
        heads: &[
            (Side::Standby, MAIN, Some("hotfix")),
            (Side::Primary, MAIN, Some("queue")),
        ],
        published: &[REQUESTED, FAILED],
        checks: &[Check::Diverged(MAIN)],
        outcome: "main DIVERGED and left alone ({osaka}'s main is still the hotfix {hotfix}); Sync Failed published; {tokyo_target} started at {queue}, {osaka_target} did not",
    },
    Step {
        name: "a rewind",
        title: "A bad change under primary/ (Tokyo's app scaled to 0 tasks), then {tokyo}'s main force-pushed back to step 6's {queue}",
        expected: "{tokyo_target} starts at the bad commit, then again at {queue} (the rewind: its primary/ tree differs from the one {tokyo_target} last started on); neither is mirrored (only primary/ changed); nothing happens in {osaka}",
        actions: &[
            Action::Commit {
                label: "bad",
                files: &[("primary/templates/root.yaml", tokyo_0_tasks)],
                message: "tokyo: scale the app to 0 tasks",
            },
            Action::Push {
                refspecs: &["main"],
                row: ("bad", "primary/templates/root.yaml"),
            },
            Action::ResetTo("queue"),
            Action::Push {
                refspecs: &["+main"],
                row: ("queue", "main forced back to step 6's commit"),
            },
        ],
        starts: &[(Side::Primary, "bad", MAIN), (Side::Primary, "queue", MAIN)],
        heads: &[
            (Side::Primary, MAIN, Some("queue")),
            (Side::Standby, MAIN, Some("hotfix")),
        ],
        published: &[],
        checks: &[Check::StandbyUnchanged],
        outcome: "{tokyo_target} started at {bad}, then at {queue} again for the rewind (a new transition, with a new token); not mirrored; {osaka}'s main is still the hotfix {hotfix}",
    },
    Step {
        name: "at-least-once delivery",
        title: "At least once: EventBridge delivers step 6's push again, step 7's abandoned push late, and step 1's events (both regions) late",
        expected: "nothing starts again, nothing is mirrored again, nothing rolls back",
        actions: &[Action::Redeliver(&[
            Again::LastPrimary(6),
            Again::FirstPrimary(7),
            Again::Every(1),
        ])],
        starts: &[],
        heads: &[(Side::Primary, MAIN, Some("queue"))],
        published: &[],
        checks: &[Check::StandbyUnchanged, Check::AllHandled],
        outcome: "every judge found its checkpoint at the ref's head: no second start, no second mirror, nothing back to the abandoned commit",
    },
];

// ---------------------------------------------------------------- the example repository

/// The repository's first commit (step 0).
pub const SEED: &[(&str, Text)] = &[
    ("README.md", readme),
    ("docs/runbook.md", runbook),
    ("common/templates/vpc.yaml", vpc),
    ("common/templates/queue.yaml", queue),
    ("primary/templates/root.yaml", tokyo_4_tasks),
    ("secondary/templates/root.yaml", osaka_2_tasks),
];

fn readme() -> String {
    "# core-infra\n\nCloudFormation for the core system, deployed in Tokyo (primary) and Osaka (warm standby):\n\n- `common/`: templates both regions deploy\n- `primary/`: Tokyo only\n- `secondary/`: Osaka only\n".to_owned()
}

fn runbook() -> String {
    "# Failover runbook\n\n1. Check the standby is current: `tozai status -c tozai.toml`.\n2. Change `primary = \"tokyo\"` to `primary = \"osaka\"` in tozai.toml and deploy it.\n".to_owned()
}

fn vpc() -> String {
    "AWSTemplateFormatVersion: \"2010-09-09\"\nDescription: The core VPC (both regions)\nParameters:\n  CidrBlock:\n    Type: String\nResources:\n  Vpc:\n    Type: AWS::EC2::VPC\n    Properties:\n      CidrBlock: !Ref CidrBlock\n      EnableDnsSupport: true\n".to_owned()
}

fn vpc_dns_hostnames() -> String {
    vpc().replace(
        "EnableDnsSupport: true\n",
        "EnableDnsSupport: true\n      EnableDnsHostnames: true\n",
    )
}

fn queue() -> String {
    "AWSTemplateFormatVersion: \"2010-09-09\"\nDescription: The order queue (both regions)\nResources:\n  Orders:\n    Type: AWS::SQS::Queue\n    Properties:\n      VisibilityTimeout: 60\n".to_owned()
}

fn queue_longer_timeout() -> String {
    queue().replace("VisibilityTimeout: 60", "VisibilityTimeout: 120")
}

fn root(region: &str, cidr: &str, count: u32) -> String {
    format!(
        "AWSTemplateFormatVersion: \"2010-09-09\"\nDescription: {region}'s root stack\nResources:\n  Network:\n    Type: AWS::CloudFormation::Stack\n    Properties:\n      TemplateURL: ../../common/templates/vpc.yaml\n      Parameters:\n        CidrBlock: {cidr}\n  Queue:\n    Type: AWS::CloudFormation::Stack\n    Properties:\n      TemplateURL: ../../common/templates/queue.yaml\n  App:\n    Type: AWS::ECS::Service\n    Properties:\n      DesiredCount: {count}\n"
    )
}

fn tokyo_4_tasks() -> String {
    root("Tokyo", "10.0.0.0/16", 4)
}

fn tokyo_6_tasks() -> String {
    root("Tokyo", "10.0.0.0/16", 6)
}

fn tokyo_0_tasks() -> String {
    root("Tokyo", "10.0.0.0/16", 0)
}

fn osaka_2_tasks() -> String {
    root("Osaka", "10.1.0.0/16", 2)
}

fn osaka_3_tasks() -> String {
    root("Osaka", "10.1.0.0/16", 3)
}

fn release_notes() -> String {
    "# 1.0.0\n\n- DNS hostnames in the VPC\n- Tokyo runs 6 tasks, Osaka keeps 3 warm\n".to_owned()
}

fn hotfix_alarm() -> String {
    "AWSTemplateFormatVersion: \"2010-09-09\"\nDescription: Osaka hotfix made during an incident\nResources:\n  Alarm:\n    Type: AWS::CloudWatch::Alarm\n    Properties:\n      MetricName: Errors\n      Namespace: Core\n      Threshold: 1\n      EvaluationPeriods: 1\n      ComparisonOperator: GreaterThanThreshold\n      Statistic: Sum\n      Period: 60\n".to_owned()
}
