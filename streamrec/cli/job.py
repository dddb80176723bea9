"""`job run|submit|stop|upgrade`: the Flink job on a local minicluster or a cluster (Flink's REST API
through streamrec.flinkrest, `flink run` for submitting)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

import click

from streamrec.cli.base import F, _err, connection_options, main
from streamrec.config import CassandraConfig, Config, JobConfig, KafkaConfig, env_var

# --- the job ----------------------------------------------------------------------------------

@main.group()
def job() -> None:
    """Run the Flink job locally or submit it to a cluster.

    Job settings come from STREAMREC_* environment variables (see streamrec/config.py), e.g.
    STREAMREC_TOP_K, STREAMREC_PARALLELISM, STREAMREC_CATALOG_PATH, STREAMREC_JARS.
    """


def _job_env(conn: dict[str, Any], parallelism: Optional[int]) -> dict[str, str]:
    env = dict(os.environ)
    # the keys are connection_options' names
    names = {"kafka_bootstrap": env_var(KafkaConfig, "bootstrap"), "cassandra_hosts": env_var(CassandraConfig, "hosts"),
             "cassandra_port": env_var(CassandraConfig, "port"), "keyspace": env_var(CassandraConfig, "keyspace")}
    for key, var in names.items():
        if conn.get(key) is not None:
            env[var] = str(conn[key])
    if parallelism is not None:
        env["STREAMREC_PARALLELISM"] = str(parallelism)
    if not env.get("STREAMREC_JARS"):
        jar = default_connector_jar()
        if jar is not None:
            env["STREAMREC_JARS"] = str(jar)
    return env


def default_connector_jar() -> Optional[Path]:
    """The Kafka connector jar that `make setup` fetched, if any."""
    try:
        from streamrec.localstack import stack_dir

        base = stack_dir()
    except ImportError:
        return None
    jars = sorted((base / "lib").glob("**/flink-sql-connector-kafka-*.jar"))
    return jars[0] if jars else None


@job.command("run")
@click.option("-p", "--parallelism", type=click.IntRange(1, 64))
@connection_options
def job_run(parallelism: Optional[int], **conn: Any) -> None:
    """Run the job on a local minicluster, in the foreground (Ctrl-C stops it)."""
    env = _job_env(conn, parallelism)
    from streamrec.unreachable import check_reachable

    # the job would not fail on an unreachable Kafka or Cassandra but restart forever: check first
    check_reachable(Config.from_env(env))
    os.execve(sys.executable, [sys.executable, "-m", "streamrec.jobs.job"], env)


def _flink_rest(rest: str, path: str, body: Optional[dict[str, Any]] = None, timeout: float = 10) -> Any:
    """GET ``path`` of the Flink REST API at ``rest`` (POST ``body`` as JSON when given).

    Nothing answering there is :class:`~streamrec.unreachable.Unreachable` (one line, exit status 3);
    an HTTP error is Flink's own answer (an unknown job, a failed trigger) and says so in one line."""
    from streamrec.flinkrest import FlinkHttpError, FlinkRest

    try:
        return FlinkRest(rest, timeout).call(path, body)
    except FlinkHttpError as exc:
        raise click.ClickException(str(exc)) from exc


def _flink_jobs(rest: str) -> list[dict[str, Any]]:
    return list(_flink_rest(rest, "/jobs/overview", timeout=5)["jobs"])


def _running_job(rest: str, job: str) -> dict[str, Any]:
    """The one RUNNING job whose id or name is ``job`` (a name several running jobs share is an error)."""
    running = [j for j in _flink_jobs(rest) if j["state"] == "RUNNING"]
    by_id = [j for j in running if j["jid"] == job]
    found = by_id or [j for j in running if j["name"] == job]
    if not found:
        raise click.ClickException(f"no RUNNING job with the id or name {job!r} on {rest}"
                                   + (f" (running: {', '.join(j['name'] + ' ' + j['jid'] for j in running)})"
                                      if running else ""))
    if len(found) > 1:
        raise click.ClickException(f"{len(found)} RUNNING jobs are named {job!r} on {rest} "
                                   f"({', '.join(j['jid'] for j in found)}): name one by its id")
    return found[0]


def _savepoint_target(directory: Optional[str]) -> Optional[str]:
    """A URI as Flink's JobManager reads it. A plain path is made absolute here, which is only right on a
    cluster that shares this machine's filesystem; a remote cluster needs a shared one (s3://, hdfs://)."""
    if not directory:
        return None  # the cluster's state.savepoints.dir
    return directory if "://" in directory else Path(directory).resolve().as_uri()


