"""The `od-bridge` command line: serve, check-config, sync, emulate, tail, spool."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from . import __version__
from .config import Config, load
from .errors import BridgeError, ConfigError

Handler = Callable[[argparse.Namespace], int]


def _config(args: argparse.Namespace) -> Config:
    path = args.config or os.environ.get("OD_BRIDGE_CONFIG")
    if not path:
        raise ConfigError(["-c/--config: no configuration file given (or set $OD_BRIDGE_CONFIG)"])
    return load(path)


def _check_config(args: argparse.Namespace) -> int:
    config = _config(args)
    names = ", ".join(c.name for c in config.customers)
    print(f"configuration is valid: {len(config.customers)} customer(s): {names}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from .service import serve  # noqa: PLC0415 - keep `check-config` free of aio-pika imports

    code: int = serve(_config(args), log_format=args.log_format, log_level=args.log_level)
    return code


def _tail(args: argparse.Namespace) -> int:
    from .tail import tail  # noqa: PLC0415

    code: int = tail(_config(args), types=args.type, customers=args.customer, pretty=args.pretty)
    return code


def _spool(args: argparse.Namespace) -> int:
    from .spoolcli import run  # noqa: PLC0415

    code: int = run(_config(args), args.action)
    return code


def _with_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", help="YAML configuration (default: $OD_BRIDGE_CONFIG)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="od-bridge", description="Open Dental API Events → CloudEvents on RabbitMQ."
    )
    parser.add_argument("--version", action="version", version=f"od-bridge {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the daemon")
    _with_config(serve)
    serve.add_argument("--log-format", choices=("json", "text"), help="override log.format")
    serve.add_argument(
        "--log-level", choices=("DEBUG", "INFO", "WARNING", "ERROR"), help="override log.level"
    )
    serve.set_defaults(handler=_serve)

    check = sub.add_parser("check-config", help="validate the configuration file")
    _with_config(check)
    check.set_defaults(handler=_check_config)

    tail = sub.add_parser("tail", help="print live events from the exchanges")
    _with_config(tail)
    tail.add_argument("--type", action="append", default=[], help="WatchTable/UiEventType (repeat)")
    tail.add_argument("--customer", action="append", default=[], help="customer name (repeat)")
    tail.add_argument("--pretty", action="store_true", help="one short human line per event")
    tail.set_defaults(handler=_tail)

    spool = sub.add_parser("spool", help="inspect or drain the local spool")
    spool.add_argument(
        "action",
        choices=("stats", "drain"),
        help="stats: depth and age; drain: publish everything now (stop the daemon first)",
    )
    _with_config(spool)
    spool.set_defaults(handler=_spool)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; errors are one clear sentence on stderr, never a traceback."""
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"config error: {problem}", file=sys.stderr)
        return 2
    except BridgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
