"""Clock skew (issue 22, part 3), black-box on the real stack: records sent with a plain Kafka
client (kafka-python, not `streamrec produce`), some with a ts a day ahead and some in the year
2999, among a replay of real 2010 purchases and events of today. One job run per hot path (local
minicluster); then `streamrec verify`, and checks that do not use the parser: the future
records are dead letters with code FUTURE_TS and nothing else, every past and present event is
stored, the trending list a cold user gets is led by today's popular product (an accepted
future event would lead it, or decay everything else to nothing), and a user who sent future
events keeps a recommendations row stamped with today's time, not with the year 2999.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

import pytest

from streamrec import localstack
from streamrec.connectors.cassandra import datetime_to_ms
from streamrec.runner import BackgroundJob, wait_for
from tests.faults.helpers import FlinkRest, free_port, verify_cli

from .conftest import PROFILE
from .helpers import count_events, dead_letters, uci_slice

pytestmark = pytest.mark.e2e

DAY = 86_400_000
YEAR_2999 = 32_472_144_000_000  # 2999-01-01


def event(event_id: str, user: str, ts: int, etype: str, product: str) -> dict[str, Any]:
    return {"event_id": event_id, "user_id": user, "ts": ts, "type": etype, "product_id": product}


def send(config: Any, events: list[dict[str, Any]]) -> None:
    """A plain Kafka producer: JSON values keyed by user id."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=config.kafka.bootstrap, acks="all")
    try:
        futures = [producer.send(config.kafka.events_topic, key=e["user_id"].encode(), value=json.dumps(e).encode())
                   for e in events]
        producer.flush()
        for f in futures:
            f.get(timeout=60)
    finally:
        producer.close()


def recommendation_row(config: Any, user: str) -> Any:
    from streamrec.connectors.cassandra import connect

    session = connect(config.cassandra, config.cassandra.keyspace)
    try:
        return session.execute("SELECT product_ids, source, event_id, updated_at FROM recommendations "
                               "WHERE user_id = %s", (user,)).one()
    finally:
        session.cluster.shutdown()


def stored_events(config: Any) -> list[tuple[str, str, int]]:
    from streamrec.connectors.cassandra import connect

    session = connect(config.cassandra, config.cassandra.keyspace)
    try:
        return [(r.user_id, r.event_id, datetime_to_ms(r.ts)) for r in session.execute(
            "SELECT user_id, event_id, ts FROM events")]
    finally:
        session.cluster.shutdown()


