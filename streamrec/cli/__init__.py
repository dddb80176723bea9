"""The `streamrec` command line: data on stdout, logs and progress on stderr.

One module per group of commands, each registering its commands on the top group `main`
(streamrec.cli.base): query (recs, events, similar, ab, serve), operate (init, produce, metrics,
verify), catalog (data, catalog, evaluate), job; `bench` comes from streamrec.bench.cli.
"""

from __future__ import annotations

from streamrec.bench.cli import bench
from streamrec.cli import catalog, job, operate, query
from streamrec.cli.base import connection_options, main, terminal_safe
from streamrec.cli.job import default_connector_jar, stop_with_savepoint

main.add_command(bench)

__all__ = ["catalog", "connection_options", "default_connector_jar", "job", "main", "operate", "query",
           "stop_with_savepoint", "terminal_safe"]
