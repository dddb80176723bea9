"""One typed, frozen configuration for the job, the CLI, the service and the tests, in sections.

``Config`` composes one frozen dataclass per part of the system: ``kafka`` (KafkaConfig),
``cassandra`` (CassandraConfig), ``job`` (JobConfig: the Flink job, its batching and checkpoints),
``model`` (ModelConfig), ``limits`` (LimitsConfig: what the input may be), ``service``
(ServiceConfig: ``streamrec serve``) and ``faults`` (FaultInjection: test-only hooks, no user
setting). A connector takes only its own section (``connect(config.cassandra)``).

Every field is also set by its environment variable, named in the field's metadata (``env``; the
README's settings table lists them all): ``STREAMREC_KAFKA_BOOTSTRAP`` sets ``config.kafka.bootstrap``.
Secrets are also read from ``<variable>_FILE``. Values given in code (``Config(kafka=KafkaConfig(...))``,
``config.replace(kafka={"bootstrap": ...})`` or ``Config.from_env(kafka={...})``) win over the
environment, which wins over the defaults.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import MISSING, Field, dataclass, field, fields
from typing import Any, ClassVar, Iterator, Mapping, Union

ENV_PREFIX = "STREAMREC_"

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
# The transition term (streamrec.model.transitions), chosen on UCI's validation split (docs/EVALUATION.md)
# with the catalog's transitions learned both ways (`catalog build --transition-backward 1`).
DEFAULT_TRANSITION_WEIGHT = 0.4
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



def setting(default: Any = MISSING, *, env: str, secret: bool = False, factory: Any = MISSING) -> Any:
    """A section's field with the environment variable that sets it (``STREAMREC_`` + ``env``).
    A secret is hidden from repr and to_json, and also read from ``<variable>_FILE``."""
    metadata = {"env": ENV_PREFIX + env, "secret": secret}
    if factory is not MISSING:
        return field(default_factory=factory, repr=not secret, metadata=metadata)
    return field(default=default, repr=not secret, metadata=metadata)


def env_name(f: Field[Any]) -> str:
    return str(f.metadata["env"])


def env_var(section: type, name: str) -> str:
    """The environment variable of ``section``'s field ``name`` (``env_var(KafkaConfig, "bootstrap")``)."""
    return next(env_name(f) for f in fields(section) if f.name == name)


class _Section:
    """What every section shares: its checks, named by the variable a user sets."""

    _choices: ClassVar[tuple[tuple[str, tuple[str, ...]], ...]] = ()
    _non_negative: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        names = {f.name: env_name(f) for f in fields(self)}  # type: ignore[arg-type]  # every section is a dataclass
        for name, allowed in self._choices:
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"{names[name]}: {value!r} is not one of {', '.join(allowed)}")
        for name in self._non_negative:
            if getattr(self, name) < 0:
                raise ValueError(f"{names[name]}: {getattr(self, name)} is negative")


