"""The catalog in Cassandra `products` on the real Cassandra: `streamrec catalog load` stores each
product's item-to-item successors beside its vector, and what the job loads from the table is the
catalog file's model, transitions included. A keyspace made by a version before those columns
still gives the job a catalog (without the term, with a warning), and `catalog load` adds them."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

from streamrec.connectors.cassandra import connect, load_catalog
from streamrec.runner import config_env

pytestmark = pytest.mark.e2e


def successors(catalog, pid: str) -> dict[str, float]:
    row = catalog.transitions[catalog.index[pid]]
    return {catalog.product_ids[j]: float(v) for j, v in zip(row.indices, row.data)}


def test_catalog_load_stores_the_transitions_and_the_job_loads_them_back(e2e_config, uci_catalog):
    # e2e_config's keyspace was filled by store_catalog, what `catalog load` runs
    loaded = load_catalog(e2e_config.cassandra)
    assert loaded.transitions is not None and loaded.transitions.nnz == uci_catalog.transitions.nnz
    for pid in ("85123A", "71053", "22423", "84879"):
        assert successors(loaded, pid) == successors(uci_catalog, pid) and successors(loaded, pid)


def test_a_keyspace_from_before_the_transition_columns_loads_without_them_until_catalog_load_adds_them(
    e2e_config, uci_catalog, tmp_path, caplog
):
    session = connect(e2e_config.cassandra, e2e_config.cassandra.keyspace)
    try:
        session.execute("ALTER TABLE products DROP (transition_ids, transition_weights)", timeout=60)
    finally:
        session.cluster.shutdown()
    with caplog.at_level(logging.WARNING):
        old = load_catalog(e2e_config.cassandra)
    assert old.transitions is None and len(old) == len(uci_catalog)
    assert "no transition columns" in caplog.text and "streamrec init" in caplog.text

    uci_catalog.save(tmp_path / "catalog.npz")
    subprocess.run([sys.executable, "-m", "streamrec.cli", "catalog", "load", str(tmp_path / "catalog.npz"), "-q"],
                   env=config_env(e2e_config), check=True, timeout=300)
    loaded = load_catalog(e2e_config.cassandra)
    assert loaded.transitions is not None and loaded.transitions.nnz == uci_catalog.transitions.nnz
    assert successors(loaded, "85123A") == successors(uci_catalog, "85123A")
