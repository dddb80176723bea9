"""Records from a standard Kafka producer that is not the project's own (librdkafka, through
confluent-kafka: the client library kcat is built on) are read by the job and by every tool:
each compression codec Kafka supports (none, gzip, snappy, lz4, zstd), records with headers, null
keys and keys that differ from the user id, and transactional producers, whose aborted records
never reach Cassandra.

Half of each codec's records sit in the topic before the job starts (a zstd batch used to fail the
source on every restart); one job run (local minicluster, thread mode, the real Kafka and
Cassandra) serves every test of the module.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any, Optional

import pytest

from streamrec import localstack
from streamrec.connectors.kafka import read_topic
from streamrec.model.events import Event
from streamrec.runner import BackgroundJob, wait_for
from tests.faults.helpers import FlinkRest, free_port, verify_cli

from .conftest import PROFILE
from .helpers import count_events, read_store

pytestmark = pytest.mark.e2e

CODECS = ("none", "gzip", "snappy", "lz4", "zstd")
HEADERS = [("origin", b"librdkafka"), ("trace-id", b"\x00\x01\xff"), ("empty", None)]


def producer(config: Any, **settings: Any) -> Any:
    from confluent_kafka import Producer

    return Producer({"bootstrap.servers": config.kafka.bootstrap, "acks": "all", "linger.ms": 5, **settings})


def sent_all(p: Any) -> None:
    assert p.flush(60) == 0, "records left unsent"


def events_for(prefix: str, users: int, per_user: int, products: list[str], t0: int) -> list[Event]:
    return [Event(f"{prefix}-e{u}-{i}", f"{prefix}-u{u}", t0 + i * 1000, "view" if i % 3 else "purchase",
                  products[(u * 7 + i) % len(products)]) for u in range(users) for i in range(per_user)]


def produce(p: Any, topic: str, events: list[Event], key: Any = "user", headers: Optional[list] = None) -> None:
    errors: list[Any] = []
    for e in events:
        k = e.user_id.encode() if key == "user" else key(e) if callable(key) else key
        p.produce(topic, value=e.to_json().encode(), key=k, headers=headers,
                  on_delivery=lambda err, msg: errors.append(err) if err else None)
    sent_all(p)
    assert not errors, errors


@pytest.fixture(scope="module")
def produced(services, artifacts, uci_catalog, tmp_path_factory):
    from tests.e2e.conftest import fresh_config

    products = list(uci_catalog.product_ids[:200])
    t0 = 1_700_000_000_000
    started = time.monotonic()
    sent: dict[str, list[Event]] = {}
    with fresh_config(artifacts, uci_catalog) as base:
        port = free_port()
        config = base.replace(job={"minicluster_rest_port": port})
        topic = config.kafka.events_topic
        by_codec = {c: producer(config, **{"compression.type": c}) for c in CODECS}
        for n, (codec, p) in enumerate(by_codec.items()):  # before the job starts: they sit in the topic
            sent[f"{codec} (before start)"] = events_for(f"{codec}-early", 3, 6, products, t0 + n)
            produce(p, topic, sent[f"{codec} (before start)"], headers=HEADERS)

        rest = FlinkRest(f"127.0.0.1:{port}")
        with BackgroundJob(config, tmp_path_factory.mktemp("producers") / "job.log") as job:
            jid = wait_for(lambda: (rest.running_jobs() or [None])[0], timeout=240, what="the job to run",
                           on_timeout=job.log_tail)
            for n, (codec, p) in enumerate(by_codec.items()):
                sent[codec] = events_for(f"{codec}-late", 3, 6, products, t0 + 100_000 + n)
                produce(p, topic, sent[codec], headers=HEADERS)
            # one event per user where the key is null: a null key spreads a user's events over partitions
            sent["null key"] = events_for("nullkey", 12, 1, products, t0)
            produce(by_codec["lz4"], topic, sent["null key"], key=None)
            # a key that is not the user id (a session id): the job keys by the user id in the value
            sent["other key"] = events_for("otherkey", 3, 5, products, t0)
            produce(by_codec["snappy"], topic, sent["other key"],
                    key=lambda e: b"session-" + e.user_id.encode()[::-1], headers=[("h", b"v")])

            tx = producer(config, **{"transactional.id": f"streamrec-test-{config.cassandra.keyspace}",
                                     "compression.type": "zstd"})
            tx.init_transactions(60)
            for label, commit in (("txn committed", True), ("txn aborted", False), ("txn committed after", True)):
                sent[label] = events_for(label.replace(" ", "-"), 4, 3, products, t0)
                tx.begin_transaction()
                produce(tx, topic, sent[label])
                (tx.commit_transaction if commit else tx.abort_transaction)(60)

            committed = sum(len(v) for k, v in sent.items() if k != "txn aborted")
            wait_for(lambda: count_events(config) >= committed, timeout=300, interval=2,
                     what=f"{committed} events in Cassandra", on_timeout=lambda: rest.describe(jid) + job.log_tail())
            restarts, exceptions = rest.restarts(jid), rest.exceptions(jid)
            report = verify_cli(config, wait=60)
            assert job.alive(), job.log_tail()
        store = read_store(config)
        read_back = read_topic(config.kafka, topic)
    figures = {"test": "real producers (librdkafka)", "sent": {k: len(v) for k, v in sent.items()},
               "stored": len(store.events), "dead_letters": report["dead_letters"]["found"], "restarts": restarts,
               "verify_records": report["records"], "seconds": round(time.monotonic() - started, 1)}
    print("\nreal producer figures:", json.dumps(figures))
    (localstack.stack_dir() / f"producers-{PROFILE.name}.json").write_text(json.dumps(figures, indent=1))
    return sent, store, restarts, exceptions, report, read_back


def stored_rows(store: Any, events: list[Event]) -> Counter:
    ids = {e.event_id for e in events}
    return Counter(row for row in store.events if row[1] in ids)


def rows(events: list[Event]) -> Counter:
    return Counter((e.user_id, e.event_id, e.ts, e.type, e.product_id) for e in events)


@pytest.mark.parametrize("codec", CODECS)
def test_records_of_every_compression_codec_are_stored_also_when_they_waited_for_the_job(produced, codec):
    sent, store, *_ = produced
    for label in (f"{codec} (before start)", codec):
        assert stored_rows(store, sent[label]) == rows(sent[label]), label


def test_records_with_headers_null_keys_or_keys_other_than_the_user_id_are_stored(produced):
    sent, store, *_ = produced
    for label in ("null key", "other key"):
        assert stored_rows(store, sent[label]) == rows(sent[label]), label
    assert {u for u, *_ in store.events if u.startswith("otherkey-")} == {"otherkey-u0", "otherkey-u1", "otherkey-u2"}


def test_a_transactional_producers_committed_records_are_stored_and_aborted_ones_never(produced):
    sent, store, *_ = produced
    assert stored_rows(store, sent["txn committed"]) == rows(sent["txn committed"])
    assert stored_rows(store, sent["txn committed after"]) == rows(sent["txn committed after"])
    # the transaction committed after the aborted one is stored, so the job has read past it
    assert not stored_rows(store, sent["txn aborted"])
    assert not any(u.startswith("txn-aborted") for u, *_ in store.events)


def test_nothing_else_is_stored_and_the_job_never_restarted(produced):
    sent, store, restarts, exceptions, *_ = produced
    want = sum((rows(v) for k, v in sent.items() if k != "txn aborted"), Counter())
    assert Counter(store.events) == want
    assert restarts == 0 and exceptions == [], [e.get("exceptionName") for e in exceptions]


def test_verify_and_read_topic_read_every_codec_and_committed_records_only(produced):
    sent, _, _, _, report, read_back = produced
    committed = sum(len(v) for k, v in sent.items() if k != "txn aborted")
    assert report["ok"], (report["examples"], report.get("stderr_tail", ""))
    assert report["records"] == report["valid_events"] == committed  # the aborted records are not events
    assert report["events"]["found"] == committed and sum(report["dead_letters"]["found"].values()) == 0
    assert len(read_back) == committed
    assert not any("txn-aborted" in r for r in read_back)