@dataclass(frozen=True)
class KafkaConfig(_Section):
    bootstrap: str = setting("127.0.0.1:9092", env="KAFKA_BOOTSTRAP")
    events_topic: str = setting("events", env="EVENTS_TOPIC")
    products_topic: str = setting("products", env="PRODUCTS_TOPIC")
    dlq_topic: str = setting("events-dlq", env="DLQ_TOPIC")
    consumer_group: str = setting("streamrec", env="CONSUMER_GROUP")
    # The job's events source has the broker answer a fetch once it holds this many bytes or after
    # this many ms (Kafka's defaults: 1 byte, 500 ms, answer a fetch for every record or two of a
    # trickle). At ~700 events/s, 16 KiB / 25 ms halved the broker's CPU (~0.25 -> ~0.13 cores) for
    # at most 25 ms more latency; on a backlog it changes nothing (docs/benchmark-history.md, sessions 6 and 7).
    # The products source keeps Kafka's defaults: it is idle nearly always, and a 25 ms wait there
    # meant 40 empty fetches a second (what cost ~12% events/s per core when it applied to both).
    fetch_min_bytes: int = setting(16_384, env="KAFKA_FETCH_MIN_BYTES")
    fetch_max_wait_ms: int = setting(25, env="KAFKA_FETCH_MAX_WAIT_MS")
    # Start from the earliest offset when the consumer group has no committed offset yet.
    start_from_earliest: bool = setting(True, env="START_FROM_EARLIEST")
    # --- security (see docs/GUARANTEES.md). The password: set STREAMREC_KAFKA_SASL_PASSWORD or,
    # better, STREAMREC_KAFKA_SASL_PASSWORD_FILE (a file holding it); it never appears in repr or logs.
    # PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL (Kafka's security.protocol)
    security_protocol: str = setting("PLAINTEXT", env="KAFKA_SECURITY_PROTOCOL")
    sasl_mechanism: str = setting("PLAIN", env="KAFKA_SASL_MECHANISM")  # PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512
    sasl_username: str = setting("", env="KAFKA_SASL_USERNAME")
    sasl_password: str = setting("", env="KAFKA_SASL_PASSWORD", secret=True)
    tls_ca_file: str = setting("", env="KAFKA_TLS_CA_FILE")  # PEM bundle to verify the brokers; empty: the system's CAs
    # client certificate chain + unencrypted key in one PEM (mutual TLS)
    tls_client_pem: str = setting("", env="KAFKA_TLS_CLIENT_PEM")

    _non_negative = ("fetch_min_bytes", "fetch_max_wait_ms")


@dataclass(frozen=True)
class CassandraConfig(_Section):
    hosts: str = setting("127.0.0.1", env="CASSANDRA_HOSTS")  # contact points, comma-separated
    port: int = setting(9042, env="CASSANDRA_PORT")
    keyspace: str = setting("streamrec", env="KEYSPACE")
    replication_factor: int = setting(1, env="REPLICATION_FACTOR")
    # Retention of the `events` table: its default_time_to_live, in seconds after each write
    # (Cassandra's clock), set on the table by `streamrec init` (ensure_schema). Bounds every
    # user's partition, a very active user's too, to their events of this window; expired rows are
    # at the partition's old end (ts DESC), behind the newest-first reads. 0: keep events forever.
    # docs/GUARANTEES.md, "Hot users and wide partitions".
    events_ttl_s: int = setting(30 * 86_400, env="EVENTS_TTL_S")
    # The Cassandra writer retries a failed write this many times (exponential back-off from
    # 0.5 s, at most 8 s apart) before it fails the task and Flink's restart strategy takes over.
    write_retries: int = setting(4, env="CASSANDRA_WRITE_RETRIES")
    # Who writes the job's rows: "java" (a Flink sink with the DataStax Java driver; flushed before
    # every checkpoint barrier) or "python" (an operator with the Python driver). TLS needs "python".
    writer: str = setting("java", env="CASSANDRA_WRITER")
    # Cassandra write requests in flight per parallel instance (sent, not yet acknowledged); all
    # are awaited before a checkpoint completes (the Java sink's flush, or the end of the Python
    # bundle). Python writer only: 0 awaits each row at once.
    max_in_flight: int = setting(256, env="CASSANDRA_MAX_IN_FLIGHT")
    # Rows per write request (an unlogged batch of their statements): ~10 KiB with 30 candidates
    # per row, over Cassandra's default batch_size_warn_threshold (5 KiB; README: raise it to 16 KiB).
    batch_rows: int = setting(10, env="CASSANDRA_BATCH_ROWS")
    # A partial batch goes out this long after its first row (Java sink): at a trickle of events a
    # row would otherwise wait for the batch to fill or for the next checkpoint (seconds).
    batch_linger_ms: int = setting(20, env="CASSANDRA_BATCH_LINGER_MS")
    # Consistency levels of every Cassandra write (the job's sinks, catalog load and publish) and
    # read (recs, events, the service, verify, the catalog). One node: LOCAL_ONE. A cluster with
    # replication factor 3: LOCAL_QUORUM for both, so that a read sees every acknowledged write and
    # one replica may be down (docs/GUARANTEES.md, "Consistency levels and checkpoints").
    write_consistency: str = setting("LOCAL_ONE", env="CASSANDRA_WRITE_CONSISTENCY")
    read_consistency: str = setting("LOCAL_ONE", env="CASSANDRA_READ_CONSISTENCY")
    # --- security (see docs/GUARANTEES.md). The password: set STREAMREC_CASSANDRA_PASSWORD or,
    # better, STREAMREC_CASSANDRA_PASSWORD_FILE (a file holding it); it never appears in repr or logs.
    username: str = setting("", env="CASSANDRA_USERNAME")
    password: str = setting("", env="CASSANDRA_PASSWORD", secret=True)
    tls: bool = setting(False, env="CASSANDRA_TLS")
    tls_ca_file: str = setting("",
                               env="CASSANDRA_TLS_CA_FILE")  # PEM bundle to verify the server; empty: the system's CAs
    tls_cert_file: str = setting("", env="CASSANDRA_TLS_CERT_FILE")  # client certificate chain (PEM) for mutual TLS
    tls_key_file: str = setting("", env="CASSANDRA_TLS_KEY_FILE")  # its private key (PEM)
    tls_check_hostname: bool = setting(True, env="CASSANDRA_TLS_CHECK_HOSTNAME")

    _choices = (("writer", CASSANDRA_WRITERS), ("write_consistency", WRITE_CONSISTENCY_LEVELS),
                ("read_consistency", READ_CONSISTENCY_LEVELS))
    _non_negative = ("batch_linger_ms", "events_ttl_s")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.events_ttl_s > MAX_CASSANDRA_TTL_S:
            raise ValueError(f"{ENV_PREFIX}EVENTS_TTL_S: {self.events_ttl_s} is over Cassandra's largest TTL "
                             f"({MAX_CASSANDRA_TTL_S} s, 20 years)")

    @property
    def contact_points(self) -> list[str]:
        return [h.strip() for h in self.hosts.split(",") if h.strip()]


