"""The `od-bridge` command line: serve, check-config, sync, emulate, tail, status, spool, schema."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from . import __version__
from .config import Config
from .config_loader import load
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

    config = _config(args)
    if args.spool is not None:  # another replica's spool (a stranded one): any machine will do
        spool = config.spool.model_copy(update={"path": args.spool})
        config = config.model_copy(update={"spool": spool})
    code: int = run(config, args.action, args.file)
    return code


def _sync(args: argparse.Namespace) -> int:
    import asyncio  # noqa: PLC0415 - keep `check-config` light

    from .sync import report as syncreport  # noqa: PLC0415
    from .sync.loop import customers_to_sync, sync_all  # noqa: PLC0415

    config = _config(args)
    chosen = customers_to_sync(config, args.customer)
    if not chosen:
        print("no customer has an api: section; nothing to sync")
        return 0
    results = asyncio.run(sync_all(config, chosen, do_apply=args.apply))
    plans = [r.plan for r in results if r.plan is not None]
    summary = syncreport.table(plans, failed=[r.customer for r in results if r.plan is None])
    if summary:
        print(summary)
    for result in results:
        for done in result.outcomes:
            print(syncreport.outcome(result.customer, done))
    failed = False
    for result in results:
        if result.error is not None:
            print(f"error: {result.customer}: {result.error}", file=sys.stderr)
        for done in result.outcomes:
            if not done.ok:
                print(f"error: {syncreport.outcome(result.customer, done)}", file=sys.stderr)
        failed = failed or result.failed
    if failed:
        return 1
    return 2 if args.exit_code and any(p.pending for p in plans) else 0


def _status(args: argparse.Namespace) -> int:
    from .statuscli import run  # noqa: PLC0415

    code: int = run(_config(args), args.url, args.json)
    return code


def _schema(args: argparse.Namespace) -> int:
    from . import asyncapi, contract  # noqa: PLC0415

    if args.what == "asyncapi":
        text = asyncapi.render()
        if args.out:
            Path(args.out).write_text(text, encoding="utf-8")
        else:
            sys.stdout.write(text)
        return 0
    root = Path(args.out) if args.out else Path(__file__).parent / "schemas"
    for path, schema in contract.all_schemas().items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(contract.render(schema))
    print(f"{len(contract.PATHS)} schemas written to {root}")
    return 0


def _emulate(args: argparse.Namespace) -> int:
    from datetime import timedelta  # noqa: PLC0415

    from .emulator.app import DOC_CUSTOMER_KEY, DOC_DEVELOPER_KEY, Settings, run  # noqa: PLC0415
    from .emulator.office import DEFAULT_TABLES  # noqa: PLC0415
    from .listener import cannot_listen  # noqa: PLC0415

    settings = Settings(
        developer_keys=tuple(args.developer_key or (DOC_DEVELOPER_KEY,)),
        customer_keys=tuple(args.customer_key or (DOC_CUSTOMER_KEY,)),
        throttle_s=args.throttle,
        page_size=args.page_size,
        allow_delete=not args.no_delete,
        legacy=args.legacy,
        failure_fields=not args.no_failure_fields,
        paused=args.pause_office,
        workstation=args.workstation,
        change_rate=args.rate,
        select_rate=args.select_rate,
        tables=tuple(t for t in args.tables.split(",") if t) if args.tables else DEFAULT_TABLES,
        resend_cap=timedelta(hours=args.resend_cap_hours),
        timezone=args.timezone,
    )
    try:
        return run(settings, args.host, args.port)
    except OSError as exc:  # the only OSError run() lets out: its port cannot be bound
        raise BridgeError(cannot_listen(args.host, args.port, exc)) from exc


def _emulate_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    emu = sub.add_parser("emulate", help="run the Open Dental emulator (API + event firing)")
    emu.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    emu.add_argument("--port", type=int, default=30223, help="listen port (default 30223)")
    emu.add_argument("--developer-key", action="append", help="accepted developer key (repeat)")
    emu.add_argument("--customer-key", action="append", help="accepted customer key (repeat)")
    emu.add_argument(
        "--throttle",
        type=float,
        default=0.0,
        metavar="S",
        help="answer 429 + Retry-After to a key calling more often than every S s",
    )
    emu.add_argument("--page-size", type=int, default=100, help="GET /subscriptions page size")
    emu.add_argument(
        "--no-delete", action="store_true", help="free permission tier: DELETE answers 401"
    )
    emu.add_argument(
        "--legacy",
        action="store_true",
        help="send no Event-Type/Workstation headers (offices before 22.4.35)",
    )
    emu.add_argument(
        "--no-failure-fields",
        action="store_true",
        help="subscriptions without FailureReason/SubsequentFailures/… (older versions)",
    )
    emu.add_argument(
        "--pause-office",
        action="store_true",
        help="start with the office asleep: nothing fires until POST /emulator/office/resume",
    )
    emu.add_argument("--workstation", default="OD-SERVER", help="machine name that fires events")
    emu.add_argument("--rate", type=float, default=1.0, help="rows the office changes per second")
    emu.add_argument(
        "--select-rate", type=float, default=0.0, help="PatientSelected events per second"
    )
    emu.add_argument("--tables", help="comma-separated tables the office changes (default: all)")
    emu.add_argument(
        "--resend-cap-hours",
        type=float,
        default=72.0,
        help="how far back a failed cycle resends (default 72 h)",
    )
    emu.add_argument("--timezone", help="office time zone (default: this host's)")
    emu.set_defaults(handler=_emulate)


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

    sync = sub.add_parser("sync", help="make the offices' subscriptions match the configuration")
    _with_config(sync)
    sync.add_argument("--apply", action="store_true", help="carry the plan out (default: print it)")
    sync.add_argument("--customer", action="append", default=[], help="customer name (repeat)")
    sync.add_argument(
        "--exit-code", action="store_true", help="exit 2 when changes are (or were) pending"
    )
    sync.set_defaults(handler=_sync)
    _emulate_parser(sub)

    schema = sub.add_parser("schema", help="generate the JSON Schemas or the AsyncAPI document")
    schema.add_argument(
        "what",
        choices=("json", "asyncapi"),
        help="json: bridge/schemas/v1/…; asyncapi: the AsyncAPI 3.0 YAML",
    )
    schema.add_argument(
        "-o",
        "--out",
        help="json: folder (default: the package's); asyncapi: file (default: stdout)",
    )
    schema.set_defaults(handler=_schema)

    tail = sub.add_parser("tail", help="print live events from the exchanges")
    _with_config(tail)
    tail.add_argument("--type", action="append", default=[], help="WatchTable/UiEventType (repeat)")
    tail.add_argument("--customer", action="append", default=[], help="customer name (repeat)")
    tail.add_argument("--pretty", action="store_true", help="one short human line per event")
    tail.set_defaults(handler=_tail)

    status = sub.add_parser("status", help="every office's health, from the running daemon")
    _with_config(status)
    status.add_argument("--url", help="the daemon's /status.json (default: from the config)")
    status.add_argument("--json", action="store_true", help="print the JSON document as is")
    status.set_defaults(handler=_status)

    spool = sub.add_parser("spool", help="inspect or drain the local spool")
    spool.add_argument(
        "action",
        choices=("stats", "drain", "salvage", "parked", "export", "retry"),
        help="stats: depth and age; drain: publish everything now; salvage FILE: copy the"
        " readable rows of a damaged spool set aside at start into the spool (daemon stopped);"
        " parked: list the rows RabbitMQ returned (no route), set aside; export: those rows as"
        " JSON lines; retry: put them back in the spool (daemon stopped)",
    )
    spool.add_argument("file", nargs="?", type=Path, help="salvage: the damaged spool file")
    spool.add_argument(
        "--spool",
        type=Path,
        metavar="PATH",
        help="act on this spool file instead of spool.path (e.g. a stranded replica's)",
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
