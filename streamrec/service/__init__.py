"""The recommendation service: `streamrec serve`, an HTTP API over what the job stored, and a demo
shop page at ``/``. The query answers are those of the CLI (streamrec.query); events are judged by
the job's parser before they reach the events topic."""

from __future__ import annotations

from typing import Any

from streamrec.config import Config


def serve(config: Config, log_level: str = "info") -> None:
    """Run the service in the foreground on config.service.host:config.service.port until interrupted."""
    import uvicorn

    from streamrec.service.app import create_app
    from streamrec.service.backend import LiveBackend

    if config.job.blas_threads > 0:
        from threadpoolctl import threadpool_limits

        # as in the job: a BLAS thread per core made a similar-products request several times dearer
        # on a busy machine (the threads spin while they wait for a core); concurrency here comes
        # from requests, not from splitting one small product
        threadpool_limits(limits=config.job.blas_threads)
    backend = LiveBackend(config)
    try:
        app: Any = create_app(config, backend)
        _quiet_gc()
        # the access log names method, path and status; headers (the API key) are never logged
        uvicorn.run(app, host=config.service.host, port=config.service.port, log_level=log_level)
    finally:
        backend.close()


def _quiet_gc() -> None:
    """Keep CPython's full collections out of the request path.

    Under 1,000 requests/s the service ran a full (generation 2) collection every ~10 s, each
    walking every object it holds (the catalog, the driver's metadata): 100-250 ms of CPU each on
    this machine, a stall that every request waiting meanwhile paid for (the p99). What exists
    after start-up lives as long as the process, so it is frozen out of the collector's walks; a
    larger first generation lets the short-lived cycles of requests die young instead of being
    promoted while in flight. Measured with a gc callback over `bench serve`'s phases (CPU time of
    the collections): full collections 10 -> 0, all collections 2.8 s -> 0.1 s of CPU, the
    longest 250 -> 12 ms (with the driver timer gone from the reads, NO_DRIVER_TIMEOUT)."""
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD_0, *gc.get_threshold()[1:])


# Allocations between young collections (CPython's default is 700): at 5,000 one costs ~1-6 ms
# of CPU here; at 20,000, 70-80 ms.
GC_THRESHOLD_0 = 5_000
