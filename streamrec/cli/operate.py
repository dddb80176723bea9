"""Feeding and checking the pipeline: `init` (topics and tables), `produce`, `metrics`, `verify`."""

from __future__ import annotations

import sys
from typing import Any

import click

from streamrec.cli.base import (
    _config,
    _err,
    _output_option,
    _print_json,
    _progress,
    _quiet_option,
    _table,
    connection_options,
    main,
    terminal_safe,
)
from streamrec.config import ServiceConfig, env_var

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
        _err(f"sent {report.sent} record(s) to {config.kafka.events_topic}"
             + (f", rejected {len(report.rejected)}" if report.rejected else ""))
    if report.rejected:
        sys.exit(1)


# --- consistency ------------------------------------------------------------------------------

@main.command("metrics")
@click.option("--ports", envvar="STREAMREC_METRICS_PORT", show_envvar=True, default="9249-9258", show_default=True,
              help="Flink's Prometheus reporter port or range (the JobManager and each TaskManager take one).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Host of the reporters.")
@click.option("--service", "service_url", envvar=env_var(ServiceConfig, "metrics_url"), show_envvar=True,
              default=ServiceConfig().metrics_url, show_default=True,
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
        _table(f"{config.cassandra.keyspace} vs {report.topic}: {report.records} records, {report.valid_events} valid, "
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


# --- setup ------------------------------------------------------------------------------------

@main.command()
@click.option("--partitions", type=int, default=2, show_default=True, help="Partitions of the events topic.")
@connection_options
def init(partitions: int, **conn: Any) -> None:
    """Create the Kafka topics and the Cassandra keyspace and tables (idempotent)."""
    from streamrec.connectors.cassandra import ensure_schema
    from streamrec.connectors.kafka import ensure_topics

    config = _config(**conn)
    ensure_topics(config.kafka, partitions)
    ensure_schema(config.cassandra)
    _err(f"topics and keyspace {config.cassandra.keyspace!r} ready")

