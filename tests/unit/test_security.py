"""Security basics without services: secrets from the environment or a file and never shown,
Cassandra auth/TLS and Kafka SASL/TLS settings passed through, statements prepared, inputs
validated before anything is contacted."""

from __future__ import annotations

import ast
import json
import ssl
from pathlib import Path

import pytest
from click.testing import CliRunner

from streamrec.cli import main
from streamrec.config import CassandraConfig, Config, KafkaConfig
from streamrec.connectors import cassandra as cass
from streamrec.connectors import kafka as kafka_conn

SECRET = "s3cr3t-Pa55"
SYSTEM_CAS = "/etc/ssl/certs/ca-certificates.crt"
PKG = Path(__file__).resolve().parents[2] / "streamrec"


def test_secrets_come_from_the_environment_or_a_file(tmp_path):
    f = tmp_path / "pw"
    f.write_text(SECRET + "\n")
    c = Config.from_env({"STREAMREC_CASSANDRA_PASSWORD_FILE": str(f), "STREAMREC_KAFKA_SASL_PASSWORD": "k"})
    assert c.cassandra.password == SECRET and c.kafka.sasl_password == "k"
    # the variable itself wins over the file
    both = {"STREAMREC_CASSANDRA_PASSWORD": "direct", "STREAMREC_CASSANDRA_PASSWORD_FILE": str(f)}
    assert Config.from_env(both).cassandra.password == "direct"


def test_an_unreadable_secret_file_names_the_variable_not_the_content(tmp_path):
    with pytest.raises(ValueError, match="STREAMREC_KAFKA_SASL_PASSWORD_FILE"):
        Config.from_env({"STREAMREC_KAFKA_SASL_PASSWORD_FILE": str(tmp_path / "absent")})


def test_secrets_never_show_in_repr_or_json():
    c = Config(cassandra=CassandraConfig(username="app", password=SECRET), kafka=KafkaConfig(sasl_password=SECRET))
    assert SECRET not in repr(c) and SECRET not in str(c)
    assert SECRET not in c.to_json()
    assert json.loads(c.to_json())["cassandra"]["password"] == "***"


def test_help_shows_variable_names_never_values(monkeypatch):
    env = {"STREAMREC_CASSANDRA_PASSWORD": SECRET, "STREAMREC_KAFKA_SASL_PASSWORD": SECRET}
    runner = CliRunner()
    for args in (["--help"], ["verify", "--help"], ["produce", "--help"], ["recs", "--help"]):
        result = runner.invoke(main, args, env=env)
        assert result.exit_code == 0, result.output
        assert SECRET not in result.output
    assert "STREAMREC_CASSANDRA_PASSWORD_FILE" in runner.invoke(main, ["--help"]).output


def test_cassandra_username_password_and_tls(tmp_path):
    assert cass.security_options(Config().cassandra) == {}
    opts = cass.security_options(Config(cassandra=CassandraConfig(username="app", password=SECRET, tls=True,
                                                                  tls_ca_file=SYSTEM_CAS)).cassandra)
    assert opts["auth_provider"].username == "app" and opts["auth_provider"].password == SECRET
    context = opts["ssl_context"]
    assert isinstance(context, ssl.SSLContext) and context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname and context.minimum_version >= ssl.TLSVersion.TLSv1_2
    with pytest.raises(ValueError, match="STREAMREC_CASSANDRA_USERNAME"):
        cass.security_options(Config(cassandra=CassandraConfig(password=SECRET)).cassandra)


def test_connect_passes_the_security_options_to_the_driver(monkeypatch):
    seen = {}

    class FakeCluster:
        def __init__(self, **kwargs):
            seen.update(kwargs)

        def connect(self, keyspace):
            return keyspace

    import cassandra.cluster

    monkeypatch.setattr(cassandra.cluster, "Cluster", FakeCluster)
    cass.connect(Config(cassandra=CassandraConfig(username="app", password=SECRET, tls=True)).cassandra, "ks")
    assert seen["auth_provider"].password == SECRET and isinstance(seen["ssl_context"], ssl.SSLContext)


def test_kafka_sasl_ssl_for_python_and_java_clients():
    c = Config(kafka=KafkaConfig(security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512", sasl_username="app",
                                 sasl_password='p"w\\', tls_ca_file="/ca.pem", tls_client_pem="/me.pem"))
    py = kafka_conn.client_options(c.kafka)
    assert py == {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": "app",
                  "sasl_plain_password": 'p"w\\', "ssl_cafile": "/ca.pem", "ssl_certfile": "/me.pem"}
    java = kafka_conn.java_properties(c.kafka)
    assert java["security.protocol"] == "SASL_SSL" and java["sasl.mechanism"] == "SCRAM-SHA-512"
    # the connector jar shades the Kafka client: the unshaded login module class would not load
    assert java["sasl.jaas.config"] == (
        "org.apache.flink.kafka.shaded.org.apache.kafka.common.security.scram.ScramLoginModule required "
        'username="app" password="p\\"w\\\\";')
    assert java["ssl.truststore.type"] == "PEM" and java["ssl.truststore.location"] == "/ca.pem"
    assert java["ssl.keystore.location"] == "/me.pem"
    assert kafka_conn.client_options(Config().kafka) == {"security_protocol": "PLAINTEXT"}


