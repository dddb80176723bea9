"""`streamrec bench serve`: what is kept from a vegeta report, and the table BENCHMARKS.md quotes."""

from __future__ import annotations

from streamrec.bench.serve import summarise, table, target_verdict

REPORT = {  # the shape of `vegeta report -type=json` (latencies in nanoseconds)
    "latencies": {"total": 9_000_000_000, "mean": 1_200_000, "50th": 1_000_000, "90th": 2_500_000,
                  "95th": 3_000_000, "99th": 7_250_000, "max": 30_000_000, "min": 400_000},
    "requests": 10_000, "rate": 1000.02, "throughput": 999.5, "success": 1.0, "status_codes": {"200": 10_000},
}


def test_summarise_keeps_milliseconds_and_requests_per_core() -> None:
    s = summarise(REPORT, seconds=10.0, cpu_seconds=5.0)
    assert (s["p50_ms"], s["p90_ms"], s["p99_ms"], s["max_ms"]) == (1.0, 2.5, 7.25, 30.0)
    assert (s["requests"], s["rps"], s["success"], s["status_codes"]) == (10_000, 999.5, 1.0, {"200": 10_000})
    assert s["service_cores"] == 0.5 and s["rps_per_core"] == 1999.0
    assert (s["cassandra_cores"], s["loadgen_cores"]) == (0.0, 0.0)  # not measured: none
    s = summarise(REPORT, seconds=10.0, cpu_seconds=5.0, cassandra_cpu_seconds=6.0, loadgen_cpu_seconds=2.0)
    assert (s["cassandra_cores"], s["loadgen_cores"]) == (0.6, 0.2)


def test_summarise_without_cpu_time_has_no_per_core_figure() -> None:
    assert summarise(REPORT, seconds=10.0, cpu_seconds=0.0)["rps_per_core"] is None


def test_the_table_shows_the_latest_run_phase_by_phase() -> None:
    phase = summarise(REPORT, seconds=10.0, cpu_seconds=5.0, cassandra_cpu_seconds=3.0, loadgen_cpu_seconds=1.0)
    old = {"name": "serve", "phases": []}
    run = {"name": "serve", "phases": [{"route": "recommendations", "mode": "rate", "target_rate": 1000, **phase},
                                        {"route": "similar", "mode": "closed", "concurrency": 8, **phase}]}
    lines = table([{"name": "streamrec"}, old, run])
    assert len(lines) == 4
    assert lines[2] == ("| recommendations | 1000/s | 1000 | 1.00 | 2.50 | 7.25 | 30.0 | 1.0000 | 0.50 | 1999 | "
                        "0.30 | 0.10 | 0.00 |")
    assert lines[3].startswith("| similar | closed loop x8 |")
    assert table([{"name": "streamrec"}]) == []


def test_others_is_the_machine_less_the_measured_processes() -> None:
    s = summarise(REPORT, seconds=10.0, cpu_seconds=5.0, cassandra_cpu_seconds=3.0, loadgen_cpu_seconds=1.0,
                  machine_cpu_seconds=15.0)
    assert s["others_cores"] == 0.6
    assert "others_cores" not in summarise(REPORT, seconds=10.0, cpu_seconds=5.0)


def test_the_verdict_names_the_target_phase_and_the_machine_load() -> None:
    phase = {"route": "recommendations", "mode": "rate", "target_rate": 1000,
             **summarise(REPORT, seconds=10.0, cpu_seconds=5.0, machine_cpu_seconds=9.0)}
    line = target_verdict({"phases": [phase], "load_average_start": 3.5})
    assert ": met (p99 7.25 ms" in line and "0.40 cores" in line and "load average 3.50" in line
    slow = {**phase, "p99_ms": 12.0}
    assert ": NOT met (p99 12.00 ms" in target_verdict({"phases": [slow]})
    assert "no phase at 1000/s" in target_verdict({"phases": []})
