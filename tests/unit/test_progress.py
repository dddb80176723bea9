"""Progress of long commands goes to stderr only: never into stdout's data (event lines, -o json),
and nothing at all with -q."""

from __future__ import annotations

import io
import json
from types import SimpleNamespace
from typing import Any

from click.testing import CliRunner

from streamrec.cli import main
from streamrec.progress import Progress

UCI_HEADER = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"


def _uci(tmp_path) -> str:
    rows = [f"5{i:05d},8512{i % 3}A,LANTERN {i % 3},1,2010-12-0{1 + i % 5} 08:{i % 60:02d}:00,2.55,"
            f"{17850 + i % 4}.0,UK\n" for i in range(40)]
    path = tmp_path / "uci.csv"
    path.write_text(UCI_HEADER + "".join(rows), encoding="latin-1")
    return str(path)


def test_plain_progress_is_one_line_per_phase_and_per_interval():
    out = io.StringIO()
    with Progress("export", total=3, unit="events", stream=out, every_s=0, tty=False) as p:
        p.phase("reading f.csv")
        for _ in range(3):
            p.advance()
    assert out.getvalue().splitlines() == ["export: reading f.csv 0/3 events", "export: reading f.csv 1/3 events",
                                           "export: reading f.csv 2/3 events", "export: reading f.csv 3/3 events"]


def test_quiet_progress_writes_nothing_and_still_counts():
    out = io.StringIO()
    with Progress("produce", stream=out, every_s=0, quiet=True, tty=True) as p:
        p.phase("x")
        assert list(p.iterate(["a", "b"])) == ["a", "b"]
    assert out.getvalue() == "" and p.done == 2


def test_a_terminal_gets_a_rich_bar_on_its_own_stream_and_it_is_gone_at_the_end():
    out = io.StringIO()
    with Progress("catalog build", total=10, stream=out, every_s=0, tty=True) as p:
        p.phase("learning")
        p.advance(10)
    assert p.done == 10  # rich drew (or not, on a fake terminal) on `out` only: nothing to assert on stdout


def test_data_export_writes_events_to_stdout_and_progress_to_stderr(tmp_path):
    path = _uci(tmp_path)
    result = CliRunner().invoke(main, ["data", "export", "--data", path, "--format", "uci"])
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(events) == 40 and all(e["type"] == "purchase" for e in events)
    assert f"export: reading {path}" in result.stderr and "exported 40 events" in result.stderr

    quiet = CliRunner().invoke(main, ["data", "export", "--data", path, "--format", "uci", "-q"])
    assert quiet.exit_code == 0 and quiet.stdout == result.stdout and quiet.stderr == ""


def test_catalog_publish_json_holds_the_summary_only_and_progress_stays_on_stderr(monkeypatch):
    from streamrec.connectors import cassandra, kafka

    class Store:
        def __init__(self, config: Any) -> None:
            pass

        def embedding_dim(self) -> None:
            return None

        def upsert(self, updates: Any) -> list[None]:
            return [None for _ in updates]

        def close(self) -> None:
            pass

    def send_keyed(records: Any, topic: str, config: Any, max_record_bytes: int) -> Any:
        return SimpleNamespace(sent=len(list(records)), rejected=[])

    monkeypatch.setattr(cassandra, "ProductStore", Store)
    monkeypatch.setattr(kafka, "send_keyed", send_keyed)
    lines = "".join(json.dumps({"product_id": f"P{i}", "price": 1.5}) + "\n" for i in range(5))
    result = CliRunner().invoke(main, ["catalog", "publish", "-o", "json"], input=lines)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["published"] == 5  # stdout is exactly one JSON document
    assert "publish: writing 5 updates to Cassandra" in result.stderr
    quiet = CliRunner().invoke(main, ["catalog", "publish", "-o", "json", "-q"], input=lines)
    assert json.loads(quiet.stdout)["published"] == 5 and quiet.stderr == ""
