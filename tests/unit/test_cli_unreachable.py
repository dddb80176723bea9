"""Issue 22, part 7: a command that cannot reach Kafka, Cassandra or the Flink REST API ends with
one line on stderr - what, at which address, what to do - and exit status 3, never a traceback
(`--debug` adds it). The real CLI in a subprocess, its addresses pointed at closed ports on
127.0.0.1: no running stack needed. Kafka's case is in tests/e2e/test_cli_unreachable_kafka.py
(kafka-python waits 30 s for a first broker)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from streamrec.unreachable import EXIT_UNREACHABLE, Unreachable, unreachable

EVENT = '{"event_id": "a1", "user_id": "me", "ts": 1700000000000, "type": "view", "product_id": "85123A"}\n'


def closed_port() -> int:
    """A port nothing listens on: bound once by us, then released."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def closed_env() -> dict[str, str]:
    """The environment with every address pointed at a closed port (tests/e2e reuses it)."""
    kafka, cassandra, flink = closed_port(), closed_port(), closed_port()
    out = {k: v for k, v in os.environ.items() if not k.startswith("STREAMREC_")}
    out.update(STREAMREC_KAFKA_BOOTSTRAP=f"127.0.0.1:{kafka}", STREAMREC_CASSANDRA_HOSTS="127.0.0.1",
               STREAMREC_CASSANDRA_PORT=str(cassandra), STREAMREC_FLINK_REST=f"127.0.0.1:{flink}")
    return out


@pytest.fixture(scope="module")
def env() -> dict[str, str]:
    return closed_env()


def start(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-m", "streamrec.cli", *args], env=env, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdin is not None
    proc.stdin.write(EVENT)
    proc.stdin.close()
    return proc


def finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    assert proc.stdout is not None and proc.stderr is not None
    out, err = proc.stdout.read(), proc.stderr.read()
    return proc.wait(timeout=120), out, err


def assert_one_line(result: tuple[int, str, str], service: str, address: str, variables: str) -> None:
    rc, out, err = result
    assert rc == EXIT_UNREACHABLE, (rc, err)
    assert "Traceback" not in err, err
    assert out == ""
    [line] = err.strip().splitlines()
    assert line.startswith(f"error: cannot reach {service} at {address}"), line
    assert "`make up`" in line and variables in line


@pytest.mark.unit
@pytest.mark.parametrize("command", [["recs", "me"], ["events", "me"], ["similar", "85123A"], ["ab", "report"],
                                     ["verify"], ["catalog", "publish", "--product-id", "X", "--out-of-stock"]])
def test_cassandra_unreachable_is_one_line_and_exit_3(env, command):
    address = f"127.0.0.1:{env['STREAMREC_CASSANDRA_PORT']}"
    assert_one_line(finish(start(env, *command)), "Cassandra", address, "STREAMREC_CASSANDRA_PORT")


@pytest.mark.unit
def test_flink_rest_unreachable_is_one_line_and_exit_3(env):
    result = finish(start(env, "job", "submit", "--python", sys.executable))
    assert_one_line(result, "the Flink REST API", env["STREAMREC_FLINK_REST"], "STREAMREC_FLINK_REST")


@pytest.mark.unit
def test_debug_adds_the_traceback(env):
    rc, _, err = finish(start(env, "--debug", "recs", "me"))
    assert rc == EXIT_UNREACHABLE
    assert "Traceback" in err and "NoHostAvailable" in err
    assert err.strip().splitlines()[-1].startswith("error: cannot reach Cassandra")


@pytest.mark.unit
def test_the_driver_errors_are_recognised_anywhere_in_the_chain():
    from cassandra.cluster import NoHostAvailable
    from kafka.errors import KafkaConnectionError, KafkaTimeoutError

    from streamrec.config import CassandraConfig, Config, KafkaConfig

    config = Config(kafka=KafkaConfig(bootstrap="k:1"), cassandra=CassandraConfig(hosts="c1,c2", port=7))
    down = NoHostAvailable("Unable to connect to any servers", {"c1:7": ConnectionRefusedError(111, "refused")})
    assert unreachable(down, config) == Unreachable("Cassandra", "c1,c2:7", "connection refused")
    assert unreachable(KafkaConnectionError(), config).service == "Kafka"  # type: ignore[union-attr]
    try:
        try:
            raise KafkaTimeoutError("Unable to bootstrap from k:1")
        except KafkaTimeoutError as exc:
            raise RuntimeError("producing failed") from exc
    except RuntimeError as wrapped:
        assert unreachable(wrapped, config) == Unreachable("Kafka", "k:1", "Unable to bootstrap from k:1")
    assert unreachable(ValueError("a bug"), config) is None


@pytest.mark.unit
def test_job_run_checks_kafka_then_cassandra_before_it_starts_a_job(env):
    # the job itself would restart forever against a missing broker or store: one line, exit 3
    kafka = env["STREAMREC_KAFKA_BOOTSTRAP"]
    assert_one_line(finish(start(env, "job", "run")), "Kafka", kafka, "STREAMREC_KAFKA_BOOTSTRAP")
    with socket.socket() as listener:  # something answers where Kafka is, nothing where Cassandra is
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        up = {**env, "STREAMREC_KAFKA_BOOTSTRAP": f"127.0.0.1:{listener.getsockname()[1]}"}
        address = f"127.0.0.1:{env['STREAMREC_CASSANDRA_PORT']}"
        assert_one_line(finish(start(up, "job", "run")), "Cassandra", address, "STREAMREC_CASSANDRA_PORT")


@pytest.mark.unit
def test_the_reachability_check_takes_every_bootstrap_address_and_contact_point():
    from streamrec.config import CassandraConfig, Config, KafkaConfig
    from streamrec.unreachable import check_reachable

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        # the first of each list is closed, the second answers: reachable
        check_reachable(Config(kafka=KafkaConfig(bootstrap=f"127.0.0.1:{closed_port()},127.0.0.1:{port}"),
                               cassandra=CassandraConfig(hosts="127.0.0.1", port=port)), timeout=2)
        with pytest.raises(Unreachable) as down:
            check_reachable(Config(kafka=KafkaConfig(bootstrap=f"127.0.0.1:{port}"),
                                   cassandra=CassandraConfig(hosts="127.0.0.1", port=closed_port())), timeout=2)
        assert down.value.service == "Cassandra" and down.value.detail == "connection refused"