@pytest.mark.parametrize("hot_path", ["batch", "per-event"])
def test_future_events_are_dead_letters_and_drive_neither_trending_nor_a_users_clock(
        e2e_config, uci_history, uci_catalog, tmp_path, hot_path):
    started = time.monotonic()
    config = e2e_config.replace(job={"minicluster_rest_port": free_port(), "hot_path": hot_path})
    history = uci_slice(uci_history, users=8, per_user=10)
    used = {e.product_id for e in history}
    spare = [p for p in uci_catalog.product_ids if p not in used]
    popular, attacked_day, attacked_2999, other = spare[:4]
    now = int(time.time() * 1000)

    past = [event(e.event_id, e.user_id, e.ts, e.type, e.product_id or "") for e in history]
    # today: four shoppers click `popular` (the trending list must be led by it)
    today = [event(f"now-{i}", f"shopper-{i % 4}", now - 60_000 + i, "click", popular) for i in range(12)]
    # the skewed producers: purchases a day ahead and in 2999, many more than today's clicks
    future = ([event(f"day-{i}", f"skewed-{i % 5}", now + DAY + i, "purchase", attacked_day) for i in range(15)]
              + [event(f"y2999-{i}", f"skewed-{i % 5}", YEAR_2999 + i, "purchase", attacked_2999)
                 for i in range(15)])
    # shopper-0 also sent future events, then one of today: its row must carry today's time
    future += [event("s0-day", "shopper-0", now + DAY, "purchase", attacked_day),
               event("s0-2999", "shopper-0", YEAR_2999, "purchase", attacked_2999)]
    last_of_shopper0 = event("s0-last", "shopper-0", now, "view", other)

    send(config, past + future[::2])  # in the topic before the job starts (a replay of history)
    rest = FlinkRest(f"127.0.0.1:{config.job.minicluster_rest_port}")
    with BackgroundJob(config, tmp_path / "job.log") as job:
        jid = wait_for(lambda: (rest.running_jobs() or [None])[0], timeout=240, what="the job to run",
                       on_timeout=job.log_tail)
        send(config, future[1::2] + today + [last_of_shopper0])
        valid = len(past) + len(today) + 1
        wait_for(lambda: count_events(config) >= valid, timeout=300, interval=2,
                 what=f"{valid} events in Cassandra", on_timeout=lambda: rest.describe(jid) + job.log_tail())
        wait_for(lambda: len(dead_letters(config)) >= len(future), timeout=120, interval=2,
                 what=f"{len(future)} dead letters", on_timeout=lambda: rest.describe(jid) + job.log_tail())
        # a cold user (a search no title word matches moves nobody) is shown the trending list; the
        # list is broadcast once a second, so a probe may come before it holds today's clicks
        probe_list: list[str] = []
        probes = 0
        for i in range(10):
            probes += 1
            probe = f"probe-{i}"
            send(config, [{"event_id": f"p{i}", "user_id": probe, "ts": int(time.time() * 1000),
                           "type": "search", "query": "qzxv"}])
            row = wait_for(lambda probe=probe: recommendation_row(config, probe), timeout=120,
                           what=f"a row for {probe}", on_timeout=job.log_tail)
            probe_list = list(row.product_ids)
            assert row.source == "trending"
            if popular in probe_list:
                break
        restarts = rest.restarts(jid)
        report = verify_cli(config, wait=120)
        assert job.alive(), job.log_tail()
    checked_at = int(time.time() * 1000)
    letters = dead_letters(config)
    stored = stored_events(config)
    shopper0 = recommendation_row(config, "shopper-0")

    figures = {"test": f"clock skew ({hot_path})", "sent": len(past) + len(future) + len(today) + 1 + probes,
               "stored": len(stored), "dead_letters": dict(Counter(d["error"] for d in letters)),
               "restarts": restarts, "seconds": round(time.monotonic() - started, 1)}
    print("\nclock skew figures:", json.dumps(figures))
    (localstack.stack_dir() / f"clock-skew-{hot_path}-{PROFILE.name}.json").write_text(json.dumps(figures, indent=1))

    assert report["ok"], (report["examples"], report.get("stderr_tail", ""))
    assert report["dead_letters"]["found"] == {"FUTURE_TS": len(future)}, report["dead_letters"]
    assert restarts == 0
    # without the parser: the future records are the dead letters, byte for byte, and none is stored
    assert Counter(d["payload"] for d in letters) == Counter(json.dumps(e) for e in future)
    assert {d["error"] for d in letters} == {"FUTURE_TS"}
    assert not {e["event_id"] for e in future} & {event_id for _, event_id, _ in stored}
    assert max(ts for *_, ts in stored) <= checked_at
    # the replay of 2010 and today's events are all there
    want = {(e["user_id"], e["event_id"], e["ts"]) for e in past + today + [last_of_shopper0]}
    assert want <= set(stored)
    # trending: led by today's product; the attacked products are not in it
    assert probe_list and probe_list[0] == popular, probe_list
    assert attacked_day not in probe_list and attacked_2999 not in probe_list
    # shopper-0's row reflects its last event of today and is stamped with today's time
    assert shopper0.event_id == "s0-last"
    assert shopper0.updated_at is not None and datetime_to_ms(shopper0.updated_at) <= checked_at
