"""The benchmark's logic: generator, baseline model, CPU accounting, result handling (no timing asserts)."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from streamrec.bench import results
from streamrec.bench.baseline import BaselineModel, model_params
from streamrec.bench.flinkrest import find_rest
from streamrec.bench.freshness import Freshness, live_rate, next_poll
from streamrec.bench.generator import (
    DEFAULT_MIX,
    EventGenerator,
    GenEvent,
    final_recommendation_events,
    mix_of,
    synthetic_catalog,
    synthetic_transitions,
    to_event,
    zipf_weights,
)
from streamrec.bench.procstat import CpuSampler, Group, descendants, interpolate, parse_stat
from streamrec.bench.profile import bundle_thread, categorize, read_raw, summarize, top_functions
from streamrec.bench.watch import _event_seq, steady_rate
from streamrec.config import Config, KafkaConfig, ModelConfig
from streamrec.model.catalog import Catalog
from streamrec.model.events import Event, parse_event
from streamrec.model.model import UserState, excluded_ids, recommend_batch, transition_scores, update_user

# --- catalog and generator -----------------------------------------------------------------------


def test_synthetic_catalog_has_unit_vectors_and_stable_ids():
    cat = synthetic_catalog(500, 16, seed=3)
    assert len(cat) == 500 and cat.dim == 16
    assert np.allclose(np.linalg.norm(cat.vectors, axis=1), 1.0, atol=1e-5)
    assert cat.product_ids[0] == "p0000000" and cat.product_ids[-1] == "p0000499"
    again = synthetic_catalog(500, 16, seed=3)
    assert np.array_equal(cat.vectors, again.vectors)
    clustered = synthetic_catalog(500, 16, seed=3, clusters=5)
    assert np.allclose(np.linalg.norm(clustered.vectors, axis=1), 1.0, atol=1e-5)


def test_zipf_weights_sum_to_one_and_decrease():
    w = zipf_weights(100, 1.0)
    assert w.sum() == pytest.approx(1.0)
    assert np.all(np.diff(w) < 0)


def _events(n=20_000, users=300, seed=1):
    cat = synthetic_catalog(2_000, 8, seed=0)
    return cat, EventGenerator(cat.product_ids, users, seed=seed).batch(n)


def test_generator_is_deterministic_and_ids_are_unique_and_time_ordered():
    _, a = _events(5_000)
    _, b = _events(5_000)
    assert a == b
    assert len({e.event_id for e in a}) == len(a)
    assert all(x.ts < y.ts for x, y in zip(a, a[1:]))
    _, c = _events(5_000, seed=2)
    assert a != c


def test_event_mix_is_views_then_clicks_then_carts_then_purchases():
    _, events = _events()
    mix = mix_of(events)
    assert mix["view"] > mix["click"] > mix["add_to_cart"] > mix["purchase"]
    for etype, share in DEFAULT_MIX.items():
        assert mix.get(etype, 0.0) == pytest.approx(share, abs=0.02)


def test_products_and_users_are_zipf_popular():
    cat, events = _events()
    products = Counter(e.product_id for e in events if e.product_id)
    users = Counter(e.user_id for e in events)
    top_share = sum(c for _, c in products.most_common(len(cat) // 100)) / sum(products.values())
    assert top_share > 0.2  # the top 1% of products get a large share of the events
    assert users.most_common(1)[0][1] > 5 * (len(events) / 300)  # the most active user is far above average


def test_funnel_is_coherent_removals_only_of_carted_products():
    _, events = _events()
    cart: dict[str, Counter] = {}
    for e in events:
        c = cart.setdefault(e.user_id, Counter())
        if e.type == "add_to_cart":
            c[e.product_id] += 1
        elif e.type == "remove_from_cart":
            assert c[e.product_id] > 0, "removed something that was not in the cart"
            c[e.product_id] -= 1
        elif e.type == "purchase" and c[e.product_id] > 0:
            c[e.product_id] -= 1


def test_generated_events_are_valid_contract_events():
    cat, events = _events(2_000)
    known = frozenset(cat.product_ids)
    for e in events:
        parsed = parse_event(e.to_json(), known)
        assert isinstance(parsed, Event), parsed
        assert parsed == to_event(e)
    stamped = json.loads(events[0].to_json(ts=123))
    assert stamped["ts"] == 123
    assert ("query" in stamped) == (events[0].type == "search")


def test_final_recommendation_events_follow_the_model():
    cat = Catalog(product_ids=("a", "b"), vectors=np.eye(2, dtype=np.float32))
    params = model_params(Config())
    events = [
        GenEvent("e0", "u1", 1, "search", None, "zzz-no-such-word"),  # no vector yet: no row
        GenEvent("e1", "u2", 2, "view", "a"),
        GenEvent("e2", "u1", 3, "view", "b"),
        GenEvent("e3", "u2", 4, "search", None, "zzz-no-such-word"),  # the user has a vector: a row
        GenEvent("e4", "u3", 5, "search", None, "zzz-no-such-word"),  # never a vector: never a row
    ]
    assert final_recommendation_events(events, cat, params) == {"u1": "e2", "u2": "e3"}


# --- the baseline's model ------------------------------------------------------------------------


@pytest.mark.parametrize("transitions", [0, 20], ids=["cosine", "with-transitions"])
def test_baseline_rows_equal_the_shared_model_functions_one_by_one_and_batched(transitions):
    cat, events = _events(600, users=40)
    if transitions:  # as a built catalog has them: the baseline ranks with the job's transition term
        cat = dataclasses.replace(cat, transitions=synthetic_transitions(len(cat), transitions, seed=3))
    params = model_params(Config(model=ModelConfig(top_k=5)))
    assert params.transition_weight > 0
    parsed = [to_event(e) for e in events]

    naive = BaselineModel(cat, params)
    rows_naive = [row for e in parsed for row in naive.process([e])]
    batched = BaselineModel(cat, params)
    rows_batched = batched.process(parsed[:300]) + batched.process(parsed[300:])
    # Same rows; scores only up to float rounding: a (1 x d) and a (b x d) matrix product round differently.
    assert len(rows_naive) == len(rows_batched)
    for a, b in zip(rows_naive, rows_batched):
        assert (a.event_id, a.user_id, a.write_ts, a.product_ids, a.source) == \
            (b.event_id, b.user_id, b.write_ts, b.product_ids, b.source)
        assert a.scores == pytest.approx(b.scores, abs=1e-5)

    states: dict[str, UserState] = {}
    for e, row in zip(parsed, rows_naive):
        st = states.setdefault(e.user_id, UserState())
        update_user(st, e, cat, params)
        boost = transition_scores([st.history], cat, params)
        assert (boost is not None) == bool(transitions)
        (rec,) = recommend_batch([st.vector], [excluded_ids(st, params)], cat, params, boost=boost)
        assert (row.event_id, row.user_id, row.ts, row.type, row.product_id) == \
            (e.event_id, e.user_id, e.ts, e.type, e.product_id)
        assert row.product_ids == rec.product_ids and row.scores == rec.scores and row.source == rec.source
        assert len(row.product_ids) in (0, params.stored_k)
        assert not set(row.product_ids) & set(st.purchased)


def test_baseline_parse_rejects_bad_records_like_the_job():
    cat, _ = _events(10)
    model = BaselineModel(cat, model_params(Config()))
    assert not isinstance(model.parse(b"not json"), Event)
    bad = model.parse(b'{"event_id":"x","user_id":"u","ts":1,"type":"view","product_id":"nope"}')
    assert getattr(bad, "code", None) == "UNKNOWN_PRODUCT"


# --- CPU accounting ------------------------------------------------------------------------------


def test_parse_stat_handles_command_names_with_spaces_and_parens():
    fields = ["S", "42"] + ["0"] * 9 + ["250", "50"] + ["0"] * 30
    ppid, cpu = parse_stat("123 (weird ) name) " + " ".join(fields))
    assert ppid == 42
    assert cpu == pytest.approx(300 / os.sysconf("SC_CLK_TCK"))


def test_descendants_walks_the_tree():
    table = {1: (0, 0.0), 2: (1, 0.0), 3: (2, 0.0), 4: (1, 0.0), 5: (99, 0.0)}
    assert descendants(table, [2]) == {2, 3}
    assert descendants(table, [1]) == {1, 2, 3, 4}
    assert descendants(table, [7]) == set()


def test_interpolate_is_linear_and_clamped():
    assert interpolate([0.0, 10.0], [0.0, 5.0], 4.0) == pytest.approx(2.0)
    assert interpolate([0.0, 10.0], [0.0, 5.0], -1.0) == 0.0
    assert interpolate([0.0, 10.0], [0.0, 5.0], 11.0) == 5.0
    assert interpolate([], [], 1.0) == 0.0


def test_cpu_sampler_counts_this_process():
    sampler = CpuSampler([Group("me", lambda: [os.getpid()], tree=False)], interval=0.05).start()
    t0 = time.time()
    while time.time() - t0 < 0.3:
        sum(i * i for i in range(10_000))
    t1 = time.time()
    sampler.stop()
    assert 0.0 < sampler.cores("me", t0, t1) <= (os.cpu_count() or 1) + 0.5
    assert set(sampler.cores_by_pid("me", t0, t1)) == {os.getpid()}


# --- results, throughput and freshness bookkeeping ----------------------------------------------


def test_percentiles_and_jsonl_roundtrip(tmp_path: Path):
    assert results.percentiles([]) == {"p50": None, "p95": None, "p99": None}
    p = results.percentiles(list(range(1, 101)))
    assert p["p50"] == pytest.approx(50.5) and p["p99"] == pytest.approx(99.0, abs=0.1)
    path = tmp_path / "r.jsonl"
    results.append(path, {"name": "a", "x": 1})
    results.append(path, {"name": "b", "x": 2})
    assert [r["name"] for r in results.read(path)] == ["a", "b"]
    assert results.read(tmp_path / "missing.jsonl") == []


def test_steady_rate_uses_the_middle_of_the_timeline():
    timeline = [(float(t), 1000 * t) for t in range(11)]  # 1000 events/s
    assert steady_rate(timeline) == pytest.approx(1000.0)
    assert steady_rate(timeline[:2]) is None
    assert _event_seq("e123") == 123 and _event_seq("f7") == 7 and _event_seq("probe-x") == -1


def test_freshness_kept_up_needs_every_probe_and_no_growing_latency():
    flat = Freshness(100, 1000, 10, [100.0] * 40, 40, 0)
    assert flat.kept_up()
    growing = Freshness(100, 1000, 10, [100.0 * i for i in range(1, 41)], 40, 0)
    assert not growing.kept_up()
    missing = Freshness(100, 1000, 10, [100.0] * 39, 40, 1)
    assert not missing.kept_up()
    assert flat.achieved_rate == pytest.approx(100.0)


def test_the_live_maximum_is_the_rate_events_were_stored_while_produced():
    # 10,000 events/s produced from t=0 for 20 s; a probe every 0.2 s after 5 s
    sent = [5.0 + 0.2 * i for i in range(75)]
    after = [int(10_000 * t) for t in sent]
    # a system that keeps up: each probe readable 150 ms after it was sent
    keeps_up = Freshness(10_000, 200_000, 20.0, [150.0] * 75, 75, 0, 0.0, sent, after)
    assert live_rate(keeps_up) == pytest.approx(10_000, rel=1e-6)
    # one still working off an earlier backlog (latency falling) stores faster than produced for a
    # while: the maximum it shows is the produced rate, no more
    catching_up = Freshness(10_000, 200_000, 20.0, [3000.0 - 100 * t for t in sent], 75, 0, 0.0, sent, after)
    assert live_rate(catching_up) == pytest.approx(10_000, rel=1e-6)
    # a system that stores 8,000/s: the events before a probe sent at t are stored at t x 10/8
    behind = Freshness(10_000, 200_000, 20.0, [1000.0 * t * (10 / 8 - 1) for t in sent], 75, 0, 0.0, sent, after)
    assert live_rate(behind) == pytest.approx(8_000, rel=1e-6)
    # probes readable only after production ended do not count: the system then has the machine to itself
    assert live_rate(Freshness(10_000, 200_000, 20.0, [30_000.0] * 75, 75, 0, 0.0, sent, after)) is None


def test_find_rest_reads_the_minicluster_log(tmp_path: Path):
    assert find_rest(tmp_path) is None
    (tmp_path / "flink-root-python-host.log").write_text(
        "x\n2026-11-24 INFO  DispatcherRestEndpoint [] - Rest endpoint listening at localhost:37989\n")
    assert find_rest(tmp_path) == "127.0.0.1:37989"


# --- profiles ------------------------------------------------------------------------------------


def test_profile_summary_categorises_innermost_frames(tmp_path: Path):
    raw = tmp_path / "p.txt"
    raw.write_text(
        "thread (1): worker;process_bundle (b.py:1);process (operators.py:3);top_k_batch (model.py:9) 6\n"
        "thread (1): worker;process_bundle (b.py:1);write (cassandra.py:2);Event.wait (threading.py:5) 3\n"
        "thread (1): worker;process_bundle (b.py:1);idle (x.py:1) 1\n"
        "thread (2): other;Condition.wait (threading.py:1) 50\n"
    )
    stacks = read_raw(raw)
    assert sum(c for _, c in stacks) == 60
    name, mine = bundle_thread(stacks)
    assert name.startswith("thread (1)")
    cats = categorize(mine)
    assert cats["top-k (numpy)"] == pytest.approx(0.6)
    assert cats["wait: Cassandra writes"] == pytest.approx(0.3)
    top = top_functions(mine, 2, skip_waits=True)
    assert top[0][0] == "top_k_batch (model.py)" and top[0][1] == pytest.approx(6 / 7)
    assert "wait: Cassandra writes" in summarize(raw)


def test_query_latency_percentiles_are_the_usual_ones():
    from streamrec.bench.query import percentiles

    p = percentiles([float(x) for x in range(1, 101)])
    assert (p["p50"], p["p95"], p["p99"], p["max"], p["mean"]) == (50.5, 95.05, 99.01, 100.0, 50.5)


def test_a_probe_is_read_every_20_ms_while_young_then_less_often_overstating_by_at_most_5_percent():
    sent = 100.0
    assert next_poll(sent, sent + 0.1, 0.02, 0.05) == pytest.approx(sent + 0.12)  # young: every 20 ms
    # a probe that has waited 9 s is read again after 0.45 s, not 22 times in between
    assert next_poll(sent, sent + 9.0, 0.02, 0.05) == pytest.approx(sent + 9.45)
    # reading at each due time, the row that became readable just after a read is seen <= 5% late
    t, reads = sent, 0
    readable = sent + 7.3
    while t < readable:
        t = next_poll(sent, t, 0.02, 0.05)
        reads += 1
    assert (t - sent) <= 1.05 * (readable - sent) + 0.02
    assert reads < 7.3 / 0.02 / 4


# --- warming Cassandra up ------------------------------------------------------------------------


def _fake_thread(proc: Path, pid: int, tid: int, comm: str, utime: int, stime: int) -> None:
    d = proc / str(pid) / "task" / str(tid)
    d.mkdir(parents=True)
    # /proc/<pid>/task/<tid>/stat: pid (comm) state ppid ... utime is the 14th field, stime the 15th
    rest = ["S", "1"] + ["0"] * 9 + [str(utime), str(stime)] + ["0"] * 10
    (d / "stat").write_text(f"{tid} ({comm}) " + " ".join(rest))


def test_compiler_cpu_counts_only_the_jit_compiler_threads(tmp_path: Path):
    from streamrec.bench.procstat import CLK_TCK
    from streamrec.bench.warmup import compiler_cpu

    _fake_thread(tmp_path, 10, 11, "C2 CompilerThre", 300, 100)
    _fake_thread(tmp_path, 10, 12, "C1 CompilerThre", 50, 0)
    _fake_thread(tmp_path, 10, 13, "MutationStage-1", 9000, 9000)
    _fake_thread(tmp_path, 20, 21, "C2 CompilerThre", 10, 0)
    assert compiler_cpu([10], proc=tmp_path) == pytest.approx(450 / CLK_TCK)
    assert compiler_cpu([10, 20, 99], proc=tmp_path) == pytest.approx(460 / CLK_TCK)  # 99: gone, counts 0


def test_warm_up_ends_once_the_compiler_used_under_the_threshold_over_the_window():
    from streamrec.bench.warmup import QuietDetector

    d = QuietDetector(window=5.0, quiet_cores=0.05, min_seconds=10.0)
    cpu = 0.0
    for t in range(0, 10):  # a busy compiler: 0.8 cores
        d.add(float(t), cpu)
        cpu += 0.8
        assert not d.quiet()
    for t in range(10, 15):  # quiet from t=10 on, but the window still holds busy seconds
        d.add(float(t), cpu)
        assert not d.quiet()
    d.add(15.0, cpu + 0.01)
    assert d.rate() == pytest.approx(0.01 / 5.0)
    assert d.quiet()
    d.add(16.0, cpu + 0.5)  # busy again: not quiet
    assert not d.quiet()


def test_warm_up_is_never_quiet_before_its_minimum_time():
    from streamrec.bench.warmup import QuietDetector

    d = QuietDetector(window=2.0, quiet_cores=0.05, min_seconds=10.0)
    for t in range(0, 10):
        d.add(float(t), 1.0)  # nothing compiled at all
        assert not d.quiet()
    d.add(10.0, 1.0)
    assert d.quiet()


def test_warm_up_rows_have_the_shape_both_systems_write():
    from streamrec.bench.warmup import warm_up_rows

    cat = synthetic_catalog(300, 8, seed=1)
    rows = warm_up_rows(cat, Config(), n=200)
    assert len(rows) == 200
    assert all(r.user_id.startswith("w") and r.event_id.startswith("w") for r in rows)
    with_recs = [r for r in rows if r.product_ids]
    assert with_recs and all(len(r.product_ids) == len(r.scores) > 0 for r in with_recs)


# --- the load generator's producer ---------------------------------------------------------------


class FakeLibrdkafka:
    """Stands in for confluent_kafka.Producer: a full queue once, then a delivery error on demand."""

    def __init__(self, full_once: bool = False, fail: bool = False) -> None:
        self.full_once, self.fail = full_once, fail
        self.produced: list[tuple[str, bytes, bytes]] = []
        self.callbacks: list = []
        self.polls = 0

    def produce(self, topic, value, key, on_delivery):
        if self.full_once:
            self.full_once = False
            raise BufferError("Local: Queue full")
        self.produced.append((topic, key, value))
        self.callbacks.append(on_delivery)

    def poll(self, timeout):
        self.polls += 1
        for cb in self.callbacks:
            cb("Broker: topic not found" if self.fail else None, None)
        self.callbacks.clear()
        return 0

    def flush(self, timeout):
        self.poll(0)
        return 0


def _producer_with(fake: FakeLibrdkafka):
    from streamrec.bench.load import Producer

    p = Producer.__new__(Producer)
    p._kafka, p._errors, p._unpolled = fake, [], 0
    return p


def test_the_load_generator_retries_a_full_local_queue_and_sends_every_event_once():
    fake = FakeLibrdkafka(full_once=True)
    p = _producer_with(fake)
    for i in range(3):
        p.send("events", key=b"u%d" % i, value=b"{}")
    p.flush()
    assert [k for _, k, _ in fake.produced] == [b"u0", b"u1", b"u2"]


def test_the_load_generator_fails_loudly_when_an_event_was_not_delivered():
    p = _producer_with(FakeLibrdkafka(fail=True))
    p.send("events", key=b"u1", value=b"{}")
    with pytest.raises(RuntimeError, match="delivery errors: \\['Broker: topic not found'\\]"):
        p.flush()


# --- the paced warm-up before the freshness phases ------------------------------------------------


class FakeClock:
    """Time that passes only when the code under test sleeps: the paced warm-up's tests need no wall clock."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def _paced_warm_up(monkeypatch, compiler_busy_for: float, max_seconds: float):
    """warm_up_trickle against a fake producer (FakeLibrdkafka), a fake clock and a fake JIT that
    compiles at one core for ``compiler_busy_for`` seconds, then stops."""
    import streamrec.bench.freshness as freshness
    from streamrec.bench.warmup import QuietDetector

    fake, clock = FakeLibrdkafka(), FakeClock()
    producer = _producer_with(fake)
    monkeypatch.setattr(freshness, "Producer", lambda config, linger_ms: producer)
    started = clock.now
    monkeypatch.setattr(freshness, "compiler_cpu", lambda pids: min(clock.now - started, compiler_busy_for))
    gen = EventGenerator(["p1", "p2", "p3"], users=5, seed=3, id_prefix="t", user_prefix="w")
    warm = freshness.warm_up_trickle(Config(kafka=KafkaConfig(events_topic="warm-events")), gen, rate=200.0,
                                     pid_sources=[lambda: [1]],
                                     max_seconds=max_seconds, look_every=0.05, clock=clock.time, sleep=clock.sleep,
                                     detector=QuietDetector(window=0.3, quiet_cores=0.05, min_seconds=0.3))
    return warm, fake


