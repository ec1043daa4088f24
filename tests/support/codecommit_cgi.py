#!/usr/bin/env python3
"""A CodeCommit-shaped git smart-HTTP endpoint for tozai's tests: a CGI run by lighttpd.

It serves ``/v1/repos/NAME/...`` from the bare repository ``<repos_root>/NAME`` (no ``.git``
suffix, like CodeCommit's URLs), but only after it has verified the HTTP Basic login the way
CodeCommit does for IAM users:

- username: ``ACCESS_KEY_ID`` or ``ACCESS_KEY_ID%SESSION_TOKEN``;
- password: ``YYYYMMDDTHHMMSS`` + ``Z`` + hex SigV4 signature over the canonical request
  ``"GIT\\n/v1/repos/NAME\\n\\nhost:HOST\\n\\nhost\\n"`` (HOST: the Host header without the
  port), scope ``DATE/REGION/codecommit/aws4_request``.

The signature is recomputed here with the standard library only, following awscli's
``aws codecommit credential-helper`` (awscli/customizations/codecommit.py) and botocore's
SigV4 key derivation (botocore/auth.py: ``SigV4Auth.signature``). It shares no code with
tozai's Rust signer on purpose.

Answers: no or unreadable Basic login -> 401 with ``WWW-Authenticate: Basic
realm="tozai-test"``; unknown key, wrong token, wrong signature, or a timestamp more than 15
minutes away from now -> 403; a path that is not ``/v1/repos/NAME/...`` -> 404. On success it
``exec``s ``git http-backend`` with the CGI environment, so request and response bodies
stream straight through (lighttpd has already de-chunked chunked uploads).

Configuration: the JSON file named by the environment variable ``TOZAI_CODECOMMIT_STANDIN``
(set in the lighttpd config)::

    {"repos_root": "/tmp/x/repos", "git": "/usr/bin/git", "regions": ["eu-west-1"],
     "max_skew_seconds": 900,
     "credentials": [{"access_key_id": "AKID", "secret_access_key": "...",
                      "session_token": null}]}

A signature is accepted when it is valid for any of ``regions``. A key configured with a
session token requires that token in the username; a key without one refuses any token.
Decisions are logged to stderr (lighttpd's error log) without secrets.

A test hook, opt-in per repository: when the bare repository holds an executable file
``tozai-after-advertise`` and the request is ``GET .../info/refs?service=git-receive-pack``
(a pusher reading the refs it will push against), the CGI runs ``git http-backend`` with its
answer captured, renames the hook to ``tozai-after-advertise.ran`` (so it runs once, even
with concurrent requests), runs it, and only then sends the captured answer. The client
thus plans against refs the hook has already changed: a ref moved between read and push,
deterministically. The hook runs in the repository with ``GIT_DIR`` set to it and the git
executable in ``TOZAI_GIT``; its output goes to the log, never into the answer.
"""

import base64
import calendar
import hashlib
import hmac
import json
import os
import re
import subprocess
import sys
import time

REALM = "tozai-test"
CONFIG_ENV = "TOZAI_CODECOMMIT_STANDIN"
NAME_RE = re.compile(r"^[A-Za-z0-9._-]{1,100}$")
PASSWORD_RE = re.compile(r"^([0-9]{8}T[0-9]{6})Z([0-9a-f]{64})$")
AFTER_ADVERTISE_HOOK = "tozai-after-advertise"


def log(message):
    sys.stderr.write("codecommit-standin: %s\n" % message)
    sys.stderr.flush()


def respond(status, message, headers=()):
    out = sys.stdout.buffer
    out.write(("Status: %s\r\n" % status).encode("ascii"))
    for header in headers:
        out.write((header + "\r\n").encode("ascii"))
    out.write(b"Content-Type: text/plain; charset=utf-8\r\n\r\n")
    out.write(message.encode("utf-8") + b"\n")
    out.flush()
    log("%s %s %s: %s" % (
        os.environ.get("REQUEST_METHOD", "?"),
        os.environ.get("REQUEST_URI", "?"),
        status.split()[0],
        message,
    ))
    sys.exit(0)


def unauthorized(message):
    respond(
        "401 Unauthorized",
        message,
        ['WWW-Authenticate: Basic realm="%s"' % REALM],
    )


def forbidden(message):
    respond("403 Forbidden", message)


def _hmac(key, text):
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).digest()


