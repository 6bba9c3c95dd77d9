"""N worker processes serving one port (``tiergate serve --workers N``).

On Linux each worker binds its own listening socket with ``SO_REUSEPORT``, and the kernel
spreads new connections across the sockets by a hash of their addresses. With one shared
listening socket (uvicorn's own ``--workers``) the worker that wakes first accepts a whole
burst of connections: measured here, one of two workers took 96% of wrk's 16 keep-alive
connections, and two workers served no more than one. Where ``SO_REUSEPORT`` does not
balance (macOS, Windows), uvicorn's supervisor and its shared socket are used instead.

This process only supervises: it starts the workers (``spawn``: each imports the app
factory and builds its own app), starts a worker again when one exits unexpectedly (a
second later, so a worker that cannot start does not spin), and on SIGINT/SIGTERM stops
them all (SIGTERM, then SIGKILL after ``STOP_TIMEOUT_S``); each worker shuts down
gracefully through its app's lifespan (pools closed, background settlements drained).
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import socket
import sys
import time
from multiprocessing.connection import wait
from typing import Any

STOP_TIMEOUT_S = 15.0
RESTART_DELAY_S = 1.0


def reuseport_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket that other processes of this user may bind too."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


#: How long an idle kept-alive connection stays open (uvicorn's default is 5 s). Longer
#: than the usual clients' pools keep one (httpx and the official SDKs: 5 s), so the client
#: closes an idle connection first: with equal times a client could reuse a connection just
#: as the server closed it and lose that request (seen once in 20,000 by bench/crash's soak).
KEEP_ALIVE_S = 75


def http_protocol() -> Any:
    """uvicorn's ``http``: httptools with the head and body of a sized response in one
    write (:mod:`tiergate.cli.http_protocol`), or uvicorn's choice without httptools."""
    try:
        from tiergate.cli.http_protocol import CoalescingHttpToolsProtocol
    except ImportError:
        return "auto"
    return CoalescingHttpToolsProtocol


def _worker(factory: str, host: str, port: int, log_level: str, access_log: bool) -> None:
    import uvicorn

    sock = reuseport_socket(host, port)
    config = uvicorn.Config(factory, factory=True, host=host, port=port, log_level=log_level,
                            access_log=access_log, loop="auto", http=http_protocol(),
                            timeout_keep_alive=KEEP_ALIVE_S)
    if access_log:  # as a single-process server: one line per request even at the warning level
        logging.getLogger("uvicorn.access").setLevel(logging.INFO)
    uvicorn.Server(config).run(sockets=[sock])


def run(n: int, *, factory: str, host: str, port: int, log_level: str, access_log: bool = True) -> int:
    """Serve ``factory`` (``module:callable`` returning the app) with ``n`` processes."""
    if sys.platform != "linux":
        import uvicorn

        uvicorn.run(factory, factory=True, workers=n, host=host, port=port, log_level=log_level,
                    access_log=access_log, loop="auto", http="auto")
        return 0
    if port == 0:
        print("tiergate: --workers needs a fixed --port (each worker binds it)", file=sys.stderr)
        return 2
    try:
        reuseport_socket(host, port).close()  # fail here, once, if the port is taken
    except OSError as e:
        print(f"tiergate: cannot bind {host}:{port}: {e.strerror}", file=sys.stderr)
        return 1
    ctx = multiprocessing.get_context("spawn")
    stopping = False

    def on_signal(signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}

    def start() -> multiprocessing.process.BaseProcess:
        p = ctx.Process(target=_worker, args=(factory, host, port, log_level, access_log), name="tiergate-worker")
        p.start()
        return p

    procs = [start() for _ in range(n)]
    try:
        while not stopping:
            wait([p.sentinel for p in procs], timeout=0.5)
            for i, p in enumerate(procs):
                if p.exitcode is not None and not stopping:
                    print(f"tiergate: worker {p.pid} exited with {p.exitcode}; starting another",
                          file=sys.stderr, flush=True)
                    time.sleep(RESTART_DELAY_S)
                    procs[i] = start()
    finally:
        for p in procs:
            if p.exitcode is None:
                p.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for p in procs:
            p.join(max(0.0, deadline - time.monotonic()))
            if p.exitcode is None:
                p.kill()
                p.join()
        for s, handler in previous.items():
            signal.signal(s, handler)
    return 0
