"""The recommendation service: `streamrec serve`, an HTTP API over what the job stored, and a demo
shop page at ``/``. The query answers are those of the CLI (streamrec.query); events are judged by
the job's parser before they reach the events topic."""

from __future__ import annotations

from typing import Any

from streamrec.config import Config


def serve(config: Config, log_level: str = "info") -> None:
    """Run the service in the foreground on config.serve_host:config.serve_port until interrupted."""
    import uvicorn

    from streamrec.service.app import create_app
    from streamrec.service.backend import LiveBackend

    if config.blas_threads > 0:
        from threadpoolctl import threadpool_limits

        # as in the job: a BLAS thread per core made a similar-products request several times dearer
        # on a busy machine (the threads spin while they wait for a core); concurrency here comes
        # from requests, not from splitting one small product
        threadpool_limits(limits=config.blas_threads)
    backend = LiveBackend(config)
    try:
        app: Any = create_app(config, backend)
        # the access log names method, path and status; headers (the API key) are never logged
        uvicorn.run(app, host=config.serve_host, port=config.serve_port, log_level=log_level)
    finally:
        backend.close()
