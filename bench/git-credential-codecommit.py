#!/usr/bin/env python3
"""git credential helper for the benchmark's CodeCommit stand-in (and CodeCommit itself).

    git -c credential.helper='!python3 bench/git-credential-codecommit.py' \
        -c credential.useHttpPath=true clone --mirror http://127.0.0.1:PORT/v1/repos/NAME

On `get` it answers with the login CodeCommit accepts for IAM credentials, signed now from
AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN (optional) and AWS_REGION:
username `KEY[%TOKEN]`, password `YYYYMMDDTHHMMSSZ` + the hex SigV4 signature of
"GIT\\n/v1/repos/NAME\\n\\nhost:HOST\\n\\nhost\\n" (HOST without the port), the same
computation as awscli's `aws codecommit credential-helper`, in a few milliseconds instead of
awscli's start-up time. `store` and `erase` do nothing.

`sign URL` prints the username and password on two lines (for tools that take a URL login).
"""

import datetime
import hashlib
import hmac
import os
import sys
import urllib.parse


def sign(host, path, now=None):
    key_id = os.environ["AWS_ACCESS_KEY_ID"]
    secret = os.environ["AWS_SECRET_ACCESS_KEY"]
    token = os.environ.get("AWS_SESSION_TOKEN")
    region = os.environ.get("AWS_REGION") or os.environ["AWS_DEFAULT_REGION"]
    now = now or datetime.datetime.now(datetime.timezone.utc)
    timestamp = now.strftime("%Y%m%dT%H%M%S")
    date = timestamp[:8]
    host = host.split(":", 1)[0]
    canonical = "GIT\n%s\n\nhost:%s\n\nhost\n" % (path, host)
    scope = "%s/%s/codecommit/aws4_request" % (date, region)
    to_sign = "\n".join(["AWS4-HMAC-SHA256", timestamp, scope,
                         hashlib.sha256(canonical.encode()).hexdigest()])
    k = ("AWS4" + secret).encode()
    for part in (date, region, "codecommit", "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
    user = key_id + ("%" + token if token else "")
    return user, timestamp + "Z" + signature


def repo_path(path):
    # git passes the path without the leading slash and, for smart HTTP, sometimes with the
    # service suffix; the signed path is /v1/repos/NAME.
    parts = path.strip("/").split("/")
    if len(parts) >= 3 and parts[0] == "v1" and parts[1] == "repos":
        return "/v1/repos/" + parts[2]
    return "/" + path.strip("/")


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "sign":
        url = urllib.parse.urlsplit(sys.argv[2])
        user, password = sign(url.netloc.rsplit("@", 1)[-1], repo_path(url.path))
        print(user)
        print(password)
        return
    if len(sys.argv) < 2 or sys.argv[-1] != "get":
        return
    fields = dict(line.split("=", 1) for line in sys.stdin.read().splitlines() if "=" in line)
    if "host" not in fields or "path" not in fields:
        return
    user, password = sign(fields["host"], repo_path(fields["path"]))
    sys.stdout.write("username=%s\npassword=%s\n" % (user, password))


if __name__ == "__main__":
    main()
