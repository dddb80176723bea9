"""Offline evaluation: the split, the replay through the job's functions, the baselines, the metrics."""

import dataclasses
import json

import numpy as np
import pytest
from click.testing import CliRunner

from streamrec import evaluate as ev
from streamrec.config import DEFAULT_EVENT_WEIGHTS
from streamrec.datasets import History
from streamrec.embeddings import EmbeddingSettings, build_catalog
from streamrec.model.catalog import Catalog
from streamrec.model.events import Event
from streamrec.model.model import ModelParams, UserState, recommend_batch, update_user

DAY = ev.DAY_MS
PARAMS = ModelParams(DEFAULT_EVENT_WEIGHTS, half_life_events=1.0, top_k=10)
EMB = EmbeddingSettings(dim=8, categories=0)


def shop(users=60, days=90, seed=0):
    """Customers who fill carts from one product family each, in the family's order, every few days."""
    rng = np.random.default_rng(seed)
    families = [[f"{f}{i}" for i in range(6)] for f in ("lamp", "mug", "bag", "card", "tin")]
    titles = {p: f"{p[:-1].upper()} NUMBER {p[-1]}" for fam in families for p in fam}
    events = []
    for u in range(users):
        fam = families[u % len(families)]
        for d in range(int(rng.integers(0, 5)), days, int(rng.integers(5, 12))):
            start = int(rng.integers(0, 3))
            for j, p in enumerate(fam[start:start + 4]):
                ts = d * DAY + u * 1000 + j  # one invoice: the same minute, lines in order
                events.append(Event(f"e{u}-{d}-{j}", f"u{u}", ts - j, "purchase", p))
    events.sort(key=lambda e: e.ts)
    return History(events, titles, {})


# --- the split ---------------------------------------------------------------------------------

def test_the_test_window_is_the_last_whole_days_and_validation_the_days_before():
    evs = [Event(f"e{d}", "u", d * DAY + 5, "purchase", "p") for d in range(10)]  # days 0..9
    s = ev.time_split(evs, 3)
    assert (s.start_ms, s.end_ms) == (7 * DAY, 10 * DAY)
    assert [e.event_id for e in s.test] == ["e7", "e8", "e9"] and len(s.train) == 7
    v = ev.time_split(evs, 3, validation=True)
    assert (v.start_ms, v.end_ms) == (4 * DAY, 7 * DAY)
    assert [e.event_id for e in v.test] == ["e4", "e5", "e6"] and max(e.ts for e in v.train) < 4 * DAY
    with pytest.raises(ValueError):
        ev.time_split([], 3)


def test_sessions_are_cut_at_gaps():
    evs = [Event(f"e{i}", "u", ts, "click", "p") for i, ts in enumerate([0, 10, 20, 1000, 1005])]
    assert [[e.event_id for e in s] for s in ev.sessions(evs, gap_ms=100)] == [["e0", "e1", "e2"], ["e3", "e4"]]
    assert len(ev.sessions(evs, gap_ms=0)) == 5


# --- the replay --------------------------------------------------------------------------------

def tiny_catalog():
    v = np.eye(4, dtype=np.float32)
    return Catalog(("a", "b", "c", "d"), v)


def collect(events, catalog, params=PARAMS, start=0, targets=("purchase",)):
    batches = []
    ev.replay(events, catalog, params, start, targets, batches.append)
    q = ev.Queries()
    for b in batches:
        for name in ("vectors", "excluded", "recent", "targets", "novel", "ts"):
            getattr(q, name).extend(getattr(b, name))
    return q


