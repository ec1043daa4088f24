#!/usr/bin/env python3
"""A CodeCommit API stand-in for tozai's tests: AWS JSON 1.1 over loopback, answered by git.

Standard library only. It listens on 127.0.0.1 and answers ``POST /`` requests carrying
``X-Amz-Target: CodeCommit_20150413.<Operation>`` and a JSON body, as CodeCommit does, from
the bare repositories ``<repos_root>/<repositoryName>`` (the layout the git stand-in
``codecommit_cgi.py`` serves, so one directory backs both). Every answer is computed with the
git CLI in a subprocess: nothing here shares code with tozai.

Operations (fields as in the CodeCommit API reference / botocore's service model):

- ``GetDifferences`` {repositoryName, afterCommitSpecifier, beforeCommitSpecifier?,
  beforePath?, afterPath?, MaxResults?, NextToken?} -> {differences, NextToken?}.
  ``git diff-tree -r -z`` between the two commits; without ``beforeCommitSpecifier`` every
  file of the after commit is ``A`` (``git ls-tree -r``). Specifiers are anything
  ``git rev-parse`` peels to a commit (ids, branch and tag names, ``refs/...``).
  Paging: ``MaxResults`` defaults to 100 (the API sets no maximum, so none is enforced
  here), ``NextToken`` is opaque (base64 of the offset and a hash of the request's other
  inputs); a token made for other inputs is ``InvalidContinuationTokenException``.
  ``beforePath``/``afterPath`` keep the differences with a before or after path equal to
  or under either given path; a given path found in neither commit is
  ``PathDoesNotExistException``.
- ``GetBranch`` {repositoryName, branchName} -> {branch: {branchName, commitId}}.
- ``GetRepository`` {repositoryName} -> {repositoryMetadata: {accountId, repositoryId,
  repositoryName, creationDate, lastModifiedDate, defaultBranch?}}. ``defaultBranch`` is the
  branch the bare repository's ``HEAD`` names, when it exists; an empty repository has none,
  as in CodeCommit. (CodeCommit makes the first branch pushed to an empty repository its
  default; here ``HEAD`` stays what ``git init`` made it, ``main``. No ARN or clone URLs.)
- ``GetCommit`` {repositoryName, commitId (full id)} -> {commit: {commitId, treeId,
  parents, message, author, committer, additionalData}}; dates as CodeCommit's docs show
  them, ``"<unix seconds> <+hhmm>"``; the message without its trailing newlines.
- ``GetMergeOptions`` {repositoryName, sourceCommitSpecifier, destinationCommitSpecifier,
  conflictDetailLevel?, conflictResolutionStrategy?} -> {mergeOptions, sourceCommitId,
  destinationCommitId, baseCommitId}. ``baseCommitId`` is ``git merge-base``.
  ``FAST_FORWARD_MERGE`` is offered when the destination is an ancestor of the source;
  ``SQUASH_MERGE`` and ``THREE_WAY_MERGE`` unless ``git merge-tree --write-tree`` finds
  conflicts and the strategy is ``NONE`` (the default).

Choices where CodeCommit's behaviour is unverified (a test relying on them tests the
stand-in, not CodeCommit):

- Renames. CodeCommit's account of a rename is not documented. By default (``renames:
  "paired"``) a rename git detects (``-M``, 50 % similarity) is ONE difference with
  ``changeType`` ``"M"``, a ``beforeBlob`` at the old path and an ``afterBlob`` at the new
  one: the shape that breaks a client reading only one side. ``renames: "split"`` reports
  ``D`` of the old path plus ``A`` of the new one (``--no-renames``).
- GetMergeOptions for commits with no common ancestor: the API lists no exception for it
  and requires ``baseCommitId`` in the answer, so this answers
  ``TipsDivergenceExceededException`` (the documented "cannot compare these tips" error).
- Paths that are not UTF-8 are decoded with replacement characters.

Authentication: every API request must carry a SigV4 ``Authorization`` header, verified in
full (canonical request over the method, path, query, the headers in ``SignedHeaders`` and
the SHA-256 of the body; scope ``DATE/REGION/codecommit/aws4_request``; any region;
``X-Amz-Date`` at most ``max_skew_seconds`` (900) from now; a key configured with a session
token requires that ``X-Amz-Security-Token``, a key without one refuses any). Checked with
awscli (botocore's signer) and aws-sdk-codecommit 1.x (the Rust SDK's). Refusals, as AWS names them: no header ->
403 ``MissingAuthenticationTokenException``; unreadable header -> 400
``IncompleteSignatureException``; unknown key or wrong token -> 403
``UnrecognizedClientException``; wrong service, stale date or wrong signature -> 403
``InvalidSignatureException``.

Errors are HTTP 400 (403 for authentication) with ``{"__type": NAME, "message": ...}`` and
the header ``x-amzn-ErrorType: NAME``.

For tests, without authentication:

- ``GET /_stand-in/ready``: the ``ready_token`` from the configuration.
- ``GET /_stand-in/requests``: every request so far, in arrival order, as a JSON list of
  ``{"operation", "body", "status", "error", "access_key_id", "region"}`` (``body`` parsed
  JSON, or the raw text when it is not JSON; ``error`` the ``__type`` or null).
- ``DELETE /_stand-in/requests``: forgets them.

Usage: ``codecommit_api.py --config FILE --port-file FILE --cert PEM --key PEM [--port N]
[--lifetime SECONDS]``. It serves HTTPS only, with the certificate given.
The configuration (JSON)::

    {"repos_root": "/tmp/x/repos", "git": "/usr/bin/git", "renames": "paired",
     "max_skew_seconds": 900, "ready_token": "...",
     "credentials": [{"access_key_id": "AKID", "secret_access_key": "...",
                      "session_token": null}]}

Once listening it writes its port to ``--port-file`` (atomically). It exits by itself after
``--lifetime`` seconds (default 600) and as soon as its parent process goes away.
"""

