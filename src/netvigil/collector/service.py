"""Running the collector: the log, the worker thread and uvicorn, started and stopped in order.

Kept apart from ``collector/cli.py`` so that other ``netvigil`` commands never import uvicorn or FastAPI.
Start: open the log (scan, repair, rebuild the index) -> open the store and start the worker thread
(unless a separate ``collector worker`` does that) -> serve -> print READY. Stop (SIGTERM/SIGINT): stop
accepting, let requests in flight finish (their records reach the disk), drain the log's queue, let the
worker finish its batch and commit, close the store. Exit 0.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from netvigil.analysis import FingerprintDB
from netvigil.collector.log import MeasurementLog
from netvigil.collector.metrics import Metrics
from netvigil.collector.reportid import ReportIds
from netvigil.collector.server import ApiContext, Intake, Limits, make_app
from netvigil.collector.worker import Worker
from netvigil.serving import serve_asgi
from netvigil.store import Store

__all__ = ["ServeConfig", "serve_socket"]

_PROG = "netvigil collector"


@dataclass
class ServeConfig:
    data_dir: Path
    store_url: str | None
    secret: bytes
    token: str | None
    limits: Limits
    report_ttl: timedelta
    server_tls: tuple[Path, Path] | None = None
    # Set when this process runs the worker (the CLI opened the store and took the worker lock).
    worker: Worker | None = None
    store: Store | None = None
    fingerprints: FingerprintDB | None = None


def serve_socket(sock: socket.socket, log_: MeasurementLog, cfg: ServeConfig) -> int:
    """Serve until SIGTERM/SIGINT; print ``READY <host>:<port>`` once listening. Returns the exit code."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return asyncio.run(_main(sock, log_, cfg))


async def _main(sock: socket.socket, log_: MeasurementLog, cfg: ServeConfig) -> int:
    metrics = Metrics()
    await log_.start()
    log_.on_commit.append(metrics.on_commit)
    store_lock = threading.Lock()
    stop = threading.Event()
    wake = threading.Event()
    thread: threading.Thread | None = None
    if cfg.worker is not None:
        cfg.worker.store_lock = store_lock
        log_.on_commit.append(lambda n, s: wake.set())
        def busy() -> bool:  # submissions arrived in the last moment: the worker gives way (worker.run)
            return time.monotonic() - log_.last_commit < 0.25

        thread = threading.Thread(target=cfg.worker.run, args=(stop, wake), kwargs={"busy": busy},
                                  name="netvigil-collector-worker")
        thread.start()
    ctx = ApiContext(log=log_, data_dir=cfg.data_dir, store_url=cfg.store_url, token=cfg.token, store=cfg.store,
                     store_lock=store_lock, worker=cfg.worker)
    metrics.bind(queue_depth=ctx.queue_depth, log_bytes=lambda: log_.stats.bytes,
                 stored=lambda: ctx.worker_state().stored, quarantined=lambda: ctx.worker_state().quarantined)
    intake = Intake(log_, ReportIds(cfg.secret, cfg.report_ttl), metrics, cfg.limits)
    try:
        code = await serve_asgi(make_app(intake, ctx), sock, prog=_PROG, server_tls=cfg.server_tls, graceful=10,
                                ready=_ready_line(sock))
    finally:
        await log_.close()
        stop.set()
        wake.set()
        if thread is not None:
            await asyncio.to_thread(thread.join, 60)
        if cfg.worker is not None:
            cfg.worker.close()
        if cfg.store is not None:
            cfg.store.close()
    return code


def _ready_line(sock: socket.socket) -> str:
    """READY with the address, so a test can restart a collector on the same port."""
    host, port = sock.getsockname()[:2]
    return f"READY {host}:{port}"
