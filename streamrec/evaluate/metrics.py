"""Hit rate, MRR and coverage at each K, overall, for novel targets and for the first item of a visit."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from streamrec.evaluate.protocol import (
    VISIT_GAP_MS,
    Queries,
)


@dataclass
class _Tally:
    ks: tuple[int, ...]
    cases: int = 0
    hits: dict[int, int] = field(default_factory=dict)
    rr: dict[int, float] = field(default_factory=dict)

    def add(self, ranks: np.ndarray) -> None:
        """ranks: 1-based rank of each target in the list, 0 when absent."""
        self.cases += len(ranks)
        for k in self.ks:
            hit = (ranks > 0) & (ranks <= k)
            self.hits[k] = self.hits.get(k, 0) + int(hit.sum())
            self.rr[k] = self.rr.get(k, 0.0) + float((1.0 / ranks[hit]).sum())

    def metrics(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for k in self.ks:
            out[f"hr@{k}"] = self.hits.get(k, 0) / self.cases if self.cases else 0.0
        for k in self.ks:
            out[f"mrr@{k}"] = self.rr.get(k, 0.0) / self.cases if self.cases else 0.0
        return out


@dataclass
class Scoreboard:
    ks: tuple[int, ...]
    n_products: int
    all: dict[str, _Tally] = field(default_factory=dict)
    novel: dict[str, _Tally] = field(default_factory=dict)
    new_visit: dict[str, _Tally] = field(default_factory=dict)  # first target of a visit (UCI: of an invoice)
    shown: dict[str, np.ndarray] = field(default_factory=dict)

    def add(self, name: str, rows: np.ndarray, queries: Queries) -> None:
        a = self.all.setdefault(name, _Tally(self.ks))
        nv = self.novel.setdefault(name, _Tally(self.ks))
        visit = self.new_visit.setdefault(name, _Tally(self.ks))
        shown = self.shown.setdefault(name, np.zeros(self.n_products, dtype=bool))
        shown[rows[rows >= 0]] = True
        sizes = np.array([len(t) for t in queries.targets], dtype=np.int64)
        owner = np.repeat(np.arange(len(queries)), sizes)
        targets = np.concatenate(queries.targets) if len(queries) else np.empty(0, dtype=np.int64)
        novel = np.concatenate(queries.novel) if len(queries) else np.empty(0, dtype=bool)
        match = (rows[owner] == targets[:, None]) & (targets[:, None] >= 0)
        ranks = np.where(match.any(axis=1), match.argmax(axis=1) + 1, 0)
        a.add(ranks)
        nv.add(ranks[novel])
        first = np.array([ts - last[-1][1] > VISIT_GAP_MS for ts, last in zip(queries.ts, queries.recent)], dtype=bool)
        visit.add(ranks[np.repeat(first, sizes)])

    def models(self, novel: bool = False, new_visit: bool = False) -> dict[str, dict[str, float]]:
        tallies = self.new_visit if new_visit else self.novel if novel else self.all
        out = {}
        for name, t in tallies.items():
            m = t.metrics()
            shown = self.shown.get(name)
            m["coverage"] = float(shown.sum()) / self.n_products if shown is not None and self.n_products else 0.0
            out[name] = {key: round(v, 4) for key, v in m.items()}
        return out
