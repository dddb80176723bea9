"""The stack's profiles: independent copies with their own ports and run folders; the errors."""

from __future__ import annotations

from dataclasses import dataclass

SERVICES: tuple[str, ...] = ("kafka", "cassandra", "flink")

LOOPBACK = "127.0.0.1"


class LocalStackError(RuntimeError):
    """A service could not be fetched, started or stopped; the message says why (with log tail)."""


class PortInUseError(LocalStackError):
    """A port the profile needs is held by a process that is not this profile's."""


@dataclass(frozen=True)
class Profile:
    """One independent instance of the stack: its own ports and its own data folder."""

    name: str
    kafka_port: int
    kafka_controller_port: int
    cassandra_port: int
    cassandra_storage_port: int
    cassandra_jmx_port: int
    flink_rest_port: int
    flink_rpc_port: int
    # `streamrec serve` (started apart from the others, once the job has a catalog: `serve` below)
    service_port: int = 0
    # First port of Flink's Prometheus reporter range (streamrec.metrics.REPORTER_PORTS ports: the
    # JobManager and each TaskManager take the next free one); 0 leaves flink-conf/config.yaml's.
    flink_metrics_port: int = 0
    # ZooKeeper's client port, for Flink's JobManager high availability (started only when a cluster
    # is asked for with ha=True, see streamrec.localstack.zookeeper); 0: no ZooKeeper for this profile.
    zookeeper_port: int = 0
    # Every other Flink port (blob server, TaskManager RPC and data, metrics query service, Python
    # gateways) is left at Flink's default of 0 = an ephemeral port, which can never collide.

    @property
    def kafka_bootstrap(self) -> str:
        return f"{LOOPBACK}:{self.kafka_port}"

    @property
    def metrics_ports(self) -> str:
        """Flink's Prometheus reporter port range, as its config takes it (``9249-9258``)."""
        from streamrec.metrics import REPORTER_PORTS

        return f"{self.flink_metrics_port}-{self.flink_metrics_port + REPORTER_PORTS - 1}"

    @property
    def flink_rest(self) -> str:
        return f"{LOOPBACK}:{self.flink_rest_port}"

    def ports(self, service: str) -> dict[str, int]:
        """The ports ``service`` listens on, by role (used for the 'port already taken' check)."""
        if service == "kafka":
            return {"broker": self.kafka_port, "controller": self.kafka_controller_port}
        if service == "cassandra":
            return {
                "native (CQL)": self.cassandra_port,
                "storage": self.cassandra_storage_port,
                "JMX": self.cassandra_jmx_port,
            }
        if service == "flink":
            return {"REST": self.flink_rest_port, "JobManager RPC": self.flink_rpc_port}
        if service == "service":
            return {"HTTP": self.service_port}
        if service == "zookeeper":
            return {"client": self.zookeeper_port}
        raise ValueError(f"unknown service {service!r}; expected one of {SERVICES}")

    def config_env(self) -> dict[str, str]:
        """``STREAMREC_*`` variables that point ``streamrec.config.Config.from_env`` at this profile."""
        return {
            "STREAMREC_KAFKA_BOOTSTRAP": self.kafka_bootstrap,
            "STREAMREC_CASSANDRA_HOSTS": LOOPBACK,
            "STREAMREC_CASSANDRA_PORT": str(self.cassandra_port),
            "STREAMREC_FLINK_REST": self.flink_rest,
        }


PROFILES: dict[str, Profile] = {
    # The products' usual ports: what the README and Config defaults assume.
    "dev": Profile("dev", 9092, 9093, 9042, 7000, 7199, 8081, 6123, 8000, 9249, zookeeper_port=2181),
    # Same layout shifted by 10000 / 20000: distinct from dev and from each other, and below the
    # Linux ephemeral range (32768+) so an outgoing connection never grabs one of them.
    "demo": Profile("demo", 19092, 19093, 19042, 17000, 17199, 18081, 16123, 18000, 19249, zookeeper_port=12181),
    "test": Profile("test", 29092, 29093, 29042, 27000, 27199, 28081, 26123, 28000, 29249, zookeeper_port=22181),
    # `make bench` / `streamrec bench`: measurements never share a broker or a node with a test run.
    "bench": Profile("bench", 39092, 39093, 39042, 37000, 37199, 38081, 36123, 38000, 39249, zookeeper_port=32181),
}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise LocalStackError(f"unknown profile {name!r}; known: {', '.join(PROFILES)}") from None
