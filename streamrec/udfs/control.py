"""The control stream both rankers share (product updates and trending lists, broadcast to every
parallel instance): :class:`CatalogControl`."""

from __future__ import annotations

import logging
import time
from typing import Any

from pyflink.common import Row

from streamrec.model.live import TRENDING_KEY, LiveCatalog
from streamrec.udfs.metrics import OperatorMetrics

log = logging.getLogger(__name__)


class CatalogControl:
    """What both rankers (``Recommend``, the fast path's ``RankBatch``) do with the broadcast
    control stream: product updates and trending lists go into the live catalog and the broadcast
    state; after a restore the state holds every update since the job started, and the catalog
    loaded in ``open`` is the base they apply to; the gauges tell how big and how fresh it is, as of
    the instance's latest record (control or event)."""

    _live: LiveCatalog
    _synced: bool
    _blas_threads: int
    _blas_limit: Any = None

    def _limit_blas(self) -> None:
        """Cap BLAS at ``_blas_threads`` threads (0: leave it alone) until ``close``. Process-wide:
        in thread mode, the TaskManager's one interpreter."""
        if self._blas_threads > 0:
            from threadpoolctl import threadpool_limits

            self._blas_limit = threadpool_limits(limits=self._blas_threads)

    def close(self) -> None:
        # must not raise: in thread mode an exception here (close also runs after a failure) takes the
        # whole TaskManager down
        limit, self._blas_limit = self._blas_limit, None
        if limit is not None:
            try:
                limit.restore_original_limits()
            except Exception as exc:
                log.warning("could not restore the BLAS thread limits: %s", exc)

    def _watch_catalog(self, metrics: OperatorMetrics) -> None:
        self._trending_at = 0.0  # time.time() when the last trending list arrived; 0: none yet
        self._product_updates = 0  # product updates applied since this instance started
        self._gauges = [
            (metrics.settable("catalog_products"), lambda: self._live.size),
            (metrics.settable("catalog_version"), lambda: self._product_updates),
            (metrics.settable("trending_products"), lambda: len(self._live.trending)),
            (metrics.settable("trending_age_ms"),
             lambda: round((time.time() - self._trending_at) * 1000) if self._trending_at else -1),
        ]
        self._reported_at = 0.0

    def _report_catalog(self, force: bool = False) -> None:
        """Set the gauges (at most once a second unless ``force``: the age moves every ms, and on
        the per-event path this runs per event)."""
        now = time.monotonic()
        if force or now - self._reported_at >= 1.0:
            self._reported_at = now
            for gauge, read in self._gauges:
                gauge.set(read())

    def _before_event(self, control: Any) -> None:
        """What each event's (or batch's) processing starts with: the catalog synced with the
        broadcast state after a restore, the gauges up to date."""
        if not self._synced:
            self._sync(control)
        self._report_catalog()

    def _sync(self, control: Any) -> None:
        entries = list(control.items())
        self._live.restore(entries)
        self._product_updates += sum(1 for key, _ in entries if key != TRENDING_KEY)
        if any(key == TRENDING_KEY for key, _ in entries):
            self._trending_at = time.time()
        self._synced = True
        self._report_catalog(force=True)

    def _control(self, value: Row, state: Any) -> None:
        """One control record (a trending list or a product update) into the catalog and ``state``."""
        if not self._synced:  # the merge below needs what the state already holds
            self._sync(state)
        if value.kind == "trending":
            state.put(TRENDING_KEY, value.payload)
            self._live.set_trending(value.payload)
            self._trending_at = time.time()
        else:
            self._live.update_product(value.payload, state.put)
            self._product_updates += 1
        self._report_catalog(force=True)
