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

# Fields that hold secrets: hidden from repr and to_json; also read from STREAMREC_<FIELD>_FILE.
SECRET_FIELDS = ("cassandra_password", "kafka_sasl_password", "serve_api_key")

# The event types the job understands and how strongly each one moves a user's embedding
# (docs/EVALUATION.md says why): ordered as the literature orders intent, TencentRec's
# view 1 / click 2 / buy 5, with add-to-cart where OTTO's metric puts carts (0.3, between clicks
# 0.1 and orders 0.6); a removal from the cart undoes the add (minus the add-to-cart weight); a
# search counts like a click (its query is embedded from the words of product titles).
DEFAULT_EVENT_WEIGHTS: Mapping[str, float] = {
    "view": 1.0,
    "click": 2.0,
    "search": 2.0,
    "add_to_cart": 3.0,
    "remove_from_cart": -3.0,
    "purchase": 5.0,
}
# Chosen on a validation split of UCI Online Retail (docs/EVALUATION.md), never on the test split.
DEFAULT_HALF_LIFE_EVENTS = 0.5
DEFAULT_HALF_LIFE_DAYS = 0.0
# The transition term (streamrec.model.transitions), chosen on UCI's validation split (docs/EVALUATION.md).
DEFAULT_TRANSITION_WEIGHT = 0.2
DEFAULT_TRANSITION_CONTEXT = 5
PYTHON_EXECUTION_MODES = ("process", "thread")
HOT_PATHS = ("batch", "per-event")
# Cassandra's consistency levels (reads cannot use ANY; SERIAL levels are for lightweight transactions)
WRITE_CONSISTENCY_LEVELS = ("ANY", "ONE", "TWO", "THREE", "QUORUM", "ALL", "LOCAL_QUORUM", "EACH_QUORUM", "LOCAL_ONE")
READ_CONSISTENCY_LEVELS = ("ONE", "TWO", "THREE", "QUORUM", "ALL", "LOCAL_QUORUM", "EACH_QUORUM", "LOCAL_ONE")
CASSANDRA_WRITERS = ("java", "python")
MAX_CASSANDRA_TTL_S = 630_720_000  # 20 years: Cassandra refuses a longer TTL
# "": the cluster's state.backend.type (flink-conf/config.yaml: rocksdb); the heap on a local minicluster
STATE_BACKENDS = ("", "hashmap", "rocksdb")


