"""Where the job gets its catalog from: a catalog file or the Cassandra `products` table."""

from __future__ import annotations

import os
import threading
import uuid
from collections import OrderedDict

from streamrec.config import Config
from streamrec.model.catalog import Catalog

# Loaded catalogs of this Python process. In thread mode the interpreter lives in the TaskManager's
# JVM and outlives the job, so an entry is keyed by the job (the submission) and by the catalog's
# version: a job started later (an upgrade, a resubmit) or a catalog file replaced in place never
# gets an older catalog. Bounded, so the catalogs of jobs long gone do not pin memory.
_cache: OrderedDict[tuple[str, ...], Catalog] = OrderedDict()
_lock = threading.Lock()
CACHE_ENTRIES = 2


def catalog_version(config: Config) -> tuple[str, ...]:
    """What identifies the catalog the job would load now: a file's path, size and mtime (a file
    rewritten at the same path is another catalog); the Cassandra table by hosts and keyspace (the
    job reads it once at its start and gets later products from the control stream, so within one
    job it has a single version)."""
    if config.model.catalog_path:
        st = os.stat(config.model.catalog_path)
        return ("file", os.path.abspath(config.model.catalog_path), str(st.st_size), str(st.st_mtime_ns))
    return ("cassandra", config.cassandra.hosts, str(config.cassandra.port), config.cassandra.keyspace)


class CatalogFromConfig:
    """A picklable catalog loader for the job's operators.

    Operators chained into one Python worker share one loaded copy (a 100k x 64 catalog is 25 MB;
    three copies per worker would be waste). ``job``: made when the job's graph is built on the
    client, so every operator of one submission (and its restarts after a failure) shares it and
    every new submission has another.
    """

    def __init__(self, config: Config) -> None:
        self._config = config
        self.job = uuid.uuid4().hex

    def __call__(self) -> Catalog:
        key = (self.job, *catalog_version(self._config))
        with _lock:
            if key in _cache:
                _cache.move_to_end(key)
                return _cache[key]
            if self._config.model.catalog_path:
                catalog = Catalog.load(self._config.model.catalog_path)
            else:
                from streamrec.connectors.cassandra import load_catalog

                catalog = load_catalog(self._config.cassandra)
            _cache[key] = catalog
            while len(_cache) > CACHE_ENTRIES:
                _cache.popitem(last=False)
            return catalog
