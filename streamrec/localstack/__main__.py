"""``python -m streamrec.localstack fetch | up | down | status | wipe`` (logs on stderr).

Examples::

    python -m streamrec.localstack fetch
    python -m streamrec.localstack up                          # dev profile: 9092 / 9042 / 8081
    python -m streamrec.localstack up --profile demo --only kafka,cassandra
    python -m streamrec.localstack status --profile test
    python -m streamrec.localstack serve --profile dev         # the recommendation service, URL on stdout
    python -m streamrec.localstack down --profile dev
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time

from streamrec import localstack as ls


def _services(text: str) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in names if s not in ls.SERVICES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"expected a comma-separated subset of {','.join(ls.SERVICES)}")
    return names


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m streamrec.localstack",
        description="Start/stop single-node Kafka, Cassandra and a Flink standalone cluster on loopback "
        f"(no Docker). Data, logs and jars live under {ls.stack_dir()} (env STREAMREC_STACK_DIR).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("fetch", help="download the service jars from Maven Central (cached)")

    def with_profile(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        profiles = ", ".join(
            f"{n} (kafka {q.kafka_port}, cql {q.cassandra_port}, flink {q.flink_rest_port})"
            for n, q in ls.PROFILES.items()
        )
        p.add_argument("--profile", default="dev", choices=list(ls.PROFILES), help=f"which stack: {profiles}")
        p.add_argument(
            "--only",
            type=_services,
            default=list(ls.SERVICES),
            help="comma-separated services (default: kafka,cassandra,flink)",
        )
        return p

    up = with_profile(sub.add_parser("up", help="start the services and wait until they answer"))
    up.add_argument("--taskmanagers", type=int, default=2, help="Flink TaskManagers (default 2)")
    with_profile(sub.add_parser("down", help="stop the profile's services (and its recommendation service)"))
    serve = sub.add_parser("serve", help="start `streamrec serve` on the profile's service port in the background "
                           "(after the catalog is loaded) and print its URL")
    serve.add_argument("--profile", default="dev", choices=list(ls.PROFILES))
    status = with_profile(sub.add_parser("status", help="which services answer; exit 1 if any is down"))
    status.add_argument("-o", "--output", choices=["table", "json"], default="table")
    with_profile(sub.add_parser("wipe", help="stop the profile and delete its data and logs"))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    # The clients used for the readiness checks log every refused connection while a service boots.
    for noisy in ("kafka", "cassandra"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL)

    try:
        if args.command == "fetch":
            started = time.monotonic()
            art = ls.fetch()
            logging.info(
                "jars ready in %.1f s: kafka %d, cassandra %d, connector %s",
                time.monotonic() - started,
                len(art.kafka_classpath),
                len(art.cassandra_classpath),
                art.kafka_connector_jar,
            )
            return 0
        profile = ls.get_profile(args.profile)
        if args.command == "up":
            times = ls.up(profile, args.only, taskmanagers=args.taskmanagers)
            logging.info(
                "profile %s up: %s", profile.name, ", ".join(f"{s} {t:.1f} s" for s, t in sorted(times.items()))
            )
            return 0
        if args.command == "serve":
            print(ls.start_service(profile))
            return 0
        if args.command == "down":
            ls.down(profile, args.only)
            logging.info("profile %s: stopped %s", profile.name, ",".join(args.only))
            return 0
        if args.command == "wipe":
            ls.wipe(profile)
            logging.info("profile %s wiped (%s)", profile.name, ls.run_dir(profile))
            return 0
        if args.command == "status":
            state = {k: v for k, v in ls.status(profile).items() if k in args.only}
            if args.output == "json":
                doc = {"profile": profile.name, "services": {k: dataclasses.asdict(v) for k, v in state.items()}}
                print(json.dumps(doc, indent=2))
            else:
                for service, st in state.items():
                    ports = ", ".join(f"{role} {port}" for role, port in st.ports.items())
                    pids = " ".join(map(str, st.pids)) or "-"
                    extra = f"  taskmanagers {st.taskmanagers}" if st.taskmanagers is not None else ""
                    word = "up" if st.answering else "down"
                    print(f"{service:<10} {word:<5} pids {pids:<20} ports {ports}{extra}")
            return 0 if all(st.answering for st in state.values()) else 1
    except ls.LocalStackError as exc:
        logging.error("%s", exc)
        return 1
    except KeyboardInterrupt:
        logging.error("interrupted; services already started keep running (`down` stops them)")
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