@dataclass(frozen=True)
class JobConfig(_Section):
    """The Flink job: where it runs, its checkpoints and state, how it batches for Python."""

    flink_rest: str = setting("127.0.0.1:8081", env="FLINK_REST")  # the cluster's REST address (CLI)
    # 0: Flink decides (`flink run -p N`, else the cluster's parallelism.default; 1 on the local
    # minicluster). A value here wins over both.
    parallelism: int = setting(0, env="PARALLELISM")
    checkpoint_interval_ms: int = setting(10_000, env="CHECKPOINT_INTERVAL_MS")
    # Checkpoints in a row that may fail (or time out) before the job fails over and restarts from
    # the last completed one. Each one tolerated leaves the replay after a real failure longer and
    # the Kafka offsets committed later (docs/GUARANTEES.md, "Consistency levels and checkpoints").
    checkpoint_tolerable_failures: int = setting(3, env="CHECKPOINT_TOLERABLE_FAILURES")
    # Comma-separated jar paths/URLs the job needs (the Kafka connector); filled in by the setup.
    jars: str = setting("", env="JARS")
    # Where the job writes checkpoints (a URI or path). Empty: the cluster's setting
    # (flink-conf/config.yaml), or a fresh temporary folder on a local minicluster (never the
    # JobManager's memory, which refuses a state over 5 MB).
    checkpoint_dir: str = setting("", env="CHECKPOINT_DIR")
    # Where keyed state lives: "rocksdb" (on local disk, off the JVM heap: millions of users per
    # TaskManager, checkpoints upload only the files changed since the last one when
    # state_incremental is on) or "hashmap" (the JVM heap: fastest access, every checkpoint a full
    # copy; small setups and tests). "": the cluster's state.backend.type (flink-conf/config.yaml:
    # rocksdb, incremental), and the heap on a local minicluster. README, "Sizing".
    state_backend: str = setting("", env="STATE_BACKEND")
    # Incremental checkpoints (RocksDB only): applied to the job when state_backend is set.
    state_incremental: bool = setting(True, env="STATE_INCREMENTAL")
    # A Python operator hands its results back to Java when a bundle ends: after this many ms or
    # records, whichever comes first (and before every checkpoint barrier). Longer bundles amortise
    # the per-bundle state write-back; shorter ones bound the latency each Python step adds.
    python_bundle_time_ms: int = setting(200, env="PYTHON_BUNDLE_TIME_MS")
    python_bundle_size: int = setting(100_000, env="PYTHON_BUNDLE_SIZE")
    # Keyed state entries each Python worker caches (beyond: a round trip to Java per access).
    python_state_cache_size: int = setting(10_000, env="PYTHON_STATE_CACHE_SIZE")
    # "thread": the Python functions run inside the TaskManager's JVM (pemja): no Beam bundles,
    # state reads and writes without a gRPC round trip, ~5x fresher recommendations (docs/benchmark-history.md).
    # All slots of one TaskManager share its Python interpreter lock, so scale out with more
    # TaskManagers of one slot. "process": a Python worker process per slot fed by Beam in bundles
    # (the bundle and state cache settings above apply only there).
    python_execution_mode: str = setting("thread", env="PYTHON_EXECUTION_MODE")
    # "batch" (the fast path): user state in a JVM operator, Python called once per batch of events
    # (README, Architecture). "per-event": the earlier design, one Python call per event with the
    # user state pickled in Python keyed state; kept to compare against.
    hot_path: str = setting("batch", env="HOT_PATH")
    # A batch goes to Python at this many events or this many ms after its first event, whichever
    # comes first (and before every checkpoint barrier). The fast path batches twice (raw records
    # before the parser, events before the ranker), so a quiet stream waits up to twice the linger.
    batch_max_events: int = setting(512, env="BATCH_MAX_EVENTS")
    batch_linger_ms: int = setting(25, env="BATCH_LINGER_MS")
    # Under load a batch lingers longer, up to this many ms: when it is at least
    # batch_linger_ms / batch_max_linger_ms full at its linger, it fills by then at its rate (a busy
    # stream gets full batches, which cost less per event; a quiet one keeps batch_linger_ms).
    # batch_linger_ms or less: the linger is fixed.
    batch_max_linger_ms: int = setting(100, env="BATCH_MAX_LINGER_MS")
    batch_max_bytes: int = setting(4 * 1024 * 1024, env="BATCH_MAX_BYTES")
    # Per-user pacing (the fast path's user-state): a user's events beyond this many a second wait
    # in keyed state and go on at this rate, in order, so one user's burst neither holds the other
    # users behind it (on its Kafka partition too) nor takes the ranking and the Cassandra writes
    # from them. 0: off. At most user_max_paced_events wait per user (beyond: the oldest goes on at
    # once, the backpressure there is without pacing). docs/GUARANTEES.md, "Hot users".
    user_max_events_per_s: int = setting(1000, env="USER_MAX_EVENTS_PER_S")
    user_max_paced_events: int = setting(200_000, env="USER_MAX_PACED_EVENTS")
    # How long Flink holds a partly filled network buffer before it sends it to the next task (its
    # default: 100 ms). At a trickle of events every exchange waits that long; at full load the
    # buffers fill first and this costs nothing.
    buffer_timeout_ms: int = setting(10, env="BUFFER_TIMEOUT_MS")
    # Threads the model's BLAS (numpy's OpenBLAS) and faiss may use in each TaskManager's Python.
    # One: Flink's parallelism is how the job uses more cores, and a multi-threaded BLAS on a
    # 1 x 64 by 64 x 10k product is several times slower when the cores are busy (docs/benchmark-history.md).
    # 0 leaves the library defaults (a thread per core).
    blas_threads: int = setting(1, env="BLAS_THREADS")
    # REST/web port of the local minicluster (`streamrec job run` only; ignored under `flink run`).
    # 0: a free port, logged by Flink.
    minicluster_rest_port: int = setting(0, env="MINICLUSTER_REST_PORT")
    # Flink's Prometheus reporter on the local minicluster (`streamrec job run`): a port or a range
    # "9249-9258" ("": no reporter). A cluster enables it in its own config
    # (flink-conf/config.yaml: 9249-9258); the metrics are listed in streamrec/metrics.py.
    metrics_port: str = setting("", env="METRICS_PORT")

    _choices = (("python_execution_mode", PYTHON_EXECUTION_MODES), ("hot_path", HOT_PATHS),
                ("state_backend", STATE_BACKENDS))
    _non_negative = ("parallelism", "blas_threads", "checkpoint_tolerable_failures", "batch_max_events",
                     "batch_linger_ms", "batch_max_linger_ms", "batch_max_bytes", "buffer_timeout_ms",
                     "user_max_events_per_s", "user_max_paced_events")

    @property
    def jar_list(self) -> list[str]:
        return [j.strip() for j in self.jars.split(",") if j.strip()]


