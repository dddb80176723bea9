"""`make demo`: the whole pipeline on real data, on its own ports, cleaned up afterwards.

1. starts Kafka and Cassandra (the `demo` profile: its own ports and data folder, so a stack
   started with `make up` is left alone), creates the topics and tables;
2. learns product embeddings from UCI Online Retail purchases before the replay window and
   loads the catalog into Cassandra;
3. runs the Flink job on a local minicluster, replays the purchases of the replay window into
   Kafka with `streamrec produce`, waits until every event is in Cassandra;
4. prints what `streamrec recs` answers for a few customers; stops everything it started.

Data: Daqing Chen (2015), "Online Retail", UCI Machine Learning Repository, doi:10.24432/C5BW33
(CC BY 4.0).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from streamrec import localstack
from streamrec.config import CassandraConfig, Config, JobConfig, KafkaConfig
from streamrec.runner import BackgroundJob, config_env, wait_for

if TYPE_CHECKING:
    from streamrec.model.events import Event

REPLAY_FROM = "2011-11-01"
DEFAULT_DATA = localstack.repo_root().parent / "shared" / "data" / "uci-online-retail" / "onlineretail.csv.gz"


def _say(msg: str) -> None:
    click.secho(f"==> {msg}", fg="cyan", err=True)


def _sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


@click.command()
@click.option("--data", "data_path", type=click.Path(dir_okay=False), default=str(DEFAULT_DATA), show_default=True,
              help="UCI Online Retail CSV (gzipped).")
@click.option("--customers", type=int, default=60, show_default=True,
              help="Replay the purchases of this many customers (the most active in the window).")
@click.option("--show", type=int, default=3, show_default=True, help="Print recommendations of this many customers.")
@click.option("--keep", is_flag=True, help="Leave Kafka and Cassandra running afterwards (stop: make demo-down).")
def main(data_path: str, customers: int, show: int, keep: bool) -> None:
    """Run streamrec end to end on real purchases and print recommendations."""
    signal.signal(signal.SIGTERM, _sigterm)
    t0 = time.monotonic()
    if not Path(data_path).exists():
        raise click.ClickException(f"UCI Online Retail not found at {data_path} (use --data PATH)")
    profile = localstack.PROFILES["demo"]
    running = localstack.is_running(profile)
    if any(running.values()):
        raise click.ClickException(f"a demo stack is already running ({running}); stop it with `make demo-down`")
    artifacts = localstack.fetch()
    localstack.wipe(profile)
    work = localstack.stack_dir() / "run" / profile.name
    try:
        _say(f"starting Kafka on 127.0.0.1:{profile.kafka_port} and Cassandra on 127.0.0.1:{profile.cassandra_port}")
        # stops Kafka and Cassandra on the way out, also on Ctrl-C or a failure (the job first, in _run);
        # logs stay in the run folder for a look afterwards; the next demo wipes it
        with localstack.ensure(profile, ["kafka", "cassandra"]) as stack:
            config = Config(
                kafka=KafkaConfig(bootstrap=f"127.0.0.1:{profile.kafka_port}"),
                cassandra=CassandraConfig(port=profile.cassandra_port),
                job=JobConfig(jars=str(artifacts.kafka_connector_jar), checkpoint_interval_ms=5000),
            )
            _run(config, Path(data_path), customers, show, work)
            _say(f"done in {time.monotonic() - t0:.0f} s. Data: Daqing Chen (2015), \"Online Retail\", "
                 "UCI Machine Learning Repository, doi:10.24432/C5BW33 (CC BY 4.0)")
            _say("to click around in the demo shop: `make up`, then open http://127.0.0.1:8000/ "
                 "(its API is described at /docs; `make down` stops it all)")
            if keep:
                stack.keep()
                _say(f"Kafka and Cassandra keep running; query them with:\n    export "
                     f"STREAMREC_KAFKA_BOOTSTRAP={config.kafka.bootstrap} "
                     f"STREAMREC_CASSANDRA_PORT={config.cassandra.port}")
    except KeyboardInterrupt:
        _say("interrupted: stopped what the demo started")
        raise SystemExit(130) from None


def _replay_events(config: Config, data_path: Path, customers: int) -> list[Event]:
    """Topics, tables and the catalog learnt before REPLAY_FROM; the replay window's events of the
    ``customers`` most active customers."""
    import pandas as pd

    from streamrec.connectors.cassandra import ensure_schema, store_catalog
    from streamrec.connectors.kafka import ensure_topics
    from streamrec.datasets import read_uci
    from streamrec.embeddings import build_catalog

    ensure_topics(config.kafka)
    ensure_schema(config.cassandra)

    _say(f"learning product embeddings from purchases before {REPLAY_FROM} ({data_path.name})")
    history = read_uci(data_path)
    cut = int(pd.Timestamp(REPLAY_FROM, tz="UTC").value // 1_000_000)
    past = [e for e in history.events if e.ts < cut]
    catalog = build_catalog(history.__class__(past, history.titles, history.prices), dim=32)
    store_catalog(config.cassandra, catalog)
    _say(f"catalog: {len(catalog)} products x {catalog.dim} dimensions loaded into Cassandra")

    window = [e for e in history.events if e.ts >= cut]
    top = {u for u, _ in Counter(e.user_id for e in window).most_common(customers)}
    return [e for e in window if e.user_id in top]


def _run(config: Config, data_path: Path, customers: int, show: int, work: Path) -> None:
    """Load, run the job, replay, wait until every event is stored, show; the job is stopped on return."""
    from streamrec.connectors.cassandra import QueryClient

    replay = _replay_events(config, data_path, customers)
    events_file = work / "replay.jsonl"
    events_file.write_text("".join(e.to_json() + "\n" for e in replay))

    _say("starting the Flink job on a local minicluster")
    job = BackgroundJob(config, work / "job.log").start()
    try:
        env = config_env(config)
        users = len({e.user_id for e in replay})
        _say(f"replaying {len(replay)} purchases of {users} customers from {REPLAY_FROM} into Kafka")
        subprocess.run([sys.executable, "-m", "streamrec.cli", "produce", str(events_file)], env=env, check=True)

        query = QueryClient(config.cassandra)
        try:
            def caught_up() -> bool:
                if not job.alive():
                    raise click.ClickException("the job stopped:\n" + job.log_tail())
                n = query.count("events")
                click.echo(f"\r    {n}/{len(replay)} events in Cassandra", err=True, nl=False)
                return n >= len(replay)

            wait_for(caught_up, timeout=600, what="the job to catch up", interval=2, on_timeout=job.log_tail)
            click.echo("", err=True)
        finally:
            query.close()

        for user, _ in Counter(e.user_id for e in replay).most_common(show):
            _say(f"customer {user}: last purchases, then `streamrec recs {user} -k 5`")
            subprocess.run([sys.executable, "-m", "streamrec.cli", "events", user, "-n", "5"], env=env, check=True)
            subprocess.run([sys.executable, "-m", "streamrec.cli", "recs", user, "-k", "5"], env=env, check=True)
    finally:
        job.stop()

if __name__ == "__main__":
    main()
