"""Text into the product space: words get the mean vector of the products whose titles have them."""

import numpy as np

from streamrec.model.catalog import Catalog
from streamrec.model.text import TextIndex, embed_query, text_index, tokens


def axis(i, d=4):
    v = np.zeros(d, dtype=np.float32)
    v[i] = 1.0
    return v


def small_catalog():
    # three lanterns point along axis 0, two mugs along axis 1, a lantern-mug gift set in between
    titles = ("WHITE METAL LANTERN", "RED LANTERN", "Zinc lanterns", "SAVE THE PLANET MUG", "RETRO MUGS",
              "LANTERN AND MUG GIFT SET", "UNTITLED")
    vectors = np.stack([axis(0), axis(0), axis(0), axis(1), axis(1),
                        (axis(0) + axis(1)) / np.sqrt(2), axis(2)])
    return Catalog(tuple(f"p{i}" for i in range(len(titles))), vectors, titles=titles)


def test_tokens_are_lower_case_stemmed_words_without_stopwords_or_numbers():
    assert tokens("SET OF 3 Lanterns, with the Candles!") == ["lantern", "candle"]
    assert tokens("boxes glasses cherries mug christmas") == ["box", "glass", "cherry", "mug", "christmas"]
    assert tokens("") == []


def test_a_words_vector_is_the_normalised_mean_of_its_products():
    cat = small_catalog()
    index = TextIndex.build(cat.titles, cat.vectors)
    lantern = index.vectors[index.words["lantern"]]
    # four products say "lantern": three on axis 0, one halfway to axis 1
    want = 3 * axis(0) + (axis(0) + axis(1)) / np.sqrt(2)
    np.testing.assert_allclose(lantern, want / np.linalg.norm(want), rtol=1e-6)
    assert "the" not in index.words and "and" not in index.words


def test_a_query_lands_next_to_the_products_it_names():
    cat = small_catalog()
    q = embed_query(cat, "lanterns")
    assert q is not None and abs(float(np.linalg.norm(q)) - 1.0) < 1e-6
    best = int(np.argmax(cat.vectors @ q))
    assert "LANTERN" in cat.titles[best].upper()
    mug = embed_query(cat, "a mug please")
    assert mug is not None and float(mug @ axis(1)) > 0.9


def test_rare_words_weigh_more_than_common_ones():
    cat = small_catalog()
    q = embed_query(cat, "lantern mug gift")  # "gift" is in one product only: the set
    best = int(np.argmax(cat.vectors @ q))
    assert cat.product_ids[best] == "p5"


def test_a_query_without_a_known_word_has_no_vector():
    cat = small_catalog()
    assert embed_query(cat, "zeppelin") is None
    assert embed_query(cat, "the of and 42") is None


def test_the_index_is_built_once_per_catalog_object():
    cat = small_catalog()
    assert text_index(cat) is text_index(cat)
    assert text_index(small_catalog()) is not text_index(cat)


def test_products_without_a_vector_lend_their_words_nothing():
    titles = ("BLUE BOWL", "BLUE CUP")
    vectors = np.stack([axis(0), np.zeros(4, dtype=np.float32)])
    index = TextIndex.build(titles, vectors)
    assert "cup" not in index.words
    np.testing.assert_allclose(index.vectors[index.words["blue"]], axis(0))