def test_kafka_settings_that_cannot_work_are_refused():
    with pytest.raises(ValueError, match="SECURITY_PROTOCOL"):
        kafka_conn.client_options(Config(kafka=KafkaConfig(security_protocol="TLS")).kafka)
    with pytest.raises(ValueError, match="SASL_USERNAME"):
        kafka_conn.java_properties(Config(kafka=KafkaConfig(security_protocol="SASL_PLAINTEXT")).kafka)
    with pytest.raises(ValueError, match="SASL_MECHANISM"):
        kafka_conn.client_options(Config(kafka=KafkaConfig(security_protocol="SASL_SSL", sasl_mechanism="GSSAPI",
                                                           sasl_username="a", sasl_password="b")).kafka)


def test_the_producer_uses_acks_all_and_idempotence(monkeypatch):
    seen = {}

    class FakeFuture:
        def get(self, timeout=None):
            return None

    class FakeProducer:
        def __init__(self, **kwargs):
            seen.update(kwargs)

        def send(self, topic, key=None, value=None):
            return FakeFuture()

        def flush(self):
            pass

        def close(self):
            pass

    import kafka

    monkeypatch.setattr(kafka, "KafkaProducer", FakeProducer)
    report = kafka_conn.produce_lines(['{"user_id": "u"}'], Config())
    assert report.sent == 1 and seen["acks"] == "all" and seen["enable_idempotence"] is True


def test_a_record_the_broker_refuses_is_reported_with_its_line_number():
    class Refused(Exception):
        pass

    class Future:
        def __init__(self, ok):
            self.ok = ok

        def get(self, timeout=None):
            if not self.ok:
                raise Refused("RecordTooLarge")

    class Producer:
        def send(self, topic, key=None, value=None):
            return Future(b"bad" not in value)

        def flush(self):
            pass

    lines = ['{"user_id": "a"}', "", '{"user_id": "bad"}', "no json", '{"user_id": "c"}']
    report = kafka_conn.produce_lines(lines, Config(), producer=Producer())
    assert report.sent == 2
    assert [n for n, _ in report.rejected] == [3, 4]
    assert "RecordTooLarge" in report.rejected[0][1]


@pytest.mark.parametrize("user", ["", "x" * 257, "a\nb", "tab\there"])
def test_query_commands_refuse_bad_user_ids_before_connecting(user, monkeypatch):
    def no_connection(*a, **k):
        raise AssertionError("connected to Cassandra")

    monkeypatch.setattr(cass.connection, "connect", no_connection)
    for command in ("recs", "events"):
        result = CliRunner().invoke(main, [command, user])
        assert result.exit_code == 2 and "user id" in result.output


def _execute_calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and node.func.attr in ("execute", "execute_async") and node.args:
            yield node


def test_cql_with_values_is_always_prepared():
    """No statement is built from strings with values in it: a call that binds parameters must pass
    a prepared statement, and an f-string query only names a validated identifier (DDL, COUNT)."""
    allowed_fstrings = {("connectors/cassandra/schema.py", "drop_keyspace"),
                        # DDL takes no bound values: a validated keyspace name and an int TTL
                        ("connectors/cassandra/schema.py", "_ensure_events_ttl"),
                        # DDL: a validated keyspace name and the constant ADDED_COLUMNS
                        ("connectors/cassandra/schema.py", "add_missing_columns"),
                        ("connectors/cassandra/readers.py", "count")}
    problems = []
    for path in sorted(PKG.rglob("*.py")):
        tree = ast.parse(path.read_text())
        funcs = {id(n): f.name for f in ast.walk(tree) if isinstance(f, ast.FunctionDef) for n in ast.walk(f)}
        rel = str(path.relative_to(PKG))
        for call in _execute_calls(tree):
            query = call.args[0]
            literal = isinstance(query, (ast.Constant, ast.JoinedStr, ast.BinOp)) or (
                isinstance(query, ast.Call) and isinstance(query.func, ast.Attribute) and query.func.attr == "format")
            binds = len(call.args) > 1 or any(k.arg == "parameters" for k in call.keywords)
            if literal and binds:
                problems.append(f"{rel}:{call.lineno} binds values into a string query")
            if isinstance(query, (ast.JoinedStr, ast.BinOp)) and (rel, funcs.get(id(call))) not in allowed_fstrings:
                problems.append(f"{rel}:{call.lineno} builds a query from strings")
    assert not problems, problems
