"""Fault injection on the real local stack (reliability targets 2-7 of docs/ARCHITECTURE.md).

Every test ends in `streamrec verify`: the store must equal what the events topic implies when
every record is processed once, in order, by the job's own functions. Each test records its
figures (events produced / found / in the DLQ, restarts, recovery times), printed at the end of
the session.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from typing import Optional

import pytest

from streamrec import localstack
from streamrec.model.events import Event
from streamrec.runner import BackgroundJob, wait_for
from streamrec.verify import verify
from tests.e2e.helpers import MALFORMED, dead_letters, uci_slice

from .helpers import (
    Figures,
    FlinkRest,
    PacedProducer,
    committed_offsets_reached,
    count_events,
    flink_log_problems,
    flink_run,
    flink_stop_with_savepoint,
    free_port,
    kill9_service,
    kill_busy_taskmanager,
    recommendation_of,
    snapshot_diff,
    store_snapshot,
    streamrec_job_upgrade,
    taskmanager_fatal_errors,
    user_sequences,
    verify_cli,
    wait_progress,
)

pytestmark = pytest.mark.faults

VERIFY_WAIT = 420  # seconds a final verify may wait for the job to catch up on a loaded machine
DAY = 86_400_000
YEAR_2999 = 32_472_144_000_000  # 2999-01-01


def varied(events: list[Event]) -> list[Event]:
    """Real purchases, some turned into the other event types (same users, products, order)."""
    out = []
    for i, e in enumerate(events):
        if i % 7 == 3:
            out.append(Event(f"{e.event_id}-s", e.user_id, e.ts, "search", None, "white heart"))
        kind = ("view", "click", "add_to_cart", "purchase", "purchase", "remove_from_cart")[i % 6]
        out.append(Event(e.event_id, e.user_id, e.ts, kind, e.product_id))
    return out


def lines_of(events: list[Event]) -> list[str]:
    return [e.to_json() for e in events]


def assert_consistent(report: dict) -> None:
    assert report["ok"], (report["examples"], report.get("stderr_tail", ""))
    assert report["events"]["missing"] == report["events"]["extra"] == report["events"]["doubled"] == 0
    assert report["recommendations"]["stale"] == report["recommendations"]["different"] == 0


def test_poison_pills_never_restart_the_job_and_replays_change_nothing(cluster, e2e_config, uci_history):
    """Targets 4 and 2 (and 1): the seven bad-input classes, a null record and events from the
    future (FUTURE_TS: a day ahead and in the year 2999, for real products and users) go to the DLQ
    with their codes while the job keeps running with zero restarts; then the whole topic is replayed
    twice from scratch (new consumer groups, at parallelism 1 and 2) and no stored cell changes,
    not even its write timestamp, and the store is consistent at every moment of the replay."""
    profile, rest = cluster
    started = time.monotonic()
    config = e2e_config
    figures = Figures("poison pills (7 classes + null record)")
    events = varied(uci_slice(uci_history, users=16, per_user=25))
    lines = lines_of(events)
    lines[len(lines) // 2:len(lines) // 2] = [raw for _, raw in MALFORMED]
    # valid but for their ts, beyond STREAMREC_MAX_TS_LEAD_MS (5 min) of any clock during the test and
    # its replays: written by hand (json.dumps), so the checks below do not share the parser
    now = int(time.time() * 1000)
    shoppers = [e for e in events if e.product_id is not None][:4]
    future = [json.dumps({"event_id": f"future-{i}", "user_id": e.user_id, "ts": ts, "type": "purchase",
                          "product_id": e.product_id})
              for i, (e, ts) in enumerate(zip(shoppers, (now + DAY, now + DAY + 1, YEAR_2999, YEAR_2999 + 1)))]
    lines[len(lines) // 3:len(lines) // 3] = future[:2]
    lines[2 * len(lines) // 3:2 * len(lines) // 3] = future[2:]

    jid = flink_run(profile, config, parallelism=2)
    wait_for(lambda: rest.all_running(jid), timeout=240, what="the job to run")
    producer = PacedProducer(config, lines, per_second=1e9, chunk=200)
    producer.start()
    producer.finish()
    _send_null_record(config)

    report = verify_cli(config, wait=VERIFY_WAIT)
    assert_consistent(report)
    codes = Counter({code: 1 for code, _ in MALFORMED}) + Counter({"NOT_JSON": 1, "FUTURE_TS": len(future)})
    assert report["dead_letters"]["found"] == dict(codes), report["dead_letters"]
    assert report["dead_letters"]["missing"] == report["dead_letters"]["unexpected"] == 0
    assert rest.restarts(jid) == 0 and rest.exceptions(jid) == [], rest.exceptions(jid)
    # without the parser: the future records are FUTURE_TS letters byte for byte, and none is stored
    letters = dead_letters(config)
    assert Counter(d["payload"] for d in letters if d["error"] == "FUTURE_TS") == Counter(future)
    assert not {f"future-{i}" for i in range(len(future))} & {row[2] for row in store_snapshot(config)["events"]}
    assert rest.state(jid) == "RUNNING"
    figures.restarts = rest.restarts(jid)
    figures.seconds = time.monotonic() - started
    figures.record(report)

    # --- replay safety: the whole topic again, from scratch, twice
    replay = Figures("replay whole topic twice (p=1, p=2)")
    before = store_snapshot(config)
    assert len(before["events"]) == len(events) and before["recommendations"]
    rest.cancel_all()
    checks = last_bits = 0
    for parallelism in (1, 2):
        group = f"replay-{uuid.uuid4().hex[:6]}"
        replay_config = config.replace(kafka={"consumer_group": group})
        t0 = time.monotonic()
        rjid = flink_run(profile, replay_config, parallelism=parallelism)
        while not committed_offsets_reached(replay_config, group):
            # while the replay rewrites older states, the store never goes back: still consistent
            mid = verify(config, dead_letters=False)
            assert mid.ok, mid.examples
            checks += 1
            assert rest.state(rjid) in ("CREATED", "INITIALIZING", "RUNNING"), rest.exceptions(rjid)
            assert time.monotonic() - t0 < 400, "the replay did not finish"
            time.sleep(1)  # pacing the checks (they share two cores with the job)
        # the replay re-sends every dead letter; the UNKNOWN_PRODUCT one only once its wait for the
        # product is over (STREAMREC_UNKNOWN_PRODUCT_WAIT_MS), which may be after the offsets are committed
        total = sum(codes.values()) * (parallelism + 1)
        wait_for(lambda total=total: len(dead_letters(config)) >= total,
                 timeout=config.limits.unknown_product_wait_ms / 1000
                 + 120, interval=2, what=f"{total} dead letters after replay {parallelism}")
        after = store_snapshot(config)
        changed = snapshot_diff(before, after)
        assert not changed, "\n".join(changed)
        last_bits += sum(1 for x, y in zip(before["recommendations"], after["recommendations"]) if x != y)
        before = after
        assert rest.restarts(rjid) == 0
        rest.cancel_all()
    report = verify_cli(config, wait=60)
    assert_consistent(report)
    assert report["dead_letters"]["duplicates"] == 2 * sum(codes.values())  # re-sent by both replays: allowed
    replay.notes = (f"{checks} consistency checks during the replays; every cell and writetime() unchanged, "
                    f"except {last_bits} recommendation rows whose scores changed in the last bits")
    replay.seconds = time.monotonic() - started - figures.seconds
    replay.record(report)


def _send_null_record(config) -> None:
    """A tombstone (null value) on the events topic: not an event, must be a dead letter."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=config.kafka.bootstrap, acks="all")
    producer.send(config.kafka.events_topic, key=b"null-user", value=None).get(timeout=60)
    producer.close()


