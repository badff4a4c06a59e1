"""`convscope serve`: the studio web app (convscope.studio) on this machine, served by uvicorn."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import socket
import sys
from pathlib import Path

from convscope.cli_args import int_in
from convscope.errors import ConfigError

GRACE = 2.0  # seconds requests in flight get to finish at Ctrl-C; then they are cancelled (the trainings get 3 more)
WORKER_WAIT = 10  # seconds a stopping studio waits for the piece of work each worker is running

log = logging.getLogger("convscope.studio")


def add_parsers(sub) -> None:
    p = sub.add_parser(
        "serve",
        help="the studio: a local web app to watch runs, try them on images, look inside and explain convolutions",
    )
    p.add_argument("--runs", default="runs", metavar="DIR", help="the folder of run folders (default runs)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int_in(0, 65535), default=8000, help="default 8000; 0: a free port (printed)")
    p.add_argument(
        "--max-trainings",
        type=int_in(0, 64),
        default=1,
        metavar="N",
        help="trainings the Train page may run at once (default 1; 0: none); more are refused",
    )
    p.add_argument(
        "--data-root",
        action="append",
        default=[],
        metavar="DIR",
        help="a folder whose subfolders the Train page may train on (repeatable); --runs always is one",
    )
    p.set_defaults(run=cmd_serve)


def exposed(host: str) -> bool:
    """Whether `host` lets other machines connect (anything but a loopback address or localhost)."""
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True  # a host name: it may resolve to a public address


def listening(host: str, port: int) -> socket.socket:
    """A TCP socket bound to (host, port) and listening, IPv6 for an address with ':'. Raises ConfigError naming
    them."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)  # connections wait from now on, even before the server's loop has started
    except OSError as err:
        sock.close()
        raise ConfigError(f"--host {host} --port {port}: cannot listen there ({err.strerror or err})") from None
    sock.set_inheritable(True)
    return sock


def cmd_serve(args: argparse.Namespace) -> None:
    import uvicorn

    from convscope.studio.app import LOOPBACK, create_app

    roots = []
    for root in args.data_root:
        if not Path(root).is_dir():
            raise ConfigError(f"--data-root {root}: no such folder")
        roots.append(Path(root))
    if exposed(args.host):
        print(
            f"convscope: warning: listening on {args.host}: other machines can reach the studio, which has no login "
            "and can start trainings on this machine. Use --host 127.0.0.1 unless you mean it.",
            file=sys.stderr,
        )
    app = create_app(
        args.runs,
        allowed_hosts=["*"] if exposed(args.host) else LOOPBACK,
        max_trainings=args.max_trainings,
        data_roots=[Path(args.runs), *roots],
    )
    try:
        sock = listening(args.host, args.port)
        shown = f"[{args.host}]" if ":" in args.host else args.host
        print(
            f"convscope studio: http://{shown}:{sock.getsockname()[1]}/ (runs in {app.state.runs}); Ctrl-C stops it",
            flush=True,
        )
        args.stop.done = True  # uvicorn handles Ctrl-C and SIGTERM itself from here: it stops serving, then the studio
        config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=GRACE)
        server = uvicorn.Server(config)
        told = server.handle_exit

        def handle_exit(sig, frame) -> None:  # requests waiting for the workers answer 503 at once (studio.work)
            app.state.work.stopping = True
            told(sig, frame)

        server.handle_exit = handle_exit
        server.run(sockets=[sock])
    finally:  # also when the server did not stop cleanly (a second Ctrl-C skips the app's own shutdown)
        app.state.work.close()
        app.state.jobs.close()
        app.state.uploads.close()
        # The workers' current pieces end before the interpreter does (an exit inside torch's C++ code aborts): they
        # take at most a few seconds (studio.guards' bounds); past WORKER_WAIT the process leaves without them.
        if not app.state.work.join(WORKER_WAIT):
            log.warning("convscope studio: work still running after %d s; stopping without it", WORKER_WAIT)
            sys.stdout.flush(), sys.stderr.flush()
            os._exit(0)
