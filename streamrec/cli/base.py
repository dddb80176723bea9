"""What every `streamrec` command shares: the top group (`main`), the connection, output and quiet
options, and how data (stdout) and messages (stderr) are written."""

from __future__ import annotations

import json
import sys
from typing import Any, Callable, Optional, TypeVar

import click

from streamrec.config import CassandraConfig, Config, KafkaConfig, env_var

F = TypeVar("F", bound=Callable[..., Any])

def _err(msg: str) -> None:
    click.echo(msg, err=True)


def connection_options(fn: F) -> F:
    """Connection options shared by every command; each also from its environment variable, and
    each default the config's own (streamrec/config.py)."""
    kafka, cassandra = KafkaConfig(), CassandraConfig()
    options = [
        click.option("--kafka", "kafka_bootstrap", envvar=env_var(KafkaConfig, "bootstrap"), show_envvar=True,
                     default=kafka.bootstrap, show_default=True, help="Kafka bootstrap servers."),
        click.option("--cassandra", "cassandra_hosts", envvar=env_var(CassandraConfig, "hosts"), show_envvar=True,
                     default=cassandra.hosts, show_default=True, help="Cassandra contact points (comma-separated)."),
        click.option("--cassandra-port", envvar=env_var(CassandraConfig, "port"), show_envvar=True, type=int,
                     default=cassandra.port, show_default=True),
        click.option("--keyspace", envvar=env_var(CassandraConfig, "keyspace"), show_envvar=True,
                     default=cassandra.keyspace, show_default=True),
    ]
    for opt in reversed(options):
        fn = opt(fn)
    return fn


def _config(kafka_bootstrap: Optional[str] = None, cassandra_hosts: Optional[str] = None,
            cassandra_port: Optional[int] = None, keyspace: Optional[str] = None) -> Config:
    """The config of the environment with the connection options (``connection_options``) on top."""
    config = Config.from_env(kafka={"bootstrap": kafka_bootstrap},
                             cassandra={"hosts": cassandra_hosts, "port": cassandra_port, "keyspace": keyspace})
    ctx = click.get_current_context(silent=True)
    if ctx is not None:  # the addresses an "unreachable" message names (_Main.invoke)
        ctx.meta["streamrec.config"] = config
    return config


def _output_option(fn: F) -> F:
    return click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table",
                        show_default=True, help="table for people, json for machines.")(fn)


def _quiet_option(fn: F) -> F:
    return click.option("-q", "--quiet", is_flag=True,
                        help="No progress and no summary on stderr (errors still go there).")(fn)


def _progress(label: str, quiet: bool, total: Optional[int] = None, unit: str = "") -> Any:
    from streamrec.progress import Progress

    return Progress(label, total=total, unit=unit, quiet=quiet)


def _print_json(obj: Any) -> None:
    click.echo(json.dumps(obj, ensure_ascii=False))


def terminal_safe(value: Any) -> str:
    """``value`` as text a terminal shows as it is: every character the id rule forbids (controls
    such as ESC, lone surrogates, bidi overrides, line separators) written as its escape (\\x1b,
    \\u202e). Stored data may predate the rule, and titles come from catalog files."""
    from streamrec.model.events import forbidden_char

    text = "" if value is None else str(value)
    if not any(forbidden_char(ch) for ch in text):
        return text
    return "".join(ch.encode("unicode_escape").decode("ascii") if forbidden_char(ch) else ch for ch in text)


def _table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    # Text, not str: rich would read "[link=...]" or "[red]" in a value as markup
    t = Table(title=Text(terminal_safe(title)))
    for c in columns:
        t.add_column(Text(c))
    for r in rows:
        t.add_row(*[Text(terminal_safe(v)) for v in r])
    Console(file=sys.stdout).print(t)


def _valid_user_id(user_id: str) -> str:
    from streamrec.model.events import text_problem

    problem = text_problem(user_id)
    if problem is not None:  # the job's rule for ids: such a user cannot have been stored
        raise click.BadParameter(f"the user id {problem}", param_hint="USER")
    return user_id


SECURITY_EPILOG = (
    "Secrets are read from the environment only, never from options: STREAMREC_CASSANDRA_USERNAME with "
    "STREAMREC_CASSANDRA_PASSWORD (or STREAMREC_CASSANDRA_PASSWORD_FILE), STREAMREC_CASSANDRA_TLS=true; "
    "STREAMREC_KAFKA_SECURITY_PROTOCOL (SSL, SASL_SSL, ...), STREAMREC_KAFKA_SASL_MECHANISM, "
    "STREAMREC_KAFKA_SASL_USERNAME with STREAMREC_KAFKA_SASL_PASSWORD (or ..._FILE). See docs/GUARANTEES.md."
)


class _Main(click.Group):
    """The top command: a service that cannot be reached ends any command with one line naming it,
    its address and what to do, and exit status 3 (streamrec.unreachable), not a driver's traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as exc:
            from streamrec.unreachable import EXIT_UNREACHABLE, unreachable

            failure = unreachable(exc, ctx.meta.get("streamrec.config"))
            if failure is None:
                raise
            if ctx.meta.get("streamrec.debug"):
                import traceback

                traceback.print_exc()
            _err(f"error: {failure}")
            ctx.exit(EXIT_UNREACHABLE)


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]}, epilog=SECURITY_EPILOG)
@click.version_option(package_name="streamrec")
@click.option("--debug", is_flag=True, envvar="STREAMREC_DEBUG", show_envvar=True,
              help="Also print the traceback when a service cannot be reached.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """streamrec: real-time recommendations (Kafka -> PyFlink -> Cassandra).

    Exit status: 0 done; 1 a negative answer (no recommendations, lines not sent, not consistent);
    2 a usage error (verify: could not check); 3 Kafka, Cassandra or Flink could not be reached.
    """
    ctx.meta["streamrec.debug"] = debug