def test_taskmanager_killed_three_times_while_events_flow(cluster, e2e_config, uci_history):
    """Target 5: kill -9 a TaskManager running the job (with its Python workers) three times while
    events flow, bring it back each time; every valid event is stored exactly once and the
    recommendations equal a replay from scratch."""
    profile, rest = cluster
    started = time.monotonic()
    config = e2e_config
    figures = Figures("TaskManager kill -9 x3 (p=2, 2 TMs)")
    lines = lines_of(varied(uci_slice(uci_history, users=30, per_user=60)))
    fatal_before = set(taskmanager_fatal_errors(profile))
    jid = flink_run(profile, config, parallelism=2)
    wait_for(lambda: rest.all_running(jid), timeout=240, what="the job to run")
    producer = PacedProducer(config, lines, per_second=10)
    producer.start()

    def diagnose() -> str:
        return rest.describe(jid) + "\n" + flink_log_problems(profile)

    try:
        seen = 0
        for round_ in range(3):
            seen = wait_progress(config, seen, timeout=300, what=f"progress before kill {round_ + 1}")
            restarts = rest.restarts(jid)
            t0 = time.monotonic()
            killed = kill_busy_taskmanager(profile, rest)
            assert producer.is_alive(), "events stopped flowing before this kill: produce more slowly"
            wait_for(lambda r=restarts: rest.restarts(jid) > r and rest.all_running(jid), timeout=300,
                     what=f"the job to recover from kill {round_ + 1}", interval=0.5, on_timeout=diagnose)
            recovered = time.monotonic() - t0
            seen = wait_progress(config, count_events(config), timeout=300, what=f"progress after kill {round_ + 1}")
            figures.recovery_s.append(recovered)
            localstack.start_flink(profile, taskmanagers=2, timeout=180)  # the TaskManager comes back
            # start_flink counts registered TaskManagers, and the killed one may still be registered
            # until its heartbeat times out: the next kill must find a live spare to fail over to
            wait_for(lambda k=killed: (lambda ids: len(ids) >= 2 and k not in ids)(
                         [t["id"] for t in rest.taskmanagers()]),
                     timeout=180, what=f"a new TaskManager to replace the one killed in round {round_ + 1}",
                     on_timeout=diagnose)
    finally:
        producer.finish()
    report = verify_cli(config, wait=VERIFY_WAIT)
    assert_consistent(report)
    figures.restarts = rest.restarts(jid)
    assert figures.restarts >= 3
    # the survivor's tasks are cancelled and restarted each time; the survivor itself stays up
    assert set(taskmanager_fatal_errors(profile)) - fatal_before == set()
    figures.notes = "recovery = kill -> job RUNNING again with every subtask RUNNING"
    figures.seconds = time.monotonic() - started
    figures.record(report)


