"""No single record may stop the job: on a minicluster in thread mode (the job's default), a lone
surrogate in an id (it once put the job in a restart loop) is a BAD_ID dead letter, and an event
whose model update raises is an INTERNAL dead letter with the exception text; every other event
comes out, and the job ends normally (it has no restart strategy here: a failure would fail it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from streamrec.model.events import Event
from streamrec.udfs.operators import RECOMMENDATION_FIELDS

from . import poison

pytestmark = pytest.mark.minicluster

REPO = Path(__file__).resolve().parents[2]

SURROGATE_USER = '{"event_id": "s1", "user_id": "\\ud800x", "ts": 1700000000000, "type": "view", "product_id": "p1"}'
SURROGATE_QUERY = ('{"event_id": "s2", "user_id": "u1", "ts": 1700000000000, "type": "search", '
                   '"query": "lamp \\udfff"}')
ESCAPE_PRODUCT = '{"event_id": "s3", "user_id": "u1", "ts": 1700000000000, "type": "view", "product_id": "p1\\u001b"}'


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    valid = [Event(f"e{i}", f"u{i % 4}", 1_700_000_000_000 + i, "view", f"p{i % 20}") for i in range(40)]
    boom = [Event(f"b{i}", f"{poison.POISONED}{i}", 1_700_000_000_100 + i, "click", "p3") for i in range(3)]
    raw = [e.to_json() for e in valid[:20]] + [SURROGATE_USER, SURROGATE_QUERY, ESCAPE_PRODUCT]
    raw += [e.to_json() for e in boom] + [e.to_json() for e in valid[20:]]
    folder = tmp_path_factory.mktemp("poison")
    (folder / "records.json").write_text(json.dumps(raw))
    env = {**os.environ, "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])}
    # a minicluster test that ran before in this pytest process leaves the gateway marked disabled
    env.pop("PYFLINK_GATEWAY_DISABLED", None)
    out = subprocess.run([sys.executable, "-m", "tests.minicluster.poison", str(folder / "records.json"),
                          str(folder / "catalog.npz")], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=400)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-5000:]
    lines = [json.loads(x) for x in out.stdout.splitlines() if x.startswith('["')]
    recs = [dict(zip(RECOMMENDATION_FIELDS, v)) for kind, v in lines if kind == "rec"]
    dlq = [json.loads(v) for kind, v in lines if kind == "dlq"]
    return valid, boom, recs, dlq


def test_every_other_event_comes_out_once_around_the_poisoned_ones(run):
    valid, _, recs, _ = run
    assert sorted(r["event_id"] for r in recs) == sorted(e.event_id for e in valid)


def test_a_lone_surrogate_or_an_escape_in_an_id_or_query_is_a_BAD_ID_dead_letter(run):
    *_, dlq = run
    bad_ids = {d["payload"]: d for d in dlq if d["error"] == "BAD_ID"}
    assert set(bad_ids) == {SURROGATE_USER, SURROGATE_QUERY, ESCAPE_PRODUCT}
    assert "lone surrogate (U+D800)" in bad_ids[SURROGATE_USER]["reason"]


def test_an_exception_of_the_model_is_an_INTERNAL_dead_letter_with_its_text_and_the_event(run):
    _, boom, _, dlq = run
    internal = [d for d in dlq if d["error"] == "INTERNAL"]
    assert sorted(d["payload"] for d in internal) == sorted(e.to_json() for e in boom)
    assert all(d["reason"].startswith("ValueError: model failure for boom-") for d in internal)
    assert len(dlq) == 3 + len(boom)