@dataclass(frozen=True)
class ModelConfig(_Section):
    top_k: int = setting(10, env="TOP_K")
    # Half-life of a user's past interest, counted in events that move the user (product events
    # and searches): after this many newer events an old one counts half as much.
    half_life_events: float = setting(DEFAULT_HALF_LIFE_EVENTS, env="HALF_LIFE_EVENTS")
    # Half-life in days of event time between a user's events (0: no time decay); multiplies.
    half_life_days: float = setting(DEFAULT_HALF_LIFE_DAYS, env="HALF_LIFE_DAYS")
    event_weights: Mapping[str, float] = setting(env="EVENT_WEIGHTS", factory=lambda: dict(DEFAULT_EVENT_WEIGHTS))
    # Weight of the item-to-item transition term beside the cosine: the successors (learned with the
    # catalog, `catalog build --transition-steps/-keep/-backward/-damping`; by default the rules read
    # both ways) of the user's last transition_context products. Nothing changes with a catalog that
    # has no transitions (the Cassandra products table has none).
    transition_weight: float = setting(DEFAULT_TRANSITION_WEIGHT, env="TRANSITION_WEIGHT")
    transition_context: int = setting(DEFAULT_TRANSITION_CONTEXT, env="TRANSITION_CONTEXT")
    exclude_purchased: bool = setting(True, env="EXCLUDE_PURCHASED")
    # What stays in a user's cart (added, not removed or bought) is not recommended either.
    exclude_cart: bool = setting(True, env="EXCLUDE_CART")
    # Category filters applied inside the top-k step (comma-separated category names; empty: none).
    include_categories: str = setting("", env="INCLUDE_CATEGORIES")
    exclude_categories: str = setting("", env="EXCLUDE_CATEGORIES")
    # The job stores top_k * query_overfetch candidates per user so that the query side can drop
    # products (`streamrec recs --exclude/--category`) and still show top_k of them.
    query_overfetch: int = setting(3, env="QUERY_OVERFETCH")
    # A user with fewer events that moved their embedding than this gets trending products
    # (`source` = "trending") instead of personal ones.
    cold_start_events: int = setting(1, env="COLD_START_EVENTS")
    # Trending = popularity decayed by event time with this half-life, computed in the stream from
    # every user's events (weights: event_weights, positive ones only) and broadcast to every
    # parallel instance; the best trending_size products are kept.
    trending_half_life_minutes: float = setting(60.0, env="TRENDING_HALF_LIFE_MINUTES")
    trending_size: int = setting(100, env="TRENDING_SIZE")
    # How often the trending list is recomputed and broadcast (processing time).
    trending_interval_ms: int = setting(1_000, env="TRENDING_INTERVAL_MS")
    # Idle-user TTL: a user whose events are more than this far apart in event time starts again
    # as a new user, and Flink drops the state of a user idle this long (processing time), so state
    # does not grow without bound. 0: keep users forever.
    user_ttl_ms: int = setting(90 * 86_400_000, env="USER_TTL_MS")
    # Catalogs with at least this many products are searched with a faiss IVF index instead of
    # exactly (0: always exact); its nprobe is the smallest that reaches ann_recall_floor (recall@k
    # on user-like queries, measured on the catalog when the index is built).
    ann_min_products: int = setting(50_000, env="ANN_MIN_PRODUCTS")
    ann_recall_floor: float = setting(0.95, env="ANN_RECALL_FLOOR")
    # A/B variants: JSON {"name": {"share": w, <model settings to override>}, ...}; a user's variant
    # is a hash of the user id. Overridable: top_k, half_life_events, half_life_days, event_weights,
    # exclude_purchased, exclude_cart, include_categories, exclude_categories, cold_start_events,
    # transition_weight, transition_context.
    # Empty: one variant named "default" with the settings above.
    variants: str = setting("", env="VARIANTS")
    # Where the job reads the catalog from: a catalog file (.npz, see model.catalog) or, when
    # empty, the Cassandra `products` table.
    catalog_path: str = setting("", env="CATALOG_PATH")


