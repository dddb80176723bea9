"""No single record may stop the job: a property-based fuzz set drives the real job (local
minicluster, thread mode, the real Kafka and Cassandra) and then the job must never have restarted,
every valid event must be stored byte for byte, and every invalid record must be dead-lettered
with its code.

Hypothesis generates the records: valid events whose ids and queries hold any allowed Unicode
(every script, emoji, private use, unassigned code points, format characters), events whose id
or query breaks the text rule (lone surrogates, C0/C1 controls, bidi overrides, line separators,
empty, too long), arbitrary JSON values, byte garbage, deep nesting, huge numbers, oversized
records and tombstones. Half of them sit in the topic before the job starts (records that used to
put the job in a restart loop must pass as dead letters), half arrive while it runs. One job run
serves the whole set; the seed is in the figures (STREAMREC_FUZZ_SEED replays a run).
"""

from __future__ import annotations

import json
import os
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Optional

import pytest
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from streamrec import localstack
from streamrec.model.events import (
    BAD_ID,
    EVENT_TYPES,
    FORBIDDEN_CHARS,
    MAX_ID_CHARS,
    BadRecord,
    Event,
    decode_like_java,
    parse_event,
)
from streamrec.runner import BackgroundJob, wait_for
from tests.faults.helpers import FlinkRest, free_port, verify_cli

from .conftest import PROFILE
from .helpers import count_events, dead_letters

pytestmark = pytest.mark.e2e

FIELDS = ("event_id", "user_id", "ts", "type", "product_id", "query")
ALLOWED = st.characters(exclude_categories=["Cc", "Cs"], exclude_characters="".join(FORBIDDEN_CHARS))
FORBIDDEN = st.one_of(st.characters(categories=["Cc"]), st.characters(categories=["Cs"]),
                      st.sampled_from(sorted(FORBIDDEN_CHARS)))
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=10,
)
# what a valid event may carry in fields the parser ignores: any JSON but NaN and Infinity
FINITE_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=10,
)
# the past only: a ts ahead of the job's clock is a FUTURE_TS dead letter (tests/faults/test_clock_skew.py)
TS = st.integers(0, int(time.time() * 1000))
RECORDS = 700  # how many the fuzz set holds (~40% valid events)


@dataclass
class Record:
    kind: str  # "valid" (must be stored), "bad_id" (must be BAD_ID), "other" (must not be stored)
    value: Optional[bytes]  # None: a tombstone
    key: Optional[bytes] = None
    fields: dict[str, Any] = field(default_factory=dict)  # the valid event as sent


def encode(obj: Any, ascii_only: bool) -> bytes:
    text = json.dumps(obj, ensure_ascii=ascii_only)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: only its \\u escape can be sent
        return json.dumps(obj).encode("utf-8")


@st.composite
def event_fields(draw: Any, products: list[str]) -> dict[str, Any]:
    etype = draw(st.sampled_from(EVENT_TYPES))
    out: dict[str, Any] = {
        "event_id": draw(st.text(ALLOWED, max_size=30)),  # the runner prefixes a unique number
        "user_id": draw(st.text(ALLOWED, min_size=1, max_size=40)),
        "ts": draw(TS | TS.map(float)),  # a whole float is epoch milliseconds too
        "type": etype,
    }
    if etype == "search":
        out["query"] = draw(st.text(ALLOWED, min_size=1, max_size=200))
    else:
        out["product_id"] = draw(st.sampled_from(products))
    # unknown fields are ignored, whatever they hold (lone surrogates included)
    extra = draw(st.dictionaries(st.text(max_size=6).filter(lambda k: k not in FIELDS), FINITE_JSON, max_size=2))
    return {**extra, **out}


@st.composite
def bad_text(draw: Any, long: bool = True) -> str:
    options = [st.tuples(st.text(ALLOWED, max_size=10), FORBIDDEN, st.text(ALLOWED, max_size=10)).map("".join),
               st.just("")]
    if long:
        options.append(st.text(ALLOWED, min_size=MAX_ID_CHARS + 1, max_size=MAX_ID_CHARS + 40))
    return str(draw(st.one_of(options)))