def test_every_target_event_in_the_window_of_a_user_with_history_is_a_case():
    evs = [
        Event("1", "u", 1, "purchase", "a"),  # training
        Event("2", "u", 10, "click", "b"),  # in the window, but not a target type
        Event("3", "u", 11, "purchase", "c"),  # a case
        Event("4", "v", 12, "purchase", "a"),  # v's first event: nothing to recommend from
        Event("5", "v", 13, "purchase", "a"),  # a case, a repeat: not novel
        Event("6", "u", 14, "purchase", "zz"),  # unknown product: a case nobody can hit
    ]
    q = collect(evs, tiny_catalog(), start=10)
    assert [t.tolist() for t in q.targets] == [[2], [0], [-1]]
    assert [n.tolist() for n in q.novel] == [[True], [False], [True]]
    assert q.excluded == [("a",), ("a",), ("a", "c")]
    assert [r[-1][0] for r in q.recent] == [1, 0, 2]  # the last product each user touched


def test_streamrec_cases_see_exactly_the_state_the_job_has_before_the_event():
    h = shop(users=10, days=30)
    cat = build_catalog(h, settings=EMB)
    q = collect(h.events, cat, start=20 * DAY)
    # the state of each case, by hand: update_user over the user's earlier events (the cases fold the
    # user's history as the job does, which equals the running vector to float32 rounding)
    states: dict[str, UserState] = {}
    i = 0
    for e in h.events:
        s = states.setdefault(e.user_id, UserState())
        if e.ts >= 20 * DAY and s.vector is not None:
            np.testing.assert_allclose(q.vectors[i], s.vector, rtol=1e-6, atol=1e-7)
            assert q.excluded[i] == tuple(s.purchased)
            i += 1
        update_user(s, e, cat, PARAMS)
    assert i == len(q) > 50
    # and streamrec's lists are recommend_batch's for those states
    rows = ev.StreamrecModel(cat, PARAMS).recommend(q, 10)
    recs = recommend_batch(q.vectors, [list(x) for x in q.excluded], cat, PARAMS)
    assert [[cat.product_ids[r] for r in row if r >= 0] for row in rows] == [list(r.product_ids) for r in recs]


def test_replay_recommendations_is_the_job_s_output_for_a_history():
    cat = tiny_catalog()
    evs = [Event("1", "u", 1, "view", "a"), Event("2", "u", 2, "purchase", "b"), Event("3", "u", 3, "view", "zz"),
           Event("4", "w", 4, "click", "c")]
    out = ev.replay_recommendations(evs, cat, PARAMS)
    assert [e.event_id for e, *_ in out] == ["1", "2", "4"]  # the unknown product goes to the DLQ
    _, ids, scores, source = out[1]
    assert "b" not in ids and ids[0] == "a" and source == "personal"
    assert list(scores) == sorted(scores, reverse=True)


# --- ranking and metrics -----------------------------------------------------------------------

def test_top_rows_ranks_by_score_and_never_returns_excluded_or_out_of_stock_rows():
    scores = np.array([[0.1, 0.9, 0.5, 0.7], [1.0, 2.0, 3.0, 4.0]])
    stock = np.array([True, True, True, False])
    rows = ev.top_rows(scores, [[1], []], stock, 3)
    assert rows.tolist() == [[2, 0, -1], [2, 1, 0]]
    assert ev.top_rows(scores, [[], []], stock, 6).shape == (2, 6)


def test_hit_rate_and_mrr_count_each_target_at_its_rank():
    board = ev.Scoreboard((1, 3), n_products=10)
    q = ev.Queries(vectors=[None] * 3, excluded=[()] * 3, recent=[((1, 0),)] * 3,
                   targets=[np.array([5]), np.array([7]), np.array([9])],
                   novel=[np.array([True]), np.array([False]), np.array([True])],
                   ts=[0, 60_000, 2 * ev.VISIT_GAP_MS])  # the third comes long after the user's last event
    rows = np.array([[5, 1, 2], [1, 2, 7], [1, 2, 3]])  # ranks 1, 3, miss
    board.add("m", rows, q)
    got = board.models()["m"]  # (rounded to 4 places)
    assert got["hr@1"] == pytest.approx(1 / 3, abs=1e-4) and got["hr@3"] == pytest.approx(2 / 3, abs=1e-4)
    assert got["mrr@1"] == pytest.approx(1 / 3, abs=1e-4) and got["mrr@3"] == pytest.approx((1 + 1 / 3) / 3, abs=1e-4)
    assert got["coverage"] == pytest.approx(5 / 10, abs=1e-4)  # 1, 2, 3, 5, 7 were shown
    novel = board.models(novel=True)["m"]
    assert novel["hr@3"] == pytest.approx(1 / 2, abs=1e-4) and novel["mrr@3"] == pytest.approx(1 / 2, abs=1e-4)
    assert board.new_visit["m"].cases == 1 and board.models(new_visit=True)["m"]["hr@3"] == 0.0


