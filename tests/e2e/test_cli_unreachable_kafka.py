"""Issue 22, part 7, for Kafka: `produce` and `init` against a closed port end with one line and
exit status 3. No stack needed, but kafka-python waits 30 s (its bootstrap timeout) for a first
broker before it gives up, too long for the unit tier (the other services: tests/unit/test_cli_unreachable.py)."""

from tests.unit.test_cli_unreachable import assert_one_line, closed_env, finish, start


def test_kafka_unreachable_is_one_line_and_exit_3():
    env = closed_env()
    procs = [start(env, "produce"), start(env, "init")]  # side by side: one wait of 30 s
    for proc in procs:
        assert_one_line(finish(proc), "Kafka", env["STREAMREC_KAFKA_BOOTSTRAP"], "STREAMREC_KAFKA_BOOTSTRAP")
