"""The catalog cache of a Python worker that outlives a job (thread mode: the interpreter lives in the
TaskManager): keyed by job and catalog version, so an upgraded or resubmitted job never gets the old one."""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from streamrec.config import Config
from streamrec.connectors import catalog as catalog_module
from streamrec.connectors.catalog import CatalogFromConfig
from streamrec.model.catalog import Catalog


def _save(path: Path, ids: list[str]) -> None:
    vectors = np.eye(len(ids), 4, dtype=np.float32)
    Catalog(tuple(ids), vectors, titles=tuple(ids), categories=tuple("c" for _ in ids)).save(path)


@pytest.fixture
def catalog_file(tmp_path: Path) -> Iterator[Path]:
    catalog_module._cache.clear()
    path = tmp_path / "catalog.npz"
    _save(path, ["a", "b"])
    yield path
    catalog_module._cache.clear()


def _config(path: Path) -> Config:
    return Config.from_env().replace(model={"catalog_path": str(path)})


def test_one_job_shares_one_copy_also_across_pickling(catalog_file: Path) -> None:
    loader = CatalogFromConfig(_config(catalog_file))
    # each operator gets its own unpickled copy of the loader; a restart after a failure too
    copies = [pickle.loads(pickle.dumps(loader)) for _ in range(3)]
    assert len({id(c()) for c in [loader, *copies]}) == 1
    assert len(catalog_module._cache) == 1


def test_a_new_job_never_reuses_the_old_jobs_catalog(catalog_file: Path) -> None:
    old = CatalogFromConfig(_config(catalog_file))()
    new_job = CatalogFromConfig(_config(catalog_file))
    assert new_job() is not old


def test_a_new_catalog_version_is_loaded_in_the_same_job(catalog_file: Path) -> None:
    loader = CatalogFromConfig(_config(catalog_file))
    assert loader().product_ids == ("a", "b")
    before = os.stat(catalog_file).st_mtime_ns
    _save(catalog_file, ["a", "b", "c"])
    os.utime(catalog_file, ns=(before + 10**9, before + 10**9))  # another mtime even on a coarse clock
    assert loader().product_ids == ("a", "b", "c")


def test_the_cache_is_bounded(catalog_file: Path) -> None:
    for _ in range(5):
        CatalogFromConfig(_config(catalog_file))()
    assert len(catalog_module._cache) == catalog_module.CACHE_ENTRIES


def test_cassandra_catalogs_are_keyed_by_job_and_address() -> None:
    config = Config.from_env().replace(model={"catalog_path": ""})
    a, b = CatalogFromConfig(config), CatalogFromConfig(config)
    assert (a.job, *catalog_module.catalog_version(config)) != (b.job, *catalog_module.catalog_version(config))
    other = config.replace(cassandra={"keyspace": "elsewhere"})
    assert catalog_module.catalog_version(config) != catalog_module.catalog_version(other)
