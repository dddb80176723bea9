"""What every system of one `streamrec bench` run is measured on (:func:`prepare`): the catalog,
the events, every system's topics and keyspace pre-loaded with the warm-up round, a warm Cassandra."""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

from streamrec import localstack
from streamrec.bench import results
from streamrec.bench.baseline import model_params
from streamrec.bench.generator import EventGenerator, GenEvent, final_recommendation_events, mix_of
from streamrec.bench.load import preload
from streamrec.bench.phases import MAX_JIT_ROUNDS
from streamrec.bench.systems import say
from streamrec.bench.warmup import (
    WarmUp,
    warm_up_cassandra,
)
from streamrec.config import Config
from streamrec.model.catalog import Catalog

if TYPE_CHECKING:
    from streamrec.bench.e2e import BenchOptions

log = logging.getLogger("streamrec.bench")


def _catalog(opts: BenchOptions, workdir: Path) -> tuple[Catalog, Path]:
    if opts.catalog == "uci":
        from streamrec.datasets import read_uci
        from streamrec.embeddings import build_catalog

        if not Path(opts.uci_path).exists():
            raise FileNotFoundError(f"UCI Online Retail not found at {opts.uci_path}")
        catalog = build_catalog(read_uci(opts.uci_path), dim=opts.dim)
        name = f"catalog-uci-{opts.dim}.npz"
    elif opts.catalog == "synthetic":
        from streamrec.bench.generator import synthetic_catalog, synthetic_transitions

        catalog = synthetic_catalog(opts.catalog_size, opts.dim, seed=opts.seed)
        if opts.transitions:
            catalog = dataclasses.replace(
                catalog, transitions=synthetic_transitions(opts.catalog_size, opts.transitions, seed=opts.seed))
        name = f"catalog-synthetic-{opts.catalog_size}x{opts.dim}-t{opts.transitions}-{opts.seed}.npz"
    else:
        raise ValueError(f"unknown catalog {opts.catalog!r}: synthetic or uci")
    path = workdir / name
    catalog.save(path)
    return catalog, path


@dataclass
class Prepared:
    """What every system of one run is measured on: the same events, catalog and services."""

    tag: str
    workdir: Path
    machine: dict[str, Any]
    catalog: Catalog
    events: list[GenEvent]  # the measured throughput phase
    expected: dict[str, str]  # user -> the event id their final row must name
    warm_events: list[GenEvent]  # the first warm-up round (users of their own)
    warm_expected: dict[str, str]
    warm_start_ts: int
    configs: dict[str, Config]  # per system: its own keyspace, topics and consumer group
    kafka_pids: list[int]
    cassandra_pids: list[int]
    cassandra_warmup: Optional[WarmUp]


def prepare(opts: BenchOptions, profile: localstack.Profile, drops: list[Callable[[], None]]) -> Prepared:
    """The catalog, the events, every system's topics and keyspace (pre-loaded with the warm-up
    round), and a warm Cassandra. Data made outside the systems' own keyspaces goes on ``drops``."""
    from streamrec.connectors.cassandra import drop_keyspace, ensure_schema
    from streamrec.connectors.kafka import ensure_topics

    workdir = localstack.run_dir(profile) / "work"
    workdir.mkdir(parents=True, exist_ok=True)
    artifacts = localstack.fetch()
    status = localstack.status(profile)
    catalog, catalog_path = _catalog(opts, workdir)
    say(f"catalog: {len(catalog)} products x {catalog.dim} ({opts.catalog}) -> {catalog_path}")
    start_ts = int(time.time() * 1000) - opts.events - 3_600_000  # all in the past of the paced phase
    events = EventGenerator(catalog.product_ids, opts.users, seed=opts.seed, start_ts=start_ts).batch(opts.events)
    # the warm-up: users of their own ("w..."), before the measured events in event time
    # (the JIT rounds after it get the event time between it and the measured events)
    warm_start_ts = start_ts - (MAX_JIT_ROUNDS + 1) * opts.warmup_events - 60_000
    warm_events = EventGenerator(catalog.product_ids, opts.users, seed=opts.seed + 2,
                                 start_ts=warm_start_ts, id_prefix="w",
                                 user_prefix="w").batch(opts.warmup_events) if opts.warmup_events > 0 else []
    # other job settings come from STREAMREC_* variables, as for `streamrec job run`
    base = Config.from_env(kafka={"bootstrap": profile.kafka_bootstrap}, cassandra={"port": profile.cassandra_port},
                           job={"jars": str(artifacts.kafka_connector_jar), "parallelism": opts.parallelism,
                                "checkpoint_interval_ms": opts.checkpoint_interval_ms,
                                # the job pins its own BLAS; the env is for the baseline
                                "blas_threads": opts.blas_threads},
                           model={"catalog_path": str(catalog_path)})
    expected = final_recommendation_events(events, catalog, model_params(base))
    warm_expected = final_recommendation_events(warm_events, catalog, model_params(base))
    tag = uuid.uuid4().hex[:6]
    configs = {}
    for name in opts.systems:
        short = name.replace("-", "_")
        configs[name] = base.replace(
            cassandra={"keyspace": f"bench_{short}_{tag}"},
            kafka={"events_topic": f"bench-{tag}-{name}-events", "dlq_topic": f"bench-{tag}-{name}-dlq",
                   "products_topic": f"bench-{tag}-{name}-products", "consumer_group": f"bench-{tag}-{name}"})
        ensure_topics(configs[name].kafka, partitions=opts.partitions)
        ensure_schema(configs[name].cassandra)
    if warm_events:
        secs = preload(list(configs.values()), warm_events)
        say(f"{len(warm_events)} warm-up events pre-loaded into {len(configs)} topic(s) in {secs:.1f} s")
    say(f"{len(events)} events of {opts.users} users ({len(expected)} with recommendations) to measure; mix "
         f"{ {k: round(v, 3) for k, v in mix_of(events).items()} }")
    cassandra_pids = status["cassandra"].pids
    warm: Optional[WarmUp] = None
    if opts.warmup_seconds > 0:
        warm_config = base.replace(cassandra={"keyspace": f"bench_warmup_{tag}"})
        ensure_schema(warm_config.cassandra)
        if not opts.keep_data:  # not a service: dropped also with --keep-services
            drops.append(lambda: drop_keyspace(warm_config.cassandra))
        say(f"warming Cassandra up (until its JIT compiler is quiet, at most {opts.warmup_seconds:.0f} s)")
        warm = warm_up_cassandra(warm_config, catalog, lambda: cassandra_pids, opts.warmup_seconds)
        say(f"Cassandra warm-up: {warm.rows} rows in {warm.seconds:.0f} s, its JIT used "
             f"{warm.compiler_cpu_s:.1f} s of CPU; {'quiet' if warm.quiet else 'NOT quiet yet'}")
    return Prepared(tag, workdir, results.machine(), catalog, events, expected, warm_events, warm_expected,
                    warm_start_ts, configs, status["kafka"].pids, cassandra_pids, warm)
