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
    config = Config.from_env(**conn)
    ctx = click.get_current_context(silent=True)
    if ctx is not None:  # the addresses an "unreachable" message names (_Main.invoke)
        ctx.meta["streamrec.config"] = config
    return config


def _output_option(fn: F) -> F:
    return click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table",
                        show_default=True, help="table for people, json for machines.")(fn)


def _quiet_option(fn: F) -> F:
    return click.option("-q", "--quiet", is_flag=True,
                        help="No progress and no summary on stderr (errors still go there).")(fn)


def _progress(label: str, quiet: bool, total: Optional[int] = None, unit: str = "") -> Any:
    from streamrec.progress import Progress

    return Progress(label, total=total, unit=unit, quiet=quiet)


def _print_json(obj: Any) -> None:
    click.echo(json.dumps(obj, ensure_ascii=False))


def terminal_safe(value: Any) -> str:
    """``value`` as text a terminal shows as it is: every character the id rule forbids (controls
    such as ESC, lone surrogates, bidi overrides, line separators) written as its escape (\\x1b,
    \\u202e). Stored data may predate the rule, and titles come from catalog files."""
    from streamrec.model.events import forbidden_char

    text = "" if value is None else str(value)
    if not any(forbidden_char(ch) for ch in text):
        return text
    return "".join(ch.encode("unicode_escape").decode("ascii") if forbidden_char(ch) else ch for ch in text)


def _table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    # Text, not str: rich would read "[link=...]" or "[red]" in a value as markup
    t = Table(title=Text(terminal_safe(title)))
    for c in columns:
        t.add_column(Text(c))
    for r in rows:
        t.add_row(*[Text(terminal_safe(v)) for v in r])
    Console(file=sys.stdout).print(t)


def _valid_user_id(user_id: str) -> str:
    from streamrec.model.events import text_problem

    problem = text_problem(user_id)
    if problem is not None:  # the job's rule for ids: such a user cannot have been stored
        raise click.BadParameter(f"the user id {problem}", param_hint="USER")
    return user_id


SECURITY_EPILOG = (
    "Secrets are read from the environment only, never from options: STREAMREC_CASSANDRA_USERNAME with "
    "STREAMREC_CASSANDRA_PASSWORD (or STREAMREC_CASSANDRA_PASSWORD_FILE), STREAMREC_CASSANDRA_TLS=true; "
    "STREAMREC_KAFKA_SECURITY_PROTOCOL (SSL, SASL_SSL, ...), STREAMREC_KAFKA_SASL_MECHANISM, "
    "STREAMREC_KAFKA_SASL_USERNAME with STREAMREC_KAFKA_SASL_PASSWORD (or ..._FILE). See docs/GUARANTEES.md."
)


