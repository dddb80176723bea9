"""The job's ranking operator pins numpy's BLAS to `blas_threads` while it runs (one by default:
Flink's parallelism spreads the work over cores, a multi-threaded BLAS on busy cores only slows each
small product down), restores the library's setting when it closes, and leaves it alone at 0.

Each case runs in a fresh interpreter: the BLAS thread setting is per process, and a job run
in-process by an earlier test (a local minicluster runs Python in the test process) leaves its own."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from streamrec.config import Config

pytestmark = pytest.mark.unit

SCRIPT = """
import json, sys
import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits
from streamrec.config import Config
from streamrec.model.model import Catalog
from streamrec.udfs.operators import Recommend
from streamrec.model.variants import Variants

class FakeRuntimeContext:  # stands in for PyFlink's: open() only asks it for the user state and metrics
    def get_state(self, descriptor):
        return None

    def get_metrics_group(self):
        return FakeMetricGroup()

class FakeMetricGroup:
    def add_group(self, *names):
        return self

    def gauge(self, name, read):
        pass

    def counter(self, name):
        return FakeMetricGroup()

    def inc(self, n=1):
        pass

def numpy_blas_threads():
    # numpy's own BLAS (the top-k's products run on it); faiss and scipy bring copies of their own
    return sorted({i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas" and "numpy" in i["filepath"]})

threadpool_limits(limits=2, user_api="blas")
catalog = Catalog(("a", "b"), np.eye(2, dtype=np.float32))
op = Recommend(lambda: catalog, Variants.from_config(Config().model), blas_threads=int(sys.argv[1]))
seen = {"before": numpy_blas_threads()}
op.open(FakeRuntimeContext())
seen["open"] = numpy_blas_threads()
op.close()
seen["closed"] = numpy_blas_threads()
print(json.dumps(seen))
"""


def run_operator(threads: int) -> dict[str, list[int]]:
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(threads)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    seen: dict[str, list[int]] = json.loads(out.stdout.strip().splitlines()[-1])
    if not seen["before"]:
        pytest.skip("numpy's BLAS is not one threadpoolctl can see")
    return seen


def test_the_operator_runs_blas_on_one_thread_by_default_and_gives_the_setting_back():
    assert Config().job.blas_threads == 1
    assert run_operator(Config().job.blas_threads) == {"before": [2], "open": [1], "closed": [2]}


def test_zero_leaves_the_library_default():
    assert run_operator(0) == {"before": [2], "open": [2], "closed": [2]}


def test_the_setting_comes_from_the_environment():
    assert Config.from_env({"STREAMREC_BLAS_THREADS": "3"}).job.blas_threads == 3