def test_cassandra_down_for_a_minute_the_job_recovers_by_itself(cluster, e2e_config, uci_history, services):
    """Target 6: Cassandra stopped for a minute mid-stream, then started: the job fails, keeps
    restarting with back-off (never gives up), and once Cassandra is back it catches up by
    itself; nothing is lost."""
    profile, rest = cluster
    started = time.monotonic()
    config = e2e_config
    figures = Figures("Cassandra down ~60 s mid-stream")
    lines = lines_of(varied(uci_slice(uci_history, users=30, per_user=50)))
    fatal_before = set(taskmanager_fatal_errors(profile))
    jid = flink_run(profile, config, parallelism=2)
    wait_for(lambda: rest.all_running(jid), timeout=240, what="the job to run")
    producer = PacedProducer(config, lines, per_second=6)
    producer.start()
    try:
        seen = wait_progress(config, 0, timeout=300, what="progress before the outage")
        restarts = rest.restarts(jid)
        t_down = time.monotonic()
        localstack.stop_cassandra(profile)
        # the outage itself lasts a minute (this wait is the fault, not a check)
        wait_for(lambda: rest.restarts(jid) > restarts, timeout=120, what="the job to notice the outage")
        time.sleep(max(0.0, 60 - (time.monotonic() - t_down)))
        during = rest.restarts(jid) - restarts
        assert rest.state(jid) in ("RUNNING", "RESTARTING", "INITIALIZING", "CREATED"), rest.state(jid)
        assert producer.is_alive(), "events stopped flowing during the outage: produce more slowly"
        localstack.start_cassandra(profile, timeout=300)
        t_up = time.monotonic()
        down_s = t_up - t_down
        wait_for(lambda: count_events(config) > seen, timeout=300, what="progress after the outage", interval=1)
        figures.recovery_s.append(time.monotonic() - t_up)
    finally:
        producer.finish()
    conclude_outage(config, figures, rest, jid, profile, fatal_before, started,
                    f"Cassandra down {down_s:.0f} s (stop -> CQL answers again), {during} restarts during the "
                    "outage; recovery = CQL answers -> new rows stored")