@dataclass(frozen=True)
class LimitsConfig(_Section):
    """What an input record may be; anything beyond goes to the dead-letter topic."""

    max_record_bytes: int = setting(64 * 1024, env="MAX_RECORD_BYTES")
    max_query_chars: int = setting(1024, env="MAX_QUERY_CHARS")
    # How far an event's ts may lead the clock of the job when it reads the record (FUTURE_TS
    # beyond: one producer's clock must not drive trending or the idle-user TTL). Only the future is
    # bounded: replays of old history are fine. 0: no limit.
    max_ts_lead_ms: int = setting(5 * 60_000, env="MAX_TS_LEAD_MS")
    # The late catalog: how long (processing time) an event whose product the parser does not know
    # yet waits for it on the products topic before it is dead-lettered as UNKNOWN_PRODUCT (a
    # product published a moment before its first event may reach the parser after the event). The
    # wait is Flink state (operator await-products), so it survives a restore; a late event is
    # processed after later events of its user. 0: dead-letter at once, as before.
    unknown_product_wait_ms: int = setting(30_000, env="UNKNOWN_PRODUCT_WAIT_MS")

    _non_negative = ("unknown_product_wait_ms",)


@dataclass(frozen=True)
class ServiceConfig(_Section):
    """The HTTP service (`streamrec serve`, streamrec/service)."""

    host: str = setting("127.0.0.1", env="SERVE_HOST")
    port: int = setting(8000, env="SERVE_PORT")
    # Clients must send this in X-API-Key for /v1/* (empty: no key). A secret: prefer
    # STREAMREC_SERVE_API_KEY_FILE; it is never logged.
    api_key: str = setting("", env="SERVE_API_KEY", secret=True)
    # Origins a browser page may call the API from (comma-separated; "*": any; empty: none but its own).
    cors_origins: str = setting("", env="SERVE_CORS_ORIGINS")
    # A request body larger than this is refused (413) before it is parsed.
    max_body_bytes: int = setting(1024 * 1024, env="SERVE_MAX_BODY_BYTES")
    max_batch: int = setting(1000, env="SERVE_MAX_BATCH")  # events in one POST /v1/events
    max_k: int = setting(100, env="SERVE_MAX_K")  # the largest k (and n of /events) a request may ask for
    # The catalog the service holds in memory is reloaded from Cassandra when an update passes on
    # the products topic, and at the latest after this many seconds (a safety net).
    catalog_refresh_s: float = setting(300.0, env="SERVE_CATALOG_REFRESH_S")
    # The service's trending list: decayed popularity (model.trending_half_life_minutes) of the valid
    # events on the events topic, read from this many minutes back (record time) when it starts.
    trending_lookback_minutes: float = setting(24 * 60.0, env="SERVE_TRENDING_LOOKBACK_MINUTES")
    # Where `streamrec metrics` reads the service's /metrics ("": skip it).
    metrics_url: str = setting("http://127.0.0.1:8000", env="METRICS_SERVICE_URL")

    _non_negative = ("max_body_bytes", "max_batch", "max_k")


