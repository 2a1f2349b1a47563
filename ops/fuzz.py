"""make fuzz: schemathesis against a live server, driven by the server's own
/openapi.json, deterministic and with a bounded number of examples (CI runs it).

Three passes, because no single role does everything:
  1. anonymous, every operation but the streams (reads; writes must be refused 401);
  2. with an ingest key, the write operations (the body in all its shapes);
  3. with a signed-in user's token, the alert routes (their own rows).
Every check schemathesis has is on in the first two: no server error, statuses, content
types, headers and bodies as documented, schema-invalid input refused, schema-valid
input accepted. The third checks for server errors and content types only: a valid body
can still name a channel the user does not have (a 422 by design, which the acceptance
check would count against it). Afterwards the server must still be ready and its log
free of errors.

    python ops/fuzz.py [--examples 60]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import jwt

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ops.local import LocalServer, local_server

ST = Path(sys.executable).with_name("st")
# The server as production runs it, minus the limits that would turn the fuzzer's
# own pace into 429s (documented, but they would hide the real answers).
SERVER_ENV = {"LOG_LEVEL": "WARNING", "RATE_LIMIT_PER_ADDRESS": "0", "RATE_LIMIT_PER_KEY": "0"}
TOKEN_SECRET = "fuzz-" + "x" * 40  # the throwaway server's JWT_SECRET
ERROR_MARKS = ('"levelname": "ERROR"', '"level": "error"', "Traceback")


def schemathesis(
    server: LocalServer, args: argparse.Namespace, *extra: str, checks: str = "all"
) -> int:
    command = [
        str(ST),
        "run",
        f"{server.base}/openapi.json",
        "--checks",
        checks,
        "--max-examples",
        str(args.examples),
        "--generation-deterministic",  # the same cases every run, no example database
        "--exclude-tag",
        "stream",  # a stream never ends; tests/http/test_stream.py covers its input
        "--request-timeout",
        "10",
        "--workers",
        "1",
        "--no-color",
        *extra,
    ]
    print("$", " ".join(c if ": " not in c else "-H '***'" for c in command))
    return subprocess.call(command)


def server_healthy(server: LocalServer) -> bool:
    ready = httpx.get(f"{server.base}/readyz").status_code == 200
    log = server.log_path.read_text(errors="replace")
    errors = [line for line in log.splitlines() if any(m in line for m in ERROR_MARKS)]
    for line in errors[:10]:
        print("server log:", line[:600])
    print(f"after the run: readyz {'200' if ready else 'NOT ready'}, {len(errors)} error log lines")
    return ready and not errors


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--examples", type=int, default=60, help="max examples per operation")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="fuzz-") as directory,
        local_server(Path(directory), **SERVER_ENV, JWT_SECRET=TOKEN_SECRET) as server,
    ):
        anonymous = schemathesis(server, args)
        key = f"X-API-Key: {server.ingest_key}"
        ingest = schemathesis(server, args, "--include-method", "POST", "--header", key)
        claims = {"sub": "fuzz", "role": "emberlog_user", "exp": int(time.time()) + 3600}
        bearer = f"Authorization: Bearer {jwt.encode(claims, TOKEN_SECRET, algorithm='HS256')}"
        user = schemathesis(
            server, args, "--include-path-regex", "/alert-", "--header", bearer,
            checks="not_a_server_error,content_type_conformance",
        )  # fmt: skip
        healthy = server_healthy(server)
    print(f"fuzz: exit anonymous {anonymous}, ingest {ingest}, user {user}")
    return 0 if anonymous == 0 and ingest == 0 and user == 0 and healthy else 1


if __name__ == "__main__":
    sys.exit(main())