def test_kafka_broker_stopped_and_restarted_mid_stream(cluster, e2e_config, uci_history, services):
    """Issue 16 part 3: the (only) Kafka broker is stopped mid-stream and started again ~30 s later,
    while the job runs and the shop's producer holds its events back (a single broker cannot take
    them): the job rides it out or restarts by itself, and once the broker is back every event sent
    before and after is stored exactly once, in order."""
    profile, rest = cluster
    started = time.monotonic()
    config = e2e_config
    figures = Figures("Kafka broker stopped ~30 s mid-stream")
    events = varied(uci_slice(uci_history, users=30, per_user=40))
    fatal_before = set(taskmanager_fatal_errors(profile))
    jid = flink_run(profile, config, parallelism=2)
    wait_for(lambda: rest.all_running(jid), timeout=240, what="the job to run")
    producer = PacedProducer(config, lines_of(events), per_second=8)
    producer.start()
    try:
        wait_progress(config, 0, timeout=300, what="progress before the broker stops")
        restarts = rest.restarts(jid)
        producer.pause()
        sent_before = producer.sent
        t_down = time.monotonic()
        localstack.stop_kafka(profile)
        time.sleep(max(0.0, 30 - (time.monotonic() - t_down)))  # the outage itself (the fault, not a check)
        during = rest.restarts(jid) - restarts
        assert rest.state(jid) in ("RUNNING", "RESTARTING", "INITIALIZING", "CREATED"), rest.state(jid)
        localstack.start_kafka(profile, timeout=180)
        t_up = time.monotonic()
        down_s = t_up - t_down
        producer.resume()
        wait_for(lambda: producer.sent > sent_before, timeout=120, what="the producer to send again")
        seen = count_events(config)
        wait_for(lambda: count_events(config) > seen, timeout=300, what="progress after the broker is back",
                 interval=1, on_timeout=lambda: rest.describe(jid) + "\n" + flink_log_problems(profile))
        figures.recovery_s.append(time.monotonic() - t_up)
    finally:
        producer.finish()
    conclude_outage(config, figures, rest, jid, profile, fatal_before, started,
                    f"broker down {down_s:.0f} s (stop -> answers again), {during} restarts during the outage, "
                    f"{sent_before} events sent before it; recovery = broker answers -> new rows stored", events)


def test_cassandra_killed_with_kill_9_mid_stream(cluster, e2e_config, uci_history, services):
    """Issue 16 part 3: Cassandra's JVM killed with kill -9 mid-stream (no drain, no flush: what a
    crash does to acknowledged writes still in the commit log's buffer), started again ~20 s later:
    the job restarts until it can write, then catches up; nothing lost, nothing doubled."""
    profile, rest = cluster
    started = time.monotonic()
    config = e2e_config
    figures = Figures("Cassandra kill -9 mid-stream")
    events = varied(uci_slice(uci_history, users=30, per_user=40))
    fatal_before = set(taskmanager_fatal_errors(profile))
    jid = flink_run(profile, config, parallelism=2)
    wait_for(lambda: rest.all_running(jid), timeout=240, what="the job to run")
    producer = PacedProducer(config, lines_of(events), per_second=8)
    producer.start()
    try:
        seen = wait_progress(config, 0, timeout=300, what="progress before the kill")
        restarts = rest.restarts(jid)
        t_down = time.monotonic()
        kill9_service(profile, "cassandra")
        wait_for(lambda: rest.restarts(jid) > restarts, timeout=120, what="the job to notice the crash")
        time.sleep(max(0.0, 20 - (time.monotonic() - t_down)))  # the outage itself (the fault, not a check)
        during = rest.restarts(jid) - restarts
        assert producer.is_alive(), "events stopped flowing during the outage: produce more slowly"
        localstack.start_cassandra(profile, timeout=300)
        t_up = time.monotonic()
        down_s = t_up - t_down
        wait_for(lambda: count_events(config) > seen, timeout=300, what="progress after the restart", interval=1,
                 on_timeout=lambda: rest.describe(jid) + "\n" + flink_log_problems(profile))
        figures.recovery_s.append(time.monotonic() - t_up)
    finally:
        producer.finish()
    conclude_outage(config, figures, rest, jid, profile, fatal_before, started,
                    f"Cassandra down {down_s:.0f} s (kill -9 -> CQL answers again, commit log replayed), "
                    f"{during} restarts during the outage; recovery = CQL answers -> new rows stored", events)