# --- the baselines -----------------------------------------------------------------------------

def one_case(recent_rows, excluded=()):
    return ev.Queries(vectors=[None], excluded=[tuple(excluded)], recent=[tuple((r, 0) for r in recent_rows)],
                      targets=[np.array([0])], novel=[np.array([True])], ts=[0])


def train_baskets():
    # a and b are bought together, c and d together; d sells most
    evs = []
    for i in range(5):
        evs += [Event(f"x{i}", f"u{i}", i * 10, "purchase", "a"), Event(f"y{i}", f"u{i}", i * 10, "purchase", "b")]
    for i in range(8):
        evs += [Event(f"z{i}", f"w{i}", i * 10, "purchase", "c"), Event(f"q{i}", f"w{i}", i * 10, "purchase", "d")]
    return evs


def test_pop_recommends_the_best_sellers_the_user_has_not_bought():
    cat = tiny_catalog()
    train = train_baskets()
    pop = ev._popularity(train, cat, ("purchase",))
    rows = ev.PopModel(cat, PARAMS, pop).recommend(one_case([0], excluded=["c"]), 3)
    assert [cat.product_ids[r] for r in rows[0]] == ["d", "a", "b"]


def test_item_knn_recommends_what_was_bought_with_the_last_products():
    cat = tiny_catalog()
    train = train_baskets()
    pop = ev._popularity(train, cat, ("purchase",))
    knn = ev.ItemKnnModel(cat, PARAMS, train, pop, ev.KnnSettings(gap_ms=0, window=1, neighbors=10))
    np.testing.assert_allclose(knn.sim.toarray()[0], [0, 1, 0, 0])  # a: always with b, never with c or d
    rows = knn.recommend(one_case([2, 0], excluded=["a"]), 2)  # last product: a
    assert cat.product_ids[rows[0][0]] == "b"


def test_session_knn_votes_with_the_most_similar_past_sessions():
    cat = tiny_catalog()
    train = train_baskets()
    pop = ev._popularity(train, cat, ("purchase",))
    sknn = ev.SessionKnnModel(cat, PARAMS, train, pop, ev.KnnSettings(gap_ms=0, window=1, neighbors=3))
    rows = sknn.recommend(one_case([3], excluded=["d"]), 1)
    assert cat.product_ids[rows[0][0]] == "c"


# --- the whole evaluation ----------------------------------------------------------------------

def test_the_report_has_the_contracted_shape_and_streamrec_learns_the_families():
    report = ev.evaluate(shop(), PARAMS, ev.EvalSettings(test_days=20), EMB)
    assert report["k"] == [10, 20]
    assert set(report["models"]) == set(ev.MODEL_NAMES)
    for metrics in (*report["models"].values(), *report["novel"]["models"].values(),
                    *report["new_visit"]["models"].values()):
        assert set(metrics) == {"hr@10", "hr@20", "mrr@10", "mrr@20", "coverage"}
        assert all(0.0 <= v <= 1.0 for v in metrics.values())
    m = report["models"]
    assert m["streamrec"]["hr@10"] > 2 * m["pop"]["hr@10"]
    assert report["protocol"]["cases"] > 100 and report["protocol"]["split"] == "test"
    json.dumps(report)


