"""Offline evaluation: replay a time-split history through the job's own functions.

The protocol (docs/EVALUATION.md says why):

- **Split by time.** The test window is the last ``test_days`` calendar days (UTC) of the history;
  everything before it is training. The validation split moves the window back by ``test_days``:
  it evaluates on the ``test_days`` before the test window and trains on what came before that, so
  parameters are chosen without ever looking at the test window.
- **Learn from training only.** The catalog (embeddings), popularity and co-occurrences come from
  the training events; products first seen later keep their title vector (when the data has
  titles) or are unknown (the job would send their events to the dead-letter topic).
- **Replay with the job's functions.** Every event, training and test, goes through
  :func:`streamrec.model.model.update_user` in time order; streamrec's recommendations come from
  :func:`streamrec.model.model.recommend_batch` with the state the job would hold. There is no second
  implementation of the model here.
- **Cases: the next item, as the job sees events.** The job updates a user's recommendations after
  every event; the next event shows whether they were right. So every target event in the window
  (UCI: every purchase line; OTTO: every click, cart and order) of a user with at least one earlier
  product event is one case: each model recommends ``max(ks)`` products from what it knows just
  before that event, i.e. after all earlier events, the earlier lines of the same UCI invoice
  included (the reader keeps an invoice's lines in the order they went into the cart). A hit at K
  when the event's product is in the first K; reciprocal rank 1/r when it is at rank r <= K.
- **All and novel.** ``all`` counts every case; ``novel`` only targets the user had not interacted
  with before. With the exclude-purchased filter on (the deployment default) no model can hit a
  repeat purchase, so ``novel`` is the ranking quality and ``all`` what a shop would see.
- **Same filters for everyone.** Every model gets the same exclusions (the user's earlier
  purchases, when ``exclude_purchased``) and only in-stock products.
- **Coverage**: distinct products in the ``max(ks)`` lists of all cases over the catalog size.
- **New visits** are also reported apart: cases more than 30 minutes after the user's previous
  event (UCI: the first line of an invoice), where there is no cart in progress to go on from.

The package: ``protocol`` (constants, the split, the replay), ``models`` (streamrec, POP, the two
KNNs), ``sequential`` (SR, V-SKNN, STAN), ``metrics``, ``settings`` (what to evaluate, the models
it builds) and ``plots``. The two entry points stay here, :func:`evaluate` and :func:`tune`: they read
``build_catalog``, :func:`evaluate` and the grids as this package's names at call time, so that a
caller (or a test) can replace them.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import numpy as np

from streamrec.datasets import History
from streamrec.embeddings import EmbeddingSettings, _sequences, build_catalog
from streamrec.evaluate.metrics import Scoreboard
from streamrec.evaluate.models import (
    ItemKnnModel,
    KnnSettings,
    PopModel,
    Recommender,
    SessionKnnModel,
    StreamrecModel,
    _popularity,
    top_rows,
)
from streamrec.evaluate.plots import plot
from streamrec.evaluate.protocol import (
    BATCH,
    DAY_MS,
    DEFAULT_TEST_DAYS,
    KS,
    MODEL_NAMES,
    RECENT_MAX,
    SESSION_GAP_MS,
    TARGET_TYPES,
    VISIT_GAP_MS,
    Queries,
    Split,
    replay,
    replay_recommendations,
    sessions,
    time_split,
)
from streamrec.evaluate.sequential import (
    POSITION_WEIGHTS,
    RULE_WEIGHTS,
    STEP_WEIGHTS,
    SequentialRulesModel,
    SrSettings,
    StanModel,
    StanSettings,
    VsknnModel,
    VsknnSettings,
)
from streamrec.evaluate.settings import (
    BASELINE_FIELDS,
    CATALOG_FIELDS,
    EvalSettings,
    ModelFactory,
    _iso,
    _progress,
    baseline,
    build_models,
)
from streamrec.model.catalog import Catalog
from streamrec.model.events import Event
from streamrec.model.model import ModelParams
from streamrec.model.transitions import learn_transitions


def evaluate(
    history: History,
    params: ModelParams,
    settings: EvalSettings,
    embedding: Optional[EmbeddingSettings] = None,
    progress: bool = False,
    log: Callable[[str], None] = lambda _msg: None,
    models_factory: Optional[ModelFactory] = None,
) -> dict[str, Any]:
    """Split, learn from training, replay everything, score every model; the JSON report.

    ``models_factory`` replaces the models of ``settings.models`` (tuning scores many settings of a
    baseline in one replay)."""
    t0 = time.monotonic()
    # the job's settings with what a --tune run chose for this set (the replay folds with them, the
    # catalog learns its transitions with them)
    embedding = settings.streamrec_embedding(embedding or EmbeddingSettings())
    params = settings.streamrec_params(params)

    def build(h: History) -> Catalog:
        return build_catalog(h, settings=embedding)

    split = time_split(history.events, settings.test_days, settings.validation)
    if not split.train:
        raise ValueError("the training window is empty: use fewer --test-days")
    train_history = dataclasses.replace(history, events=split.train)
    catalog = build(train_history)
    t_build = time.monotonic() - t0
    log(f"catalog: {len(catalog)} products x {catalog.dim} dims from {len(split.train)} training events "
        f"({t_build:.1f}s)")
    popularity = _popularity(split.train, catalog, settings.target_types)
    make = models_factory or build_models(settings.models, params, settings)
    models = make(catalog, split.train, popularity)
    kmax = max(settings.ks)
    board = Scoreboard(settings.ks, len(catalog))
    timings = {m.name: 0.0 for m in models}

    def on_batch(q: Queries) -> None:
        for m in models:
            t = time.monotonic()
            board.add(m.name, m.recommend(q, kmax), q)
            timings[m.name] += time.monotonic() - t

    events = [e for e in history.events if e.ts < split.end_ms]
    with _progress(progress, len(events), "replaying") as tick:
        replay(events, catalog, params, split.start_ms, settings.target_types, on_batch, tick)
    report: dict[str, Any] = {
        "k": list(settings.ks),
        "models": board.models(),
        "novel": {"models": board.models(novel=True)},
        "new_visit": {"models": board.models(new_visit=True)},
        "protocol": {
            "split": "validation" if settings.validation else "test",
            "train_until": _iso(split.start_ms),
            "window": [_iso(split.start_ms), _iso(split.end_ms)],
            "targets": list(settings.target_types),
            "cases": next(iter(board.all.values())).cases if board.all else 0,
            "novel_cases": next(iter(board.novel.values())).cases if board.novel else 0,
            "new_visit_cases": next(iter(board.new_visit.values())).cases if board.new_visit else 0,
            "exclude_purchased": params.exclude_purchased,
            "products": len(catalog),
            "dim": catalog.dim,
        },
        "params": {
            "half_life_events": params.half_life_events, "half_life_days": params.half_life_days,
            "transition_weight": params.transition_weight, "transition_context": params.transition_context,
            "transitions": catalog.transitions is not None,
            "event_weights": dict(params.event_weights),
            "embedding": {k: v for k, v in dataclasses.asdict(embedding).items()
                          if k in ("dim", "window", "title_weight", "popularity", "min_count", *CATALOG_FIELDS)},
            **{f: dataclasses.asdict(getattr(settings, f)) for f in BASELINE_FIELDS.values()},
        },
        "seconds": {"catalog": round(t_build, 1), "total": round(time.monotonic() - t0, 1),
                    **{f"recommend:{k}": round(v, 1) for k, v in timings.items()}},
    }
    return report


# ---------------------------------------------------------------------------------------------
# tuning on the validation split

# Candidate values, searched one parameter at a time (coordinate ascent) from the defaults.
# streamrec's update rule and scoring (ModelParams fields) and how the catalog learns its transitions
# (CATALOG_FIELDS: the matrix is learned again per candidate, the product vectors stay), chosen per
# data set on one replay of its validation split; the product vectors' settings (EmbeddingSettings)
# were chosen on UCI.
STREAMREC_GRID: dict[str, tuple[Any, ...]] = {
    "half_life_events": (0.5, 1.0, 2.0, 5.0),
    "transition_weight": (0.0, 0.1, 0.2, 0.4, 0.8),
    "transition_context": (1, 3, 5, 10, 20),
    "transition_backward": (0.0, 0.5, 1.0),
    "transition_damping": (0.0, 0.25, 0.5),
    "transition_keep": (100, 300),
}
KNN_GRID: dict[str, tuple[Any, ...]] = {"window": (0, 1, 2, 3, 5), "neighbors": (50, 100, 500)}
# The sequential baselines: around the papers' defaults (session-rec's), one parameter at a time.
SEQUENTIAL_GRIDS: dict[str, dict[str, tuple[Any, ...]]] = {
    "sr": {"steps": (10, 3, 5, 20), "pruning": (20, 10, 0), "weighting": ("div", "linear", "quadratic")},
    "v-sknn": {"neighbors": (100, 50, 500), "sample": (1000, 500, 5000), "window": (0, 3, 10),
               "weighting_score": ("div", "linear", "same")},
    "stan": {"neighbors": (100, 500, 1500), "lambda_spw": (1.02, 0.5, 4.0), "lambda_snh": (5.0, 1.0, 100.0),
             "lambda_inh": (2.05, 1.0, 8.0), "window": (0, 10)},
}


def _objective(metrics: dict[str, float]) -> tuple[float, float]:
    """What tuning maximises: MRR@20, then HR@20."""
    return (metrics.get("mrr@20", 0.0), metrics.get("hr@20", 0.0))


def tune(
    history: History,
    params: ModelParams,
    settings: EvalSettings,
    embedding: Optional[EmbeddingSettings] = None,
    rounds: int = 2,
    log: Callable[[str], None] = lambda _msg: None,
) -> dict[str, Any]:
    """Choose the parameters of the models in ``settings.models`` on the validation split (never the test).

    Maximising MRR@20 (then HR@20) of the validation window: streamrec and the sequential baselines
    by coordinate ascent over :data:`STREAMREC_GRID` / :data:`SEQUENTIAL_GRIDS` from their current
    values, the two KNN baselines over the whole :data:`KNN_GRID`. Returns the chosen values, their
    validation metrics and every trial.
    """
    embedding = embedding or EmbeddingSettings()
    trials: list[dict[str, Any]] = []
    out: dict[str, Any] = {}
    if "streamrec" in settings.models:
        out["streamrec"] = _tune_streamrec(history, params, settings, embedding, rounds, trials, log)
    baselines = [m for m in settings.models if m in BASELINE_FIELDS]
    if baselines:
        cases = _validation_cases(history, params, settings, embedding)
        for model in baselines:
            out[model] = _tune_baseline(cases, params, settings, model, rounds, trials, log)
    out["trials"] = trials
    return out


def _tune_streamrec(
    history: History, params: ModelParams, settings: EvalSettings, embedding: EmbeddingSettings, rounds: int,
    trials: list[dict[str, Any]], log: Callable[[str], None],
) -> dict[str, Any]:
    """Coordinate ascent over :data:`STREAMREC_GRID` (the update rule and the transition term) on
    one replay of the validation split: every candidate folds the same cases' histories again
    (:class:`StreamrecModel` with ``refold``); the catalog is the one ``embedding`` builds, its
    transitions learned again from the same training sessions for each value of the catalog's
    settings (:data:`CATALOG_FIELDS`)."""
    start = settings.streamrec_params(params)
    start_emb = settings.streamrec_embedding(embedding)
    # the replay keeps the longest history any candidate folds
    longest = dataclasses.replace(start, half_life_events=max((*STREAMREC_GRID.get("half_life_events", ()),
                                                                 start.half_life_events)))
    recorder = _Recorder()
    got: dict[str, Any] = {}

    def make(catalog: Catalog, train: Sequence[Event], popularity: np.ndarray) -> list[Recommender]:
        got.update(catalog=catalog, train=train)
        return [recorder]

    evaluate(history, longest, dataclasses.replace(settings, validation=True), start_emb, models_factory=make)
    built: Catalog = got["catalog"]
    # the training sessions the catalog learned its transitions from (build_catalog's)
    rows, sess = _sequences([e for e in got["train"] if e.product_id is not None], built.index,
                            start_emb.session_gap_ms)
    catalogs: dict[tuple[tuple[str, Any], ...], Catalog] = {}

    def catalog_for(learned: dict[str, Any]) -> Catalog:
        key = tuple(sorted(learned.items()))
        if key not in catalogs:
            e = dataclasses.replace(start_emb, **learned)
            t = learn_transitions(rows, sess, len(built), e.transition_steps, e.transition_keep,
                                  e.transition_backward, e.transition_damping) if e.transition_steps > 0 else None
            catalogs[key] = dataclasses.replace(built, transitions=t)
        return catalogs[key]

    kmax = max(settings.ks)
    scored: dict[tuple[tuple[str, Any], ...], dict[str, float]] = {}

    def score(point: dict[str, Any]) -> dict[str, float]:
        key = tuple(sorted(point.items()))
        if key not in scored:
            catalog = catalog_for({k: v for k, v in point.items() if k in CATALOG_FIELDS})
            board = Scoreboard(settings.ks, len(catalog))
            model = {k: v for k, v in point.items() if k not in CATALOG_FIELDS}
            m = StreamrecModel(catalog, dataclasses.replace(start, **model), refold=True)
            for q in recorder.batches:
                board.add("streamrec", m.recommend(q, kmax), q)
            scored[key] = board.models()["streamrec"]
            trials.append({"model": "streamrec", **point, **scored[key]})
            log(f"streamrec {point}: {scored[key]}")
        return scored[key]

    point: dict[str, Any] = {k: getattr(start_emb if k in CATALOG_FIELDS else start, k) for k in STREAMREC_GRID}
    best = score(point)
    for _ in range(rounds):
        improved = False
        for name, values in STREAMREC_GRID.items():
            for v in values:
                cand = {**point, name: v}
                m = score(cand)
                if _objective(m) > _objective(best):
                    point, best, improved = cand, m, True
        if not improved:
            break
    return {"params": point, "validation": best}


@dataclass
class _Cases:
    """The validation split's cases, replayed once, and what the baselines learn from."""

    catalog: Catalog
    train: Sequence[Event]
    popularity: np.ndarray
    batches: list[Queries]
    ks: tuple[int, ...]


