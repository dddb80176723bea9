"""The text rule at the CLI's edges, without services: `streamrec produce` reports a line that breaks
it (line number and dead-letter code on stderr, no traceback) and never sends it; what the tables
print escapes control characters and rich markup. ``FakeProducer`` stands in for kafka-python's
KafkaProducer and ``FakeQueryClient`` for the Cassandra query client."""

from __future__ import annotations

import json
from typing import Any, Optional

import pytest
from click.testing import CliRunner

import streamrec.connectors.cassandra as cass
from streamrec.cli import main, terminal_safe

pytestmark = pytest.mark.unit

GOOD = {"event_id": "e1", "user_id": "u1", "ts": 1700000000000, "type": "view", "product_id": "85123A"}


class FakeFuture:
    def get(self, timeout: Any = None) -> None:
        return None


class FakeProducer:
    sent: list[tuple[Optional[bytes], bytes]] = []

    def __init__(self, **settings: Any) -> None:
        pass

    def send(self, topic: str, key: Optional[bytes] = None, value: Optional[bytes] = None) -> FakeFuture:
        assert value is not None
        FakeProducer.sent.append((key, value))
        return FakeFuture()

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


@pytest.fixture
def producer(monkeypatch: pytest.MonkeyPatch) -> type[FakeProducer]:
    import kafka

    FakeProducer.sent = []
    monkeypatch.setattr(kafka, "KafkaProducer", FakeProducer)
    return FakeProducer


def line(**fields: Any) -> bytes:
    return json.dumps({**GOOD, **fields}).encode()


BAD_LINES = [
    (line(event_id="e2", user_id="\ud800x"), "BAD_ID: 'user_id' holds a lone surrogate (U+D800) at position 0"),
    (line(event_id="e3", product_id="85123A\x1b[2J"), "BAD_ID: 'product_id' holds a control character (U+001B)"),
    (line(event_id="e4", type="search", product_id=None, query="lamp\x00"), "BAD_ID: 'query' holds a control"),
    (line(event_id="e5", user_id="x" * 300), "BAD_ID: 'user_id' has 300 characters, limit 256"),
    (b'{"event_id": "e6", "user_id": "caf\xe9"}', "not UTF-8 text (NOT_JSON"),  # latin-1, not UTF-8
    (b"[" * 5000 + b"]" * 5000, "not JSON (NOT_JSON"),  # deeper than the parser recurses
]


def run_produce(tmp_path, data: bytes, *args: str):
    path = tmp_path / "events.jsonl"
    path.write_bytes(data)
    return CliRunner().invoke(main, ["produce", *args, str(path)], catch_exceptions=False)


def test_produce_skips_and_reports_each_line_that_breaks_the_rule_and_sends_the_rest(tmp_path, producer):
    good2 = line(event_id="e9", user_id="用户 👩‍👩‍👧")
    data = b"\n".join([line(), *[raw for raw, _ in BAD_LINES], good2]) + b"\n"
    result = run_produce(tmp_path, data)
    assert result.exit_code == 1
    err = result.stderr.splitlines()
    for n, (_, why) in enumerate(BAD_LINES, start=2):
        assert any(x.startswith(f"line {n}: not sent: {why}") for x in err), (n, err)
    assert "Traceback" not in result.output and "rejected 6" in result.stderr
    # only the valid lines went out, byte for byte, keyed by their user
    assert producer.sent == [(b"u1", line()), ("用户 👩‍👩‍👧".encode(), good2)]


def test_produce_raw_sends_every_line_byte_for_byte_with_no_key_for_an_unsendable_user_id(tmp_path, producer):
    raws = [raw for raw, _ in BAD_LINES]
    result = run_produce(tmp_path, b"\n".join(raws) + b"\n", "--raw")
    assert result.exit_code == 0, result.output
    assert [v for _, v in producer.sent] == raws  # the job's dead-letter path judges them
    assert producer.sent[0][0] is None  # a lone surrogate cannot be a Kafka key
    assert producer.sent[1][0] == b"u1"


class FakeQueryClient:
    def __init__(self, config: Any) -> None:
        pass

    def events(self, user_id: str, limit: int = 20) -> list[dict[str, Any]]:
        return [{"ts": 1700000000000, "type": "search", "product_id": None, "event_id": "e\x1b]8;;http://x\x1b\\",
                 "query": "[link=http://evil]click me[/link] \x1b[2J \u202egnp.exe"}]

    def titles(self, product_ids: Any) -> dict[str, str]:
        return {}

    def close(self) -> None:
        pass


def test_events_table_escapes_control_characters_and_shows_markup_as_written(monkeypatch):
    monkeypatch.setattr(cass, "QueryClient", FakeQueryClient)
    result = CliRunner().invoke(main, ["events", "u[bold]1"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "\x1b" not in out and "\u202e" not in out  # nothing reaches the terminal as a control
    assert "\\x1b" in out and "\\u202e" in out  # ... it is shown as an escape instead
    assert "[link=http://ev" in out and "[/link]" in out  # markup shown as written, not made a link
    assert "u[bold]1" in out  # the title too: markup is text


def test_query_commands_refuse_a_user_id_the_job_could_never_have_stored(monkeypatch):
    monkeypatch.setattr(cass, "QueryClient", FakeQueryClient)
    result = CliRunner().invoke(main, ["events", "a\u202eb"])
    assert result.exit_code == 2 and "control character (U+202E)" in result.output


def test_terminal_safe_escapes_only_what_the_rule_forbids():
    assert terminal_safe("红灯笼 🏮 [b]x[/b]") == "红灯笼 🏮 [b]x[/b]"
    assert terminal_safe("a\x1bb\x9bc\u2028d\ud800") == "a\\x1bb\\x9bc\\u2028d\\ud800"
    assert terminal_safe(None) == "" and terminal_safe(3.5) == "3.5"
