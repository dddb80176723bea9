"""Trending (decayed popularity) and A/B bucketing: the pure parts of cold start and experiments."""

from collections import Counter

import pytest

from streamrec.model.trending import DecayedPopularity
from streamrec.model.variants import assign_variant, bucket

HOUR = 3_600_000


def test_a_product_hot_right_now_beats_one_that_was_hot_long_ago():
    pop = DecayedPopularity(half_life_ms=HOUR)
    for i in range(10):
        pop.add("old-hit", ts_ms=i)
    for i in range(3):
        pop.add("new-hit", ts_ms=5 * HOUR + i)
    assert [p for p, _ in pop.top(2, now_ms=5 * HOUR)] == ["new-hit", "old-hit"]
    # ten events five half-lives ago are worth 10 / 32 of an event now
    assert pop.score("old-hit", 5 * HOUR) == pytest.approx(10 / 32, rel=1e-6)


def test_scores_halve_every_half_life_and_stay_finite_over_years():
    pop = DecayedPopularity(half_life_ms=HOUR)
    pop.add("p", 0, weight=8.0)
    assert pop.score("p", 3 * HOUR) == pytest.approx(1.0)
    pop.add("q", 2000 * HOUR)  # far beyond float range without the rebase
    assert pop.top(1, 2000 * HOUR) == [("q", pytest.approx(1.0))]


def test_ties_are_broken_by_product_id():
    pop = DecayedPopularity(half_life_ms=HOUR)
    for p in ["b", "a", "c"]:
        pop.add(p, 0)
    assert [p for p, _ in pop.top(3, 0)] == ["a", "b", "c"]


def test_a_user_always_lands_in_the_same_variant():
    shares = [("control", 0.5), ("treatment", 0.5)]
    assert {assign_variant("user-42", shares) for _ in range(5)} == {assign_variant("user-42", shares)}
    assert bucket("user-42") == bucket("user-42")


def test_variants_split_users_by_their_shares():
    shares = [("a", 0.8), ("b", 0.2)]
    counts = Counter(assign_variant(f"u{i}", shares) for i in range(20_000))
    assert 0.77 < counts["a"] / 20_000 < 0.83


def test_bad_shares_are_refused():
    with pytest.raises(ValueError):
        assign_variant("u", [])
    with pytest.raises(ValueError):
        assign_variant("u", [("a", -1.0), ("b", 2.0)])


def test_variants_come_from_json_with_their_own_settings():
    from streamrec.config import Config, ModelConfig
    from streamrec.model.variants import Variants

    v = Variants.from_config(Config(model=ModelConfig(variants='{"A": {"share": 1}, "B": {"share": 1, "top_k": 4, '
                                              '"exclude_categories": "toys,garden"}}')).model)
    names = {v.for_user(f"user{i}")[0] for i in range(200)}
    assert names == {"A", "B"}
    assert v.params["A"].top_k == 10 and v.params["B"].top_k == 4 and v.params["B"].candidates == 12
    assert v.params["B"].exclude_categories == frozenset({"toys", "garden"})
    assert v.for_user("user7") == v.for_user("user7")
    assert Variants.from_config(Config().model).for_user("x")[0] == "default"


@pytest.mark.parametrize("text, message", [
    ("{not json", "not JSON"),
    ('{"A": {"share": 1, "topk": 3}}', "unknown settings"),
    ('{"A": {"share": -1}}', "share must be"),
    ('{"A": {"share": 0}}', "sum to 0"),
    ('{"A": {"top_k": "many"}}', "STREAMREC_VARIANTS"),
])
def test_bad_variant_settings_are_refused_with_the_reason(text, message):
    from streamrec.config import Config, ModelConfig
    from streamrec.model.variants import Variants

    with pytest.raises(ValueError, match=message):
        Variants.from_config(Config(model=ModelConfig(variants=text)).model)


def test_popularity_batches_from_the_jvm_and_rows_of_an_older_savepoint_read_alike():
    from streamrec.model.trending import popularity_rows

    pending = ['[["p1",2.0,1000],["p\\"2",1.0E-4,2000]]', ("p3", 1, 3000), "[]"]
    assert list(popularity_rows(pending)) == [("p1", 2.0, 1000), ('p"2', 0.0001, 2000), ("p3", 1.0, 3000)]
