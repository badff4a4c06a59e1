"""`convscope serve`: the studio web app (convscope.studio) on this machine, served by uvicorn."""

from __future__ import annotations

import argparse
import ipaddress
import sys

from convscope.cli_args import int_in


def add_parsers(sub) -> None:
    p = sub.add_parser(
        "serve",
        help="the studio: a local web app to watch runs, try them on images, look inside and explain convolutions",
    )
    p.add_argument("--runs", default="runs", metavar="DIR", help="the folder of run folders (default runs)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int_in(1, 65535), default=8000, help="default 8000")
    p.set_defaults(run=cmd_serve)


def exposed(host: str) -> bool:
    """Whether `host` lets other machines connect (anything but a loopback address or localhost)."""
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True  # a host name: it may resolve to a public address


def cmd_serve(args: argparse.Namespace) -> None:
    import uvicorn

    from convscope.studio.app import LOOPBACK, create_app

    if exposed(args.host):
        print(
            f"convscope: warning: listening on {args.host}: other machines can reach the studio, which has no login "
            "and can start trainings on this machine. Use --host 127.0.0.1 unless you mean it.",
            file=sys.stderr,
        )
    app = create_app(args.runs, allowed_hosts=["*"] if exposed(args.host) else LOOPBACK)
    print(f"convscope studio: http://{args.host}:{args.port}/ (runs in {app.state.runs}); Ctrl-C stops it")
    args.stop.done = True  # uvicorn handles Ctrl-C itself from here: it stops serving and stops running trainings
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