def stop_with_savepoint(rest: str, jid: str, directory: Optional[str], timeout: float) -> str:
    """Flink's stop-with-savepoint (no drain: event-time timers stay pending and fire in the job that
    resumes, as they would have in this one); returns the savepoint's path once it is COMPLETED."""
    import time

    body: dict[str, Any] = {"drain": False}
    target = _savepoint_target(directory)
    if target:
        body["targetDirectory"] = target
    trigger = _flink_rest(rest, f"/jobs/{jid}/stop", body)["request-id"]
    deadline = time.monotonic() + timeout
    while True:
        answer = _flink_rest(rest, f"/jobs/{jid}/savepoints/{trigger}")
        if answer["status"]["id"] == "COMPLETED":
            operation = answer.get("operation") or {}
            if "failure-cause" in operation:
                cause = operation["failure-cause"]
                text = str(cause.get("stack-trace") or cause.get("class") or cause).strip().splitlines()
                raise click.ClickException(f"the savepoint of job {jid} failed, the job goes on: "
                                           f"{text[0][:300] if text else cause}")
            return str(operation["location"])
        if time.monotonic() > deadline:
            raise click.ClickException(f"no savepoint of job {jid} after {timeout:.0f} s (trigger {trigger}): "
                                       "see the JobManager's log; the job may still stop when it completes")
        time.sleep(0.5)


def _submit_options(fn: F) -> F:
    """The options `job submit` and `job upgrade` share."""
    options = [
        click.option("-m", "--jobmanager", envvar=env_var(JobConfig, "flink_rest"), show_envvar=True,
                     default=JobConfig().flink_rest, show_default=True, help="Flink REST address of the cluster."),
        click.option("-p", "--parallelism", type=click.IntRange(1, 64)),
        click.option("--python", "python_exec", default=None,
                     help="A Python with streamrec installed at this path on every TaskManager (a cluster that "
                          "shares this machine's filesystem). Default: ship this interpreter, streamrec and its "
                          "dependencies as one archive (-pyarch, built once per change into .stack/ship/; "
                          "streamrec/shipping.py)."),
        click.option("--flink", "flink_bin", envvar="FLINK_BIN", show_envvar=True,
                     help="The `flink` launcher (default: the one the apache-flink package ships)."),
        click.option("--timeout", type=float, default=180, show_default=True, help="Seconds to wait for RUNNING."),
    ]
    for opt in reversed(options):
        fn = opt(fn)
    return fn


def _flink_run_cmd(jobmanager: str, python_exec: Optional[str], flink_bin: Optional[str],
                   parallelism: Optional[int]) -> list[str]:
    """`flink run` of this checkout's job (building the shipped archive if it changed)."""
    import pyflink

    flink = flink_bin or str(Path(pyflink.__file__).parent / "bin" / "flink")
    job_py = Path(__file__).resolve().parent.parent / "jobs" / "job.py"
    cmd = [flink, "run", "-d", "-m", jobmanager, "-py", str(job_py)]
    if python_exec:
        cmd += ["-pyexec", python_exec, "-pyclientexec", python_exec]
    else:
        from streamrec import shipping
        from streamrec.localstack import stack_dir

        shipped = shipping.build_archive(stack_dir() / "ship")
        _err(f"shipping {shipped.path} ({shipped.size_bytes / 1e6:.0f} MB, {shipped.files} files; "
             + (f"built in {shipped.seconds:.1f} s)" if shipped.built else "unchanged, not rebuilt)"))
        cmd += shipping.flink_run_args(shipped.path)
    if parallelism is not None:
        cmd += ["-p", str(parallelism)]
    return cmd


def _run_until_running(cmd: list[str], env: dict[str, str], jobmanager: str, timeout: float) -> str:
    """Run ``cmd`` (`flink run -d`); the id of the new streamrec job once it is RUNNING. Jobs that
    existed before do not count, so a --force submit next to a running one waits for its own."""
    from streamrec.runner import wait_for

    before = {j["jid"] for j in _flink_jobs(jobmanager)}
    _err("$ " + " ".join(cmd))
    rc = subprocess.call(cmd, env=env, stdout=sys.stderr)
    if rc != 0:
        raise click.ClickException(f"flink run failed (exit status {rc})")
    jobs = wait_for(
        lambda: [j for j in _flink_jobs(jobmanager)
                 if j["name"] == "streamrec" and j["state"] == "RUNNING" and j["jid"] not in before],
        timeout=timeout, what="the job to be RUNNING",
    )
    jid = str(jobs[0]["jid"])
    _err(f"job streamrec is RUNNING on {jobmanager} ({jid})")
    return jid


@job.command("submit")
@_submit_options
@click.option("--force", is_flag=True, help="Submit even if a job named streamrec is already running there.")
@click.option("-s", "--from-savepoint", "savepoint", metavar="PATH",
              help="Resume from this savepoint (or retained checkpoint), at any parallelism up to 128.")