def test_savepoint_stop_and_resume_at_another_parallelism(cluster, e2e_config, uci_history, tmp_path):
    """Target 7: `flink stop --savepointPath`, more events while the job is down, resume from the
    savepoint at parallelism 2 (it ran at 1) without --allowNonRestoredState: the result equals
    an uninterrupted run."""
    profile, rest = cluster
    started = time.monotonic()
    config = e2e_config
    figures = Figures("savepoint stop, resume p=1 -> p=2")
    lines = lines_of(varied(uci_slice(uci_history, users=16, per_user=30)))
    half = len(lines) // 2
    jid = flink_run(profile, config, parallelism=1)
    wait_for(lambda: rest.all_running(jid), timeout=240, what="the job to run")
    assert {v["parallelism"] for v in rest.get(f"/jobs/{jid}")["vertices"]} == {1}
    first = PacedProducer(config, lines[:half], per_second=1e9, chunk=200)
    first.start()
    first.finish()
    wait_for(lambda: verify(config).ok, timeout=VERIFY_WAIT, what="the first half in Cassandra", interval=3)
    savepoint = flink_stop_with_savepoint(profile, jid, tmp_path / "savepoints")
    assert rest.state(jid) == "FINISHED"
    second = PacedProducer(config, lines[half:], per_second=1e9, chunk=200)
    second.start()
    second.finish()
    t0 = time.monotonic()
    jid2 = flink_run(profile, config, parallelism=2, savepoint=savepoint)
    wait_for(lambda: rest.all_running(jid2), timeout=240, what="the resumed job to run")
    figures.recovery_s.append(time.monotonic() - t0)
    assert {v["parallelism"] for v in rest.get(f"/jobs/{jid2}")["vertices"]} == {2}
    report = verify_cli(config, wait=VERIFY_WAIT)
    assert_consistent(report)
    figures.restarts = rest.restarts(jid2)
    assert figures.restarts == 0
    figures.notes = "recovery = flink run -s -> every subtask RUNNING"
    figures.seconds = time.monotonic() - started
    figures.record(report)


PROBE_USER = "upgrade-probe"


def test_upgrade_while_events_flow(cluster, e2e_config, uci_history, tmp_path):
    """Issue 22 part 4: `streamrec job upgrade` (stop with a savepoint, submit this checkout from it)
    while events flow: nothing lost, nothing doubled (verify), no state forgotten - a user who bought
    a product before the upgrade and views it after still never gets it recommended."""
    profile, rest = cluster
    started = time.monotonic()
    config = e2e_config
    figures = Figures("job upgrade while events flow (p=1)")
    events = varied(uci_slice(uci_history, users=12, per_user=30))
    bought = next(e for e in events if e.product_id)
    purchase = Event("probe-purchase", PROBE_USER, bought.ts, "purchase", bought.product_id)
    view = Event("probe-view", PROBE_USER, bought.ts + 60_000, "view", bought.product_id)
    lines = lines_of([purchase, *events])
    jid = flink_run(profile, config, parallelism=1)
    wait_for(lambda: rest.all_running(jid), timeout=240, what="the job to run")
    producer = PacedProducer(config, lines, per_second=5)
    producer.start()
    try:
        wait_for(lambda: recommendation_of(config, PROBE_USER), timeout=300, what="the probe's purchase stored",
                 interval=1)
        wait_progress(config, 20, timeout=300, what="progress before the upgrade")
        sent_before, t0 = producer.sent, time.monotonic()
        jid2, savepoint = streamrec_job_upgrade(profile, config, tmp_path / "savepoints")
        figures.recovery_s.append(time.monotonic() - t0)
        sent_during = producer.sent - sent_before
        assert jid2 != jid and rest.state(jid) == "FINISHED", (jid, jid2, rest.state(jid))
        assert sent_during > 0, "no events flowed during the upgrade: produce more slowly"
        wait_progress(config, count_events(config), timeout=300, what="progress after the upgrade")
    finally:
        producer.finish()
    after = PacedProducer(config, lines_of([view]), per_second=1e9)
    after.start()
    after.finish()
    report = verify_cli(config, wait=VERIFY_WAIT)
    assert_consistent(report)
    # the purchase is in the state the upgrade carried over: the view (of that very product, which
    # pulls the user's vector towards it) must not bring it back
    probe = wait_for(lambda: (lambda r: r if r and r[0] == view.event_id else None)(
        recommendation_of(config, PROBE_USER)), timeout=120, what="the probe's view stored")
    assert probe[1] and bought.product_id not in probe[1], probe
    figures.restarts = rest.restarts(jid2)
    assert figures.restarts == 0, rest.exceptions(jid2)
    figures.notes = (f"upgrade = `streamrec job upgrade` (savepoint + flink run -s -> RUNNING); {sent_during} "
                     f"events sent during it; savepoint {savepoint.rsplit('/', 1)[-1]}")
    figures.seconds = time.monotonic() - started
    figures.record(report)


FAILURES = 5  # injected failures in a row (the first inside checkpoint completion)