import argparse
import base64
import calendar
import hashlib
import hmac
import json
import os
import re
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, quote

TARGET_PREFIX = "CodeCommit_20150413."
JSON_TYPE = "application/x-amz-json-1.1"
NAME_RE = re.compile(r"^[A-Za-z0-9._-]{1,100}$")
OBJECT_ID_RE = re.compile(r"^[0-9a-f]{40}$")
PERSON_RE = re.compile(r"^(.*?) ?<(.*)> (-?[0-9]+) ([+-][0-9]{4})$")
AMZ_DATE_RE = re.compile(r"^[0-9]{8}T[0-9]{6}Z$")
DEFAULT_MAX_RESULTS = 100
CONFIG = {}
REQUESTS = []
REQUESTS_LOCK = threading.Lock()


class ApiError(Exception):
    def __init__(self, name, message, status=400):
        super().__init__(message)
        self.name = name
        self.message = message
        self.status = status


# --- git ----------------------------------------------------------------------------------

def git(repo, *args, check=True, env=None):
    env = {
        "PATH": os.environ.get("PATH", os.defpath),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "HOME": os.devnull,
        "LC_ALL": "C",
        **(env or {}),
    }
    proc = subprocess.run(
        [CONFIG["git"], "--git-dir=" + repo, *args], env=env, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError("git %s failed (%d): %s" % (
            " ".join(args), proc.returncode, proc.stderr.decode("utf-8", "replace")))
    return proc


def text(data):
    return data.decode("utf-8", "replace")


def repository(body):
    name = body.get("repositoryName")
    if name is None or name == "":
        raise ApiError("RepositoryNameRequiredException", "A repository name is required.")
    if not isinstance(name, str) or not NAME_RE.match(name) or name in (".", ".."):
        raise ApiError("InvalidRepositoryNameException",
                       "The repository name is not valid: %r" % (name,))
    path = os.path.join(CONFIG["repos_root"], name)
    if not os.path.isfile(os.path.join(path, "HEAD")):
        raise ApiError("RepositoryDoesNotExistException", "%s does not exist" % name)
    return path


def resolve_commit(repo, spec):
    """A commit specifier to a full commit id (CommitDoesNotExist / InvalidCommit)."""
    if not isinstance(spec, str) or spec == "":
        raise ApiError("CommitRequiredException", "A commit must be specified.")
    # ^{object}: a full hexadecimal id "verifies" without the object existing.
    found = git(repo, "rev-parse", "--verify", "--quiet", "--end-of-options",
                spec + "^{object}", check=False)
    if found.returncode != 0:
        raise ApiError("CommitDoesNotExistException",
                       "Could not find a commit for specifier %s" % spec)
    peeled = git(repo, "rev-parse", "--verify", "--quiet", "--end-of-options",
                 spec + "^{commit}", check=False)
    if peeled.returncode != 0:
        raise ApiError("InvalidCommitException", "%s does not name a commit" % spec)
    return text(peeled.stdout).strip()


def blob(mode, oid, path):
    return {"blobId": oid, "path": text(path), "mode": mode}


def all_files(repo, commit):
    out = git(repo, "ls-tree", "-r", "-z", "--full-tree", commit).stdout
    differences = []
    for record in out.split(b"\0"):
        if not record:
            continue
        meta, _, path = record.partition(b"\t")
        mode, _kind, oid = text(meta).split(" ")
        differences.append({"afterBlob": blob(mode, oid, path), "changeType": "A"})
    return differences


def diff_commits(repo, before, after):
    renames = ["-M"] if CONFIG.get("renames", "paired") == "paired" else ["--no-renames"]
    out = git(repo, "diff-tree", "-r", "-z", "--no-abbrev", *renames, before, after).stdout
    fields = out.split(b"\0")
    differences = []
    i = 0
    while i < len(fields) and fields[i]:
        old_mode, new_mode, old_oid, new_oid, status = text(fields[i]).lstrip(":").split(" ")
        if status[0] in "RC":
            old_path, new_path = fields[i + 1], fields[i + 2]
            i += 3
        else:
            old_path = new_path = fields[i + 1]
            i += 2
        if status[0] == "A":
            differences.append({"afterBlob": blob(new_mode, new_oid, new_path),
                                "changeType": "A"})
        elif status[0] == "D":
            differences.append({"beforeBlob": blob(old_mode, old_oid, old_path),
                                "changeType": "D"})
        else:  # M, T (type change), R (a paired rename)
            differences.append({"beforeBlob": blob(old_mode, old_oid, old_path),
                                "afterBlob": blob(new_mode, new_oid, new_path),
                                "changeType": "M"})
    return differences


def under(path, prefix):
    return path == prefix or path.startswith(prefix + "/")


def path_exists(repo, commit, path):
    return git(repo, "rev-parse", "--verify", "--quiet", "--end-of-options",
               "%s:%s" % (commit, path), check=False).returncode == 0


# --- operations ---------------------------------------------------------------------------

def get_differences(body):
    repo = repository(body)
    if not body.get("afterCommitSpecifier"):
        raise ApiError("CommitRequiredException", "afterCommitSpecifier is required.")
    after = resolve_commit(repo, body["afterCommitSpecifier"])
    before_spec = body.get("beforeCommitSpecifier")
    before = resolve_commit(repo, before_spec) if before_spec is not None else None

    max_results = body.get("MaxResults", DEFAULT_MAX_RESULTS)
    if isinstance(max_results, bool) or not isinstance(max_results, int) or max_results < 1:
        raise ApiError("InvalidMaxResultsException", "MaxResults must be a positive integer.")

    prefixes = []
    for key, commit in (("beforePath", before or after), ("afterPath", after)):
        path = body.get(key)
        if path is None or path == "":
            continue
        if not isinstance(path, str) or path.startswith("/"):
            raise ApiError("InvalidPathException", "%s is not a valid path" % key)
        path = path.rstrip("/")
        if not path_exists(repo, commit, path) and not (
                before and path_exists(repo, before, path)):
            raise ApiError("PathDoesNotExistException", "%s does not exist" % path)
        prefixes.append(path)

    inputs = hashlib.sha256(json.dumps(
        [os.path.basename(repo), before_spec, body["afterCommitSpecifier"],
         body.get("beforePath"), body.get("afterPath")]).encode("utf-8")).hexdigest()[:32]
    offset = 0
    token = body.get("NextToken")
    if token is not None:
        try:
            decoded = json.loads(base64.urlsafe_b64decode(token.encode("ascii")))
            offset = int(decoded["offset"])
            valid = decoded["inputs"] == inputs and offset > 0
        except (ValueError, TypeError, KeyError, AttributeError):
            valid = False
        if not valid:
            raise ApiError("InvalidContinuationTokenException",
                           "The continuation token is not valid for this request.")

    differences = all_files(repo, after) if before is None else diff_commits(repo, before, after)
    if prefixes:
        differences = [
            d for d in differences
            if any(under(b["path"], p) for p in prefixes
                   for b in (d.get("beforeBlob"), d.get("afterBlob")) if b)
        ]
    if offset > len(differences):
        raise ApiError("InvalidContinuationTokenException", "The continuation token is stale.")
    answer = {"differences": differences[offset:offset + max_results]}
    if offset + max_results < len(differences):
        answer["NextToken"] = base64.urlsafe_b64encode(json.dumps(
            {"offset": offset + max_results, "inputs": inputs}).encode("utf-8")).decode("ascii")
    return answer


def get_branch(body):
    repo = repository(body)
    name = body.get("branchName")
    if name is None or name == "":
        raise ApiError("BranchNameRequiredException", "A branch name is required.")
    if not isinstance(name, str) or git(
            repo, "check-ref-format", "refs/heads/" + name, check=False).returncode != 0:
        raise ApiError("InvalidBranchNameException", "The branch name is not valid.")
    found = git(repo, "rev-parse", "--verify", "--quiet", "--end-of-options",
                "refs/heads/%s^{commit}" % name, check=False)
    if found.returncode != 0:
        raise ApiError("BranchDoesNotExistException", "Branch %s does not exist" % name)
    return {"branch": {"branchName": name, "commitId": text(found.stdout).strip()}}


# ListBranches's page size is not documented; pages this small make the client's paging
# run in tests with a handful of branches.
BRANCH_PAGE = 2


def list_branches(body):
    repo = repository(body)
    token = body.get("nextToken")
    try:
        offset = int(token) if token else 0
    except (TypeError, ValueError):
        raise ApiError("InvalidContinuationTokenException", "The continuation token is not valid.")
    names = text(git(repo, "for-each-ref", "--format=%(refname:strip=2)", "refs/heads/").stdout).split()
    answer = {"branches": names[offset:offset + BRANCH_PAGE]}
    if offset + BRANCH_PAGE < len(names):
        answer["nextToken"] = str(offset + BRANCH_PAGE)
    return answer


def person(line):
    match = PERSON_RE.match(line)
    if match is None:
        return {"name": line, "email": "", "date": ""}
    name, email, seconds, offset = match.groups()
    return {"name": name, "email": email, "date": "%s %s" % (seconds, offset)}


def get_commit(body):
    repo = repository(body)
    commit_id = body.get("commitId")
    if commit_id is None or commit_id == "":
        raise ApiError("CommitIdRequiredException", "A commit id is required.")
    if not isinstance(commit_id, str) or not OBJECT_ID_RE.match(commit_id):
        raise ApiError("InvalidCommitIdException", "The commit id is not a full commit id.")
    kind = git(repo, "cat-file", "-t", commit_id, check=False)
    if kind.returncode != 0 or kind.stdout.strip() != b"commit":
        raise ApiError("CommitIdDoesNotExistException", "Commit %s does not exist" % commit_id)
    raw = text(git(repo, "cat-file", "commit", commit_id).stdout)
    header, _, message = raw.partition("\n\n")
    commit = {"commitId": commit_id, "parents": [], "additionalData": ""}
    for line in header.split("\n"):
        key, _, value = line.partition(" ")
        if key == "tree":
            commit["treeId"] = value
        elif key == "parent":
            commit["parents"].append(value)
        elif key in ("author", "committer"):
            commit[key] = person(value)
    commit["message"] = message.rstrip("\n")
    return {"commit": commit}


def get_merge_options(body):
    repo = repository(body)
    source = resolve_commit(repo, body.get("sourceCommitSpecifier"))
    destination = resolve_commit(repo, body.get("destinationCommitSpecifier"))
    level = body.get("conflictDetailLevel", "FILE_LEVEL")
    if level not in ("FILE_LEVEL", "LINE_LEVEL"):
        raise ApiError("InvalidConflictDetailLevelException", "Unknown conflictDetailLevel.")
    strategy = body.get("conflictResolutionStrategy", "NONE")
    if strategy not in ("NONE", "ACCEPT_SOURCE", "ACCEPT_DESTINATION", "AUTOMERGE"):
        raise ApiError("InvalidConflictResolutionStrategyException",
                       "Unknown conflictResolutionStrategy.")
    base = git(repo, "merge-base", source, destination, check=False)
    if base.returncode != 0 or not base.stdout.strip():
        raise ApiError("TipsDivergenceExceededException",
                       "%s and %s have no common ancestor (the stand-in's answer; "
                       "CodeCommit's is unverified)" % (source, destination))
    base_id = text(base.stdout).strip()
    options = []
    if base_id == destination:
        options.append("FAST_FORWARD_MERGE")
    # merge-tree writes the merged trees: into a scratch object directory, not the repository.
    with tempfile.TemporaryDirectory(prefix="codecommit-api-merge-") as scratch:
        merge = git(repo, "merge-tree", "--write-tree", "--no-messages", source, destination,
                    check=False, env={
                        "GIT_OBJECT_DIRECTORY": scratch,
                        "GIT_ALTERNATE_OBJECT_DIRECTORIES": os.path.join(repo, "objects"),
                    })
    if merge.returncode not in (0, 1):
        raise RuntimeError("git merge-tree failed: %s" % text(merge.stderr))
    if merge.returncode == 0 or strategy != "NONE":
        options += ["SQUASH_MERGE", "THREE_WAY_MERGE"]
    return {"mergeOptions": options, "sourceCommitId": source,
            "destinationCommitId": destination, "baseCommitId": base_id}


def get_repository(body):
    """The repository's metadata. ``defaultBranch`` is the branch ``HEAD`` names, and only
    when that branch exists: an empty repository has none."""
    repo = repository(body)
    metadata = {
        "accountId": "123456789012",
        "repositoryId": hashlib.sha256(repo.encode("utf-8")).hexdigest()[:32],
        "repositoryName": body["repositoryName"],
        "creationDate": int(os.stat(repo).st_ctime),
        "lastModifiedDate": int(os.stat(repo).st_mtime),
    }
    head = git(repo, "symbolic-ref", "--quiet", "HEAD", check=False)
    branch = text(head.stdout).strip()
    if head.returncode == 0 and branch.startswith("refs/heads/") and git(
            repo, "rev-parse", "--verify", "--quiet", branch, check=False).returncode == 0:
        metadata["defaultBranch"] = branch[len("refs/heads/"):]
    return {"repositoryMetadata": metadata}


OPERATIONS = {
    "GetDifferences": get_differences,
    "GetBranch": get_branch,
    "GetRepository": get_repository,
    "GetCommit": get_commit,
    "GetMergeOptions": get_merge_options,
    "ListBranches": list_branches,
}


# --- SigV4 ----------------------------------------------------------------------------------

def _hmac(key, message):
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()


def verify_sigv4(method, raw_path, headers, body):
    """Returns (key id, region) or raises ApiError; see the module doc."""
    header = headers.get("Authorization")
    if not header:
        raise ApiError("MissingAuthenticationTokenException", "Missing Authentication Token",
                       403)
    algorithm, _, rest = header.partition(" ")
    parts = dict(p.strip().partition("=")[::2] for p in rest.split(","))
    try:
        key_id, date, region, service, terminator = parts["Credential"].split("/")
        signed = parts["SignedHeaders"].split(";")
        signature = parts["Signature"]
    except (KeyError, ValueError):
        raise ApiError("IncompleteSignatureException", "Unreadable Authorization header") from None
    amz_date = headers.get("X-Amz-Date", "")
    if algorithm != "AWS4-HMAC-SHA256" or terminator != "aws4_request" \
            or not AMZ_DATE_RE.match(amz_date) or "host" not in signed:
        raise ApiError("IncompleteSignatureException", "Not a SigV4 header signature")
    entry = {c["access_key_id"]: c for c in CONFIG["credentials"]}.get(key_id)
    token = headers.get("X-Amz-Security-Token")
    if entry is None or (entry.get("session_token") or None) != (token or None):
        raise ApiError("UnrecognizedClientException",
                       "The security token included in the request is invalid.", 403)
    if service != "codecommit" or date != amz_date[:8]:
        raise ApiError("InvalidSignatureException",
                       "Credential should be scoped to a valid date and service codecommit.", 403)
    skew = time.time() - calendar.timegm(time.strptime(amz_date, "%Y%m%dT%H%M%SZ"))
    if abs(skew) > CONFIG.get("max_skew_seconds", 900):
        raise ApiError("InvalidSignatureException", "Signature expired (%d s off)" % skew, 403)

    path, _, query = raw_path.partition("?")
    canonical_query = "&".join(
        "%s=%s" % (quote(k, safe="-_.~"), quote(v, safe="-_.~"))
        for k, v in sorted(parse_qsl(query, keep_blank_values=True)))
    canonical_headers = "".join(
        "%s:%s\n" % (name, ",".join(" ".join(v.split()) for v in headers.get_all(name, [])))
        for name in signed)
    canonical_request = "\n".join([
        method, path, canonical_query, canonical_headers, ";".join(signed),
        hashlib.sha256(body).hexdigest()])
    scope = "%s/%s/%s/aws4_request" % (date, region, service)
    string_to_sign = "\n".join([
        "AWS4-HMAC-SHA256", amz_date, scope,
        hashlib.sha256(canonical_request.encode("utf-8")).hexdigest()])
    key = _hmac(("AWS4" + entry["secret_access_key"]).encode("utf-8"), date)
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    expected = hmac.new(key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode("ascii"), signature.encode("ascii")):
        raise ApiError("InvalidSignatureException",
                       "The request signature we calculated does not match the signature "
                       "you provided.", 403)
    return key_id, region


# --- HTTP ---------------------------------------------------------------------------------

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "tozai-codecommit-api"

    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        sys.stderr.write("codecommit-api: %s\n" % (format % args))
        sys.stderr.flush()

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def send(self, status, payload, content_type="application/json", headers=()):
        data = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self.read_body()
        if self.path == "/_stand-in/ready":
            self.send(200, CONFIG.get("ready_token", ""))
        elif self.path == "/_stand-in/requests":
            with REQUESTS_LOCK:
                self.send(200, list(REQUESTS))
        else:
            self.send(404, {"message": "not found"})

    def do_DELETE(self):
        self.read_body()
        if self.path == "/_stand-in/requests":
            with REQUESTS_LOCK:
                REQUESTS.clear()
            self.send(200, {})
        else:
            self.send(404, {"message": "not found"})

    def do_POST(self):
        body = self.read_body()
        target = self.headers.get("X-Amz-Target", "")
        operation = target[len(TARGET_PREFIX):] if target.startswith(TARGET_PREFIX) else None
        try:
            parsed = json.loads(body or b"{}")
        except ValueError:
            parsed = None
        record = {"operation": operation, "body": parsed if parsed is not None else text(body),
                  "status": 200, "error": None, "access_key_id": None, "region": None}
        try:
            record["access_key_id"], record["region"] = verify_sigv4(
                "POST", self.path, self.headers, body)
            if self.path.partition("?")[0] != "/" or operation not in OPERATIONS:
                raise ApiError("UnknownOperationException", "Unknown operation %s" % target)
            if not isinstance(parsed, dict):
                raise ApiError("SerializationException", "The body is not a JSON object.")
            self.send(200, OPERATIONS[operation](parsed), JSON_TYPE)
        except ApiError as e:
            record["status"], record["error"] = e.status, e.name
            self.send(e.status, {"__type": e.name, "message": e.message}, JSON_TYPE,
                      [("x-amzn-ErrorType", e.name)])
        except Exception as e:  # a bug here or a git failure: show it, keep serving
            record["status"], record["error"] = 500, "InternalFailure"
            self.log_message("internal error: %r", e)
            self.send(500, {"__type": "InternalFailure", "message": str(e)}, JSON_TYPE,
                      [("x-amzn-ErrorType", "InternalFailure")])
        finally:
            with REQUESTS_LOCK:
                REQUESTS.append(record)


def watchdog(lifetime):
    parent = os.getppid()
    deadline = time.monotonic() + lifetime
    while time.monotonic() < deadline and os.getppid() == parent:
        time.sleep(0.2)
    os._exit(0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--lifetime", type=float, default=600)
    parser.add_argument("--cert", required=True, help="PEM certificate chain (HTTPS only)")
    parser.add_argument("--key", required=True, help="PEM private key")
    args = parser.parse_args()
    with open(args.config, encoding="utf-8") as f:
        CONFIG.update(json.load(f))
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    # HTTPS only, as CodeCommit's API: TLS 1.2 and up.
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.minimum_version = ssl.TLSVersion.TLSv1_2
    tls.load_cert_chain(args.cert, args.key)
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=watchdog, args=(args.lifetime,), daemon=True).start()
    tmp = args.port_file + ".tmp"
    with open(tmp, "w", encoding="ascii") as f:
        f.write(str(server.server_address[1]))
    os.replace(tmp, args.port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