def test_the_paced_warm_up_produces_at_its_rate_until_the_jit_compilers_are_quiet(monkeypatch):
    warm, fake = _paced_warm_up(monkeypatch, compiler_busy_for=0.6, max_seconds=10.0)
    assert warm.quiet
    assert 0.9 <= warm.seconds < 1.1  # busy for 0.6 s, then a quiet window of 0.3 s (looked at every 0.05 s)
    assert warm.events == len(fake.produced) == pytest.approx(200 * warm.seconds, abs=2)
    assert all(topic == "warm-events" for topic, _, _ in fake.produced)
    ids = [json.loads(v)["event_id"] for _, _, v in fake.produced]
    assert len(set(ids)) == len(ids) and all(i.startswith("t") for i in ids)
    assert warm.compiler_cpu_s == pytest.approx(0.6, abs=0.01)


def test_the_paced_warm_up_gives_up_after_its_time_limit_when_the_jit_never_settles(monkeypatch):
    warm, fake = _paced_warm_up(monkeypatch, compiler_busy_for=1e9, max_seconds=0.8)
    assert not warm.quiet
    assert 0.8 <= warm.seconds < 0.9
    assert warm.as_record()["quiet"] is False and len(fake.produced) == warm.events > 0


def test_a_system_without_a_jit_compiler_gets_no_extra_warm_up_rounds():
    from streamrec.bench.e2e import BenchOptions, warm_up_jit

    class PythonService:  # a stand-in named as such: this test process has no JIT compiler threads
        name = "baseline"

        def tree(self) -> list[int]:
            return [os.getpid()]

    def no_session(*_: object) -> None:
        raise AssertionError("a round ran")

    warm = warm_up_jit(no_session, PythonService(), Config(), None, BenchOptions(systems=("baseline",)),
                        # type: ignore[arg-type]
                       0, lambda: None)
    assert (warm.rounds, warm.events, warm.quiet) == (0, 0, True)


