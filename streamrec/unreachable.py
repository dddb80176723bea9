"""One line instead of a traceback when a command cannot reach Kafka, Cassandra or Flink.

The drivers say it in their own ways (``NoHostAvailable`` from cassandra-driver, ``KafkaTimeoutError:
Unable to bootstrap`` or ``NoBrokersAvailable`` from kafka-python, ``URLError`` from a REST call),
thirty lines deep. :func:`unreachable` recognises them anywhere in an exception's chain and names
the service, the address the command used and what to do; the CLI prints that line and exits
with :data:`EXIT_UNREACHABLE` (``--debug`` prints the traceback too).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Iterator, Optional

from streamrec.config import Config

# The CLI's exit status when a service could not be reached (README, "Using it"): 0 and 1 are the
# commands' own answers, 2 is click's for a usage error (and verify's for "could not check").
EXIT_UNREACHABLE = 3

HINTS = {
    "Kafka": "STREAMREC_KAFKA_BOOTSTRAP (or --kafka)",
    "Cassandra": "STREAMREC_CASSANDRA_HOSTS and STREAMREC_CASSANDRA_PORT (or --cassandra, --cassandra-port)",
    "Flink": "STREAMREC_FLINK_REST (or -m/--jobmanager)",
}


@dataclass
class Unreachable(Exception):
    """``service`` did not answer at ``address``; ``detail``: the driver's own words, shortened."""

    service: str  # "Kafka", "Cassandra" or "Flink"
    address: str
    detail: str = ""

    def __str__(self) -> str:
        what = "the Flink REST API" if self.service == "Flink" else self.service
        detail = f" ({self.detail})" if self.detail else ""
        return (f"cannot reach {what} at {self.address}{detail}; is it running? `make up` starts the local "
                f"stack, or set {HINTS[self.service]}")


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: Optional[BaseException] = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _short(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


def unreachable(exc: BaseException, config: Optional[Config] = None) -> Optional[Unreachable]:
    """The :class:`Unreachable` that ``exc`` (or an exception in its chain) means, or None when it is
    something else. ``config``: the settings the command used (for the addresses)."""
    if config is None:
        try:
            config = Config.from_env()
        except ValueError:  # a bad setting: its own error is what the user sees
            return None
    cfg = config
    for e in _chain(exc):
        if isinstance(e, Unreachable):
            return e
        module = type(e).__module__ or ""
        name = type(e).__name__
        if module.startswith("cassandra") and name == "NoHostAvailable":
            hosts = ",".join(cfg.cassandra.contact_points) or cfg.cassandra.hosts
            errors = getattr(e, "errors", None)
            detail = ""
            if isinstance(errors, dict) and errors:
                first = next(iter(errors.values()))
                code = getattr(first, "errno", None)
                detail = os.strerror(code).lower() if isinstance(code, int) else _short(str(first))
            return Unreachable("Cassandra", f"{hosts}:{cfg.cassandra.port}", detail)
        if module.startswith("kafka") and name in ("NoBrokersAvailable", "KafkaTimeoutError", "KafkaConnectionError"):
            return Unreachable("Kafka", cfg.kafka.bootstrap, _short(str(e).removeprefix(f"{name}: ")))
    return None


def _host_port(address: str, default_port: int) -> tuple[str, int]:
    host, sep, port = address.strip().rpartition(":")
    if not sep or not port.isdigit():
        return address.strip().strip("[]"), default_port
    return host.strip("[]"), int(port)


def _refusal(addresses: list[tuple[str, int]], timeout: float) -> Optional[str]:
    """None when one of ``addresses`` accepts a TCP connection, else why the last one did not."""
    detail = "no address"
    for host, port in addresses:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                return None
        except OSError as exc:
            code = exc.errno
            detail = os.strerror(code).lower() if isinstance(code, int) else _short(str(exc) or type(exc).__name__)
    return detail


def check_reachable(config: Config, timeout: float = 5.0) -> None:
    """Raise :class:`Unreachable` when no Kafka bootstrap server or no Cassandra contact point accepts
    a TCP connection. For ``streamrec job run``: the job itself would not fail on them but restart
    forever (its restart strategy never gives up, and the Kafka source waits for brokers), so the
    command checks first and fails in one line. A TCP answer is all it checks (TLS and logins are the
    job's to report)."""
    kafka = [_host_port(a, 9092) for a in config.kafka.bootstrap.split(",") if a.strip()]
    detail = _refusal(kafka, timeout)
    if detail is not None:
        raise Unreachable("Kafka", config.kafka.bootstrap, detail)
    cassandra = [(h, config.cassandra.port) for h in config.cassandra.contact_points]
    detail = _refusal(cassandra, timeout)
    if detail is not None:
        hosts = ",".join(config.cassandra.contact_points) or config.cassandra.hosts
        raise Unreachable("Cassandra", f"{hosts}:{config.cassandra.port}", detail)
