"""Data and models offline: `data export`, `catalog build|load|publish`, `evaluate`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Optional

import click

from streamrec.cli.base import (
    F,
    _config,
    _err,
    _output_option,
    _print_json,
    _progress,
    _quiet_option,
    _table,
    connection_options,
    main,
)
from streamrec.config import Config

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
        click.option("--transition-steps", type=click.IntRange(0, 100), default=d.transition_steps,
                     show_default=True, help="Item-to-item transitions: a product following another at most "
                     "this many positions later in a session counts (0: the catalog carries none)."),
        click.option("--transition-keep", type=click.IntRange(1, 10000), default=d.transition_keep,
                     show_default=True, help="The strongest successors kept per product."),
        click.option("--transition-backward", type=click.FloatRange(0, 1), default=d.transition_backward,
                     show_default=True, help="Weight of the transitions read backward (1: undirected "
                     "co-occurrence within --transition-steps; 0: what follows only)."),
        click.option("--transition-damping", type=click.FloatRange(0, 1), default=d.transition_damping,
                     show_default=True, help="Divide a successor's strength by its event count to this "
                     "power (0: none; 0.5: the cosine's normalisation)."),
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
                  title_weight: float, popularity: float, min_count: int, categories: int, transition_steps: int,
                  transition_keep: int, transition_backward: float, transition_damping: float,
                  quiet: bool, **conn: Any) -> None:
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
                                       min_count=min_count, categories=categories,
                                       transition_steps=transition_steps, transition_keep=transition_keep,
                                       transition_backward=transition_backward,
                                       transition_damping=transition_damping)
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
            n = store_catalog(_config(**conn).cassandra, cat)
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
        n = store_catalog(_config(**conn).cassandra, cat)
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
    store = ProductStore(config.cassandra)
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
    report = send_keyed(((n, u.product_id, u.to_json()) for n, u in written), config.kafka.products_topic, config.kafka,
                        max_record_bytes=1024 * 1024)
    failed += report.rejected
    failed.sort()
    for lineno, why in parsed.bad:
        _err(f"line {lineno}: bad update, not published: {why}")
    for lineno, why in failed:
        _err(f"line {lineno}: not published: {why}")
    summary = {"published": report.sent, "bad": len(parsed.bad), "failed": len(failed),
               "table": f"{config.cassandra.keyspace}.products", "topic": config.kafka.products_topic,
               "errors": [{"line": n, "error": why} for n, why in sorted(parsed.bad + failed)]}
    if output == "json":
        _print_json(summary)
    if not quiet:
        _err(f"published {report.sent} update(s) to {config.cassandra.keyspace}.products and "
             f"{config.kafka.products_topic}, "
             f"bad {len(parsed.bad)}" + (f", failed {len(failed)}" if failed else ""))
    if parsed.bad or failed:
        sys.exit(1)


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

    params = ModelParams.from_config(Config.from_env().model)
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