def test_validation_never_sees_the_test_window():
    h = shop()
    seen = []
    real = ev.build_catalog

    def spy(history, **kw):
        seen.append(max(e.ts for e in history.events))
        return real(history, **kw)

    ev.build_catalog, saved = spy, ev.build_catalog
    try:
        r = ev.evaluate(h, PARAMS, ev.EvalSettings(test_days=20, validation=True, models=("streamrec",)), EMB)
    finally:
        ev.build_catalog = saved
    test_start = ev.time_split(h.events, 20).start_ms
    assert seen[0] < test_start - 20 * DAY + DAY
    assert r["protocol"]["window"][1] <= ev._iso(test_start)


def test_the_plot_is_a_png(tmp_path):
    report = ev.evaluate(shop(users=20, days=40), PARAMS, ev.EvalSettings(test_days=10), EMB)
    ev.plot(report, tmp_path / "eval.png", title="synthetic")
    assert (tmp_path / "eval.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


UCI_HEADER = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"


def uci_csv(tmp_path):
    h = shop(users=20, days=60)
    codes = {p: f"{10000 + i}" for i, p in enumerate(sorted(h.titles))}
    lines = [UCI_HEADER]
    for e in h.events:
        when = np.datetime64(e.ts, "ms").astype("datetime64[m]").item().strftime("%Y-%m-%d %H:%M:%S")
        inv = f"{e.user_id[1:]}{e.ts // DAY}"
        lines.append(f"{inv},{codes[e.product_id]},{h.titles[e.product_id]},1,{when},1.5,{e.user_id[1:]},UK\n")
    path = tmp_path / "retail.csv"
    path.write_text("".join(lines))
    return path


def test_the_cli_prints_the_report_as_json_and_progress_on_stderr(tmp_path):
    from streamrec.cli import main

    path = uci_csv(tmp_path)
    res = CliRunner().invoke(main, ["evaluate", "--data", str(path), "--format", "uci", "--test-days", "10",
                                    "--dim", "8", "-o", "json", "--plot", str(tmp_path / "p.png")])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["k"] == [10, 20] and set(report["models"]) == set(ev.MODEL_NAMES)
    assert "cases" in res.stderr and (tmp_path / "p.png").exists()


def test_the_cli_builds_a_catalog_file(tmp_path):
    from streamrec.cli import main

    path = uci_csv(tmp_path)
    out = tmp_path / "cat.npz"
    res = CliRunner().invoke(main, ["catalog", "build", "--data", str(path), "--format", "uci", "--dim", "8",
                                    "--categories", "3", "-o", str(out)])
    assert res.exit_code == 0, res.output
    cat = Catalog.load(out)
    assert cat.dim == 8 and len(cat) == 30 and len(set(cat.categories)) >= 2


def test_tuning_searches_the_grid_on_the_validation_split_only(monkeypatch):
    monkeypatch.setattr(ev, "STREAMREC_GRID", {"half_life_events": (0.5, 20.0), "transition_weight": (0.0, 0.5)})
    monkeypatch.setattr(ev, "KNN_GRID", {"window": (0, 1), "neighbors": (10,)})
    splits = []
    real = ev.evaluate

    def spy(history, params, settings, *a, **kw):
        splits.append(settings.validation)
        return real(history, params, settings, *a, **kw)

    monkeypatch.setattr(ev, "evaluate", spy)
    models = ("streamrec", "item-knn", "session-knn")
    out = ev.tune(shop(users=30, days=60), PARAMS, ev.EvalSettings(test_days=10, models=models), EMB, rounds=1)
    assert splits and all(splits)  # never the test window
    assert out["streamrec"]["params"]["half_life_events"] in (0.5, 1.0)  # the start or better; never 20
    assert out["streamrec"]["params"]["transition_weight"] in (PARAMS.transition_weight, 0.0, 0.5)  # start or grid
    # what it chose is what an evaluation with --tuned runs
    tuned = ev.EvalSettings().with_tuned({"streamrec": out["streamrec"]})
    assert tuned.streamrec_params(PARAMS).half_life_events == out["streamrec"]["params"]["half_life_events"]
    assert out["item-knn"]["params"]["window"] in (0, 1) and out["session-knn"]["params"]["neighbors"] == 10
    assert {t["model"] for t in out["trials"]} == {"streamrec", "item-knn", "session-knn"}


def test_tuning_learns_the_transitions_again_for_the_catalogs_settings_and_evaluate_builds_with_them(monkeypatch):
    monkeypatch.setattr(ev, "STREAMREC_GRID", {"transition_weight": (0.5,), "transition_backward": (0.0, 1.0),
                                               "transition_damping": (0.0, 0.5)})
    seen = []
    real = ev.learn_transitions

    def spy(rows, sess, n, steps, keep, backward, damping):
        seen.append((backward, damping))
        return real(rows, sess, n, steps, keep, backward, damping)

    monkeypatch.setattr(ev, "learn_transitions", spy)
    plain = dataclasses.replace(EMB, transition_backward=0.0, transition_damping=0.0)  # the start: the rules only
    out = ev.tune(shop(users=30, days=60), PARAMS, ev.EvalSettings(test_days=10, models=("streamrec",)), plain,
                  rounds=1)
    chosen = out["streamrec"]["params"]
    assert chosen["transition_backward"] in (0.0, 1.0) and chosen["transition_damping"] in (0.0, 0.5)
    assert {(1.0, 0.0), (0.0, 0.5)} <= set(seen)  # each candidate's matrix, learned once
    assert len(seen) == len(set(seen))
    # --tuned: the ranking's settings go to ModelParams, the catalog's to the catalog build
    tuned = ev.EvalSettings(streamrec=(("half_life_events", 2.0), ("transition_backward", 0.5)))
    assert tuned.streamrec_params(PARAMS).half_life_events == 2.0
    assert tuned.streamrec_embedding(EMB).transition_backward == 0.5 and tuned.streamrec_embedding(EMB).dim == 8
    built = []

    def build(h, settings):
        built.append(settings)
        return build_catalog(h, settings=settings)

    monkeypatch.setattr(ev, "build_catalog", build)
    report = ev.evaluate(shop(users=20, days=40), PARAMS, ev.EvalSettings(test_days=10, models=("streamrec",),
                         streamrec=tuned.streamrec), EMB)
    assert built[0].transition_backward == 0.5 and report["params"]["embedding"]["transition_backward"] == 0.5
    assert report["params"]["half_life_events"] == 2.0


def test_movielens_ratings_in_either_layout_are_purchases_in_time_order_with_titles(tmp_path):
    from streamrec.datasets import read_history

    rows = [("7", "50", "5", "300"), ("7", "9", "3", "100"), ("8", "50", "4", "200")]
    (tmp_path / "ml.inter").write_text("user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
                                      + "".join("\t".join(r) + "\n" for r in rows))
    (tmp_path / "ml.item").write_text("item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
                                     "50\tStar Wars\t1977\tAction\n9\tDead Man Walking\t1995\tDrama\n")
    (tmp_path / "u.data").write_text("".join("\t".join(r) + "\n" for r in rows))
    (tmp_path / "u.item").write_text("50|Star Wars (1977)|01-Jan-1977||http://x|0\n")
    recbole = read_history(tmp_path / "ml.inter", "movielens")
    grouplens = read_history(tmp_path / "u.data", "movielens")
    for h in (recbole, grouplens):
        assert [(e.user_id, e.product_id, e.ts, e.type) for e in h.events] == [
            ("7", "9", 100_000, "purchase"), ("8", "50", 200_000, "purchase"), ("7", "50", 300_000, "purchase")]
    assert recbole.titles == {"50": "Star Wars", "9": "Dead Man Walking"}
    assert grouplens.titles == {"50": "Star Wars (1977)"}
