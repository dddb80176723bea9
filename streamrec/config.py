"""One typed, frozen configuration object for the job, the CLI and the tests.

Every field can be set from an environment variable named ``STREAMREC_<FIELD>`` (upper case); the
few connection addresses also accept the names shown in the CLI's ``--help``. Values given in code
(``Config(...)`` or ``dataclasses.replace``) win over the environment, which wins over defaults.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field, fields
from typing import Any, Mapping

ENV_PREFIX = "STREAMREC_"

# The event types the job understands and how strongly each one moves a user's embedding.
# Ordered as the literature orders intent (TencentRec: view 1 / click 2 / buy 5); a removal from
# the cart pulls the user away from the product with half the add-to-cart weight.
DEFAULT_EVENT_WEIGHTS: Mapping[str, float] = {
    "view": 1.0,
    "click": 2.0,
    "search": 0.0,
    "add_to_cart": 3.0,
    "remove_from_cart": -1.5,
    "purchase": 5.0,
}


@dataclass(frozen=True)
class Config:
    # --- connections -------------------------------------------------------------------------
    kafka_bootstrap: str = "127.0.0.1:9092"
    events_topic: str = "events"
    products_topic: str = "products"
    dlq_topic: str = "events-dlq"
    consumer_group: str = "streamrec"
    cassandra_hosts: str = "127.0.0.1"
    cassandra_port: int = 9042
    keyspace: str = "streamrec"
    replication_factor: int = 1
    flink_rest: str = "127.0.0.1:8081"

    # --- the model ---------------------------------------------------------------------------
    top_k: int = 10
    # Half-life of a user's past interest, counted in events that name a product: after this many
    # newer events an old one counts half as much.
    half_life_events: float = 20.0
    event_weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_EVENT_WEIGHTS))
    exclude_purchased: bool = True
    # Where the job reads the catalog from: a catalog file (.npz, see udfs.catalog) or, when
    # empty, the Cassandra `products` table.
    catalog_path: str = ""

    # --- input limits (anything beyond goes to the dead-letter topic) --------------------------
    max_record_bytes: int = 64 * 1024
    max_query_chars: int = 1024

    # --- job ---------------------------------------------------------------------------------
    parallelism: int = 1
    checkpoint_interval_ms: int = 10_000
    # Start from the earliest offset when the consumer group has no committed offset yet.
    start_from_earliest: bool = True
    # Comma-separated jar paths/URLs the job needs (the Kafka connector); filled in by the setup.
    jars: str = ""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Config:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(ENV_PREFIX + f.name.upper())
            if raw is not None and raw != "":
                values[f.name] = _parse(f.name, f.type, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def replace(self, **changes: Any) -> Config:
        return dataclasses.replace(self, **changes)

    def to_json(self) -> str:
        d = dataclasses.asdict(self)
        d["event_weights"] = dict(self.event_weights)
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Config:
        return cls(**json.loads(text))

    @property
    def cassandra_contact_points(self) -> list[str]:
        return [h.strip() for h in self.cassandra_hosts.split(",") if h.strip()]

    @property
    def jar_list(self) -> list[str]:
        return [j.strip() for j in self.jars.split(",") if j.strip()]


def _parse(name: str, typ: Any, raw: str) -> Any:
    typ = str(typ)
    try:
        if typ in ("int", "<class 'int'>"):
            return int(raw)
        if typ in ("float", "<class 'float'>"):
            return float(raw)
        if typ in ("bool", "<class 'bool'>"):
            low = raw.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"not a boolean: {raw!r}")
        if typ.startswith("Mapping"):
            parsed = json.loads(raw)
            if not isinstance(parsed, dict):
                raise ValueError("expected a JSON object")
            return {str(k): float(v) for k, v in parsed.items()}
    except ValueError as exc:
        raise ValueError(f"{ENV_PREFIX}{name.upper()}: {exc}") from exc
    return raw
