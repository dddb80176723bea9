"""The job's metrics from its Python operators, registered with PyFlink's metric group in ``open``.

On the fast path counted once per batch (``inc(n)``), never per event: the hot path pays a dict
lookup per dead letter code seen in a batch. The per-event path's operators count per record (a dict
lookup and an add, next to the hundreds of microseconds an event costs there). PyFlink hands the
values to the JVM at each bundle end, where Flink's Prometheus reporter names them like the Java
operators' (``streamrec.metrics`` lists them all). Nothing is registered in ``open``: a subclass
that opens its own ``OperatorMetrics`` on the same group must not collide with its parent's."""

from __future__ import annotations

from collections import Counter
from typing import Any, Iterable

from pyflink.datastream import RuntimeContext

from streamrec.metrics import GROUP
from streamrec.model.events import BadRecord


class LabelledCounter:
    """Counters by the value of one label (a key-value metric group: the key joins the name, the
    value becomes the Prometheus label), registered on first use."""

    def __init__(self, group: Any, key: str, name: str) -> None:
        self._group = group
        self._key = key
        self._name = name
        self._counters: dict[str, Any] = {}

    def inc(self, value: str, n: int = 1) -> None:
        counter = self._counters.get(value)
        if counter is None:
            counter = self._counters[value] = self._group.add_group(self._key, value).counter(self._name)
        counter.inc(n)


class OperatorMetrics:
    """The ``streamrec`` group of one Python operator instance."""

    def __init__(self, runtime_context: RuntimeContext) -> None:
        self.group = runtime_context.get_metrics_group().add_group(GROUP)
        self._dead_letters = LabelledCounter(self.group, "error", "dead_letters")
        self._counters: dict[str, Any] = {}

    def dead_letters(self, letters: Iterable[BadRecord]) -> None:
        """``streamrec_error_dead_letters{error}``: one ``inc`` per error code of the batch."""
        for code, n in Counter(letter.code for letter in letters).items():
            self._dead_letters.inc(code, n)

    def count(self, name: str, n: int = 1) -> None:
        """A plain counter, registered on first use."""
        counter = self._counters.get(name)
        if counter is None:
            counter = self._counters[name] = self.group.counter(name)
        counter.inc(n)

    def labelled(self, key: str, name: str) -> LabelledCounter:
        return LabelledCounter(self.group, key, name)

    def settable(self, name: str) -> SettableGauge:
        """A gauge this operator sets (see :class:`SettableGauge`)."""
        return SettableGauge(self.group.counter(name))


class SettableGauge:
    """A gauge whose value the operator sets, held by a JVM counter moved by the difference.

    Not PyFlink's ``gauge(name, callable)``: in thread mode the JVM reads such a gauge by calling
    into Python from its metrics thread whenever metrics are queried (the web UI, the REST API, a
    reporter), and one such call while a failed task's Python was being torn down crashed the
    whole process (SIGSEGV in take_gil, found by the repeated-failure fault test while it polled
    the job's REST API). A counter is read on the JVM side only; Flink's Prometheus reporter
    exports counters and gauges alike as Prometheus gauges, so the names and values are as before."""

    def __init__(self, counter: Any) -> None:
        self._counter = counter
        self._value = 0

    def set(self, value: int) -> None:
        delta = int(value) - self._value
        if delta:
            self._counter.inc(delta)
            self._value += delta


# the per-event path's users_in_state (java/src/main/java/streamrec/flink/UserCount.java)
USER_COUNT_CLASS_NAME = "streamrec.flink.UserCount"
# the key PyFlink's key_by gives the ranker's input (the user id in a one-field Row)
PYFLINK_ROW_KEY_CLASS_NAME = "streamrec.flink.PyFlinkRowKey"


def count_users_in_state(ranked: Any, user_ttl_ms: int) -> Any:
    """The per-event ranker's rows through ``users-in-state`` (UserCount, JVM): the exact
    ``streamrec_users_in_state`` of that path. Python cannot list its keyed state's keys, which an
    exact count needs after a restore or rescaling; UserCount keeps the count and its own expiry
    beside the ranker's state. The rows stay in their subtask (already partitioned by user), so
    the stream is reinterpreted as keyed, without a shuffle, with the key the ranker's ``key_by``
    (a Python key selector, key type STRING) gives it."""
    from pyflink.common import Types
    from pyflink.datastream import DataStream
    from pyflink.java_gateway import get_gateway

    from streamrec.connectors.javasupport import java_class
    from streamrec.udfs.operators import RECOMMENDATION_ROW

    # keyed exactly as the ranker's input was (a bare-string key would hash to other key groups)
    streams = get_gateway().jvm.org.apache.flink.streaming.api.datastream.DataStreamUtils
    keyed = streams.reinterpretAsKeyedStream(ranked._j_data_stream, java_class(PYFLINK_ROW_KEY_CLASS_NAME)(1),
                                             Types.ROW([Types.STRING()]).get_java_type_info())
    counted = keyed.transform("users-in-state", RECOMMENDATION_ROW.get_java_type_info(),
                              java_class(USER_COUNT_CLASS_NAME)(int(user_ttl_ms)))
    return DataStream(counted).name("users-in-state").uid("users-in-state")