@dataclass(frozen=True)
class FaultInjection(_Section):
    """Test-only hooks of the fault tests (tests/faults); no user setting. They travel with the job's
    config so that the failure happens inside the real job."""

    # > 0: subtask 0 of the ranker (rank; update-and-recommend on the per-event path) raises at its
    # first record after it has processed this many records AND a checkpoint newer than the one it
    # started from has completed in checkpoint_dir; once per attempt, on attempts 0 to
    # fail_times - 1, so the job fails fail_times times in a row, each time after progress.
    fail_once_after: int = setting(0, env="FAULT_FAIL_ONCE_AFTER")
    fail_times: int = setting(1, env="FAULT_FAIL_TIMES")
    # With fail_once_after: the first failure is thrown inside checkpoint completion instead
    # (user-state's notifyCheckpointComplete, subtask 0, attempt 0, the first checkpoint completed
    # after that many events); the ranker's failures then take attempts 1 to fail_times - 1.
    # Fast path only.
    fail_in_checkpoint_complete: bool = setting(False, env="FAULT_FAIL_IN_CHECKPOINT_COMPLETE")

    _non_negative = ("fail_times",)


Section = Union[KafkaConfig, CassandraConfig, JobConfig, ModelConfig, LimitsConfig, ServiceConfig, FaultInjection]


