"""Where the job gets its catalog from: a catalog file or the Cassandra `products` table."""

from __future__ import annotations

import threading

from streamrec.config import Config
from streamrec.model.catalog import Catalog

_cache: dict[str, Catalog] = {}
_lock = threading.Lock()


class CatalogFromConfig:
    """A picklable catalog loader for the job's operators.

    Operators chained into one Python worker share one loaded copy (a 100k x 64 catalog is 25 MB;
    three copies per worker would be waste).
    """

    def __init__(self, config: Config) -> None:
        self._config = config

    def __call__(self) -> Catalog:
        key = self._config.catalog_path or f"cassandra:{self._config.cassandra_hosts}:{self._config.keyspace}"
        with _lock:
            if key not in _cache:
                if self._config.catalog_path:
                    _cache[key] = Catalog.load(self._config.catalog_path)
                else:
                    from streamrec.connectors.cassandra import load_catalog

                    _cache[key] = load_catalog(self._config)
            return _cache[key]