class _Recorder:
    """A stand-in model that keeps the batches of cases it is shown and recommends nothing."""

    name = "cases"

    def __init__(self) -> None:
        self.batches: list[Queries] = []

    def recommend(self, queries: Queries, k: int) -> np.ndarray:
        self.batches.append(queries)
        return np.full((len(queries), k), -1, dtype=np.int64)


def _validation_cases(
    history: History, params: ModelParams, settings: EvalSettings, embedding: EmbeddingSettings,
) -> _Cases:
    """Replay the validation split once: the baselines' settings change their lists, never the
    cases, and the replay is what costs."""
    got: dict[str, Any] = {}
    recorder = _Recorder()

    def make(catalog: Catalog, train: Sequence[Event], popularity: np.ndarray) -> list[Recommender]:
        got.update(catalog=catalog, train=train, popularity=popularity)
        return [recorder]

    # the baselines never read the product vectors: the smallest catalog will do
    evaluate(history, params, dataclasses.replace(settings, validation=True),
             dataclasses.replace(embedding, dim=8, categories=0), models_factory=make)
    return _Cases(got["catalog"], got["train"], got["popularity"], recorder.batches, settings.ks)


def _score_candidates(
    cases: _Cases, params: ModelParams, model: str, candidates: Sequence[Any],
) -> list[dict[str, float]]:
    """Validation metrics of each settings of one baseline."""
    board = Scoreboard(cases.ks, len(cases.catalog))
    kmax = max(cases.ks)
    for i, cand in enumerate(candidates):
        m = baseline(model, cases.catalog, params, cases.train, cases.popularity, cand)
        for q in cases.batches:
            board.add(str(i), m.recommend(q, kmax), q)
    metrics = board.models()
    return [metrics[str(i)] for i in range(len(candidates))]