@dataclass(frozen=True)
class Config:
    kafka: KafkaConfig = field(default_factory=KafkaConfig)
    cassandra: CassandraConfig = field(default_factory=CassandraConfig)
    job: JobConfig = field(default_factory=JobConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    service: ServiceConfig = field(default_factory=ServiceConfig)
    faults: FaultInjection = field(default_factory=FaultInjection)

    @classmethod
    def sections(cls) -> dict[str, type[Section]]:
        """Each section's attribute name and class, in order."""
        return {f.name: f.default_factory for f in fields(cls)}  # type: ignore[misc]  # every field's factory is its class

    @classmethod
    def settings(cls) -> Iterator[tuple[str, Field[Any]]]:
        """Every setting as (section name, field); ``env_name(field)`` is its variable."""
        for name, section in cls.sections().items():
            for f in fields(section):
                yield name, f

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Mapping[str, Any]) -> Config:
        """The settings of ``environ`` (default: os.environ); ``overrides`` per section
        (``kafka={"bootstrap": ...}``) win, except where a value is None."""
        env = os.environ if environ is None else environ
        sections: dict[str, Any] = {}
        for name, section in cls.sections().items():
            values: dict[str, Any] = {}
            for f in fields(section):
                var = env_name(f)
                raw = env.get(var)
                if raw is not None and raw != "":
                    values[f.name] = _parse(var, f.type, raw)
                elif f.metadata["secret"] and env.get(var + "_FILE"):
                    values[f.name] = _read_secret_file(var + "_FILE", env[var + "_FILE"])
            values.update({k: v for k, v in overrides.pop(name, {}).items() if v is not None})
            sections[name] = section(**values)
        if overrides:
            raise TypeError(f"Config has no section {', '.join(sorted(overrides))}")
        return cls(**sections)

    def replace(self, **changes: Section | Mapping[str, Any]) -> Config:
        """A copy with sections replaced: by a section, or by a mapping of the fields to change in it."""
        new: dict[str, Any] = {}
        for name, change in changes.items():
            new[name] = dataclasses.replace(getattr(self, name), **change) if isinstance(change, Mapping) else change
        return dataclasses.replace(self, **new)

    def to_json(self) -> str:
        """Every setting as JSON, secrets masked (``***``): safe to log, not a way to pass secrets."""
        d = dataclasses.asdict(self)
        d["model"]["event_weights"] = dict(self.model.event_weights)
        for name, f in self.settings():
            if f.metadata["secret"] and d[name][f.name]:
                d[name][f.name] = "***"
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Config:
        d = json.loads(text)
        sections: dict[str, Any] = {name: section(**d[name]) for name, section in cls.sections().items()}
        return cls(**sections)

    def to_env(self) -> dict[str, str]:
        """Every setting as the variable that sets it (secrets included): what makes
        ``Config.from_env()`` in a child process equal this config."""
        env: dict[str, str] = {}
        for name, f in self.settings():
            value = getattr(getattr(self, name), f.name)
            if isinstance(value, Mapping):
                env[env_name(f)] = json.dumps(dict(value))
            elif isinstance(value, bool):
                env[env_name(f)] = "true" if value else "false"
            else:
                env[env_name(f)] = str(value)
        return env


def _read_secret_file(var: str, path: str) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read().rstrip("\r\n")
    except OSError as exc:
        # the path is not secret; the content is never part of a message
        raise ValueError(f"{var}: cannot read the secret file {path!r} ({exc.strerror})") from None


def _parse(var: str, typ: Any, raw: str) -> Any:
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
        raise ValueError(f"{var}: {exc}") from exc
    return raw
