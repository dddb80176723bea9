"""``streamrec bench``: the end-to-end benchmark (default), ``topk`` micro-benchmarks, ``plot``."""

from __future__ import annotations

import logging
import sys
from typing import Any, Optional

import click

from streamrec.config import JobConfig, ModelConfig

# the job's and the model's defaults, where an option's default is a config setting's
_JOB, _MODEL = JobConfig(), ModelConfig()

_E2E_OPTIONS = [
    click.option("--systems", default="streamrec,baseline", show_default=True,
                 help="Comma-separated: streamrec, baseline (naive, per event), baseline-batched."),
    click.option("--catalog", type=click.Choice(["synthetic", "uci"]), default="synthetic", show_default=True,
                 help="synthetic: random 64-d unit vectors; uci: embeddings learned from UCI Online Retail."),
    click.option("--catalog-size", type=click.IntRange(10), default=10_000, show_default=True,
                 help="Products of the synthetic catalog."),
    click.option("--transitions", type=click.IntRange(0), default=100, show_default=True,
                 help="Item-to-item successors per product of the synthetic catalog, as `catalog build` keeps "
                      "them; both systems rank with their term (0: the cosine alone)."),
    click.option("--dim", type=click.IntRange(2, 1024), default=64, show_default=True),
    click.option("--events", type=click.IntRange(100), default=60_000, show_default=True,
                 help="Events of the measured throughput phase (produced at once, after the warm-up)."),
    click.option("--users", type=click.IntRange(1), default=3_000, show_default=True),
    click.option("--seed", type=int, default=0, show_default=True),
    click.option("--partitions", type=click.IntRange(1), default=2, show_default=True),
    click.option("--parallelism", type=click.IntRange(1, 64), default=1, show_default=True,
                 help="Parallelism of the streamrec job."),
    click.option("--checkpoint-interval-ms", type=click.IntRange(0), default=_JOB.checkpoint_interval_ms,
                 show_default=True),
    click.option("--fresh-rate", type=float, default=0.0,
                 help="Events/s of the freshness phase (default: --fresh-fraction x the maximum rate)."),
    click.option("--fresh-fraction", type=float, default=0.8, show_default=True,
                 help="The freshness phase's rate as a fraction of the maximum rate measured with live load."),
    click.option("--live-max-seconds", type=click.FloatRange(0), default=20.0, show_default=True,
                 help="Before the freshness phase: produce live at --live-max-factor x the backlog rate this "
                      "long; the rate the system stores meanwhile is the maximum (0: the backlog rate is)."),
    click.option("--live-max-factor", type=click.FloatRange(0.1), default=1.1, show_default=True),
    click.option("--fresh-seconds", type=float, default=15.0, show_default=True),
    click.option("--fresh-low-rate", type=float, default=100.0, show_default=True,
                 help="A second freshness phase at this fixed, modest rate (0: skip)."),
    click.option("--probe-rate", type=float, default=5.0, show_default=True, help="Probe events per second."),
    click.option("--blas-threads", type=click.IntRange(0), default=_JOB.blas_threads, show_default=True,
                 help="OPENBLAS/OMP/MKL_NUM_THREADS for both systems (0: leave unset)."),
    click.option("--python-worker-mode", type=click.Choice(["loopback", "process"]), default=None,
                 help="Where the minicluster runs the job's Python operators: loopback (PyFlink's default "
                      "for a local job: inside the client process) or process (own worker, as on a cluster)."),
    click.option("--warmup-seconds", type=click.FloatRange(0), default=180.0, show_default=True,
                 help="Before the first system: write and read rows in Cassandra until its JIT compiler is "
                      "quiet, at most this long (0: no warm-up)."),
    click.option("--warmup-events", type=click.IntRange(0), default=40_000, show_default=True,
                 help="Events of other users each system works through before its throughput phase is "
                      "measured (the JVM's JIT warm-up; the same for every system; 0: none)."),
    click.option("--jit-warmup-seconds", type=click.FloatRange(0), default=150.0, show_default=True,
                 help="After the warm-up events: more rounds of as many (new users each) until the "
                      "system's JIT compiler is quiet, at most this long (0: none)."),
    click.option("--fresh-lead-in", type=click.FloatRange(0), default=5.0, show_default=True,
                 help="Seconds each freshness phase produces at its rate before the first probe."),
    click.option("--trickle-warmup-seconds", type=click.FloatRange(0), default=90.0, show_default=True,
                 help="Before the freshness phases: produce at half their rate until the JIT compilers of "
                      "the system and of Kafka are quiet, at most this long (0: no paced warm-up)."),
    click.option("--profile", "profile", is_flag=True,
                 help="py-spy record the Python workers during the throughput phase (bench/profiles/)."),
    click.option("--profile-seconds", type=float, default=20.0, show_default=True),
    click.option("--uci", "uci_path", type=click.Path(dir_okay=False), default=None,
                 help="UCI Online Retail CSV (for --catalog uci)."),
    click.option("--results", "results_path", type=click.Path(dir_okay=False), default="",
                 help="JSON lines file to append to (default bench/results.jsonl)."),
    click.option("--keep-services", is_flag=True, help="Leave Kafka and Cassandra (bench profile) running."),
    click.option("--keep-data", is_flag=True, help="Keep the bench keyspaces and topics."),
    click.option("--note", default="default", show_default=True,
                 help="Free text stored with the results; runs with the same note and sizes are one group."),
    click.option("--plot/--no-plot", default=True, show_default=True, help="Redraw bench/*.png afterwards."),
    click.option("-v", "--verbose", is_flag=True),
]


