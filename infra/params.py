#!/usr/bin/env python3
"""The root stacks' parameters, derived from tozai.toml (so the config stays the one source
of truth: a failover edits its `primary` line, and both regions' parameters follow).

    python3 infra/params.py -c tozai.toml -a ACCOUNT                # JSON: every region's
    python3 infra/params.py -c tozai.toml -a ACCOUNT --region tokyo # KEY=VALUE lines for one
                                   # region, as `aws cloudformation deploy --parameter-overrides`
                                   # takes them

Each region's stack gets: Primary (the config's `primary`), ThisRegion, Repository, the
other region's AWS region and repository, the mirrored branches and tags (sync.branches,
sync.tags), and this region's targets: their branches and tags (pipeline.branches,
pipeline.tags) and the ARNs of the pipelines and projects the pipeline-judge may start
(ARNs, because CloudFormation cannot prefix each item of a list with the region and the
account: ACCOUNT is the AWS account the stacks are deployed in).

Branch and tag globs become EventBridge wildcards, which only know `*` (any characters,
`/` included): `{a,b}` expands to two patterns, `?`, `[...]` and `**` (with its slashes)
become `*`. The rules therefore match a superset of what the config selects; the functions
apply the exact globs and acknowledge the rest.

Python 3.11+ (tomllib), standard library only. `tozai check -c tozai.toml` validates the
config in full; this script checks only what the templates need.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    try:
        import tomli as tomllib  # type: ignore[no-redef]
    except ModuleNotFoundError:
        sys.exit("infra/params.py needs Python 3.11+ (tomllib) or the tomli package")

ACCOUNT = re.compile(r"^[0-9]{12}$")
AWS_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-[0-9]+$")
REPO_NAME = re.compile(r"^[\w.-]{1,100}$")
# What a pattern may contain once in the event pattern's JSON string.
SAFE_WILDCARD = re.compile(r'^[^"\\\x00-\x1f]+$')


class ConfigError(Exception):
    pass


def codecommit_name(region: str, spec: dict) -> str:
    """The CodeCommit repository of a region, which must live in that region."""
    text = spec.get("repository")
    aws_region = spec.get("aws_region")
    if not isinstance(text, str) or not isinstance(aws_region, str):
        raise ConfigError(f"regions.{region} needs aws_region and repository")
    if not AWS_REGION.match(aws_region):
        raise ConfigError(f"regions.{region}.aws_region {aws_region!r} is not an AWS region")
    repo_region, name = aws_region, None
    if text.startswith("codecommit::"):
        repo_region, sep, name = text[len("codecommit::"):].partition("://")
        if not sep:
            raise ConfigError(f"regions.{region}.repository: expected codecommit::REGION://NAME")
    elif text.startswith("codecommit://"):
        name = text[len("codecommit://"):]
    elif m := re.match(r"^https://git-codecommit(?:-fips)?\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/v1/repos/([^/]+)$", text):
        repo_region, name = m.group(1), m.group(2)
    elif "/" not in text and ":" not in text and not text.startswith("."):
        name = text
    if name is None or not REPO_NAME.match(name):
        raise ConfigError(
            f"regions.{region}.repository {text!r} is not a CodeCommit repository: "
            "the Lambdas read changes through CodeCommit's API"
        )
    if repo_region != aws_region:
        raise ConfigError(
            f"regions.{region}.repository is in {repo_region}, not in the region's aws_region "
            f"{aws_region}: its events would reach another region's event bus"
        )
    return name


def expand_braces(glob: str) -> list[str]:
    """`{a,b}c` -> [`ac`, `bc`], innermost first, nested allowed."""
    depth, start = 0, None
    for i, c in enumerate(glob):
        if c == "\\":
            continue
        if c == "{":
            if depth == 0:
                start = i
            depth += 1
        elif c == "}" and depth:
            depth -= 1
            if depth == 0 and start is not None:
                inner, parts, level, last = glob[start + 1 : i], [], 0, 0
                for j, d in enumerate(inner):
                    if d == "{":
                        level += 1
                    elif d == "}":
                        level -= 1
                    elif d == "," and level == 0:
                        parts.append(inner[last:j])
                        last = j + 1
                parts.append(inner[last:])
                head, tail = glob[:start], glob[i + 1 :]
                return [x for p in parts for x in expand_braces(head + p + tail)]
    return [glob]


def wildcards(globs: list[str], what: str) -> list[str]:
    """tozai globs -> EventBridge wildcard patterns matching at least the same names."""
    out: list[str] = []
    for glob in globs:
        if not isinstance(glob, str) or not glob:
            raise ConfigError(f"{what}: {glob!r} is not a glob")
        for alt in expand_braces(glob):
            w = re.sub(r"/?\*\*/?", "*", alt)
            w = re.sub(r"\[[^\]]*\]", "*", w)
            w = w.replace("?", "*")
            w = re.sub(r"\\(.)", lambda m: "\\*" if m.group(1) == "*" else m.group(1), w)
            w = re.sub(r"(?<!\\)\*+", "*", w)
            if not SAFE_WILDCARD.match(w.replace("\\*", "*")):
                raise ConfigError(f"{what}: {glob!r} cannot be written in an event pattern")
            if w not in out:
                out.append(w)
    return ["*"] if "*" in out else out


def partition(aws_region: str) -> str:
    if aws_region.startswith("cn-"):
        return "aws-cn"
    if aws_region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def derive(config: dict, account: str) -> dict:
    if not ACCOUNT.match(account):
        raise ConfigError(f"{account!r} is not an AWS account id (12 digits)")
    regions = config.get("regions")
    if not isinstance(regions, dict) or len(regions) != 2:
        raise ConfigError("the config needs exactly two [regions.NAME]")
    primary = config.get("primary")
    if primary not in regions:
        raise ConfigError(f"primary {primary!r} is not one of the regions ({', '.join(regions)})")
    sync = config.get("sync") or {}
    if not sync.get("branches"):
        raise ConfigError("sync.branches is missing or empty")
    sync_branches = wildcards(sync["branches"], "sync.branches")
    sync_tags = wildcards(sync.get("tags", ["**"]), "sync.tags")
    repos = {name: codecommit_name(name, spec) for name, spec in regions.items()}
    out = {}
    for name, spec in regions.items():
        other = next(n for n in regions if n != name)
        targets = [p for p in config.get("pipeline", []) if p.get("region") == name]
        for p in config.get("pipeline", []):
            if p.get("region") not in regions:
                raise ConfigError(f"pipeline {p.get('name')!r}: unknown region {p.get('region')!r}")
        branches: list[str] = []
        tags: list[str] = []
        for p in targets:
            for w in wildcards(p.get("branches", []), f"pipeline {p.get('name')}.branches"):
                if w not in branches:
                    branches.append(w)
            for w in wildcards(p.get("tags", []), f"pipeline {p.get('name')}.tags"):
                if w not in tags:
                    tags.append(w)
        arn = f"arn:{partition(spec['aws_region'])}:{{}}:{spec['aws_region']}:{account}:{{}}"
        pipelines = sorted({arn.format("codepipeline", p["codepipeline"]) for p in targets if "codepipeline" in p})
        projects = sorted({arn.format("codebuild", "project/" + p["codebuild"]) for p in targets if "codebuild" in p})
        for resource in pipelines + projects:
            if not re.fullmatch(r"[^,\s]+", resource):
                raise ConfigError(f"pipeline target {resource!r}: not a usable pipeline or project name")
        out[name] = {
            "aws_region": spec["aws_region"],
            "is_primary": name == primary,
            "parameters": {
                "Primary": primary,
                "ThisRegion": name,
                "Repository": repos[name],
                "OtherAwsRegion": regions[other]["aws_region"],
                "OtherRepository": repos[other],
                "SyncBranches": ",".join(sync_branches),
                "SyncTags": ",".join(sync_tags),
                "JudgeBranches": ",".join(["*"] if "*" in branches else branches),
                "JudgeTags": ",".join(["*"] if "*" in tags else tags),
                "PipelineArns": ",".join(pipelines),
                "ProjectArns": ",".join(projects),
            },
        }
    if regions[primary]["aws_region"] == regions[next(n for n in regions if n != primary)]["aws_region"]:
        raise ConfigError("the two regions have the same aws_region")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-c", "--config", required=True, type=Path)
    ap.add_argument("-a", "--account", required=True, help="the AWS account id the stacks go to")
    ap.add_argument("--region", help="print KEY=VALUE lines for this config region")
    args = ap.parse_args()
    try:
        with args.config.open("rb") as f:
            config = tomllib.load(f)
        derived = derive(config, args.account)
    except (OSError, tomllib.TOMLDecodeError, ConfigError) as e:
        print(f"infra/params.py: {args.config}: {e}", file=sys.stderr)
        return 2
    if args.region is None:
        json.dump(derived, sys.stdout, indent=2)
        print()
        return 0
    if args.region not in derived:
        print(f"infra/params.py: no region {args.region!r} in {args.config}", file=sys.stderr)
        return 2
    for key, value in derived[args.region]["parameters"].items():
        print(f"{key}={value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