def test_operator_fails_five_times_once_inside_checkpoint_completion_in_the_minicluster(
        e2e_config, uci_history, tmp_path, monkeypatch):
    """Target 3, repeated: the job on a local minicluster (`streamrec job run`, p=2) fails five times
    in a row while events flow, each time after progress (a checkpoint newer than the one it restarted
    from): first inside checkpoint completion (user-state's notifyCheckpointComplete), then four times
    at a record in rank. It restarts by itself each time; the store equals the deterministic result
    and every user's events are there exactly once, in order. While it fails, the test reads only the
    exception history and the checkpoints over REST (FlinkRest.failures says why)."""
    started = time.monotonic()
    figures = Figures(f"fail x{FAILURES}, 1st in notifyCheckpointComplete")
    port = free_port()
    config = e2e_config.replace(job={"parallelism": 2, "checkpoint_dir": (tmp_path / "checkpoints").as_uri(),
                                     "minicluster_rest_port": port}, faults={"fail_once_after": 30,
                                                                             "fail_times": FAILURES,
                                                                             "fail_in_checkpoint_complete": True})
    monkeypatch.setenv("FLINK_LOG_DIR", str(tmp_path / "flink-log"))
    events = varied(uci_slice(uci_history, users=16, per_user=90))
    rest = FlinkRest(f"127.0.0.1:{port}")
    with BackgroundJob(config, tmp_path / "job.log") as job:
        jid = wait_for(lambda: (rest.running_jobs() or [None])[0], timeout=240, what="the local job to run",
                       on_timeout=job.log_tail)
        # events keep flowing (up to ~2.5 min) until the last failure
        producer = PacedProducer(config, lines_of(events), per_second=10)
        producer.start()
        try:
            for n in range(1, FAILURES + 1):
                wait_for(lambda n=n: rest.failures(jid) >= n or not producer.is_alive(), timeout=300,
                         what=f"injected failure {n}", on_timeout=job.log_tail)
                assert rest.failures(jid) >= n, f"all events were sent and the job failed {n - 1} times only"
                t0, before = time.monotonic(), rest.latest_checkpoint(jid)
                wait_for(lambda b=before: rest.latest_checkpoint(jid) > b, timeout=300, interval=0.5,
                         what=f"a checkpoint after failure {n} (recovered)", on_timeout=job.log_tail)
                figures.recovery_s.append(time.monotonic() - t0)
        finally:
            producer.finish()
        report = verify_cli(config, wait=VERIFY_WAIT)
        figures.restarts = rest.failures(jid)
        failures = [e.get("exceptionName", "") + ": " + str(e.get("stacktrace", "")) for e in rest.exceptions(jid)]
        assert job.alive(), job.log_tail()
    assert_consistent(report)
    assert_sequences(config, events, figures)
    assert figures.restarts == FAILURES, [f[:2000] for f in failures]
    assert sum("injected failure in notifyCheckpointComplete" in f for f in failures) == 1, failures
    for n in range(2, FAILURES + 1):
        assert any(f"injected failure {n} of {FAILURES} (fault_fail_once_after=30)" in f for f in failures), n
    figures.notes += ("; recovery = failure in the exception history -> the next completed checkpoint (back-off "
                      "1, 2, 4, 8 s before the restarts). Polls no job details or metrics while it fails: see "
                      "FlinkRest.failures")
    figures.seconds = time.monotonic() - started
    figures.record(report)


def conclude_outage(config, figures: Figures, rest, jid: str, profile, fatal_before: set, started: float,
                    notes: str, events: Optional[list[Event]] = None) -> None:
    """The end of an outage test: verify finds the store consistent (and, given ``events``, every
    user's partition holds each of theirs once, in order), the job runs, and the outage, which fails
    the writing tasks, shut no TaskManager down; the figures are recorded."""
    report = verify_cli(config, wait=VERIFY_WAIT)
    assert_consistent(report)
    if events is not None:
        assert_sequences(config, events, figures)
    assert rest.state(jid) == "RUNNING"
    assert set(taskmanager_fatal_errors(profile)) - fatal_before == set()
    figures.restarts = rest.restarts(jid)
    figures.notes = f"{figures.notes}; {notes}" if figures.notes else notes
    figures.seconds = time.monotonic() - started
    figures.record(report)


def assert_sequences(config, events: list[Event], figures: Figures) -> None:
    """The independent per-user check (helpers.user_sequences): every produced event exactly once in
    its user's partition, in the contract's order; its counts go into the test's figures."""
    seq = user_sequences(config, [(e.user_id, e.event_id, e.ts) for e in events])
    assert seq.ok, seq.summary()
    figures.notes = (f"sequence check: {seq.users} users, {seq.found}/{seq.expected} events, 0 gaps, "
                     "0 duplicates, in order")
