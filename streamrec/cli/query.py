"""Reading what the job stored: `recs`, `events`, `similar`, `ab report`, and `serve` (the same
answers over HTTP)."""

from __future__ import annotations

import sys
from typing import Any

import click

from streamrec.cli.base import (
    _config,
    _err,
    _output_option,
    _print_json,
    _table,
    _valid_user_id,
    connection_options,
    main,
)
from streamrec.config import ModelConfig, ServiceConfig, env_var

# --- query side -------------------------------------------------------------------------------

@main.command()
@click.argument("user")
@click.option("-k", "k", type=click.IntRange(1, 1000), default=ModelConfig().top_k, show_default=True,
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
    client = QueryClient(_config(**conn).cassandra)
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
    client = QueryClient(_config(**conn).cassandra)
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

    cat = load_catalog(_config(**conn).cassandra)
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
@click.option("--host", envvar=env_var(ServiceConfig, "host"), show_envvar=True, default=ServiceConfig().host,
              show_default=True, help="Address to listen on.")
@click.option("--port", envvar=env_var(ServiceConfig, "port"), show_envvar=True, type=click.IntRange(0, 65535),
              default=ServiceConfig().port, show_default=True, help="Port to listen on.")
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

    config = _config(**conn).replace(service={"host": host, "port": port})
    _err(f"streamrec service on http://{host}:{port}/ (API docs: /docs)")
    run_service(config, log_level=log_level)


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

    client = QueryClient(_config(**conn).cassandra)
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