def _tune_baseline(
    cases: _Cases, params: ModelParams, settings: EvalSettings, model: str, rounds: int,
    trials: list[dict[str, Any]], log: Callable[[str], None],
) -> dict[str, Any]:
    start = getattr(settings, BASELINE_FIELDS[model])
    scored: dict[Any, dict[str, float]] = {}

    def score(cands: list[Any]) -> None:
        todo = [c for c in dict.fromkeys(cands) if c not in scored]
        if not todo:
            return
        for c, m in zip(todo, _score_candidates(cases, params, model, todo)):
            scored[c] = m
            changed = {k: v for k, v in dataclasses.asdict(c).items() if k != "gap_ms"}
            trials.append({"model": model, **changed, **m})
            log(f"{model} {changed}: {m}")

    if model in ("item-knn", "session-knn"):
        # the whole grid at once
        score([dataclasses.replace(start, window=w, neighbors=k)
               for w in KNN_GRID["window"] for k in KNN_GRID["neighbors"]])
        best = max(scored, key=lambda c: _objective(scored[c]))
    else:
        best = start
        score([best])
        for _ in range(rounds):
            improved = False
            for name, values in SEQUENTIAL_GRIDS[model].items():
                cands = [dataclasses.replace(best, **{name: v}) for v in values]
                score(cands)
                top = max(cands, key=lambda c: _objective(scored[c]))
                if _objective(scored[top]) > _objective(scored[best]):
                    best, improved = top, True
            if not improved:
                break
    return {"params": dataclasses.asdict(best), "validation": scored[best]}


__all__ = [
    "BASELINE_FIELDS",
    "BATCH",
    "CATALOG_FIELDS",
    "DAY_MS",
    "DEFAULT_TEST_DAYS",
    "KNN_GRID",
    "KS",
    "MODEL_NAMES",
    "POSITION_WEIGHTS",
    "RECENT_MAX",
    "RULE_WEIGHTS",
    "SEQUENTIAL_GRIDS",
    "SESSION_GAP_MS",
    "STEP_WEIGHTS",
    "STREAMREC_GRID",
    "TARGET_TYPES",
    "VISIT_GAP_MS",
    "EvalSettings",
    "ItemKnnModel",
    "KnnSettings",
    "ModelFactory",
    "PopModel",
    "Queries",
    "Recommender",
    "Scoreboard",
    "SequentialRulesModel",
    "SessionKnnModel",
    "Split",
    "SrSettings",
    "StanModel",
    "StanSettings",
    "StreamrecModel",
    "VsknnModel",
    "VsknnSettings",
    "_iso",
    "_popularity",
    "baseline",
    "build_catalog",
    "build_models",
    "evaluate",
    "plot",
    "replay",
    "replay_recommendations",
    "sessions",
    "time_split",
    "top_rows",
    "tune",
]
