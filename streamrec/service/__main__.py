"""``python -m streamrec.service --url-file FILE``: `streamrec serve` as the local stack starts it.

The file, in the profile's run folder, names the process for ``python -m streamrec.localstack
down`` (it finds the stack's processes by the run folder in their command lines) and receives
the service's URL.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from streamrec.config import Config, ServiceConfig
from streamrec.service import serve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m streamrec.service")
    parser.add_argument("--url-file", required=True, type=Path)
    parser.add_argument("--host", default=ServiceConfig().host)
    parser.add_argument("--port", type=int, default=ServiceConfig().port)
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    for noisy in ("kafka", "cassandra"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    config = Config.from_env().replace(service={"host": args.host, "port": args.port})
    args.url_file.parent.mkdir(parents=True, exist_ok=True)
    args.url_file.write_text(f"http://{args.host}:{args.port}/\n")
    serve(config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