def _e2e_options(fn: Any) -> Any:
    for opt in reversed(_E2E_OPTIONS):
        fn = opt(fn)
    return fn


def _logging(verbose: bool) -> None:
    logging.basicConfig(stream=sys.stderr, level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # -v is for the harness's own details; the clients' debug output (a line per request) would cost
    # the harness a good part of a core while it measures
    for name in ("kafka", "cassandra"):
        logging.getLogger(name).setLevel(logging.ERROR if not verbose else logging.WARNING)


def _run_e2e(systems: str, uci_path: Optional[str], plot: bool, verbose: bool, **kw: Any) -> None:
    from streamrec.bench.e2e import BenchOptions, run

    _logging(verbose)
    kw["python_worker_mode"] = kw.get("python_worker_mode") or ""
    opts = BenchOptions(systems=tuple(s.strip() for s in systems.split(",") if s.strip()), **kw)
    if uci_path:
        opts.uci_path = uci_path
    records = run(opts)
    for r in records:
        click.echo(
            f"{r['name']:>17}: {r['events_per_s']:8.0f} events/s on {r['cores_used']:.2f} cores = "
            f"{r['events_per_s_per_core']:8.0f} events/s per core; freshness p50/p95/p99 "
            f"{r['freshness_ms']['p50']}/{r['freshness_ms']['p95']}/{r['freshness_ms']['p99']} ms; "
            f"kept up: {r['kept_up']}"
        )
    by = {r["name"]: r for r in records}
    if "streamrec" in by:
        for base in ("baseline", "baseline-batched"):
            if base in by:
                ratio = by["streamrec"]["events_per_s_per_core"] / max(by[base]["events_per_s_per_core"], 1e-9)
                click.echo(f"streamrec / {base} per core: {ratio:.2f}x")
    if plot:
        _plot()


def _plot() -> None:
    try:
        from streamrec.bench.plot import plot_all
    except ImportError as exc:  # matplotlib is in the bench extra
        click.echo(f"no plot ({exc}); pip install -e '.[bench]'", err=True)
        return
    for path in plot_all():
        click.echo(f"wrote {path}", err=True)


@click.group(invoke_without_command=True)
@_e2e_options
@click.pass_context
def bench(ctx: click.Context, **kw: Any) -> None:
    """Benchmarks. Without a subcommand: the end-to-end run (same as `streamrec bench e2e`).

    Starts Kafka and Cassandra on the `bench` profile (ports 39092 / 39042) unless they run, runs the
    streamrec job (local minicluster) and the naive baseline on the same events one after the
    other, and appends one JSON line per system to bench/results.jsonl.
    """
    if ctx.invoked_subcommand is None:
        _run_e2e(**kw)


@bench.command("e2e")
@_e2e_options
def e2e_cmd(**kw: Any) -> None:
    """Throughput, CPU and freshness of the job and the baseline on the real Kafka + Cassandra."""
    _run_e2e(**kw)


@bench.command("topk")
@click.option("--sizes", default="10000,100000,1000000", show_default=True, help="Catalog sizes.")
@click.option("--methods", default="numpy,flat,ivf,hnsw", show_default=True)
@click.option("--dim", type=click.IntRange(2, 1024), default=64, show_default=True)
@click.option("--batch", type=click.IntRange(1), default=256, show_default=True, help="Users per top-k call.")
@click.option("--queries", type=click.IntRange(1), default=4096, show_default=True,
              help="Queries timed per method (fewer at 1M products, see --max-scan).")
@click.option("--datasets", default="random,uci", show_default=True,
              help="random: uniform unit vectors; uci: the UCI catalog and real user vectors (plus "
                   "jittered copies of it at the larger sizes).")
@click.option("--recall-floor", type=float, default=_MODEL.ann_recall_floor, show_default=True)
@click.option("--hnsw-m", type=click.IntRange(4, 128), default=32, show_default=True)
@click.option("--hnsw-ef-construction", type=click.IntRange(8, 1024), default=64, show_default=True)
@click.option("--hnsw-max-size", type=click.IntRange(1), default=10_000_000, show_default=True,
              help="Skip HNSW for larger catalogs (building the graph is the slow part).")
@click.option("--uci", "uci_path", type=click.Path(dir_okay=False), default=None)
@click.option("--results", "results_path", type=click.Path(dir_okay=False), default="",
              help="JSON lines file to append to (default bench/topk.jsonl).")
@click.option("--plot/--no-plot", default=True, show_default=True)
def topk_cmd(sizes: str, methods: str, dim: int, batch: int, queries: int, datasets: str, recall_floor: float,
             hnsw_m: int, hnsw_ef_construction: int, hnsw_max_size: int, uci_path: Optional[str],
             results_path: str, plot: bool) -> None:
    """Top-k micro-benchmarks: numpy exact vs faiss exact/IVF/HNSW, one thread, events/s and recall@10."""
    from streamrec.bench.topk import TopkOptions, run

    _logging(False)
    opts = TopkOptions(
        sizes=tuple(int(s) for s in sizes.split(",") if s.strip()),
        methods=tuple(m.strip() for m in methods.split(",") if m.strip()),
        datasets=tuple(d.strip() for d in datasets.split(",") if d.strip()),
        dim=dim, batch=batch, queries=queries, recall_floor=recall_floor, results_path=results_path,
        hnsw_m=hnsw_m, hnsw_ef_construction=hnsw_ef_construction, hnsw_max_size=hnsw_max_size,
    )
    if uci_path:
        opts.uci_path = uci_path
    run(opts)
    if plot:
        _plot()


@bench.command("query")
@click.option("--users", type=click.IntRange(1), default=10_000, show_default=True)
@click.option("--products", type=click.IntRange(40), default=10_000, show_default=True)
@click.option("--requests", type=click.IntRange(10), default=5_000, show_default=True, help="Per read path.")
@click.option("--results", "results_path", type=click.Path(dir_okay=False), default="",
              help="JSON lines file to append to (default bench/query.jsonl).")
def query_cmd(users: int, products: int, requests: int, results_path: str) -> None:
    """Latency of `streamrec recs` reads on the bench profile's Cassandra (p50/p95/p99)."""
    from streamrec.bench.query import QueryOptions, run

    run(QueryOptions(users=users, products=products, requests=requests, results_path=results_path),
        say=lambda msg: click.echo(f"==> {msg}", err=True))


@bench.command("serve")
@click.option("--users", type=click.IntRange(1), default=10_000, show_default=True)
@click.option("--products", type=click.IntRange(40), default=10_000, show_default=True)
@click.option("-k", "k", type=click.IntRange(1, 100), default=_MODEL.top_k, show_default=True,
              help="Items per request.")
@click.option("--seconds", type=click.FloatRange(1), default=10.0, show_default=True, help="Per load phase.")
@click.option("--rates", default="500,1000", show_default=True, help="Constant-rate phases, requests/s.")
@click.option("--concurrency", "concurrencies", default="1,8,32", show_default=True,
              help="Closed-loop phases: this many requests in flight.")
@click.option("--routes", default="recommendations,similar", show_default=True, help="Routes to drive.")
@click.option("--profile", default="bench", show_default=True,
              help="Local stack profile (test: the test profile shifted by STREAMREC_TEST_SLOT).")
@click.option("--note", default="default", show_default=True, help="Free text stored with the results.")
@click.option("--results", "results_path", type=click.Path(dir_okay=False), default="",
              help="JSON lines file to append to (default bench/results.jsonl).")
def serve_cmd(users: int, products: int, k: int, seconds: float, rates: str, concurrencies: str, routes: str,
              profile: str, note: str, results_path: str) -> None:
    """`streamrec serve` under vegeta: recommendations and similar, p50/p99 and requests/s per core."""
    from streamrec.bench.serve import ServeOptions, run, table

    _logging(False)
    opts = ServeOptions(users=users, products=products, k=k, seconds=seconds,
                        rates=tuple(int(x) for x in rates.split(",") if x.strip()),
                        concurrencies=tuple(int(x) for x in concurrencies.split(",") if x.strip()),
                        routes=tuple(x.strip() for x in routes.split(",") if x.strip()), profile=profile,
                        note=note, results_path=results_path)
    record = run(opts, say=lambda msg: click.echo(f"==> {msg}", err=True))
    click.echo("\n".join(table([record])))


@bench.command("topology")
@click.option("--events", type=click.IntRange(1000), default=40_000, show_default=True,
              help="Events measured (beyond a --base run, whose figures are subtracted).")
@click.option("--base", type=click.IntRange(1), default=10_000, show_default=True)
@click.option("--products", type=click.IntRange(40), default=10_000, show_default=True)
@click.option("--dim", type=click.IntRange(2, 1024), default=64, show_default=True)
@click.option("--users", type=click.IntRange(1), default=3_000, show_default=True)
def topology_cmd(events: int, base: int, products: int, dim: int, users: int) -> None:
    """CPU per event of the job's topology alone (collection in, outputs discarded, no Kafka or
    Cassandra), per JVM thread: where a change to the operators shows without the e2e noise."""
    from streamrec.bench.topology import measure

    click.echo("==> two jobs on a local minicluster (~1 min)", err=True)
    result = measure(events, base, products, dim, users)
    click.echo(f"wall {result['wall_us_per_event']:.0f} us per event, "
               f"CPU {result['cpu_us_per_event']:.0f} us per event of the job's JVM; per thread:")
    for name, us in result["threads_us_per_event"].items():
        if us >= 1.0:
            click.echo(f"  {name:<24} {us:7.0f} us")


@bench.command("state")
@click.option("--users", default="100000,1000000", show_default=True, help="Comma-separated state sizes (users).")
@click.option("--backend", type=click.Choice(["rocksdb", "hashmap"]), default="rocksdb", show_default=True)
@click.option("--incremental/--no-incremental", default=True, show_default=True)
@click.option("--events", "measured_events", type=click.IntRange(1000), default=50_000, show_default=True,
              help="Events of the measured phase, for users already in state.")
@click.option("--products", type=click.IntRange(40), default=10_000, show_default=True)
@click.option("--profile", default="bench", show_default=True, help="Local stack profile whose Kafka is used.")
@click.option("--note", default="default", show_default=True)
@click.option("--results", "results_path", type=click.Path(dir_okay=False), default="",
              help="JSON lines file to append to (default bench/results.jsonl).")
def state_cmd(users: str, backend: str, incremental: bool, measured_events: int, products: int, profile: str,
              note: str, results_path: str) -> None:
    """State of N users: bytes per user, memory, checkpoint size and time (full, incremental), events/s per core."""
    from streamrec.bench.state import StateOptions, run, table

    _logging(False)
    opts = StateOptions(users=tuple(int(x) for x in users.split(",") if x.strip()), backend=backend,
                        incremental=incremental, measured_events=measured_events, products=products,
                        profile=profile, note=note, results_path=results_path)
    click.echo("\n".join(table(run(opts, say=lambda msg: click.echo(f"==> {msg}", err=True)))))


@bench.command("plot")
def plot_cmd() -> None:
    """Redraw bench/*.png from bench/results.jsonl and bench/topk.jsonl."""
    _plot()


@bench.command("baseline")
@click.option("--mode", type=click.Choice(["naive", "batched"]), default="naive", show_default=True)
@click.option("--catalog", "catalog_path", type=click.Path(dir_okay=False), default="",
              help="Catalog file (.npz); default STREAMREC_CATALOG_PATH, else the Cassandra products table.")
def baseline_cmd(mode: str, catalog_path: str) -> None:
    """Run the baseline consumer service in the foreground (settings from STREAMREC_*)."""
    from streamrec.bench.baseline import main as baseline_main

    baseline_main(["--mode", mode, *(["--catalog", catalog_path] if catalog_path else [])])


@bench.command("profile")
@click.argument("files", nargs=-1, type=click.Path(exists=True, dir_okay=False))
@click.option("-n", "top", type=int, default=15, show_default=True, help="Top functions to list.")
def profile_cmd(files: tuple[str, ...], top: int) -> None:
    """Summarise recordings from `streamrec bench --profile`: py-spy (.txt) and JFR (.jfr) files."""
    from pathlib import Path

    from streamrec.bench.profile import summarize, summarize_jfr

    for f in files:
        if f.endswith(".jfr"):
            from streamrec.localstack import java_home

            click.echo(summarize_jfr(Path(f), str(java_home() / "bin" / "jfr"), top))
        else:
            click.echo(summarize(Path(f), top))


@bench.command("report")
@click.option("--recall-floor", type=float, default=_MODEL.ann_recall_floor, show_default=True)
def report_cmd(recall_floor: float) -> None:
    """Markdown tables of bench/results.jsonl and bench/topk.jsonl (medians of runs; for BENCHMARKS.md)."""
    from streamrec.bench import results
    from streamrec.bench.report import e2e_table, machine_line
    from streamrec.bench.topk import summary_table

    e2e = results.read(results.bench_dir() / "results.jsonl")
    topk = results.read(results.bench_dir() / "topk.jsonl")
    if e2e:
        click.echo(f"Machine: {machine_line(e2e)}\n")
        click.echo("\n".join(e2e_table(e2e)))
    if topk:
        click.echo("\n" + "\n".join(summary_table(topk, recall_floor)))


@bench.command("pieces")
@click.option("--products", type=click.IntRange(10), default=10_000, show_default=True)
@click.option("--writes/--no-writes", default=True, show_default=True,
              help="Also the Cassandra write forms, on the bench profile's Cassandra (if it runs).")
def pieces_cmd(products: int, writes: bool) -> None:
    """CPU per event of each piece (parse, update, top-k batch sizes, writes), one thread."""
    from streamrec.bench.pieces import model_pieces, write_pieces

    _logging(False)
    click.echo("| piece | CPU us per event |\n| --- | ---: |")
    for name, us in model_pieces(products):
        click.echo(f"| {name} | {us:,.1f} |")
    if not writes:
        return
    from streamrec import localstack
    from streamrec.config import CassandraConfig, Config

    profile = localstack.PROFILES["bench"]
    if not localstack.is_running(profile)["cassandra"]:
        click.echo("(Cassandra of the bench profile is not running: no write figures; "
                   "`streamrec bench --keep-services` leaves it up)", err=True)
        return
    pids = localstack.status(profile)["cassandra"].pids
    config = Config(cassandra=CassandraConfig(port=profile.cassandra_port))
    click.echo("\n| write form (events insert + recommendations upsert) | client CPU us/event | "
               "Cassandra CPU us/event |\n| --- | ---: | ---: |")
    for name, client, node in write_pieces(config, pids[0] if pids else None):
        click.echo(f"| {name} | {client:,.0f} | {node:,.0f} |")