@st.composite
def any_record(draw: Any, products: list[str]) -> Record:
    kind = draw(st.sampled_from(["valid", "valid", "bad_id", "json", "garbage", "nesting", "numbers", "big", "null"]))
    ascii_only = draw(st.booleans())
    if kind == "valid":
        fields = draw(event_fields(products))
        return Record("valid", None, fields["user_id"].encode("utf-8"), fields)
    if kind == "bad_id":
        fields = draw(event_fields(products))
        name = draw(st.sampled_from(["event_id", "user_id", "product_id", "query"]))
        if name == "query":
            fields.pop("product_id", None)
            fields.update(type="search", query=draw(bad_text(long=False)))
        else:
            fields[name] = draw(bad_text())
        return Record("bad_id", encode(fields, ascii_only), draw(st.none() | st.binary(max_size=8)))
    if kind == "json":
        obj = draw(JSON_VALUES | st.dictionaries(st.sampled_from(FIELDS), JSON_VALUES, max_size=6))
        return Record("other", encode(obj, ascii_only))
    if kind == "garbage":
        return Record("other", draw(st.binary(max_size=300)), draw(st.none() | st.binary(max_size=8)))
    if kind == "nesting":
        depth = draw(st.integers(1_000, 30_000))
        fields = draw(event_fields(products))
        wrapped = encode({**fields, "deep": "@@"}, True).replace(b'"@@"', b"[" * depth + b"]" * depth)
        return Record("other", draw(st.sampled_from([b"[" * depth + b"]" * depth, wrapped])))
    if kind == "numbers":
        fields = draw(event_fields(products))
        number = draw(st.sampled_from(["1e999", "-1e999", "9" * 400, "9" * 5000, "1" + "0" * 30, "-5", "1.5"]))
        return Record("other", encode({**fields, "ts": "@@"}, True).replace(b'"@@"', number.encode()))
    if kind == "big":
        fields = draw(event_fields(products))
        return Record("other", encode({**fields, "pad": "x" * 70_000}, True))
    return Record("other", draw(st.sampled_from([None, b""])), b"tombstone")  # Kafka wants a key with no value


def generate(products: list[str], fuzz_seed: int) -> list[Record]:
    out: list[Record] = []

    @seed(fuzz_seed)
    @settings(max_examples=RECORDS, database=None, phases=[Phase.generate], deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(any_record(products))
    def collect(record: Record) -> None:
        out.append(record)

    collect()
    for i, r in enumerate(out):  # unique event ids: every valid event is one row of `events`
        if r.kind == "valid":
            r.fields["event_id"] = f"fz{i}-{r.fields['event_id']}"
            r.value = encode(r.fields, ascii_only=i % 2 == 0)
    return out


def as_the_job_reads(value: Optional[bytes]) -> str:
    # the job's source: a tombstone becomes "", bytes are decoded as UTF-8 with replacement (Java's)
    return "" if value is None else decode_like_java(value)


def send(config: Any, records: list[Record]) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=config.kafka.bootstrap, acks="all", linger_ms=20,
                             max_request_size=1024 * 1024)
    try:
        futures = [producer.send(config.kafka.events_topic, key=r.key, value=r.value) for r in records]
        producer.flush()
        for f in futures:
            f.get(timeout=60)
    finally:
        producer.close()