class _Main(click.Group):
    """The top command: a service that cannot be reached ends any command with one line naming it,
    its address and what to do, and exit status 3 (streamrec.unreachable), not a driver's traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as exc:
            from streamrec.unreachable import EXIT_UNREACHABLE, unreachable

            failure = unreachable(exc, ctx.meta.get("streamrec.config"))
            if failure is None:
                raise
            if ctx.meta.get("streamrec.debug"):
                import traceback

                traceback.print_exc()
            _err(f"error: {failure}")
            ctx.exit(EXIT_UNREACHABLE)


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]}, epilog=SECURITY_EPILOG)
@click.version_option(package_name="streamrec")
@click.option("--debug", is_flag=True, envvar="STREAMREC_DEBUG", show_envvar=True,
              help="Also print the traceback when a service cannot be reached.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """streamrec: real-time recommendations (Kafka -> PyFlink -> Cassandra).

    Exit status: 0 done; 1 a negative answer (no recommendations, lines not sent, not consistent);
    2 a usage error (verify: could not check); 3 Kafka, Cassandra or Flink could not be reached.
    """
    ctx.meta["streamrec.debug"] = debug


# --- query side -------------------------------------------------------------------------------

@main.command()
@click.argument("user")
@click.option("-k", "k", type=click.IntRange(1, 1000), default=10, show_default=True,
              help="How many items (fewer when fewer candidates pass the filters).")
@click.option("--exclude", "exclude", multiple=True, metavar="P1,P2",
              help="Never show these products (repeatable or comma-separated).")
@click.option("--category", "categories", multiple=True, metavar="C",
              help="Show only products of this category (repeatable: any of them).")
@click.option("--exclude-category", "exclude_categories", multiple=True, metavar="C",
              help="Never show products of this category (repeatable).")
@_output_option
@connection_options
def recs(user: str, k: int, exclude: tuple[str, ...], categories: tuple[str, ...],
         exclude_categories: tuple[str, ...], output: str, **conn: Any) -> None:
    """Show the current recommendations of USER.

    The job stores more candidates than it shows (STREAMREC_TOP_K x STREAMREC_QUERY_OVERFETCH);
    the filters drop candidates in their stored order and the first k that pass are shown.
    Categories are those of the `products` table; a product without one matches no --category.
    """
    from streamrec.connectors.cassandra import QueryClient
    from streamrec.query import recommendations_answer, split_ids

    user = _valid_user_id(user)
    by_category = bool(categories or exclude_categories)
    client = QueryClient(_config(**conn))
    try:
        stored = client.recommendations(user)
        # the same answer as the HTTP service's (streamrec.service), which also fills from trending
        result = recommendations_answer(user, stored, k, client.products, exclude=split_ids(exclude),
                                        categories=categories, exclude_categories=exclude_categories)
    finally:
        client.close()
    items: list[dict[str, Any]] = result["items"]
    if output == "json":
        _print_json(result)
    elif stored is None:
        _err(f"no recommendations for user {user!r} yet")
    elif not items:
        _err(f"no recommendations for user {user!r} pass the filters ({len(stored.product_ids)} candidates stored)")
    else:
        variant = f", variant {stored.variant}" if stored.variant else ""
        columns = ["#", "product_id", "title", *(["category"] if by_category else []), "score"]
        rows: list[list[Any]] = []
        for i, item in enumerate(items):
            row: list[Any] = [i + 1, item["product_id"], item["title"] or ""]
            if by_category:
                row.append(item["category"] or "")
            rows.append([*row, f"{item['score']:.4f}"])
        _table(f"recommendations for {user} ({result['source'] or 'none'}{variant})", columns, rows)
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
    from streamrec.query import similar_answer

    cat = load_catalog(_config(**conn))
    try:
        answer = similar_answer(cat, product, k)  # the HTTP service's answer too
    except KeyError:
        raise click.ClickException(f"product {product!r} is not in the catalog") from None
    if output == "json":
        _print_json(answer)
    else:
        _table(f"similar to {product} ({answer['title']})", ["#", "product_id", "title", "score"],
               [[i + 1, it["product_id"], it["title"], f"{it['score']:.4f}"] for i, it in enumerate(answer["items"])])


@main.command()
@click.option("--host", envvar="STREAMREC_SERVE_HOST", show_envvar=True, default="127.0.0.1", show_default=True,
              help="Address to listen on.")
@click.option("--port", envvar="STREAMREC_SERVE_PORT", show_envvar=True, type=click.IntRange(0, 65535), default=8000,
              show_default=True, help="Port to listen on.")
@click.option("--log-level", type=click.Choice(["critical", "error", "warning", "info", "debug"]), default="info",
              show_default=True)
@connection_options
def serve(host: str, port: int, log_level: str, **conn: Any) -> None:
    """Serve recommendations over HTTP (OpenAPI at /docs) and the demo shop page at /.

    Routes: GET /v1/users/{id}/recommendations, /v1/users/{id}/events, /v1/products/{id}/similar,
    /v1/trending, /v1/products; POST /v1/events; /healthz, /readyz, /metrics. Settings:
    STREAMREC_SERVE_API_KEY (or ..._FILE: clients then send X-API-Key), STREAMREC_SERVE_CORS_ORIGINS,
    STREAMREC_SERVE_MAX_BODY_BYTES, STREAMREC_SERVE_MAX_BATCH, STREAMREC_SERVE_MAX_K (see streamrec/config.py).
    """
    from streamrec.service import serve as run_service

    config = _config(**conn).replace(serve_host=host, serve_port=port)
    _err(f"streamrec service on http://{host}:{port}/ (API docs: /docs)")
    run_service(config, log_level=log_level)


# --- producing --------------------------------------------------------------------------------

@main.command()
# surrogateescape: a line that is not UTF-8 is reported (or, with --raw, sent byte for byte), not a traceback
@click.argument("file", type=click.File("r", encoding="utf-8", errors="surrogateescape"), default="-")
@click.option("--raw", is_flag=True, help="Send every line as it is, byte for byte, even lines that are not "
              "JSON (the job routes them to the dead-letter topic).")
@_quiet_option
@connection_options
def produce(file: Any, raw: bool, quiet: bool, **conn: Any) -> None:
    """Send JSON events, one per line, from FILE (default stdin) to the events topic.

    A line that can never be a valid event (not UTF-8, not JSON, over the record size limit, an id
    or query that breaks the job's text rule) is skipped and reported on stderr as
    "line N: not sent: <why> (<dead-letter code>)"; the other lines are sent, and the exit status
    is then 1. Missing fields, unknown types and unknown products are left to the job.
    """
    from streamrec.connectors.kafka import produce_lines

    config = _config(**conn)
    with _progress("produce", quiet, unit="lines read") as progress:
        report = produce_lines(progress.iterate(file), config, raw=raw)
    for lineno, why in report.rejected:
        _err(f"line {lineno}: not sent: {why}")
    if not quiet:
        _err(f"sent {report.sent} record(s) to {config.events_topic}"
             + (f", rejected {len(report.rejected)}" if report.rejected else ""))
    if report.rejected:
        sys.exit(1)


# --- consistency ------------------------------------------------------------------------------

@main.command("metrics")
@click.option("--ports", envvar="STREAMREC_METRICS_PORT", show_envvar=True, default="9249-9258", show_default=True,
              help="Flink's Prometheus reporter port or range (the JobManager and each TaskManager take one).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Host of the reporters.")
@click.option("--service", "service_url", envvar="STREAMREC_METRICS_SERVICE_URL", show_envvar=True,
              default="http://127.0.0.1:8000", show_default=True,
              help="Base URL of `streamrec serve` ('' to skip it).")
@click.option("--full", is_flag=True,
              help="Every series (each quantile of each histogram) instead of one line per metric.")
@_output_option
def metrics_cmd(ports: str, host: str, service_url: str, output: str, full: bool) -> None:
    """The job's and the service's streamrec_ metrics, read from their Prometheus endpoints, one line
    per metric and label set: counters and gauges summed over subtasks, histograms as count, p50,
    p99 (the worst subtask's) and max (README, "Metrics"). -o json: "metrics" has every series
    (as --full shows them), "compact" the lines of the default view."""
    from streamrec import metrics

    try:
        port_list = metrics.port_range(ports)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--ports") from None
    endpoints, samples = metrics.collect(port_list, service_url or None, host)
    rows = metrics.summary(samples)
    if output == "json":
        _print_json({"endpoints": [{"url": e.url, "error": e.error} for e in endpoints], "metrics": rows,
                     "compact": metrics.compact(samples)})
    else:
        for e in endpoints:
            if e.error is not None:
                _err(f"{e.url}: {e.error}")
        answered = sum(e.error is None for e in endpoints)
        if full:
            lines = metrics.render_compact([{"name": r["name"], "labels": r["labels"], "kind": "value",
                                             "value": r["value"]} for r in rows])
        else:
            lines = metrics.render_compact(metrics.compact(samples))
        # plain lines, not a table: a table cuts long metric names to the terminal's width
        click.echo(f"streamrec metrics ({answered} endpoint{'s' if answered != 1 else ''})")
        for line in lines:
            click.echo(terminal_safe(line))
    if not any(e.error is None for e in endpoints):
        _err(f"no metrics endpoint answered (reporter ports {ports} on {host}, service {service_url or 'skipped'})")
        sys.exit(1)


@main.command("verify")
@click.option("--wait", type=click.FloatRange(0), default=0, show_default=True,
              help="Check again until consistent or this many seconds have passed (the job may be catching up).")
@click.option("--dead-letters/--no-dead-letters", default=True, show_default=True,
              help="Also check that every bad record of the topic has its dead letter.")
@_output_option
@_quiet_option
@connection_options
def verify_cmd(wait: float, dead_letters: bool, output: str, quiet: bool, **conn: Any) -> None:
    """Rebuild `events` and `recommendations` from the events topic and compare them with Cassandra.

    Reads the topic from the earliest offset to its current end, runs every record through the
    job's own functions in the job's order, and reports rows that are missing, extra, doubled,
    stale or different. Exit status 0: consistent; 1: a difference; 2: could not check (3: Kafka or Cassandra
    unreachable, as for every command). Topics, catalog and model
    settings come from the STREAMREC_* variables the job uses (STREAMREC_EVENTS_TOPIC,
    STREAMREC_DLQ_TOPIC, STREAMREC_CATALOG_PATH, STREAMREC_TOP_K, ...).
    """
    import logging

    from streamrec.verify import verify

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logging.getLogger("streamrec.verify").addHandler(handler)
    # its INFO lines are the progress (reading the topic, rebuilding, reading Cassandra)
    logging.getLogger("streamrec.verify").setLevel(logging.WARNING if quiet else logging.INFO)
    config = _config(**conn)
    try:
        report = verify(config, wait=wait, dead_letters=dead_letters)
    except Exception as exc:  # could not check at all (no topic, no Cassandra, ...): not "inconsistent"
        from streamrec.unreachable import unreachable

        if unreachable(exc, config) is not None:
            raise  # one line and exit status 3, as for every command
        _err(f"error: cannot verify: {type(exc).__name__}: {exc}")
        sys.exit(2)
    for warning in report.warnings:
        _err(f"warning: {warning}")
    if output == "json":
        _print_json(report.to_dict())
    else:
        rows = []
        for name, t in (("events", report.events), ("recommendations", report.recommendations)):
            rows.append([name, t.expected, t.found, t.missing, t.extra, t.doubled, t.stale, t.different])
        _table(f"{config.keyspace} vs {report.topic}: {report.records} records, {report.valid_events} valid, "
               f"{report.users} users", ["table", "expected", "found", "missing", "extra", "doubled", "stale",
                                         "different"], rows)
        if report.dead_letters is not None:
            dl = report.dead_letters
            codes = sorted(set(dl.expected) | set(dl.found))
            _table("dead letters", ["code", "expected", "found"],
                   [[c, dl.expected.get(c, 0), dl.found.get(c, 0)] for c in codes]
                   + [["missing / unexpected / duplicates", "", f"{dl.missing} / {dl.unexpected} / {dl.duplicates}"]])
        for line in report.examples:
            click.echo(line)
        click.echo("consistent" if report.ok else "NOT consistent")
    if not report.ok:
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
@_quiet_option
def data_export(path: str, fmt: str, since: Optional[str], until: Optional[str], users: Optional[int],
                limit: Optional[int], quiet: bool) -> None:
    """Print a history as event JSON lines (pipe it into `streamrec produce`)."""
    from collections import Counter

    import pandas as pd

    from streamrec.datasets import read_history

    with _progress("export", quiet) as progress:
        progress.phase(f"reading {path}")
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
    with _progress("export", quiet, total=len(evs), unit="events") as progress:
        for e in evs:
            out.write(e.to_json() + "\n")
            progress.advance()
    if not quiet:
        _err(f"exported {len(evs)} events of {len({e.user_id for e in evs})} users")


@main.group()
def catalog() -> None:
    """Build and load the product catalog (ids, titles, prices, embeddings)."""


def _embedding_options(fn: F) -> F:
    """How `catalog build` (and `evaluate`) learn product vectors; defaults in streamrec/embeddings.py."""
    from streamrec.embeddings import EmbeddingSettings

    d = EmbeddingSettings()
    options = [
        click.option("--dim", type=click.IntRange(2, 1024), default=d.dim, show_default=True,
                     help="Dimensions of the product vectors (the popularity dimension included)."),
        click.option("--window", type=click.IntRange(0, 100), default=d.window, show_default=True,
                     help="Products at most this many positions apart in a session co-occur (0: whole session)."),
        click.option("--title-weight", type=click.FloatRange(0, 1), default=d.title_weight, show_default=True,
                     help="Share of the title's vector in a product's learned vector."),
        click.option("--popularity-weight", "popularity", type=click.FloatRange(0, 1), default=d.popularity,
                     show_default=True, help="Weight of the log-popularity dimension (0: none)."),
        click.option("--min-count", type=click.IntRange(1), default=d.min_count, show_default=True,
                     help="Products with fewer events get the vector of their title alone."),
        click.option("--categories", type=click.IntRange(0, 1000), default=d.categories, show_default=True,
                     help="Derived categories: clusters of the vectors named by title words (0: none)."),
    ]
    for opt in reversed(options):
        fn = opt(fn)
    return fn


def _embedding_settings(**kw: Any) -> Any:
    from streamrec.embeddings import EmbeddingSettings

    return EmbeddingSettings(**kw)


@catalog.command("build")
@click.option("--data", "path", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["uci", "otto"]), required=True)
@_embedding_options
@click.option("--until", help="Learn only from events before this date (YYYY-MM-DD, UTC).")
@click.option("-o", "--out", "out", required=True, type=click.Path(dir_okay=False), help="Catalog file (.npz).")
@click.option("--load", "load", is_flag=True, help="Also write the catalog into the Cassandra `products` table.")
@_quiet_option
@connection_options
def catalog_build(path: str, fmt: str, until: Optional[str], out: str, load: bool, dim: int, window: int,
                  title_weight: float, popularity: float, min_count: int, categories: int, quiet: bool,
                  **conn: Any) -> None:
    """Learn product embeddings from an interaction history and write a catalog file.

    Item2vec in matrix form: products that appear next to each other in sessions get close vectors
    (truncated eigendecomposition of the shifted positive PMI of co-occurrences); products with
    too little history get the vector of their title; categories are derived by clustering.
    """
    import dataclasses
    import time

    import pandas as pd

    from streamrec.datasets import read_history
    from streamrec.embeddings import build_catalog

    t0 = time.monotonic()
    with _progress("catalog build", quiet) as progress:
        progress.phase(f"reading {path}")
        history = read_history(path, fmt)
        if until:
            hi = int(pd.Timestamp(until, tz="UTC").value // 1_000_000)
            history = dataclasses.replace(history, events=[e for e in history.events if e.ts < hi])
        settings = _embedding_settings(dim=dim, window=window, title_weight=title_weight, popularity=popularity,
                                       min_count=min_count, categories=categories)
        progress.phase(f"learning embeddings from {len(history.events):,} events")
        cat = build_catalog(history, settings=settings)
        progress.phase(f"writing {out}")
        cat.save(out)
    if not quiet:
        _err(f"catalog: {len(cat)} products, {cat.dim} dimensions, {len(set(cat.categories) - {''})} categories "
             f"from {len(history.events)} events -> {out} ({time.monotonic() - t0:.1f}s)")
    if load:
        from streamrec.connectors.cassandra import store_catalog

        with _progress("catalog load", quiet) as progress:
            progress.phase(f"writing {len(cat):,} products to Cassandra")
            n = store_catalog(_config(**conn), cat)
        if not quiet:
            _err(f"loaded {n} products into Cassandra")


@catalog.command("load")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@_quiet_option
@connection_options
def catalog_load(file: str, quiet: bool, **conn: Any) -> None:
    """Write a catalog file into the Cassandra `products` table."""
    from streamrec.connectors.cassandra import store_catalog
    from streamrec.model.catalog import Catalog

    with _progress("catalog load", quiet) as progress:
        progress.phase(f"reading {file}")
        cat = Catalog.load(file)
        progress.phase(f"writing {len(cat):,} products to Cassandra")
        n = store_catalog(_config(**conn), cat)
    if not quiet:
        _err(f"loaded {n} products")


@catalog.command("publish")
@click.argument("file", type=click.File("r", encoding="utf-8"), required=False)
@click.option("--product-id", help="Publish one update of this product, built from the options below, "
              "instead of reading FILE.")
@click.option("--title", help="New title (with --product-id).")
@click.option("--category", help="New category (with --product-id).")
@click.option("--price", type=float, help="New price (with --product-id).")
@click.option("--in-stock/--out-of-stock", "in_stock", default=None, help="Put on sale / take off sale "
              "(with --product-id).")
@_output_option
@_quiet_option
@connection_options
def catalog_publish(file: Any, product_id: Optional[str], title: Optional[str], category: Optional[str],
                    price: Optional[float], in_stock: Optional[bool], output: str, quiet: bool, **conn: Any) -> None:
    """Change products live: write updates to the `products` table, then to the products topic.

    FILE (default stdin, or -) holds one JSON update per line: {"product_id": "<string>", "title": ...,
    "category": ..., "price": ..., "in_stock": true|false, "embedding": [floats]}; only product_id is
    required and absent fields keep their value. Each line is checked as the job checks it (an
    embedding must have the catalog's dimension); bad lines are reported with their line number
    and not sent, and the exit status is then 1. Valid updates set only the fields they name in
    Cassandra (what the job loads on restart) and go to the products topic keyed by product_id
    (what the running job applies), in that order.
    """
    from streamrec.connectors.cassandra import ProductStore
    from streamrec.connectors.kafka import send_keyed
    from streamrec.query import parse_update_lines

    given: dict[str, Any] = {"title": title, "category": category, "price": price, "in_stock": in_stock}
    if product_id is not None:
        if file is not None:
            raise click.UsageError("give either FILE or --product-id, not both")
        lines: Any = [json.dumps({"product_id": product_id, **{k: v for k, v in given.items() if v is not None}})]
    elif any(v is not None for v in given.values()):
        raise click.UsageError("--title, --category, --price and --in-stock/--out-of-stock need --product-id")
    else:
        lines = file if file is not None else sys.stdin
    config = _config(**conn)
    store = ProductStore(config)
    with _progress("publish", quiet, unit="lines read") as progress:
        try:
            parsed = parse_update_lines(progress.iterate(lines), dim=store.embedding_dim())
            progress.phase(f"writing {len(parsed.updates):,} updates to Cassandra")
            errors = store.upsert(u for _, u in parsed.updates)
        finally:
            store.close()
    failed = [(n, why) for (n, _), why in zip(parsed.updates, errors) if why is not None]
    written = [(n, u) for (n, u), why in zip(parsed.updates, errors) if why is None]
    # a product-update record can be as large as the parser accepts (embeddings)
    report = send_keyed(((n, u.product_id, u.to_json()) for n, u in written), config.products_topic, config,
                        max_record_bytes=1024 * 1024)
    failed += report.rejected
    failed.sort()
    for lineno, why in parsed.bad:
        _err(f"line {lineno}: bad update, not published: {why}")
    for lineno, why in failed:
        _err(f"line {lineno}: not published: {why}")
    summary = {"published": report.sent, "bad": len(parsed.bad), "failed": len(failed),
               "table": f"{config.keyspace}.products", "topic": config.products_topic,
               "errors": [{"line": n, "error": why} for n, why in sorted(parsed.bad + failed)]}
    if output == "json":
        _print_json(summary)
    if not quiet:
        _err(f"published {report.sent} update(s) to {config.keyspace}.products and {config.products_topic}, "
             f"bad {len(parsed.bad)}" + (f", failed {len(failed)}" if failed else ""))
    if parsed.bad or failed:
        sys.exit(1)


# --- A/B variants -----------------------------------------------------------------------------

@main.group()
def ab() -> None:
    """A/B variants of the model (STREAMREC_VARIANTS) and how each one does."""


@ab.command("report")
@_output_option
@connection_options
def ab_report(output: str, **conn: Any) -> None:
    """Per variant: users, impressions, hits and hit rate, from the `recommendations` table.

    An impression is a recommendation list shown to a user and followed by another event of
    theirs; a hit is such an event on a product of that list (view, click, cart or purchase).
    Rows written without a variant count as "default". Reads the whole table, page by page.
    """
    from streamrec.connectors.cassandra import QueryClient
    from streamrec.query import aggregate_variants

    client = QueryClient(_config(**conn))
    try:
        stats = aggregate_variants(client.variant_counters())
    finally:
        client.close()
    if output == "json":
        _print_json({"variants": [s.to_dict() for s in stats]})
        return
    if not stats:
        _err("no recommendations stored yet")
        return
    _table("A/B variants", ["variant", "users", "impressions", "hits", "hit rate"],
           [[s.variant, s.users, s.impressions, s.hits, "-" if s.hit_rate is None else f"{s.hit_rate:.4f}"]
            for s in stats])


# --- offline evaluation -----------------------------------------------------------------------

@main.command("evaluate")
@click.option("--data", "path", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["uci", "otto", "movielens"]), required=True)
@click.option("--test-days", type=click.FloatRange(0, min_open=True),
              help="Hold out the last N days (default: 30 for uci and movielens, 7 for otto).")
@click.option("--split", type=click.Choice(["test", "validation"]), default="test", show_default=True,
              help="validation: evaluate on the N days before the test window, learn from what came before.")
@click.option("--model", "models", multiple=True,
              type=click.Choice(["streamrec", "pop", "item-knn", "session-knn", "sr", "v-sknn", "stan"]),
              help="Evaluate only these models (repeatable; default: all).")
@click.option("--tune", is_flag=True, help="Search streamrec's and the baselines' parameters on the validation "
              "split (never the test window) and print the best; takes minutes.")
@click.option("--tuned", "tuned_path", type=click.Path(exists=True, dir_okay=False),
              help="The baselines' parameters from a --tune run's JSON (default: those chosen on UCI).")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), help="Also draw the table as a PNG bar chart.")
@_embedding_options
@_output_option
def evaluate_cmd(path: str, fmt: str, test_days: Optional[float], split: str, models: tuple[str, ...], tune: bool,
                 tuned_path: Optional[str], plot_path: Optional[str], output: str, **embedding: Any) -> None:
    """Replay a time-split history through the job's own functions; HR@K, MRR@K, coverage vs baselines.

    Models: streamrec (update_user, fold_vectors + recommend_batch, exactly as the job), POP, Item-KNN
    (co-occurrence cosine), session-KNN, SR (sequential rules), V-SKNN and STAN. Every purchase (uci)
    or event (otto) in the held-out window is a case: the model recommends from what it knows just
    before it. `novel` counts only products the user had not touched before. Model settings come
    from the STREAMREC_* variables the job uses (STREAMREC_HALF_LIFE_EVENTS, STREAMREC_EVENT_WEIGHTS,
    STREAMREC_EXCLUDE_PURCHASED, ...).
    Progress and timings go to stderr.
    """
    from streamrec import evaluate as ev
    from streamrec.datasets import read_history
    from streamrec.model.model import ModelParams

    params = ModelParams.from_config(Config.from_env())
    gap = ev.SESSION_GAP_MS[fmt]
    settings = ev.EvalSettings(
        test_days=test_days if test_days is not None else ev.DEFAULT_TEST_DAYS[fmt],
        validation=split == "validation",
        target_types=ev.TARGET_TYPES[fmt],
        models=tuple(models) or ev.MODEL_NAMES,
    ).with_session_gap(gap)
    if tuned_path:
        settings = settings.with_tuned(json.loads(Path(tuned_path).read_text()))
    emb = _embedding_settings(**embedding)
    _err(f"reading {path} ({fmt})")
    history = read_history(path, fmt)
    if tune:
        result = ev.tune(history, params, settings, emb, log=_err)
        result.pop("trials")
        _print_json(result)
        return
    report = ev.evaluate(history, params, settings, emb, progress=True, log=_err)
    _err(f"{report['protocol']['cases']} cases ({report['protocol']['novel_cases']} novel) in "
         f"{report['protocol']['window'][0]} .. {report['protocol']['window'][1]}; {report['seconds']['total']}s")
    if plot_path:
        ev.plot(report, plot_path, title=f"{Path(path).name}: {report['protocol']['split']} window "
                f"{report['protocol']['window'][0][:10]} .. {report['protocol']['window'][1][:10]}")
        _err(f"plot -> {plot_path}")
    if output == "json":
        _print_json(report)
        return
    metrics = [f"hr@{k}" for k in report["k"]] + [f"mrr@{k}" for k in report["k"]] + ["coverage"]
    for label, table in (("all next items", report["models"]), ("novel next items", report["novel"]["models"]),
                         ("first item of a new visit", report["new_visit"]["models"])):
        _table(f"{label} ({report['protocol']['split']} split)", ["model", *metrics],
               [[name, *[f"{m[x]:.4f}" for x in metrics]] for name, m in table.items()])


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
    from streamrec.unreachable import check_reachable

    # the job would not fail on an unreachable Kafka or Cassandra but restart forever: check first
    check_reachable(Config.from_env(env))
    os.execve(sys.executable, [sys.executable, "-m", "streamrec.jobs.job"], env)


def _flink_rest(rest: str, path: str, body: Optional[dict[str, Any]] = None, timeout: float = 10) -> Any:
    """GET ``path`` of the Flink REST API at ``rest`` (POST ``body`` as JSON when given).

    Nothing answering there is :class:`~streamrec.unreachable.Unreachable` (one line, exit status 3);
    an HTTP error is Flink's own answer (an unknown job, a failed trigger) and says so in one line."""
    from streamrec.flinkrest import FlinkHttpError, FlinkRest

    try:
        return FlinkRest(rest, timeout).call(path, body)
    except FlinkHttpError as exc:
        raise click.ClickException(str(exc)) from exc


def _flink_jobs(rest: str) -> list[dict[str, Any]]:
    return list(_flink_rest(rest, "/jobs/overview", timeout=5)["jobs"])


def _running_job(rest: str, job: str) -> dict[str, Any]:
    """The one RUNNING job whose id or name is ``job`` (a name several running jobs share is an error)."""
    running = [j for j in _flink_jobs(rest) if j["state"] == "RUNNING"]
    by_id = [j for j in running if j["jid"] == job]
    found = by_id or [j for j in running if j["name"] == job]
    if not found:
        raise click.ClickException(f"no RUNNING job with the id or name {job!r} on {rest}"
                                   + (f" (running: {', '.join(j['name'] + ' ' + j['jid'] for j in running)})"
                                      if running else ""))
    if len(found) > 1:
        raise click.ClickException(f"{len(found)} RUNNING jobs are named {job!r} on {rest} "
                                   f"({', '.join(j['jid'] for j in found)}): name one by its id")
    return found[0]


def _savepoint_target(directory: Optional[str]) -> Optional[str]:
    """A URI as Flink's JobManager reads it. A plain path is made absolute here, which is only right on a
    cluster that shares this machine's filesystem; a remote cluster needs a shared one (s3://, hdfs://)."""
    if not directory:
        return None  # the cluster's state.savepoints.dir
    return directory if "://" in directory else Path(directory).resolve().as_uri()


def stop_with_savepoint(rest: str, jid: str, directory: Optional[str], timeout: float) -> str:
    """Flink's stop-with-savepoint (no drain: event-time timers stay pending and fire in the job that
    resumes, as they would have in this one); returns the savepoint's path once it is COMPLETED."""
    import time

    body: dict[str, Any] = {"drain": False}
    target = _savepoint_target(directory)
    if target:
        body["targetDirectory"] = target
    trigger = _flink_rest(rest, f"/jobs/{jid}/stop", body)["request-id"]
    deadline = time.monotonic() + timeout
    while True:
        answer = _flink_rest(rest, f"/jobs/{jid}/savepoints/{trigger}")
        if answer["status"]["id"] == "COMPLETED":
            operation = answer.get("operation") or {}
            if "failure-cause" in operation:
                cause = operation["failure-cause"]
                text = str(cause.get("stack-trace") or cause.get("class") or cause).strip().splitlines()
                raise click.ClickException(f"the savepoint of job {jid} failed, the job goes on: "
                                           f"{text[0][:300] if text else cause}")
            return str(operation["location"])
        if time.monotonic() > deadline:
            raise click.ClickException(f"no savepoint of job {jid} after {timeout:.0f} s (trigger {trigger}): "
                                       "see the JobManager's log; the job may still stop when it completes")
        time.sleep(0.5)


def _submit_options(fn: F) -> F:
    """The options `job submit` and `job upgrade` share."""
    options = [
        click.option("-m", "--jobmanager", envvar="STREAMREC_FLINK_REST", show_envvar=True, default="127.0.0.1:8081",
                     show_default=True, help="Flink REST address of the cluster."),
        click.option("-p", "--parallelism", type=click.IntRange(1, 64)),
        click.option("--python", "python_exec", default=None,
                     help="A Python with streamrec installed at this path on every TaskManager (a cluster that "
                          "shares this machine's filesystem). Default: ship this interpreter, streamrec and its "
                          "dependencies as one archive (-pyarch, built once per change into .stack/ship/; "
                          "streamrec/shipping.py)."),
        click.option("--flink", "flink_bin", envvar="FLINK_BIN", show_envvar=True,
                     help="The `flink` launcher (default: the one the apache-flink package ships)."),
        click.option("--timeout", type=float, default=180, show_default=True, help="Seconds to wait for RUNNING."),
    ]
    for opt in reversed(options):
        fn = opt(fn)
    return fn


def _flink_run_cmd(jobmanager: str, python_exec: Optional[str], flink_bin: Optional[str],
                   parallelism: Optional[int]) -> list[str]:
    """`flink run` of this checkout's job (building the shipped archive if it changed)."""
    import pyflink

    flink = flink_bin or str(Path(pyflink.__file__).parent / "bin" / "flink")
    job_py = Path(__file__).resolve().parent / "jobs" / "job.py"
    cmd = [flink, "run", "-d", "-m", jobmanager, "-py", str(job_py)]
    if python_exec:
        cmd += ["-pyexec", python_exec, "-pyclientexec", python_exec]
    else:
        from streamrec import shipping
        from streamrec.localstack import stack_dir

        shipped = shipping.build_archive(stack_dir() / "ship")
        _err(f"shipping {shipped.path} ({shipped.size_bytes / 1e6:.0f} MB, {shipped.files} files; "
             + (f"built in {shipped.seconds:.1f} s)" if shipped.built else "unchanged, not rebuilt)"))
        cmd += shipping.flink_run_args(shipped.path)
    if parallelism is not None:
        cmd += ["-p", str(parallelism)]
    return cmd


def _run_until_running(cmd: list[str], env: dict[str, str], jobmanager: str, timeout: float) -> str:
    """Run ``cmd`` (`flink run -d`); the id of the new streamrec job once it is RUNNING. Jobs that
    existed before do not count, so a --force submit next to a running one waits for its own."""
    from streamrec.runner import wait_for

    before = {j["jid"] for j in _flink_jobs(jobmanager)}
    _err("$ " + " ".join(cmd))
    rc = subprocess.call(cmd, env=env, stdout=sys.stderr)
    if rc != 0:
        raise click.ClickException(f"flink run failed (exit status {rc})")
    jobs = wait_for(
        lambda: [j for j in _flink_jobs(jobmanager)
                 if j["name"] == "streamrec" and j["state"] == "RUNNING" and j["jid"] not in before],
        timeout=timeout, what="the job to be RUNNING",
    )
    jid = str(jobs[0]["jid"])
    _err(f"job streamrec is RUNNING on {jobmanager} ({jid})")
    return jid


@job.command("submit")
@_submit_options
@click.option("--force", is_flag=True, help="Submit even if a job named streamrec is already running there.")
@click.option("-s", "--from-savepoint", "savepoint", metavar="PATH",
              help="Resume from this savepoint (or retained checkpoint), at any parallelism up to 128.")
@connection_options
def job_submit(jobmanager: str, parallelism: Optional[int], python_exec: Optional[str], flink_bin: Optional[str],
               force: bool, timeout: float, savepoint: Optional[str], **conn: Any) -> None:
    """Submit the job to a Flink cluster with `flink run`; return once it is RUNNING and print its id.

    Without --from-savepoint the job starts with empty user state (it reads the events topic from
    the consumer group's committed offsets). A savepoint of a job with the other hot path
    (STREAMREC_HOT_PATH) holds state the job cannot read: docs/GUARANTEES.md ("upgrading") says what to do."""
    running = [j for j in _flink_jobs(jobmanager) if j["name"] == "streamrec" and j["state"] == "RUNNING"]
    if running and not force:
        _err(f"job streamrec is already running on {jobmanager} ({running[0]['jid']}); --force submits another")
        return
    cmd = _flink_run_cmd(jobmanager, python_exec, flink_bin, parallelism)
    if savepoint:
        cmd += ["-s", savepoint]
    click.echo(_run_until_running(cmd, _job_env(conn, parallelism), jobmanager, timeout))


_SAVEPOINT_DIR = click.option(
    "--savepoint", "directory", metavar="DIR", envvar="STREAMREC_SAVEPOINT_DIR", show_envvar=True,
    help="Where the savepoint goes, as the JobManager sees it (a path on a cluster that shares this "
         "filesystem, or s3://..., hdfs://...). Default: the cluster's state.savepoints.dir.")
_JOB = click.option("--job", "job_ref", default="streamrec", show_default=True, metavar="NAME|ID",
                    help="The RUNNING job, by name or id.")
_STOP_TIMEOUT = click.option("--stop-timeout", type=float, default=600, show_default=True,
                             help="Seconds to wait for the savepoint.")


@job.command("stop")
@click.option("-m", "--jobmanager", envvar="STREAMREC_FLINK_REST", show_envvar=True, default="127.0.0.1:8081",
              show_default=True, help="Flink REST address of the cluster.")
@_JOB
@_SAVEPOINT_DIR
@_STOP_TIMEOUT
def job_stop(jobmanager: str, job_ref: str, directory: Optional[str], stop_timeout: float) -> None:
    """Stop the job with a savepoint and print the savepoint's path.

    The job's state (user vectors, purchases and cart exclusions, trending, the catalog updates) and
    its Kafka offsets are in the savepoint; `streamrec job submit --from-savepoint PATH` resumes
    from it, at any parallelism up to 128. If the savepoint fails, the job keeps running."""
    import time

    found = _running_job(jobmanager, job_ref)
    _err(f"stopping job {found['name']} ({found['jid']}) with a savepoint"
         + (f" into {_savepoint_target(directory)}" if directory else "") + " ...")
    t0 = time.monotonic()
    path = stop_with_savepoint(jobmanager, found["jid"], directory, stop_timeout)
    _err(f"stopped; savepoint completed in {time.monotonic() - t0:.1f} s")
    click.echo(path)


@job.command("upgrade")
@_submit_options
@_JOB
@_SAVEPOINT_DIR
@_STOP_TIMEOUT
@connection_options
def job_upgrade(jobmanager: str, parallelism: Optional[int], python_exec: Optional[str], flink_bin: Optional[str],
                timeout: float, job_ref: str, directory: Optional[str], stop_timeout: float, **conn: Any) -> None:
    """Stop the job with a savepoint and submit this checkout's job from it; print the new job's id.

    Without -p the new job runs at the old one's parallelism. The code to ship is prepared before
    the job stops, so the job is down only for the savepoint and the new job's start. If the new
    job does not start, the old one stays stopped: the message names the savepoint to resume from
    with `streamrec job submit --from-savepoint PATH`."""
    import time

    found = _running_job(jobmanager, job_ref)
    jid = found["jid"]
    if parallelism is None and not int(os.environ.get("STREAMREC_PARALLELISM") or 0):  # 0: left to Flink
        vertices = _flink_rest(jobmanager, f"/jobs/{jid}")["vertices"]
        parallelism = max(int(v["parallelism"]) for v in vertices)
    cmd = _flink_run_cmd(jobmanager, python_exec, flink_bin, parallelism)
    env = _job_env(conn, parallelism)
    _err(f"stopping job {found['name']} ({jid}) with a savepoint ...")
    t0 = time.monotonic()
    path = stop_with_savepoint(jobmanager, jid, directory, stop_timeout)
    _err(f"savepoint {path} ({time.monotonic() - t0:.1f} s); submitting from it")
    try:
        new = _run_until_running([*cmd, "-s", path], env, jobmanager, timeout)
    except Exception as exc:
        _err(f"error: the new job did not start ({exc}); the old one ({jid}) is stopped, its state is in "
             f"the savepoint {path}: resume with `streamrec job submit --from-savepoint {path}`")
        raise SystemExit(1) from exc
    _err(f"upgraded in {time.monotonic() - t0:.1f} s (stop -> new job RUNNING)")
    click.echo(new)


# --- benchmarks (streamrec/bench; `make bench`) --------------------------------------------------

def _add_bench() -> None:
    from streamrec.bench.cli import bench

    main.add_command(bench)


_add_bench()


if __name__ == "__main__":
    main()