@dataclass(frozen=True)
class Config:
    # --- connections -------------------------------------------------------------------------
    kafka_bootstrap: str = "127.0.0.1:9092"
    events_topic: str = "events"
    products_topic: str = "products"
    dlq_topic: str = "events-dlq"
    consumer_group: str = "streamrec"
    # The job's events source has the broker answer a fetch once it holds this many bytes or after
    # this many ms (Kafka's defaults: 1 byte, 500 ms, answer a fetch for every record or two of a
    # trickle). At ~700 events/s, 16 KiB / 25 ms halved the broker's CPU (~0.25 -> ~0.13 cores) for
    # at most 25 ms more latency; on a backlog it changes nothing (docs/benchmark-history.md, sessions 6 and 7).
    # The products source keeps Kafka's defaults: it is idle nearly always, and a 25 ms wait there
    # meant 40 empty fetches a second (what cost ~12% events/s per core when it applied to both).
    kafka_fetch_min_bytes: int = 16_384
    kafka_fetch_max_wait_ms: int = 25
    cassandra_hosts: str = "127.0.0.1"
    cassandra_port: int = 9042
    keyspace: str = "streamrec"
    replication_factor: int = 1
    # Retention of the `events` table: its default_time_to_live, in seconds after each write
    # (Cassandra's clock), set on the table by `streamrec init` (ensure_schema). Bounds every
    # user's partition, a very active user's too, to their events of this window; expired rows are
    # at the partition's old end (ts DESC), behind the newest-first reads. 0: keep events forever.
    # docs/GUARANTEES.md, "Hot users and wide partitions".
    events_ttl_s: int = 30 * 86_400
    flink_rest: str = "127.0.0.1:8081"

    # --- the model ---------------------------------------------------------------------------
    top_k: int = 10
    # Half-life of a user's past interest, counted in events that move the user (product events
    # and searches): after this many newer events an old one counts half as much.
    half_life_events: float = DEFAULT_HALF_LIFE_EVENTS
    # Half-life in days of event time between a user's events (0: no time decay); multiplies.
    half_life_days: float = DEFAULT_HALF_LIFE_DAYS
    event_weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_EVENT_WEIGHTS))
    # Weight of the item-to-item transition term beside the cosine: the successors (learned with the
    # catalog, `catalog build --transition-steps`) of the user's last transition_context products.
    # Nothing changes with a catalog that has no transitions (the Cassandra products table has none).
    transition_weight: float = DEFAULT_TRANSITION_WEIGHT
    transition_context: int = DEFAULT_TRANSITION_CONTEXT
    exclude_purchased: bool = True
    # What stays in a user's cart (added, not removed or bought) is not recommended either.
    exclude_cart: bool = True
    # Category filters applied inside the top-k step (comma-separated category names; empty: none).
    include_categories: str = ""
    exclude_categories: str = ""
    # The job stores top_k * query_overfetch candidates per user so that the query side can drop
    # products (`streamrec recs --exclude/--category`) and still show top_k of them.
    query_overfetch: int = 3
    # A user with fewer events that moved their embedding than this gets trending products
    # (`source` = "trending") instead of personal ones.
    cold_start_events: int = 1
    # Trending = popularity decayed by event time with this half-life, computed in the stream from
    # every user's events (weights: event_weights, positive ones only) and broadcast to every
    # parallel instance; the best trending_size products are kept.
    trending_half_life_minutes: float = 60.0
    trending_size: int = 100
    # How often the trending list is recomputed and broadcast (processing time).
    trending_interval_ms: int = 1_000
    # Idle-user TTL: a user whose events are more than this far apart in event time starts again
    # as a new user, and Flink drops the state of a user idle this long (processing time), so state
    # does not grow without bound. 0: keep users forever.
    user_ttl_ms: int = 90 * 86_400_000
    # Catalogs with at least this many products are searched with a faiss IVF index instead of
    # exactly (0: always exact); its nprobe is the smallest that reaches ann_recall_floor (recall@k
    # on user-like queries, measured on the catalog when the index is built).
    ann_min_products: int = 50_000
    ann_recall_floor: float = 0.95
    # A/B variants: JSON {"name": {"share": w, <model settings to override>}, ...}; a user's variant
    # is a hash of the user id. Overridable: top_k, half_life_events, half_life_days, event_weights,
    # exclude_purchased, exclude_cart, include_categories, exclude_categories, cold_start_events,
    # transition_weight, transition_context.
    # Empty: one variant named "default" with the settings above.
    variants: str = ""
    # Where the job reads the catalog from: a catalog file (.npz, see model.catalog) or, when
    # empty, the Cassandra `products` table.
    catalog_path: str = ""

    # --- input limits (anything beyond goes to the dead-letter topic) --------------------------
    max_record_bytes: int = 64 * 1024
    max_query_chars: int = 1024
    # How far an event's ts may lead the clock of the job when it reads the record (FUTURE_TS
    # beyond: one producer's clock must not drive trending or the idle-user TTL). Only the future is
    # bounded: replays of old history are fine. 0: no limit.
    max_ts_lead_ms: int = 5 * 60_000
    # The late catalog: how long (processing time) an event whose product the parser does not know
    # yet waits for it on the products topic before it is dead-lettered as UNKNOWN_PRODUCT (a
    # product published a moment before its first event may reach the parser after the event). The
    # wait is Flink state (operator await-products), so it survives a restore; a late event is
    # processed after later events of its user. 0: dead-letter at once, as before.
    unknown_product_wait_ms: int = 30_000

    # --- job ---------------------------------------------------------------------------------
    # 0: Flink decides (`flink run -p N`, else the cluster's parallelism.default; 1 on the local
    # minicluster). A value here wins over both.
    parallelism: int = 0
    checkpoint_interval_ms: int = 10_000
    # Checkpoints in a row that may fail (or time out) before the job fails over and restarts from
    # the last completed one. Each one tolerated leaves the replay after a real failure longer and
    # the Kafka offsets committed later (docs/GUARANTEES.md, "Consistency levels and checkpoints").
    checkpoint_tolerable_failures: int = 3
    # Start from the earliest offset when the consumer group has no committed offset yet.
    start_from_earliest: bool = True
    # Comma-separated jar paths/URLs the job needs (the Kafka connector); filled in by the setup.
    jars: str = ""
    # Where the job writes checkpoints (a URI or path). Empty: the cluster's setting
    # (flink-conf/config.yaml), or a fresh temporary folder on a local minicluster (never the
    # JobManager's memory, which refuses a state over 5 MB).
    checkpoint_dir: str = ""
    # Where keyed state lives: "rocksdb" (on local disk, off the JVM heap: millions of users per
    # TaskManager, checkpoints upload only the files changed since the last one when
    # state_incremental is on) or "hashmap" (the JVM heap: fastest access, every checkpoint a full
    # copy; small setups and tests). "": the cluster's state.backend.type (flink-conf/config.yaml:
    # rocksdb, incremental), and the heap on a local minicluster. README, "Sizing".
    state_backend: str = ""
    # Incremental checkpoints (RocksDB only): applied to the job when state_backend is set.
    state_incremental: bool = True
    # A Python operator hands its results back to Java when a bundle ends: after this many ms or
    # records, whichever comes first (and before every checkpoint barrier). Longer bundles amortise
    # the per-bundle state write-back; shorter ones bound the latency each Python step adds.
    python_bundle_time_ms: int = 200
    python_bundle_size: int = 100_000
    # Keyed state entries each Python worker caches (beyond: a round trip to Java per access).
    python_state_cache_size: int = 10_000
    # "thread": the Python functions run inside the TaskManager's JVM (pemja): no Beam bundles,
    # state reads and writes without a gRPC round trip, ~5x fresher recommendations (docs/benchmark-history.md).
    # All slots of one TaskManager share its Python interpreter lock, so scale out with more
    # TaskManagers of one slot. "process": a Python worker process per slot fed by Beam in bundles
    # (the bundle and state cache settings above apply only there).
    python_execution_mode: str = "thread"
    # "batch" (the fast path): user state in a JVM operator, Python called once per batch of events
    # (README, Architecture). "per-event": the earlier design, one Python call per event with the
    # user state pickled in Python keyed state; kept to compare against.
    hot_path: str = "batch"
    # A batch goes to Python at this many events or this many ms after its first event, whichever
    # comes first (and before every checkpoint barrier). The fast path batches twice (raw records
    # before the parser, events before the ranker), so a quiet stream waits up to twice the linger.
    batch_max_events: int = 512
    batch_linger_ms: int = 25
    # Under load a batch lingers longer, up to this many ms: when it is at least
    # batch_linger_ms / batch_max_linger_ms full at its linger, it fills by then at its rate (a busy
    # stream gets full batches, which cost less per event; a quiet one keeps batch_linger_ms).
    # batch_linger_ms or less: the linger is fixed.
    batch_max_linger_ms: int = 100
    batch_max_bytes: int = 4 * 1024 * 1024
    # How long Flink holds a partly filled network buffer before it sends it to the next task (its
    # default: 100 ms). At a trickle of events every exchange waits that long; at full load the
    # buffers fill first and this costs nothing.
    buffer_timeout_ms: int = 10
    # Threads the model's BLAS (numpy's OpenBLAS) and faiss may use in each TaskManager's Python.
    # One: Flink's parallelism is how the job uses more cores, and a multi-threaded BLAS on a
    # 1 x 64 by 64 x 10k product is several times slower when the cores are busy (docs/benchmark-history.md).
    # 0 leaves the library defaults (a thread per core).
    blas_threads: int = 1
    # REST/web port of the local minicluster (`streamrec job run` only; ignored under `flink run`).
    # 0: a free port, logged by Flink.
    minicluster_rest_port: int = 0
    # Flink's Prometheus reporter on the local minicluster (`streamrec job run`; STREAMREC_METRICS_PORT):
    # a port or a range "9249-9258" ("": no reporter). A cluster enables it in its own config
    # (flink-conf/config.yaml: 9249-9258); the metrics are listed in streamrec/metrics.py.
    metrics_port: str = ""
    # Where `streamrec metrics` reads the service's /metrics (STREAMREC_METRICS_SERVICE_URL; "": skip it).
    metrics_service_url: str = "http://127.0.0.1:8000"
    # The Cassandra writer retries a failed write this many times (exponential back-off from
    # 0.5 s, at most 8 s apart) before it fails the task and Flink's restart strategy takes over.
    cassandra_write_retries: int = 4
    # Who writes the rows: "java" (a Flink sink with the DataStax Java driver; flushed before every
    # checkpoint barrier) or "python" (an operator with the Python driver). TLS needs "python".
    cassandra_writer: str = "java"
    # Cassandra write requests in flight per parallel instance (sent, not yet acknowledged); all
    # are awaited before a checkpoint completes (the Java sink's flush, or the end of the Python
    # bundle). Python writer only: 0 awaits each row at once.
    cassandra_max_in_flight: int = 256
    # Rows per write request (an unlogged batch of their statements): ~10 KiB with 30 candidates
    # per row, over Cassandra's default batch_size_warn_threshold (5 KiB; README: raise it to 16 KiB).
    cassandra_batch_rows: int = 10
    # A partial batch goes out this long after its first row (Java sink): at a trickle of events a
    # row would otherwise wait for the batch to fill or for the next checkpoint (seconds).
    cassandra_batch_linger_ms: int = 20
    # Consistency levels of every Cassandra write (the job's sinks, catalog load and publish) and
    # read (recs, events, the service, verify, the catalog). One node: LOCAL_ONE. A cluster with
    # replication factor 3: LOCAL_QUORUM for both, so that a read sees every acknowledged write and
    # one replica may be down (docs/GUARANTEES.md, "Consistency levels and checkpoints").
    cassandra_write_consistency: str = "LOCAL_ONE"
    cassandra_read_consistency: str = "LOCAL_ONE"

    # --- security (see docs/GUARANTEES.md). Secrets: set STREAMREC_<FIELD> or, better,
    # STREAMREC_<FIELD>_FILE (a file holding the secret); they never appear in repr, logs or --help.
    cassandra_username: str = ""
    cassandra_password: str = field(default="", repr=False)
    cassandra_tls: bool = False
    cassandra_tls_ca_file: str = ""  # PEM bundle to verify the server; empty: the system's CAs
    cassandra_tls_cert_file: str = ""  # client certificate chain (PEM) for mutual TLS
    cassandra_tls_key_file: str = ""  # its private key (PEM)
    cassandra_tls_check_hostname: bool = True
    # PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL (Kafka's security.protocol)
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str = "PLAIN"  # PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512
    kafka_sasl_username: str = ""
    kafka_sasl_password: str = field(default="", repr=False)
    kafka_tls_ca_file: str = ""  # PEM bundle to verify the brokers; empty: the system's CAs
    kafka_tls_client_pem: str = ""  # client certificate chain + unencrypted key in one PEM (mutual TLS)

    # --- the HTTP service (`streamrec serve`, streamrec/service) ---------------------------------
    serve_host: str = "127.0.0.1"
    serve_port: int = 8000
    # Clients must send this in X-API-Key for /v1/* (empty: no key). A secret: prefer
    # STREAMREC_SERVE_API_KEY_FILE; it is never logged.
    serve_api_key: str = field(default="", repr=False)
    # Origins a browser page may call the API from (comma-separated; "*": any; empty: none but its own).
    serve_cors_origins: str = ""
    # A request body larger than this is refused (413) before it is parsed.
    serve_max_body_bytes: int = 1024 * 1024
    serve_max_batch: int = 1000  # events in one POST /v1/events
    serve_max_k: int = 100  # the largest k (and n of /events) a request may ask for
    # The catalog the service holds in memory is reloaded from Cassandra when an update passes on
    # the products topic, and at the latest after this many seconds (a safety net).
    serve_catalog_refresh_s: float = 300.0
    # The service's trending list: decayed popularity (trending_half_life_minutes) of the valid events
    # on the events topic, read from this many minutes back (record time) when it starts.
    serve_trending_lookback_minutes: float = 24 * 60.0

    # --- fault injection (tests only) ----------------------------------------------------------
    # > 0: subtask 0 of the ranker (rank; update-and-recommend on the per-event path) raises at its
    # first record after it has processed this many records AND a checkpoint newer than the one it
    # started from has completed in checkpoint_dir; once per attempt, on attempts 0 to
    # fault_fail_times - 1, so the job fails fault_fail_times times in a row, each time after progress.
    fault_fail_once_after: int = 0
    fault_fail_times: int = 1
    # With fault_fail_once_after: the first failure is thrown inside checkpoint completion instead
    # (user-state's notifyCheckpointComplete, subtask 0, attempt 0, the first checkpoint completed
    # after that many events); the ranker's failures then take attempts 1 to fault_fail_times - 1.
    # Fast path only.
    fault_fail_in_checkpoint_complete: bool = False

    def __post_init__(self) -> None:
        choices = (("python_execution_mode", PYTHON_EXECUTION_MODES), ("cassandra_writer", CASSANDRA_WRITERS),
                   ("hot_path", HOT_PATHS), ("cassandra_write_consistency", WRITE_CONSISTENCY_LEVELS),
                   ("cassandra_read_consistency", READ_CONSISTENCY_LEVELS), ("state_backend", STATE_BACKENDS))
        for name, allowed in choices:
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"{ENV_PREFIX}{name.upper()}: {value!r} is not one of {', '.join(allowed)}")
        for name in ("parallelism", "blas_threads", "checkpoint_tolerable_failures",
                     "kafka_fetch_min_bytes", "kafka_fetch_max_wait_ms",
                     "cassandra_batch_linger_ms", "batch_max_events", "batch_linger_ms", "batch_max_linger_ms",
                     "batch_max_bytes",
                     "buffer_timeout_ms", "unknown_product_wait_ms", "events_ttl_s", "fault_fail_times",
                     "serve_max_body_bytes", "serve_max_batch", "serve_max_k"):
            if getattr(self, name) < 0:
                raise ValueError(f"{ENV_PREFIX}{name.upper()}: {getattr(self, name)} is negative")
        if self.events_ttl_s > MAX_CASSANDRA_TTL_S:
            raise ValueError(f"{ENV_PREFIX}EVENTS_TTL_S: {self.events_ttl_s} is over Cassandra's largest TTL "
                             f"({MAX_CASSANDRA_TTL_S} s, 20 years)")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Config:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(ENV_PREFIX + f.name.upper())
            if raw is not None and raw != "":
                values[f.name] = _parse(f.name, f.type, raw)
        for name in SECRET_FIELDS:
            path = env.get(ENV_PREFIX + name.upper() + "_FILE")
            if path and name not in values:
                values[name] = _read_secret_file(ENV_PREFIX + name.upper() + "_FILE", path)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def replace(self, **changes: Any) -> Config:
        return dataclasses.replace(self, **changes)

    def to_json(self) -> str:
        """Every setting as JSON, secrets masked (``***``): safe to log, not a way to pass secrets."""
        d = dataclasses.asdict(self)
        d["event_weights"] = dict(self.event_weights)
        for name in SECRET_FIELDS:
            if d[name]:
                d[name] = "***"
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


def _read_secret_file(var: str, path: str) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read().rstrip("\r\n")
    except OSError as exc:
        # the path is not secret; the content is never part of a message
        raise ValueError(f"{var}: cannot read the secret file {path!r} ({exc.strerror})") from None


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
