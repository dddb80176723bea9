"""The `streamrec` command line: data on stdout, logs and progress on stderr."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Optional, TypeVar

import click

from streamrec.config import Config

F = TypeVar("F", bound=Callable[..., Any])

def _err(msg: str) -> None:
    click.echo(msg, err=True)


def connection_options(fn: F) -> F:
    """Connection options shared by every command; each also from an environment variable."""
    options = [
        click.option("--kafka", "kafka_bootstrap", envvar="STREAMREC_KAFKA_BOOTSTRAP", show_envvar=True,
                     default="127.0.0.1:9092", show_default=True, help="Kafka bootstrap servers."),
        click.option("--cassandra", "cassandra_hosts", envvar="STREAMREC_CASSANDRA_HOSTS", show_envvar=True,
                     default="127.0.0.1", show_default=True, help="Cassandra contact points (comma-separated)."),
        click.option("--cassandra-port", envvar="STREAMREC_CASSANDRA_PORT", show_envvar=True, type=int,
                     default=9042, show_default=True),
        click.option("--keyspace", envvar="STREAMREC_KEYSPACE", show_envvar=True, default="streamrec",
                     show_default=True),
    ]
    for opt in reversed(options):
        fn = opt(fn)
    return fn


def _config(**conn: Any) -> Config:
    return Config.from_env(**conn)


def _output_option(fn: F) -> F:
    return click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table",
                        show_default=True, help="table for people, json for machines.")(fn)


def _print_json(obj: Any) -> None:
    click.echo(json.dumps(obj, ensure_ascii=False))


def _table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title)
    for c in columns:
        t.add_column(c)
    for r in rows:
        t.add_row(*[("" if v is None else str(v)) for v in r])
    Console(file=sys.stdout).print(t)


def _valid_user_id(user_id: str) -> str:
    if not user_id or len(user_id) > 256 or any(ord(ch) < 32 for ch in user_id):
        raise click.BadParameter("a user id has 1..256 printable characters", param_hint="USER")
    return user_id


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="streamrec")
def main() -> None:
    """streamrec: real-time recommendations (Kafka -> PyFlink -> Cassandra)."""


# --- query side -------------------------------------------------------------------------------

@main.command()
@click.argument("user")
@click.option("-k", "k", type=click.IntRange(1, 1000), default=10, show_default=True, help="How many items.")
@_output_option
@connection_options
def recs(user: str, k: int, output: str, **conn: Any) -> None:
    """Show the current recommendations of USER."""
    from streamrec.connectors.cassandra import QueryClient

    user = _valid_user_id(user)
    client = QueryClient(_config(**conn))
    try:
        stored = client.recommendations(user)
        titles = client.titles(stored.product_ids[:k]) if stored is not None and output == "table" else {}
    finally:
        client.close()
    pairs = [] if stored is None else list(zip(stored.product_ids[:k], stored.scores[:k]))
    items: list[dict[str, Any]] = [{"product_id": p, "score": round(float(s), 6)} for p, s in pairs]
    result: dict[str, Any] = {"user_id": user, "source": None if stored is None else stored.source, "items": items}
    if stored is not None:
        result["event_id"] = stored.event_id
        result["event_ts"] = None if stored.event_ts is None else stored.event_ts.isoformat() + "Z"
    if output == "json":
        _print_json(result)
    elif stored is None:
        _err(f"no recommendations for user {user!r} yet")
    else:
        _table(f"recommendations for {user} ({result['source'] or 'none'})", ["#", "product_id", "title", "score"],
               [[i + 1, p, titles.get(p, ""), f"{s:.4f}"] for i, (p, s) in enumerate(pairs)])
    if stored is None:
        sys.exit(1)


@main.command("events")
@click.argument("user")
@click.option("-n", "limit", type=click.IntRange(1, 10000), default=20, show_default=True, help="Newest N events.")
@_output_option
@connection_options
def events_cmd(user: str, limit: int, output: str, **conn: Any) -> None:
    """Show the newest events of USER as the job stored them."""
    from streamrec.connectors.cassandra import QueryClient

    user = _valid_user_id(user)
    client = QueryClient(_config(**conn))
    try:
        rows = client.events(user, limit)
        titles = client.titles(sorted({r["product_id"] for r in rows if r["product_id"]})) if output == "table" else {}
    finally:
        client.close()
    if output == "json":
        _print_json({"user_id": user, "events": rows})
    else:
        from datetime import datetime, timezone

        def when(ms: int) -> str:
            return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")

        _table(f"events of {user}", ["time (UTC)", "type", "product_id", "title / query", "event_id"],
               [[when(r["ts"]), r["type"], r["product_id"], r["query"] or titles.get(r["product_id"] or "", ""),
                 r["event_id"]] for r in rows])


@main.command()
@click.argument("product")
@click.option("-k", "k", type=click.IntRange(1, 1000), default=10, show_default=True, help="How many items.")
@_output_option
@connection_options
def similar(product: str, k: int, output: str, **conn: Any) -> None:
    """Show the in-stock products most similar to PRODUCT (same vectors as the job)."""
    from streamrec.connectors.cassandra import load_catalog
    from streamrec.udfs.similar import similar_products

    cat = load_catalog(_config(**conn))
    try:
        pairs = similar_products(cat, product, k)
    except KeyError:
        raise click.ClickException(f"product {product!r} is not in the catalog") from None
    if output == "json":
        _print_json({"product_id": product, "items": [
            {"product_id": p, "score": round(s, 6), "title": cat.titles[cat.index[p]]} for p, s in pairs]})
    else:
        _table(f"similar to {product} ({cat.titles[cat.index[product]]})", ["#", "product_id", "title", "score"],
               [[i + 1, p, cat.titles[cat.index[p]], f"{s:.4f}"] for i, (p, s) in enumerate(pairs)])


# --- producing --------------------------------------------------------------------------------

@main.command()
@click.argument("file", type=click.File("r", encoding="utf-8"), default="-")
@click.option("--raw", is_flag=True, help="Send every line as it is, even lines that are not JSON "
              "(the job routes them to the dead-letter topic).")
@connection_options
def produce(file: Any, raw: bool, **conn: Any) -> None:
    """Send JSON events, one per line, from FILE (default stdin) to the events topic."""
    from streamrec.connectors.kafka import produce_lines

    config = _config(**conn)
    report = produce_lines(file, config, raw=raw)
    for lineno, why in report.rejected:
        _err(f"line {lineno}: not sent: {why}")
    _err(f"sent {report.sent} record(s) to {config.events_topic}"
         + (f", rejected {len(report.rejected)}" if report.rejected else ""))
    if report.rejected:
        sys.exit(1)


# --- data and catalog -------------------------------------------------------------------------

@main.group()
def data() -> None:
    """Real interaction histories (UCI Online Retail, OTTO JSONL)."""


@data.command("export")
@click.option("--data", "path", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["uci", "otto"]), required=True)
@click.option("--since", help="Only events at or after this date (YYYY-MM-DD, UTC).")
@click.option("--until", help="Only events before this date (YYYY-MM-DD, UTC).")
@click.option("--users", type=int, help="Only the events of the N users with the most events in the window.")
@click.option("--limit", type=int, help="At most N events (the earliest).")
def data_export(path: str, fmt: str, since: Optional[str], until: Optional[str], users: Optional[int],
                limit: Optional[int]) -> None:
    """Print a history as event JSON lines (pipe it into `streamrec produce`)."""
    from collections import Counter

    import pandas as pd

    from streamrec.datasets import read_history

    evs = read_history(path, fmt).events
    if since:
        lo = int(pd.Timestamp(since, tz="UTC").value // 1_000_000)
        evs = [e for e in evs if e.ts >= lo]
    if until:
        hi = int(pd.Timestamp(until, tz="UTC").value // 1_000_000)
        evs = [e for e in evs if e.ts < hi]
    if users:
        top = {u for u, _ in Counter(e.user_id for e in evs).most_common(users)}
        evs = [e for e in evs if e.user_id in top]
    if limit:
        evs = evs[:limit]
    out = sys.stdout
    for e in evs:
        out.write(e.to_json() + "\n")
    _err(f"exported {len(evs)} events of {len({e.user_id for e in evs})} users")


@main.group()
def catalog() -> None:
    """Build and load the product catalog (ids, titles, prices, embeddings)."""


@catalog.command("build")
@click.option("--data", "path", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["uci", "otto"]), required=True)
@click.option("--dim", type=click.IntRange(2, 1024), default=32, show_default=True)
@click.option("--until", help="Learn only from events before this date (YYYY-MM-DD, UTC).")
@click.option("-o", "--out", "out", required=True, type=click.Path(dir_okay=False), help="Catalog file (.npz).")
def catalog_build(path: str, fmt: str, dim: int, until: Optional[str], out: str) -> None:
    """Learn product embeddings from an interaction history and write a catalog file."""
    import dataclasses

    import pandas as pd

    from streamrec.datasets import read_history
    from streamrec.embeddings import build_catalog

    history = read_history(path, fmt)
    if until:
        hi = int(pd.Timestamp(until, tz="UTC").value // 1_000_000)
        history = dataclasses.replace(history, events=[e for e in history.events if e.ts < hi])
    cat = build_catalog(history, dim=dim)
    cat.save(out)
    _err(f"catalog: {len(cat)} products, {cat.dim} dimensions -> {out}")


@catalog.command("load")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@connection_options
def catalog_load(file: str, **conn: Any) -> None:
    """Write a catalog file into the Cassandra `products` table."""
    from streamrec.connectors.cassandra import store_catalog
    from streamrec.udfs.catalog import Catalog

    n = store_catalog(_config(**conn), Catalog.load(file))
    _err(f"loaded {n} products")


# --- setup ------------------------------------------------------------------------------------

@main.command()
@click.option("--partitions", type=int, default=2, show_default=True, help="Partitions of the events topic.")
@connection_options
def init(partitions: int, **conn: Any) -> None:
    """Create the Kafka topics and the Cassandra keyspace and tables (idempotent)."""
    from streamrec.connectors.cassandra import ensure_schema
    from streamrec.connectors.kafka import ensure_topics

    config = _config(**conn)
    ensure_topics(config, partitions)
    ensure_schema(config)
    _err(f"topics and keyspace {config.keyspace!r} ready")


# --- the job ----------------------------------------------------------------------------------

@main.group()
def job() -> None:
    """Run the Flink job locally or submit it to a cluster.

    Job settings come from STREAMREC_* environment variables (see streamrec/config.py), e.g.
    STREAMREC_TOP_K, STREAMREC_PARALLELISM, STREAMREC_CATALOG_PATH, STREAMREC_JARS.
    """


def _job_env(conn: dict[str, Any], parallelism: Optional[int]) -> dict[str, str]:
    env = dict(os.environ)
    names = {"kafka_bootstrap": "STREAMREC_KAFKA_BOOTSTRAP", "cassandra_hosts": "STREAMREC_CASSANDRA_HOSTS",
             "cassandra_port": "STREAMREC_CASSANDRA_PORT", "keyspace": "STREAMREC_KEYSPACE"}
    for key, var in names.items():
        if conn.get(key) is not None:
            env[var] = str(conn[key])
    if parallelism is not None:
        env["STREAMREC_PARALLELISM"] = str(parallelism)
    if not env.get("STREAMREC_JARS"):
        jar = default_connector_jar()
        if jar is not None:
            env["STREAMREC_JARS"] = str(jar)
    return env


def default_connector_jar() -> Optional[Path]:
    """The Kafka connector jar that `make setup` fetched, if any."""
    try:
        from streamrec.localstack import stack_dir

        base = stack_dir()
    except ImportError:
        return None
    jars = sorted((base / "lib").glob("**/flink-sql-connector-kafka-*.jar"))
    return jars[0] if jars else None


@job.command("run")
@click.option("-p", "--parallelism", type=click.IntRange(1, 64))
@connection_options
def job_run(parallelism: Optional[int], **conn: Any) -> None:
    """Run the job on a local minicluster, in the foreground (Ctrl-C stops it)."""
    env = _job_env(conn, parallelism)
    os.execve(sys.executable, [sys.executable, "-m", "streamrec.jobs.job"], env)


def _flink_jobs(rest: str) -> list[dict[str, Any]]:
    import urllib.request

    with urllib.request.urlopen(f"http://{rest}/jobs/overview", timeout=5) as resp:
        return list(json.load(resp)["jobs"])


@job.command("submit")
@click.option("-m", "--jobmanager", envvar="STREAMREC_FLINK_REST", show_envvar=True, default="127.0.0.1:8081",
              show_default=True, help="Flink REST address of the cluster.")
@click.option("-p", "--parallelism", type=click.IntRange(1, 64))
@click.option("--python", "python_exec", default=sys.executable, show_default=True,
              help="Python interpreter on the TaskManagers (with streamrec installed).")
@click.option("--flink", "flink_bin", envvar="FLINK_BIN", show_envvar=True,
              help="The `flink` launcher (default: the one the apache-flink package ships).")
@click.option("--force", is_flag=True, help="Submit even if a job named streamrec is already running there.")
@click.option("--timeout", type=float, default=180, show_default=True, help="Seconds to wait for RUNNING.")
@connection_options
def job_submit(jobmanager: str, parallelism: Optional[int], python_exec: str, flink_bin: Optional[str],
               force: bool, timeout: float, **conn: Any) -> None:
    """Submit the job to a Flink cluster with `flink run`; return once it is RUNNING."""
    import pyflink

    from streamrec.runner import wait_for

    try:
        running = [j for j in _flink_jobs(jobmanager) if j["name"] == "streamrec" and j["state"] == "RUNNING"]
    except OSError as exc:
        raise click.ClickException(f"no Flink cluster answers at {jobmanager} ({exc})") from exc
    if running and not force:
        _err(f"job streamrec is already running on {jobmanager} ({running[0]['jid']}); --force submits another")
        return
    flink = flink_bin or str(Path(pyflink.__file__).parent / "bin" / "flink")
    job_py = Path(__file__).resolve().parent / "jobs" / "job.py"
    cmd = [flink, "run", "-d", "-m", jobmanager, "-py", str(job_py), "-pyexec", python_exec,
           "-pyclientexec", python_exec]
    if parallelism is not None:
        cmd += ["-p", str(parallelism)]
    _err("$ " + " ".join(cmd))
    rc = subprocess.call(cmd, env=_job_env(conn, parallelism), stdout=sys.stderr)
    if rc != 0:
        sys.exit(rc)
    jobs = wait_for(
        lambda: [j for j in _flink_jobs(jobmanager) if j["name"] == "streamrec" and j["state"] == "RUNNING"],
        timeout=timeout, what="the job to be RUNNING",
    )
    _err(f"job streamrec is RUNNING on {jobmanager} ({jobs[0]['jid']})")


if __name__ == "__main__":
    main()
