"""The late catalog (issue 22, part 5), black-box on the real stack: a product published while the
job runs and an event naming it, sent at once with the event first (a plain Kafka producer for the
event, `streamrec catalog publish` for the product: Cassandra, then the products topic). The
event reaches the parser before the product does, waits in await-products and is stored, not
dead-lettered; an event for a product that is never published is dead-lettered as
UNKNOWN_PRODUCT once the wait is over, not before. A user who sent more events after the waiting
one has them all stored (the late one processed after them). One job run per hot path (local
minicluster); then `streamrec verify` and checks that do not use the parser.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from typing import Any

import pytest

from streamrec import localstack
from streamrec.runner import BackgroundJob, config_env, wait_for
from tests.faults.helpers import FlinkRest, free_port, verify_cli

from .conftest import PROFILE
from .helpers import count_events, dead_letters
from .test_clock_skew import send, stored_events

pytestmark = pytest.mark.e2e

WAIT_MS = 8_000


def event(event_id: str, user: str, ts: int, etype: str, product: str) -> dict[str, Any]:
    return {"event_id": event_id, "user_id": user, "ts": ts, "type": etype, "product_id": product}


def letters_with_times(config: Any) -> list[tuple[dict[str, Any], int]]:
    """Each dead letter with its Kafka record time (the dead-letter sink writes it when it sends)."""
    from kafka import KafkaConsumer

    from streamrec.connectors.kafka import client_options

    consumer = KafkaConsumer(config.kafka.dlq_topic, bootstrap_servers=config.kafka.bootstrap, group_id=None,
                             auto_offset_reset="earliest", consumer_timeout_ms=3000, **client_options(config.kafka))
    try:
        return [(json.loads(r.value), r.timestamp) for r in consumer]
    finally:
        consumer.close()


def publish(config: Any, product: dict[str, Any]) -> None:
    out = subprocess.run([sys.executable, "-m", "streamrec.cli", "catalog", "publish", "-", "-q"],
                         input=json.dumps(product) + "\n", env=config_env(config), capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("hot_path", ["batch", "per-event"])
def test_an_event_sent_just_before_its_product_is_stored_and_one_for_a_product_never_published_waits_then_is_dead(
        e2e_config, uci_catalog, tmp_path, hot_path):
    started = time.monotonic()
    config = e2e_config.replace(job={"minicluster_rest_port": free_port(), "hot_path": hot_path},
                                limits={"unknown_product_wait_ms": WAIT_MS})
    known = uci_catalog.product_ids[:3]
    # pointing away from the products the users touch: the new product enters no list, so the lists
    # written before it was published still equal what verify computes with it in the catalog
    away = -uci_catalog.vectors[:3].sum(axis=0)
    vector = [round(float(x), 6) for x in away / float((away @ away) ** 0.5)]
    new_product = {"product_id": "LATE-1", "title": "LATE LANTERN", "category": "lamp light", "price": 3.5,
                   "in_stock": True, "embedding": vector}
    now = int(time.time() * 1000)
    warmup = [event(f"w{i}", f"warm-{i}", now - 10_000 + i, "view", known[i % 3]) for i in range(6)]
    first = event("late-1", "buyer", now, "view", "LATE-1")  # the product comes after it
    after = [event("after-1", "buyer", now + 1, "click", known[0]),  # a later event of the same user
             event("after-2", "buyer", now + 2, "view", known[1])]
    never = event("never-1", "lost", now + 3, "view", "NEVER-PUBLISHED")

    rest = FlinkRest(f"127.0.0.1:{config.job.minicluster_rest_port}")
    with BackgroundJob(config, tmp_path / "job.log") as job:
        jid = wait_for(lambda: (rest.running_jobs() or [None])[0], timeout=240, what="the job to run",
                       on_timeout=job.log_tail)
        send(config, warmup)  # the job is reading: the events below meet a parser that is running
        wait_for(lambda: count_events(config) >= len(warmup), timeout=180, interval=1,
                 what="the warm-up events in Cassandra", on_timeout=job.log_tail)
        send(config, [first, *after, never])
        sent_at = int(time.time() * 1000)
        time.sleep(1.0)  # the parser has had the event in front of it before the product exists
        publish(config, new_product)
        valid = len(warmup) + 1 + len(after)
        wait_for(lambda: count_events(config) >= valid, timeout=180, interval=1,
                 what=f"{valid} events in Cassandra", on_timeout=lambda: rest.describe(jid) + job.log_tail())
        assert json.dumps(first) not in {d["payload"] for d in dead_letters(config)}, "the late event was dead-lettered"
        wait_for(lambda: dead_letters(config), timeout=WAIT_MS / 1000 + 120, interval=1,
                 what="the never-published product's dead letter", on_timeout=job.log_tail)
        restarts = rest.restarts(jid)
        report = verify_cli(config, wait=120)
        assert job.alive(), job.log_tail()
    letters = letters_with_times(config)
    stored = stored_events(config)

    figures = {"test": f"late catalog ({hot_path})", "sent": len(warmup) + 2 + len(after),
               "products_published": 1, "stored": len(stored),
               "dead_letters": dict(Counter(d["error"] for d, _ in letters)), "restarts": restarts,
               "letter_after_ms": [t - sent_at for _, t in letters], "seconds": round(time.monotonic() - started, 1)}
    print("\nlate catalog figures:", json.dumps(figures))
    (localstack.stack_dir() / f"late-catalog-{hot_path}-{PROFILE.name}.json").write_text(json.dumps(figures, indent=1))

    assert report["ok"], (report["examples"], report.get("stderr_tail", ""))
    assert restarts == 0
    # without the parser: the late event and the user's later ones are stored, byte for byte the ids sent
    want = {(e["user_id"], e["event_id"], e["ts"]) for e in [*warmup, first, *after]}
    assert set(stored) == want
    # the never-published one is the only dead letter: the record as sent, after the whole wait
    [(letter, at)] = letters
    assert letter["error"] == "UNKNOWN_PRODUCT" and letter["payload"] == json.dumps(never)
    assert at - sent_at >= WAIT_MS - 1000, f"dead-lettered {at - sent_at} ms after it was sent"
