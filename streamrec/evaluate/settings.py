"""What to evaluate: the settings, and the models they build (streamrec and the baselines)."""

from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import numpy as np

from streamrec.embeddings import EmbeddingSettings
from streamrec.evaluate.models import (
    ItemKnnModel,
    KnnSettings,
    PopModel,
    Recommender,
    SessionKnnModel,
    StreamrecModel,
)
from streamrec.evaluate.protocol import (
    KS,
    MODEL_NAMES,
)
from streamrec.evaluate.sequential import (
    SequentialRulesModel,
    SrSettings,
    StanModel,
    StanSettings,
    VsknnModel,
    VsknnSettings,
)
from streamrec.model.catalog import Catalog
from streamrec.model.events import Event
from streamrec.model.model import (
    ModelParams,
)


@dataclass(frozen=True)
class EvalSettings:
    test_days: float = 30.0
    validation: bool = False
    ks: tuple[int, ...] = KS
    target_types: tuple[str, ...] = ("purchase",)
    models: tuple[str, ...] = MODEL_NAMES
    # chosen on the UCI validation split (docs/EVALUATION.md): the last product only, as in the
    # session-based literature; sessions = baskets (one timestamp) for UCI
    item_knn: KnnSettings = KnnSettings(gap_ms=0, window=1, neighbors=100)
    session_knn: KnnSettings = KnnSettings(gap_ms=0, window=1, neighbors=500)
    # chosen on the UCI validation split from the papers' defaults (docs/EVALUATION.md): every rule
    # kept, the gaps up to 20; V-SKNN on the last 3 events (the invoice in progress alone is too
    # little); STAN on the last 10, its neighbours' time decay 100 days instead of 5 (with 5, an
    # order from a month before counts e^-6 and recency drowns similarity)
    sr: SrSettings = SrSettings(gap_ms=0, steps=20, pruning=0)
    vsknn: VsknnSettings = VsknnSettings(gap_ms=0, window=3)
    stan: StanSettings = StanSettings(gap_ms=0, window=10, neighbors=500, lambda_spw=0.5, lambda_snh=100.0)
    # streamrec's update rule and scoring as a --tune run chose them on a set's validation split
    # (ModelParams fields: half_life_events, transition_weight, transition_context; and the catalog's
    # transition settings, CATALOG_FIELDS); empty: the job's and `catalog build`'s
    streamrec: tuple[tuple[str, Any], ...] = ()

    def streamrec_params(self, params: ModelParams) -> ModelParams:
        """``params`` with the tuned values of :attr:`streamrec` (its ModelParams fields)."""
        model = {k: v for k, v in self.streamrec if k not in CATALOG_FIELDS}
        return dataclasses.replace(params, **model) if model else params

    def streamrec_embedding(self, embedding: EmbeddingSettings) -> EmbeddingSettings:
        """``embedding`` with the tuned values of :attr:`streamrec` that the catalog learns."""
        learned = {k: v for k, v in self.streamrec if k in CATALOG_FIELDS}
        return dataclasses.replace(embedding, **learned) if learned else embedding

    def with_tuned(self, tuned: dict[str, Any]) -> EvalSettings:
        """The baselines' parameters that :func:`tune` chose (its JSON), for those it holds."""
        changes: dict[str, Any] = {}
        for model, field_name in BASELINE_FIELDS.items():
            if model in tuned:
                cls = type(getattr(self, field_name))
                changes[field_name] = cls(**tuned[model]["params"])
        if "streamrec" in tuned:
            changes["streamrec"] = tuple(sorted(tuned["streamrec"]["params"].items()))
        return dataclasses.replace(self, **changes)

    def with_session_gap(self, gap_ms: int) -> EvalSettings:
        """Every baseline cutting sessions at ``gap_ms`` (the data format's gap)."""
        return dataclasses.replace(
            self, **{f: dataclasses.replace(getattr(self, f), gap_ms=gap_ms) for f in BASELINE_FIELDS.values()})


# streamrec's settings that `catalog build` learns into the transition matrix (EmbeddingSettings fields):
# a --tune run chooses them with the ranking's, and evaluate builds its catalog with them
CATALOG_FIELDS = frozenset({"transition_steps", "transition_keep", "transition_backward", "transition_damping"})
# the EvalSettings field of each baseline that has settings
BASELINE_FIELDS = {"item-knn": "item_knn", "session-knn": "session_knn", "sr": "sr", "v-sknn": "vsknn",
                   "stan": "stan"}
ModelFactory = Callable[[Catalog, Sequence[Event], np.ndarray], list["Recommender"]]


def build_models(names: Sequence[str], params: ModelParams, settings: EvalSettings) -> ModelFactory:
    """The models ``names`` for a catalog, training events and popularity."""

    def make(catalog: Catalog, train: Sequence[Event], popularity: np.ndarray) -> list[Recommender]:
        models: list[Recommender] = []
        for name in names:
            if name == "streamrec":
                models.append(StreamrecModel(catalog, settings.streamrec_params(params)))
            elif name == "pop":
                models.append(PopModel(catalog, params, popularity))
            else:
                models.append(baseline(name, catalog, params, train, popularity,
                                       getattr(settings, BASELINE_FIELDS.get(name, ""), None)))
        return models

    return make


def baseline(name: str, catalog: Catalog, params: ModelParams, train: Sequence[Event], popularity: np.ndarray,
             settings: Any) -> Recommender:
    """One of the baselines with settings, by name."""
    classes: dict[str, Any] = {"item-knn": ItemKnnModel, "session-knn": SessionKnnModel, "sr": SequentialRulesModel,
                               "v-sknn": VsknnModel, "stan": StanModel}
    if name not in classes or settings is None:
        raise ValueError(f"unknown model {name!r}")
    model: Recommender = classes[name](catalog, params, train, popularity, settings)
    return model


def _iso(ms: int) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class _progress:
    """A rich progress bar on stderr (or nothing), as a context manager yielding an update callback."""

    def __init__(self, enabled: bool, total: int, what: str) -> None:
        self.enabled, self.total, self.what = enabled, total, what
        self._bar: Any = None

    def __enter__(self) -> Optional[Callable[[int], None]]:
        if not self.enabled:
            return None
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                             TimeElapsedColumn(), console=Console(file=sys.stderr), transient=True)
        self._bar.__enter__()
        task = self._bar.add_task(self.what, total=self.total)
        last = [0.0]

        def tick(done: int) -> None:
            now = time.monotonic()
            if now - last[0] > 0.2 or done >= self.total:
                last[0] = now
                self._bar.update(task, completed=done)

        return tick

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