@connection_options
def job_submit(jobmanager: str, parallelism: Optional[int], python_exec: Optional[str], flink_bin: Optional[str],
               force: bool, timeout: float, savepoint: Optional[str], **conn: Any) -> None:
    """Submit the job to a Flink cluster with `flink run`; return once it is RUNNING and print its id.

    Without --from-savepoint the job starts with empty user state (it reads the events topic from
    the consumer group's committed offsets). A savepoint of a job with the other hot path
    (STREAMREC_HOT_PATH) holds state the job cannot read: docs/GUARANTEES.md ("upgrading") says what to do."""
    running = [j for j in _flink_jobs(jobmanager) if j["name"] == "streamrec" and j["state"] == "RUNNING"]
    if running and not force:
        _err(f"job streamrec is already running on {jobmanager} ({running[0]['jid']}); --force submits another")
        return
    cmd = _flink_run_cmd(jobmanager, python_exec, flink_bin, parallelism)
    if savepoint:
        cmd += ["-s", savepoint]
    click.echo(_run_until_running(cmd, _job_env(conn, parallelism), jobmanager, timeout))


_SAVEPOINT_DIR = click.option(
    "--savepoint", "directory", metavar="DIR", envvar="STREAMREC_SAVEPOINT_DIR", show_envvar=True,
    help="Where the savepoint goes, as the JobManager sees it (a path on a cluster that shares this "
         "filesystem, or s3://..., hdfs://...). Default: the cluster's state.savepoints.dir.")
_JOB = click.option("--job", "job_ref", default="streamrec", show_default=True, metavar="NAME|ID",
                    help="The RUNNING job, by name or id.")
_STOP_TIMEOUT = click.option("--stop-timeout", type=float, default=600, show_default=True,
                             help="Seconds to wait for the savepoint.")


@job.command("stop")
@click.option("-m", "--jobmanager", envvar=env_var(JobConfig, "flink_rest"), show_envvar=True,
              default=JobConfig().flink_rest, show_default=True, help="Flink REST address of the cluster.")
@_JOB
@_SAVEPOINT_DIR
@_STOP_TIMEOUT
def job_stop(jobmanager: str, job_ref: str, directory: Optional[str], stop_timeout: float) -> None:
    """Stop the job with a savepoint and print the savepoint's path.

    The job's state (user vectors, purchases and cart exclusions, trending, the catalog updates) and
    its Kafka offsets are in the savepoint; `streamrec job submit --from-savepoint PATH` resumes
    from it, at any parallelism up to 128. If the savepoint fails, the job keeps running."""
    import time

    found = _running_job(jobmanager, job_ref)
    _err(f"stopping job {found['name']} ({found['jid']}) with a savepoint"
         + (f" into {_savepoint_target(directory)}" if directory else "") + " ...")
    t0 = time.monotonic()
    path = stop_with_savepoint(jobmanager, found["jid"], directory, stop_timeout)
    _err(f"stopped; savepoint completed in {time.monotonic() - t0:.1f} s")
    click.echo(path)


@job.command("upgrade")
@_submit_options
@_JOB
@_SAVEPOINT_DIR
@_STOP_TIMEOUT
@connection_options
def job_upgrade(jobmanager: str, parallelism: Optional[int], python_exec: Optional[str], flink_bin: Optional[str],
                timeout: float, job_ref: str, directory: Optional[str], stop_timeout: float, **conn: Any) -> None:
    """Stop the job with a savepoint and submit this checkout's job from it; print the new job's id.

    Without -p the new job runs at the old one's parallelism. The code to ship is prepared before
    the job stops, so the job is down only for the savepoint and the new job's start. If the new
    job does not start, the old one stays stopped: the message names the savepoint to resume from
    with `streamrec job submit --from-savepoint PATH`."""
    import time

    found = _running_job(jobmanager, job_ref)
    jid = found["jid"]
    if parallelism is None and not int(os.environ.get("STREAMREC_PARALLELISM") or 0):  # 0: left to Flink
        vertices = _flink_rest(jobmanager, f"/jobs/{jid}")["vertices"]
        parallelism = max(int(v["parallelism"]) for v in vertices)
    cmd = _flink_run_cmd(jobmanager, python_exec, flink_bin, parallelism)
    env = _job_env(conn, parallelism)
    _err(f"stopping job {found['name']} ({jid}) with a savepoint ...")
    t0 = time.monotonic()
    path = stop_with_savepoint(jobmanager, jid, directory, stop_timeout)
    _err(f"savepoint {path} ({time.monotonic() - t0:.1f} s); submitting from it")
    try:
        new = _run_until_running([*cmd, "-s", path], env, jobmanager, timeout)
    except Exception as exc:
        _err(f"error: the new job did not start ({exc}); the old one ({jid}) is stopped, its state is in "
             f"the savepoint {path}: resume with `streamrec job submit --from-savepoint {path}`")
        raise SystemExit(1) from exc
    _err(f"upgraded in {time.monotonic() - t0:.1f} s (stop -> new job RUNNING)")
    click.echo(new)

