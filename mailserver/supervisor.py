"""``mss serve``: one process per worker sharing the listening ports.

Each worker is a full server (its own event loop, store writer, listeners bound
with SO_REUSEPORT so the kernel spreads connections). The supervisor applies the
migrations once, starts the workers, restarts one that dies, forwards SIGTERM /
SIGINT and waits for every worker to finish its transactions in flight. A worker
dies with its supervisor (PR_SET_PDEATHSIG), so a killed server leaves no orphan.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import multiprocessing
import resource
import signal
import time
from multiprocessing.process import BaseProcess
from pathlib import Path

from mailserver.app import Application
from mailserver.settings import Settings, load_settings
from mailserver.store.database import create_engine
from mailserver.store.migrate import upgrade

log = logging.getLogger("mailserver")

_PR_SET_PDEATHSIG = 1
RESTART_DELAY_SECONDS = 1.0


def _die_with_parent() -> None:
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:  # not Linux: a supervisor killed with -9 may leave workers
        log.warning("cannot ask to die with the supervisor (prctl unavailable)")


def raise_open_file_limit() -> int:
    """Soft RLIMIT_NOFILE up to the hard limit, as a server is expected to do: each
    IMAP IDLE client holds a connection (and a descriptor) for hours. Returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as error:
            log.warning("cannot raise the open file limit from %d to %d: %s", soft, hard, error)
            return soft
    return hard


def _settle_heap() -> None:
    """Objects alive once the code is imported (modules, classes, SQLAlchemy's
    metadata) live as long as the process: keep them out of every garbage
    collection, so that a full collection with 10,000 sessions open walks only
    the sessions' objects."""
    gc.collect()
    gc.freeze()


def _worker_main(data_dir: str, index: int, count: int, log_level: str) -> None:
    _die_with_parent()
    logging.basicConfig(level=log_level, format=f"%(asctime)s %(levelname)s [w{index}] "
                        "%(name)s: %(message)s")
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    settings = load_settings(Path(data_dir))
    raise_open_file_limit()
    _settle_heap()
    app = Application(settings, worker=index, workers=count)
    asyncio.run(app.run_until_signalled(migrate=False))


async def _migrate(settings: Settings) -> None:
    engine = create_engine(settings.database_url)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()


def serve(settings: Settings) -> int:
    """Run the server until SIGTERM / SIGINT; return the exit status."""
    count = settings.server.worker_count
    limit = raise_open_file_limit()
    log.info("open file limit %d (each IMAP connection holds one)", limit)
    if count == 1:
        _settle_heap()
        asyncio.run(Application(settings).run_until_signalled())
        return 0
    asyncio.run(_migrate(settings))
    context = multiprocessing.get_context("spawn")
    level = logging.getLevelName(logging.getLogger().getEffectiveLevel())
    stopping = False

    def start(index: int) -> BaseProcess:
        process = context.Process(
            target=_worker_main, name=f"mss-worker-{index}",
            args=(str(settings.data_dir), index, count, level),
        )
        process.start()
        return process

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        log.info("signal received, stopping %d workers", count)
        for process in workers:
            if process.pid is not None and process.is_alive():
                process.terminate()  # SIGTERM: each finishes its transactions

    workers = [start(i) for i in range(count)]
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("supervising %d workers", count)
    while True:
        for index, process in enumerate(workers):
            process.join(0.2)
            if process.is_alive() or stopping:
                continue
            log.error("worker %d exited with status %s; restarting", index, process.exitcode)
            time.sleep(RESTART_DELAY_SECONDS)
            workers[index] = start(index)
        if stopping and not any(p.is_alive() for p in workers):
            break
    log.info("stopped")
    # A worker stopped before it had installed its handler dies of the SIGTERM
    # itself: it had no transaction in flight, so that is a clean stop too.
    clean = {0, -signal.SIGTERM}
    return 0 if all(p.exitcode in clean for p in workers) else 1