def codecommit_signature(secret, region, host, path, timestamp):
    """awscli's CodeCommitGetCommand.sign_request with botocore's SigV4Auth, by hand."""
    canonical_request = "GIT\n%s\n\nhost:%s\n\nhost\n" % (path, host)
    date = timestamp[:8]
    scope = "%s/%s/codecommit/aws4_request" % (date, region)
    string_to_sign = "\n".join([
        "AWS4-HMAC-SHA256",
        timestamp,
        scope,
        hashlib.sha256(canonical_request.encode("utf-8")).hexdigest(),
    ])
    key = _hmac(("AWS4" + secret).encode("utf-8"), date)
    key = _hmac(key, region)
    key = _hmac(key, "codecommit")
    key = _hmac(key, "aws4_request")
    return hmac.new(key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


def host_without_port(host):
    if host.startswith("["):
        return host[: host.index("]") + 1] if "]" in host else host
    return host.split(":", 1)[0]


def basic_login():
    header = os.environ.get("HTTP_AUTHORIZATION", "")
    scheme, _, value = header.partition(" ")
    if not header:
        unauthorized("authentication required")
    if scheme.lower() != "basic":
        unauthorized("only Basic authentication is supported")
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        unauthorized("unreadable Basic credentials")
    username, sep, password = decoded.partition(":")
    if not sep or not username:
        unauthorized("unreadable Basic credentials")
    return username, password


def main():
    with open(os.environ[CONFIG_ENV], encoding="utf-8") as f:
        config = json.load(f)

    # SCRIPT_NAME is /v1/repos, PATH_INFO is /NAME/info/refs and the like.
    script_name = os.environ.get("SCRIPT_NAME", "").rstrip("/")
    path_info = os.environ.get("PATH_INFO", "")
    name = path_info.lstrip("/").split("/", 1)[0]
    if (script_name != "/v1/repos" or not NAME_RE.match(name) or name.endswith(".git")
            or name in (".", "..")):
        respond("404 Not Found", "no such repository path")
    signed_path = "/v1/repos/" + name

    username, password = basic_login()
    key_id, has_token, token = username.partition("%")
    known = {c["access_key_id"]: c for c in config["credentials"]}
    entry = known.get(key_id)
    if entry is None:
        forbidden("unknown access key id %s" % key_id)
    expected_token = entry.get("session_token")
    if expected_token is None and has_token:
        forbidden("key %s takes no session token" % key_id)
    if expected_token is not None and not hmac.compare_digest(
            token.encode("utf-8"), expected_token.encode("utf-8")):
        forbidden("wrong or missing session token for key %s" % key_id)

    match = PASSWORD_RE.match(password)
    if match is None:
        forbidden("the password is not TIMESTAMPZSIGNATURE")
    timestamp, signature = match.groups()
    try:
        signed_at = calendar.timegm(time.strptime(timestamp, "%Y%m%dT%H%M%S"))
    except ValueError:
        forbidden("bad timestamp in the password")
    skew = time.time() - signed_at
    if abs(skew) > config.get("max_skew_seconds", 900):
        forbidden("signature expired or from the future (%d s off)" % skew)

    host = host_without_port(os.environ.get("HTTP_HOST") or os.environ.get("SERVER_NAME", ""))
    ok = False
    for region in config["regions"]:
        expected = codecommit_signature(
            entry["secret_access_key"], region, host, signed_path, timestamp)
        ok = hmac.compare_digest(expected.encode("ascii"), signature.encode("ascii")) or ok
    if not ok:
        forbidden("signature mismatch for key %s, host %s, path %s, regions %s"
                  % (key_id, host, signed_path, ",".join(config["regions"])))

    env = {k: v for k, v in os.environ.items() if k != "HTTP_AUTHORIZATION"}
    env.update({
        "GIT_PROJECT_ROOT": config["repos_root"],
        "GIT_HTTP_EXPORT_ALL": "1",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": "http.receivepack",
        "GIT_CONFIG_VALUE_0": "true",
        "REMOTE_USER": key_id,
    })
    git = config["git"]
    repo_dir = os.path.join(config["repos_root"], name)
    if wants_hook_after_advertise(repo_dir, name, path_info):
        advertise_then_run_hook(git, env, repo_dir)
        sys.exit(0)
    os.execve(git, [git, "http-backend"], env)


def wants_hook_after_advertise(repo_dir, name, path_info):
    hook = os.path.join(repo_dir, AFTER_ADVERTISE_HOOK)
    query = os.environ.get("QUERY_STRING", "").split("&")
    return (os.environ.get("REQUEST_METHOD") == "GET"
            and path_info == "/%s/info/refs" % name
            and "service=git-receive-pack" in query
            and os.path.isfile(hook) and os.access(hook, os.X_OK))


def advertise_then_run_hook(git, env, repo_dir):
    """The test hook (see the module doc): answer computed, hook run, answer sent."""
    answer = subprocess.run(
        [git, "http-backend"], env=env, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, check=False)
    hook = os.path.join(repo_dir, AFTER_ADVERTISE_HOOK)
    ran = hook + ".ran"
    try:
        os.rename(hook, ran)
    except FileNotFoundError:
        ran = None  # another request took it first
    if ran is not None:
        hook_env = {
            "PATH": os.environ.get("PATH", os.defpath),
            "GIT_DIR": repo_dir,
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "TOZAI_GIT": git,
        }
        result = subprocess.run(
            [ran], cwd=repo_dir, env=hook_env, stdin=subprocess.DEVNULL,
            stdout=sys.stderr.fileno(), stderr=sys.stderr.fileno(), check=False)
        log("%s ran after the receive-pack advertisement of %s: exit %d"
            % (AFTER_ADVERTISE_HOOK, repo_dir, result.returncode))
    out = sys.stdout.buffer
    out.write(answer.stdout)
    out.flush()


if __name__ == "__main__":
    main()
