"""streamrec.flinkrest: the one Flink REST client, against a fake JobManager (a local HTTP server)."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import pytest

from streamrec.flinkrest import FlinkHttpError, FlinkRest
from streamrec.unreachable import Unreachable

pytestmark = pytest.mark.unit


class FakeJobManager(BaseHTTPRequestHandler):
    """Answers /jobs/overview, PATCH cancel (recorded), and 404 with Flink's error body otherwise."""

    calls: list[tuple[str, str, Any]] = []

    def _reply(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        self.calls.append((method, self.path, body))
        if self.path == "/jobs/overview":
            code, payload = 200, {"jobs": [{"jid": "j1", "name": "streamrec", "state": "RUNNING"}]}
        elif method == "PATCH" and self.path == "/jobs/j1?mode=cancel":
            code, payload = 202, {}
        elif method == "POST":
            code, payload = 200, {"echo": body}
        else:
            code, payload = 404, {"errors": ["Job x not found\n\tat org.apache.flink.runtime..."]}
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

    def do_PATCH(self) -> None:
        self._reply("PATCH")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def jobmanager() -> Iterator[str]:
    FakeJobManager.calls = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeJobManager)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_get_post_and_cancel(jobmanager: str) -> None:
    rest = FlinkRest(jobmanager)
    assert rest.jobs() == [{"jid": "j1", "name": "streamrec", "state": "RUNNING"}]
    assert rest.call("/jobs/j1/stop", {"drain": False}) == {"echo": {"drain": False}}
    rest.cancel("j1")
    assert [c[:2] for c in FakeJobManager.calls] == [("GET", "/jobs/overview"), ("POST", "/jobs/j1/stop"),
                                                     ("PATCH", "/jobs/j1?mode=cancel")]


def test_an_http_error_is_flinks_first_line(jobmanager: str) -> None:
    with pytest.raises(FlinkHttpError) as caught:
        FlinkRest(jobmanager).job("x")
    assert str(caught.value) == f"Flink at {jobmanager} answered 404 to /jobs/x: Job x not found"
    assert caught.value.status == 404


def test_nothing_answering_is_unreachable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{s.getsockname()[1]}"  # bound, never listening: refused
        with pytest.raises(Unreachable) as caught:
            FlinkRest(address, timeout=2).overview()
    assert caught.value.service == "Flink" and caught.value.address == address
