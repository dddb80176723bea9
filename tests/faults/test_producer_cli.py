"""`streamrec produce` as a user runs it: acks=all and idempotence, lines that cannot be events
are reported with their line number (never silently dropped), the rest arrives in order."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from streamrec.connectors.kafka import read_topic
from streamrec.runner import config_env

pytestmark = pytest.mark.faults


def test_produce_reports_bad_lines_with_their_numbers(e2e_config, tmp_path):
    good = [{"event_id": f"p{i}", "user_id": "cli-user", "ts": 1_700_000_000_000 + i, "type": "view",
             "product_id": "85123A"} for i in range(3)]
    lines = [
        json.dumps(good[0]),
        "{not json",
        json.dumps(good[1]),
        "",  # blank lines are not records
        json.dumps({**good[2], "pad": "x" * 70_000}),  # over the 64 KiB record limit
        "[1, 2]",  # JSON, but not an object
        json.dumps(good[2]),
    ]
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(lines) + "\n")
    out = subprocess.run([sys.executable, "-m", "streamrec.cli", "produce", str(path)], env=config_env(e2e_config),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1, out.stderr
    assert out.stdout == ""  # a report goes to stderr
    err = out.stderr.splitlines()
    assert any(x.startswith("line 2: not sent: not JSON") for x in err), err
    assert any(x.startswith("line 5: not sent: over 65536 bytes") for x in err), err
    assert any(x.startswith("line 6: not sent: not a JSON object") for x in err), err
    assert "sent 3 record(s)" in out.stderr and "rejected 3" in out.stderr
    got = [json.loads(v) for v in read_topic(e2e_config.kafka, e2e_config.kafka.events_topic, timeout_ms=5000)]
    assert [g["event_id"] for g in got] == ["p0", "p1", "p2"]  # one key, one partition: in order

    # --raw sends everything as it is (the job's dead-letter path judges), still nothing silently lost
    out = subprocess.run([sys.executable, "-m", "streamrec.cli", "produce", "--raw", str(path)],
                         env=config_env(e2e_config), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "sent 6 record(s)" in out.stderr, out.stderr
