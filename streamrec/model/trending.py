"""Trending products: time-decayed popularity, the cold-start fallback.

Each interaction adds ``weight`` to its product's score; scores halve every ``half_life_ms`` of
event time. Scores are kept relative to a reference time so that adding is O(1) and the ranking
never needs a pass over all products to decay them.
"""

from __future__ import annotations

import heapq
import json
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator


@dataclass
class DecayedPopularity:
    half_life_ms: float
    # score_at_reference = true_score * 2 ** ((reference_ms - t) / half_life); one reference for all
    reference_ms: int = 0
    scores: dict[str, float] = field(default_factory=dict)

    def add(self, product_id: str, ts_ms: int, weight: float = 1.0) -> None:
        if not self.scores:
            self.reference_ms = ts_ms
        exponent = (ts_ms - self.reference_ms) / self.half_life_ms
        if exponent > 500:  # keep floats finite: move the reference forward (rescales every score)
            self._rebase(ts_ms)
            exponent = 0.0
        self.scores[product_id] = self.scores.get(product_id, 0.0) + weight * math.pow(2.0, exponent)

    def _rebase(self, new_reference_ms: int) -> None:
        factor = math.pow(2.0, -(new_reference_ms - self.reference_ms) / self.half_life_ms)
        self.scores = {p: s * factor for p, s in self.scores.items() if s * factor > 1e-12}
        self.reference_ms = new_reference_ms

    def score(self, product_id: str, now_ms: int) -> float:
        raw = self.scores.get(product_id, 0.0)
        return raw * math.pow(2.0, -(now_ms - self.reference_ms) / self.half_life_ms)

    def top(self, n: int, now_ms: int) -> list[tuple[str, float]]:
        """The n highest scores at ``now_ms`` (ties broken by product id, for determinism)."""
        scale = math.pow(2.0, -(now_ms - self.reference_ms) / self.half_life_ms)
        best = heapq.nsmallest(n, self.scores.items(), key=lambda kv: (-kv[1], kv[0]))
        return [(p, s * scale) for p, s in best]


def popularity_rows(batches: Iterable[Any]) -> Iterator[tuple[str, float, int]]:
    """(product_id, weight, ts) of pending popularity batches: JSON strings from the JVM counter,
    or single tuples, which a savepoint of a release that counted in SQL may still hold."""
    for batch in batches:
        if isinstance(batch, str):
            for product_id, weight, ts in json.loads(batch):
                yield str(product_id), float(weight), int(ts)
        else:
            product_id, weight, ts = batch
            yield str(product_id), float(weight), int(ts)
