"""`streamrec job stop --savepoint DIR` and `streamrec job upgrade` (issue 22 part 4) against a fake Flink
REST API (a thread serving the endpoints they use): the stop-with-savepoint request, the polling, the
savepoint's path on stdout, Flink's errors and an unreachable address in one line. The real cluster is
in tests/faults (test_upgrade_while_events_flow)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest
from click.testing import CliRunner, Result

from streamrec.cli import main
from streamrec.unreachable import EXIT_UNREACHABLE

OLD = "a" * 32
OTHER = "b" * 32
SAVEPOINT = "file:/tmp/sp/savepoint-aaaaaa-0123"


class FakeFlink:
    """The JobManager's REST answers: a job list, stop-with-savepoint (COMPLETED after ``polls``
    status requests, or failed), the job's vertices. Records every POST body."""

    def __init__(self) -> None:
        self.jobs = [{"jid": OLD, "name": "streamrec", "state": "RUNNING"},
                     {"jid": OTHER, "name": "other", "state": "RUNNING"}]
        self.posts: list[tuple[str, dict[str, Any]]] = []
        self.polls = 2
        self.fail: str = ""
        self.parallelism = 3

    def answer(self, method: str, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        if path == "/jobs/overview":
            return 200, {"jobs": self.jobs}
        parts = path.strip("/").split("/")
        jid = parts[1] if len(parts) > 1 else ""
        if jid not in {j["jid"] for j in self.jobs}:
            return 404, {"errors": [f"Job {jid} not found\n\tat org.apache.flink..."]}
        if method == "POST" and parts[2:] == ["stop"]:
            self.posts.append((path, body))
            return 202, {"request-id": "trigger-1"}
        if parts[2:] == ["savepoints", "trigger-1"]:
            self.polls -= 1
            if self.polls > 0:
                return 200, {"status": {"id": "IN_PROGRESS"}}
            if self.fail:
                return 200, {"status": {"id": "COMPLETED"},
                             "operation": {"failure-cause": {"class": "java.lang.Exception",
                                                             "stack-trace": self.fail + "\n\tat x.y"}}}
            for j in self.jobs:
                if j["jid"] == jid:
                    j["state"] = "FINISHED"
            return 200, {"status": {"id": "COMPLETED"}, "operation": {"location": SAVEPOINT}}
        if parts[2:] == []:
            return 200, {"jid": jid, "vertices": [{"parallelism": self.parallelism}, {"parallelism": 1}]}
        return 404, {"errors": ["Not found: " + path]}


@pytest.fixture
def flink() -> Iterator[tuple[FakeFlink, str]]:
    fake = FakeFlink()

    class Handler(BaseHTTPRequestHandler):
        def _reply(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else {}
            code, payload = fake.answer(method, self.path, body)
            data = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._reply("GET")

        def do_POST(self) -> None:
            self._reply("POST")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake, f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_stop_with_savepoint_prints_the_path_on_stdout(flink: tuple[FakeFlink, str], tmp_path: Path) -> None:
    fake, rest = flink
    result = run("job", "stop", "-m", rest, "--savepoint", str(tmp_path / "sp"))
    assert result.exit_code == 0, result.stderr
    assert result.stdout == SAVEPOINT + "\n"
    assert "stopping job streamrec" in result.stderr
    path, body = fake.posts[0]
    assert path == f"/jobs/{OLD}/stop"
    assert body == {"drain": False, "targetDirectory": (tmp_path / "sp").as_uri()}


def test_stop_by_id_and_without_a_directory_uses_the_clusters(flink: tuple[FakeFlink, str]) -> None:
    fake, rest = flink
    result = run("job", "stop", "-m", rest, "--job", OTHER)
    assert result.exit_code == 0, result.stderr
    assert fake.posts == [(f"/jobs/{OTHER}/stop", {"drain": False})]


def test_stop_of_an_unknown_or_ambiguous_job_says_so(flink: tuple[FakeFlink, str]) -> None:
    fake, rest = flink
    result = run("job", "stop", "-m", rest, "--job", "nope", "--savepoint", "s3://b/sp")
    assert result.exit_code == 1 and "no RUNNING job with the id or name 'nope'" in result.stderr
    fake.jobs.append({"jid": "c" * 32, "name": "streamrec", "state": "RUNNING"})
    result = run("job", "stop", "-m", rest, "--savepoint", "s3://b/sp")
    assert result.exit_code == 1 and "2 RUNNING jobs are named 'streamrec'" in result.stderr
    assert fake.posts == []


def test_a_failed_savepoint_is_one_line_and_the_job_goes_on(flink: tuple[FakeFlink, str]) -> None:
    fake, rest = flink
    fake.fail = "org.apache.flink.runtime.checkpoint.CheckpointException: Task local checkpoint failure."
    result = run("job", "stop", "-m", rest, "--savepoint", "s3://b/sp")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "the savepoint of job" in result.stderr and "CheckpointException" in result.stderr
    assert "\tat" not in result.stderr


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("command", ["stop", "upgrade"])
def test_an_unreachable_flink_is_one_line(command: str) -> None:
    address = f"127.0.0.1:{closed_port()}"
    result = run("job", command, "-m", address, "--savepoint", "/tmp/sp")
    assert result.exit_code == EXIT_UNREACHABLE
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"cannot reach the Flink REST API at {address}" in lines[0], result.stderr
    assert "STREAMREC_FLINK_REST" in lines[0]


def test_upgrade_whose_submit_fails_names_the_savepoint(flink: tuple[FakeFlink, str], tmp_path: Path) -> None:
    fake, rest = flink
    failing = tmp_path / "flink"
    failing.write_text("#!/bin/sh\necho \"$@\" > \"$(dirname \"$0\")/args\"\nexit 7\n")
    failing.chmod(0o755)
    # a real process: `flink run` writes to the command's stderr, which CliRunner's has no fileno for
    env = {k: v for k, v in os.environ.items() if k != "STREAMREC_PARALLELISM"}
    result = subprocess.run([sys.executable, "-m", "streamrec.cli", "job", "upgrade", "-m", rest, "--savepoint",
                             str(tmp_path / "sp"), "--flink", str(failing), "--python", "/usr/bin/python3"],
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stderr
    assert result.stdout == ""
    assert f"--from-savepoint {SAVEPOINT}" in result.stderr
    assert f"the old one ({OLD}) is stopped" in result.stderr
    args = (tmp_path / "args").read_text().split()
    # the old job's parallelism (its widest operator), and the savepoint
    assert args[args.index("-p") + 1] == "3"
    assert args[args.index("-s") + 1] == SAVEPOINT
    assert fake.posts == [(f"/jobs/{OLD}/stop", {"drain": False, "targetDirectory": (tmp_path / "sp").as_uri()})]