@pytest.fixture(scope="module")
def fuzzed(services, artifacts, uci_catalog, tmp_path_factory):
    from tests.e2e.conftest import fresh_config

    fuzz_seed = int(os.environ.get("STREAMREC_FUZZ_SEED") or random.randrange(2**32))
    products = list(uci_catalog.product_ids[:300])
    records = generate(products, fuzz_seed)
    known = frozenset(uci_catalog.product_ids)
    expected = [parse_event(as_the_job_reads(r.value), known) for r in records]
    started = time.monotonic()
    with fresh_config(artifacts, uci_catalog) as base:
        port = free_port()
        config = base.replace(job={"minicluster_rest_port": port})
        half = len(records) // 2
        send(config, records[:half])  # these sit in the topic before the job starts
        rest = FlinkRest(f"127.0.0.1:{port}")
        log = tmp_path_factory.mktemp("fuzz") / "job.log"
        with BackgroundJob(config, log) as job:
            jid = wait_for(lambda: (rest.running_jobs() or [None])[0], timeout=240, what="the job to run",
                           on_timeout=job.log_tail)
            send(config, records[half:])
            valid = sum(isinstance(e, Event) for e in expected)
            bad = len(expected) - valid
            wait_for(lambda: count_events(config) >= valid, timeout=300, interval=2,
                     what=f"{valid} valid events in Cassandra", on_timeout=lambda: rest.describe(jid) + job.log_tail())
            wait_for(lambda: len(dead_letters(config)) >= bad, timeout=120, interval=2,
                     what=f"{bad} dead letters", on_timeout=lambda: rest.describe(jid) + job.log_tail())
            restarts, exceptions = rest.restarts(jid), rest.exceptions(jid)
            state = rest.state(jid)
            report = verify_cli(config, wait=60)
            assert job.alive(), job.log_tail()
        from .helpers import read_store

        store = read_store(config)
        dlq = dead_letters(config)
        from streamrec.connectors.cassandra import connect

        session = connect(config.cassandra, config.cassandra.keyspace)
        try:
            queries = {(r.user_id, r.event_id): r.query for r in session.execute("SELECT user_id, event_id, query "
                                                                               "FROM events")}
        finally:
            session.cluster.shutdown()
    figures = {
        "test": "fuzz (hypothesis)", "seed": fuzz_seed, "sent": len(records), "valid": valid,
        "stored": len(store.events), "dead_letters": dict(Counter(d["error"] for d in dlq)),
        "restarts": restarts, "seconds": round(time.monotonic() - started, 1),
        "kinds": dict(Counter(r.kind for r in records)),
    }
    print("\nfuzz figures:", json.dumps(figures))
    (localstack.stack_dir() / f"fuzz-{PROFILE.name}.json").write_text(json.dumps(figures, indent=1))
    return records, expected, store, queries, dlq, restarts, exceptions, state, report, figures


def test_the_job_never_restarted_and_still_runs(fuzzed):
    *_, restarts, exceptions, state, _, figures = fuzzed
    assert restarts == 0 and exceptions == [], (figures, [e.get("exceptionName") for e in exceptions])
    assert state == "RUNNING"


def test_every_valid_event_is_stored_once_byte_for_byte(fuzzed):
    records, expected, store, queries, *_ = fuzzed
    sent = [r.fields for r in records if r.kind == "valid"]
    assert sent, "the fuzz set holds no valid event"
    # checked without the parser: the fields as generated, against the rows as Cassandra returns them
    want = Counter((f["user_id"], f["event_id"], int(f["ts"]), f["type"], f.get("product_id")) for f in sent)
    got = Counter(store.events)
    assert got == want, (list((want - got).items())[:3], list((got - want).items())[:3])
    assert all(queries[(f["user_id"], f["event_id"])] == f.get("query") for f in sent)
    # and the parser agrees that nothing else was valid
    assert sum(isinstance(e, Event) for e in expected) == len(sent)


def test_every_invalid_record_is_dead_lettered_once_with_its_code(fuzzed):
    records, expected, _, _, dlq, *_ = fuzzed
    want = Counter((e.code, e.payload) for e in expected if isinstance(e, BadRecord))
    got = Counter((d["error"], d["payload"]) for d in dlq)
    assert got == want, (list((want - got).items())[:3], list((got - want).items())[:3])
    # by construction, not by the parser: a broken id or query is BAD_ID, nothing else is valid
    for r, e in zip(records, expected):
        if r.kind == "bad_id":
            assert isinstance(e, BadRecord) and e.code == BAD_ID, (r.value, e)
        elif r.kind == "other":
            assert isinstance(e, BadRecord), r.value


def test_verify_reads_the_fuzzed_topic_and_finds_the_store_consistent(fuzzed):
    *_, report, figures = fuzzed
    if not report["ok"]:  # pytest shortens a long assertion message: the whole report, and how to replay
        print(f"verify found differences (STREAMREC_FUZZ_SEED={figures['seed']} replays the set):")
        print(json.dumps(report, indent=1, default=str))
    assert report["ok"], (report["examples"], report.get("stderr_tail", ""))
    assert report["dead_letters"]["missing"] == report["dead_letters"]["unexpected"] == 0
