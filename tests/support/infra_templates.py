#!/usr/bin/env python3
"""Reads tozai's CloudFormation templates (infra/) the way CloudFormation would, for
tests/tests/infra.rs. Needs the tests' virtualenv (cfn-lint for the YAML decoder,
aws-sam-translator for the SAM transform).

    infra_templates.py translate INFRA OUT
        Every template under INFRA, SAM ones translated offline by aws-sam-translator
        (resource Metadata passed through, so checkov still sees the suppressions), written
        under OUT with the same relative paths (JSON, which is YAML), for cfn-lint and
        checkov. Local CodeUri paths become a placeholder S3 URI, as `cloudformation
        package` would make them.

    infra_templates.py suppressions INFRA
        Every checkov suppression in the templates' resource Metadata: file, resource, check
        id and comment (the reason), as JSON.

    infra_templates.py model INFRA CONFIG [KEY=VALUE...]
        Evaluates each region's root stack, with the parameters infra/params.py derives from
        CONFIG (tozai.toml) and the KEY=VALUE overrides given (as scripts/deploy.sh's
        `-- KEY=VALUE` passes them to both roots), through its nested stacks (conditions, Ref, Sub, Join, Split,
        If...) and prints what would be deployed, as JSON: for each region and each of the
        two roots, every stack created, its parameters (checked against AllowedPattern,
        AllowedValues, MinValue and MaxValue), its EventBridge rules with their event
        patterns parsed, its IAM roles' statements, functions, permissions and resource
        policies. Ref/GetAtt of resources evaluate to "Ref(X)" / "GetAtt(X.Attr)" (an event
        bus's Ref to its name), pseudo parameters to the account 123456789012 (moto's) and the
        region's AWS region.

Any problem (an unknown intrinsic, a parameter that does not fit, a template that does not
translate) exits 1 with a message naming the file and the resource.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import re
import sys
from pathlib import Path

# The SAM transform asks boto for a region (to pick the partition); offline, name one. It
# never appears in the output (checked: the model evaluates AWS::Region per stack).
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

try:
    import cfnlint.decode
    from samtranslator.translator.transform import transform as sam_transform
except ModuleNotFoundError as e:  # pragma: no cover - reported to the Rust test
    sys.exit(
        f"{e}: run `bash scripts/setup-test-env.sh` (installs cfn-lint and aws-sam-translator "
        "from scripts/requirements-test.txt into ./.venv) and use .venv/bin/python"
    )

ACCOUNT = "123456789012"
SAM = "AWS::Serverless-2016-10-31"
NO_VALUE = object()


class Problem(Exception):
    pass


def load(path: Path) -> dict:
    template, matches = cfnlint.decode.decode(str(path))
    if matches or template is None:
        raise Problem(f"{path}: cannot be read: {[str(m) for m in matches]}")
    return json.loads(json.dumps(template))


def is_sam(template: dict) -> bool:
    t = template.get("Transform", [])
    return SAM in (t if isinstance(t, list) else [t])


class _NoManagedPolicies:
    def load(self) -> dict:
        return {}


def translate(path: Path, template: dict) -> dict:
    """The SAM template as CloudFormation (what `cloudformation deploy` would expand)."""
    t = copy.deepcopy(template)
    for logical, res in t.get("Resources", {}).items():
        if res.get("Type") == "AWS::Serverless::Function":
            uri = res.get("Properties", {}).get("CodeUri")
            if isinstance(uri, str) and not uri.startswith("s3://"):
                res["Properties"]["CodeUri"] = f"s3://tozai-artifacts/{Path(uri).name}"
    try:
        out = sam_transform(t, {}, _NoManagedPolicies(), passthrough_metadata=True)
    except Exception as e:  # samtranslator raises several types
        raise Problem(f"{path}: the SAM transform failed: {e}") from e
    return json.loads(json.dumps(out))


def cloudformation(path: Path) -> dict:
    template = load(path)
    return translate(path, template) if is_sam(template) else template


# ---------------------------------------------------------------- evaluation


class Stack:
    """One stack: a template and its parameter values."""

    def __init__(self, path: Path, template: dict, given: dict[str, str], aws_region: str, name: str):
        self.path, self.t, self.aws_region, self.name = path, template, aws_region, name
        self.resources = template.get("Resources", {})
        self.params = self._parameters(given)
        self._conditions: dict[str, bool] = {}

    def where(self, what: str) -> str:
        return f"{self.path} ({self.name}): {what}"

    def _parameters(self, given: dict[str, str]) -> dict:
        declared = self.t.get("Parameters", {})
        unknown = set(given) - set(declared)
        if unknown:
            raise Problem(self.where(f"parameters not declared: {sorted(unknown)}"))
        out = {}
        for name, spec in declared.items():
            if name in given:
                value = given[name]
            elif "Default" in spec:
                value = spec["Default"]
            else:
                raise Problem(self.where(f"parameter {name} has no value and no default"))
            value = str(value)
            kind = spec.get("Type", "String")
            items = value.split(",") if kind == "CommaDelimitedList" else [value]
            pattern = spec.get("AllowedPattern")
            for item in items:
                if pattern is not None and not re.fullmatch(pattern, item):
                    raise Problem(self.where(f"parameter {name}={value!r} does not match {pattern}"))
            allowed = spec.get("AllowedValues")
            if allowed is not None and value not in [str(a) for a in allowed]:
                raise Problem(self.where(f"parameter {name}={value!r} is not one of {allowed}"))
            if kind == "Number":
                try:
                    number = float(value)
                except ValueError:
                    raise Problem(self.where(f"parameter {name}={value!r} is not a number")) from None
                if "MinValue" in spec and number < float(spec["MinValue"]):
                    raise Problem(self.where(f"parameter {name}={value} < MinValue"))
                if "MaxValue" in spec and number > float(spec["MaxValue"]):
                    raise Problem(self.where(f"parameter {name}={value} > MaxValue"))
            out[name] = items if kind == "CommaDelimitedList" else value
        return out

    # -- intrinsics

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            spec = self.t.get("Conditions", {}).get(name)
            if spec is None:
                raise Problem(self.where(f"unknown condition {name}"))
            self._conditions[name] = bool(self.ev(spec))
        return self._conditions[name]

    def ref(self, name: str):
        if name in self.params:
            return self.params[name]
        pseudo = {
            "AWS::Region": self.aws_region,
            "AWS::AccountId": ACCOUNT,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": self.name,
            "AWS::NoValue": NO_VALUE,
        }
        if name in pseudo:
            return pseudo[name]
        res = self.resources.get(name)
        if res is None:
            raise Problem(self.where(f"Ref to unknown {name}"))
        if res.get("Type") == "AWS::Events::EventBus":
            return self.ev(res["Properties"]["Name"])
        return f"Ref({name})"

    def sub(self, text: str, variables: dict) -> str:
        def one(m: re.Match) -> str:
            inner = m.group(1)
            if inner.startswith("!"):
                return "${" + inner[1:] + "}"
            if inner in variables:
                value = variables[inner]
            elif "." in inner and inner.split(".", 1)[0] in self.resources:
                value = "GetAtt(" + inner + ")"
            else:
                value = self.ref(inner)
            if not isinstance(value, str):
                raise Problem(self.where(f"Fn::Sub ${{{inner}}} is not a string: {value!r}"))
            return value

        return re.sub(r"\$\{([^}]+)\}", one, text)

    def ev(self, node):
        if isinstance(node, list):
            out = [self.ev(x) for x in node]
            return [x for x in out if x is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (key, arg), = node.items()
            if key == "Ref":
                return self.ref(arg)
            if key == "Fn::GetAtt":
                parts = arg if isinstance(arg, list) else arg.split(".", 1)
                if parts[0] not in self.resources:
                    raise Problem(self.where(f"GetAtt of unknown {parts[0]}"))
                return f"GetAtt({parts[0]}.{self.ev(parts[1])})"
            if key == "Fn::Sub":
                if isinstance(arg, str):
                    return self.sub(arg, {})
                text, variables = arg
                return self.sub(text, {k: self.ev(v) for k, v in variables.items()})
            if key == "Fn::Join":
                sep, items = self.ev(arg[0]), self.ev(arg[1])
                if not all(isinstance(i, str) for i in items):
                    raise Problem(self.where(f"Fn::Join of non-strings {items!r}"))
                return sep.join(items)
            if key == "Fn::Split":
                return self.ev(arg[1]).split(self.ev(arg[0]))
            if key == "Fn::Select":
                return self.ev(arg[1])[int(self.ev(arg[0]))]
            if key == "Fn::If":
                name, yes, no = arg
                return self.ev(yes) if self.condition(name) else self.ev(no)
            if key == "Fn::Equals":
                a, b = self.ev(arg[0]), self.ev(arg[1])
                return a == b
            if key == "Fn::Not":
                return not self.ev(arg[0])
            if key == "Fn::And":
                return all(self.ev(a) for a in arg)
            if key == "Fn::Or":
                return any(self.ev(a) for a in arg)
            if key == "Condition":
                return self.condition(arg)
            if key.startswith("Fn::"):
                raise Problem(self.where(f"{key} is not understood by tests/support/infra_templates.py"))
        out = {}
        for k, v in node.items():
            value = self.ev(v)
            if value is not NO_VALUE:
                out[k] = value
        return out

    # -- what is deployed

    def created(self) -> dict[str, dict]:
        out = {}
        for logical, res in self.resources.items():
            if "Condition" in res and not self.condition(res["Condition"]):
                continue
            out[logical] = res
        return out

    def props(self, res: dict) -> dict:
        return self.ev(res.get("Properties", {}))


def statements(document: dict) -> list[dict]:
    raw = document.get("Statement", [])
    raw = raw if isinstance(raw, list) else [raw]
    out = []
    for s in raw:
        as_list = lambda v: v if isinstance(v, list) else ([] if v is None else [v])  # noqa: E731
        out.append(
            {
                "sid": s.get("Sid"),
                "effect": s.get("Effect"),
                "principal": s.get("Principal"),
                "actions": as_list(s.get("Action")),
                "not_actions": as_list(s.get("NotAction")),
                "resources": as_list(s.get("Resource")),
                "not_resources": as_list(s.get("NotResource")),
                "condition": s.get("Condition"),
            }
        )
    return out


def model(stack: Stack) -> dict:
    created = stack.created()
    m: dict = {
        "template": str(stack.path),
        "parameters": stack.params,
        "resources": {k: v["Type"] for k, v in created.items()},
        "rules": [],
        "roles": [],
        "policies": [],
        "functions": [],
        "permissions": [],
        "event_invoke_configs": [],
        "queue_policies": [],
        "topic_policies": [],
        "alarms": [],
        "stacks": {},
    }
    for logical, res in created.items():
        kind = res["Type"]
        if kind == "AWS::CloudFormation::Stack":
            continue
        p = stack.props(res)
        if kind == "AWS::Events::Rule":
            pattern = p.get("EventPattern")
            if isinstance(pattern, str):
                try:
                    pattern = json.loads(pattern)
                except json.JSONDecodeError as e:
                    raise Problem(stack.where(f"{logical}'s EventPattern is not JSON ({e}): {pattern}")) from e
            m["rules"].append(
                {
                    "logical": logical,
                    "name": p.get("Name"),
                    "bus": p.get("EventBusName", "default"),
                    "pattern": pattern,
                    "schedule": p.get("ScheduleExpression"),
                    "state": p.get("State"),
                    "targets": p.get("Targets", []),
                }
            )
        elif kind == "AWS::IAM::Role":
            m["roles"].append(
                {
                    "logical": logical,
                    "name": p.get("RoleName"),
                    "trust": statements(p.get("AssumeRolePolicyDocument", {})),
                    "managed": p.get("ManagedPolicyArns", []),
                    "boundary": p.get("PermissionsBoundary"),
                    "statements": [s for pol in p.get("Policies", []) for s in statements(pol["PolicyDocument"])],
                }
            )
        elif kind in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            m["policies"].append({"logical": logical, "properties": p, "statements": statements(p["PolicyDocument"])})
        elif kind in ("AWS::Lambda::Function", "AWS::Serverless::Function"):
            m["functions"].append({"logical": logical, "properties": p})
        elif kind == "AWS::Lambda::Permission":
            m["permissions"].append({"logical": logical, "properties": p})
        elif kind == "AWS::Lambda::EventInvokeConfig":
            m["event_invoke_configs"].append({"logical": logical, "properties": p})
        elif kind == "AWS::SQS::QueuePolicy":
            m["queue_policies"].append({"logical": logical, "queues": p["Queues"], "statements": statements(p["PolicyDocument"])})
        elif kind == "AWS::SNS::TopicPolicy":
            m["topic_policies"].append({"logical": logical, "topics": p["Topics"], "statements": statements(p["PolicyDocument"])})
        elif kind == "AWS::CloudWatch::Alarm":
            m["alarms"].append({"logical": logical, "properties": p})
    return m


def evaluate(infra: Path, root: Path, parameters: dict[str, str], aws_region: str, cache: dict) -> dict:
    def template(path: Path) -> dict:
        key = path.resolve()
        if key not in cache:
            cache[key] = cloudformation(path)
        return cache[key]

    top = Stack(root, template(root), parameters, aws_region, "root")
    out = model(top)
    for logical, res in top.created().items():
        if res["Type"] != "AWS::CloudFormation::Stack":
            continue
        p = top.props(res)
        url = p["TemplateURL"]
        child = (root.parent / url).resolve()
        if not child.is_file():
            raise Problem(top.where(f"{logical}'s TemplateURL {url} is not a file"))
        given = p.get("Parameters", {})
        for k, v in given.items():
            if not isinstance(v, str):
                raise Problem(top.where(f"{logical} passes {k}={v!r}: nested stack parameters are strings"))
        stack = Stack(child.relative_to(infra.resolve().parent), template(child), given, aws_region, logical)
        out["stacks"][logical] = model(stack)
        out["stacks"][logical]["depends_on"] = res.get("DependsOn")
    return out


def derive(infra: Path, config: Path) -> dict:
    spec = importlib.util.spec_from_file_location("tozai_infra_params", infra / "params.py")
    params = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(params)
    import tomllib

    with config.open("rb") as f:
        return params.derive(tomllib.load(f), ACCOUNT)


def cmd_model(infra: Path, config: Path, overrides: list[str]) -> dict:
    regions = derive(infra, config)
    extra = {}
    for item in overrides:
        key, eq, value = item.partition("=")
        if not eq:
            raise Problem(f"an override is KEY=VALUE, not {item!r}")
        extra[key] = value
    cache: dict = {}
    out = {}
    for name, region in regions.items():
        region["parameters"] = {**region["parameters"], **extra}
        out[name] = {
            "aws_region": region["aws_region"],
            "is_primary": region["is_primary"],
            "parameters": region["parameters"],
            "roots": {
                which: evaluate(infra, infra / which / "root.yaml", region["parameters"], region["aws_region"], cache)
                for which in ("primary", "secondary")
            },
        }
    return out


def cmd_translate(infra: Path, out: Path) -> list[str]:
    written = []
    for path in sorted(infra.rglob("*.yaml")):
        rel = path.relative_to(infra)
        target = out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(cloudformation(path), indent=1))
        written.append(str(rel))
    return written


def cmd_suppressions(infra: Path) -> list[dict]:
    out = []
    for path in sorted(infra.rglob("*.yaml")):
        for logical, res in load(path).get("Resources", {}).items():
            for skip in ((res.get("Metadata") or {}).get("checkov") or {}).get("skip", []):
                out.append(
                    {
                        "file": str(path.relative_to(infra)),
                        "resource": logical,
                        "id": skip.get("id"),
                        "comment": skip.get("comment", ""),
                    }
                )
    return out


def main(argv: list[str]) -> int:
    try:
        if len(argv) == 3 and argv[0] == "translate":
            print(json.dumps(cmd_translate(Path(argv[1]), Path(argv[2]))))
        elif len(argv) == 2 and argv[0] == "suppressions":
            print(json.dumps(cmd_suppressions(Path(argv[1]))))
        elif len(argv) >= 3 and argv[0] == "model":
            print(json.dumps(cmd_model(Path(argv[1]), Path(argv[2]), argv[3:]), indent=1))
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except Problem as e:
        print(f"infra_templates.py: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
