"""The job's ranking operator pins numpy's BLAS to `blas_threads` while it runs (one by default:
Flink's parallelism spreads the work over cores, a multi-threaded BLAS on busy cores only slows each
small product down), restores the library's setting when it closes, and leaves it alone at 0."""

from __future__ import annotations

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from streamrec.config import Config
from streamrec.udfs.model import Catalog
from streamrec.udfs.operators import Recommend
from streamrec.udfs.variants import Variants

pytestmark = pytest.mark.unit


class FakeRuntimeContext:
    """Stands in for PyFlink's RuntimeContext: open() only asks it for the user state."""

    def get_state(self, descriptor):
        return None


def blas_threads() -> set[int]:
    return {int(info["num_threads"]) for info in threadpool_info() if info["user_api"] == "blas"}


def operator(threads: int) -> Recommend:
    catalog = Catalog(("a", "b"), np.eye(2, dtype=np.float32))
    return Recommend(lambda: catalog, Variants.from_config(Config()), blas_threads=threads)


@pytest.fixture
def two_blas_threads():
    if not blas_threads():
        pytest.skip("numpy has no BLAS that threadpoolctl can see")
    with threadpool_limits(limits=2, user_api="blas"):
        yield


def test_the_operator_runs_blas_on_one_thread_by_default_and_gives_the_setting_back(two_blas_threads):
    assert Config().blas_threads == 1
    op = operator(Config().blas_threads)
    op.open(FakeRuntimeContext())
    assert blas_threads() == {1}
    op.close()
    assert blas_threads() == {2}


def test_zero_leaves_the_library_default(two_blas_threads):
    op = operator(0)
    op.open(FakeRuntimeContext())
    assert blas_threads() == {2}
    op.close()


def test_the_setting_comes_from_the_environment():
    assert Config.from_env({"STREAMREC_BLAS_THREADS": "3"}).blas_threads == 3
