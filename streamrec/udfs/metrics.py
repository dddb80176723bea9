"""The job's metrics from its Python operators, registered with PyFlink's metric group in ``open``.

Counted once per batch (``inc(n)``), never per event: the hot path pays a dict lookup per dead
letter code seen in a batch. PyFlink hands the values to the JVM at each bundle end, where Flink's
Prometheus reporter names them like the Java operators' (``streamrec.metrics`` lists them all)."""

from __future__ import annotations

from collections import Counter
from typing import Any, Callable, Iterable

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

    def dead_letters(self, letters: Iterable[BadRecord]) -> None:
        """``streamrec_error_dead_letters{error}``: one ``inc`` per error code of the batch."""
        for code, n in Counter(letter.code for letter in letters).items():
            self._dead_letters.inc(code, n)

    def gauge(self, name: str, read: Callable[[], int]) -> None:
        # PyFlink reads a Python gauge at each bundle end; it must return an int
        self.group.gauge(name, lambda: int(read()))