def test_the_pacer_sends_what_is_due_each_event_stamped_with_the_send_time():
    import json as _json
    import time as _time

    from streamrec.bench.load import Pacer

    fake = FakeLibrdkafka()
    gen = EventGenerator(["p1", "p2", "p3"], users=5, seed=3, id_prefix="f")
    twin = EventGenerator(["p1", "p2", "p3"], users=5, seed=3, id_prefix="f")  # the same events, to compare
    pacer = Pacer(_producer_with(fake), "events", gen, rate=1000.0)
    before = int(_time.time() * 1000)
    pacer.send_due(pacer.started + 2.5)  # 2,500 events are due: more than two refills of 1,024
    after = int(_time.time() * 1000)
    assert pacer.sent == len(fake.produced) == 2500
    expected = twin.batch(1024) + twin.batch(1024) + twin.batch(1024)
    for (topic, key, value), event in zip(fake.produced, expected):
        sent = _json.loads(value)
        assert topic == "events" and key == event.user_id.encode()
        assert before <= sent["ts"] <= after
        assert sent == _json.loads(event.to_json(ts=sent["ts"]))
    pacer.send_due(pacer.started + 3.0)  # what is due is the rate times the time given
    assert pacer.sent == 3000
    pacer.send_due(pacer.started + 3.0)  # nothing more is due at the same time
    assert pacer.sent == 3000


def test_counting_the_stored_events_survives_a_read_that_cassandra_fails_once():
    """A full-table COUNT on a Cassandra busy with the system's writes can fail server-side; the bench
    counts again instead of ending the run (fakes of the driver's session and of a system)."""
    from cassandra import ReadFailure

    from streamrec.bench.watch import stored_events

    class FailingOnceSession:
        calls = 0

        def execute(self, query: str, timeout: float) -> object:
            self.calls += 1
            if self.calls == 1:
                raise ReadFailure("Operation failed - received 0 responses and 1 failures")
            return type("Result", (), {"one": lambda _self: (500,)})()

    class AliveSystem:
        def alive(self) -> bool:
            return True

    session = FailingOnceSession()
    assert stored_events(session, 500, AliveSystem(), timeout=30) == 500  # type: ignore[arg-type]
    assert session.calls == 2
