"""The ``edged`` command line: the daemon, config checks, the demo, the emulator, field tools."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from edged import __version__, registry
from edged.errors import ConfigError

EX_OK = 0
EX_USAGE = 64
EX_SOFTWARE = 70
EX_CONFIG = 78  # sysexits.h EX_CONFIG: systemd units use RestartPreventExitStatus=78

DEFAULT_CONFIG = "/etc/edged/edged.yaml"
log = logging.getLogger("edged")


def _check_config(args: argparse.Namespace) -> int:
    from edged.config import load_config

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print(f"{args.config}: {len(exc.problems)} problem(s) found", file=sys.stderr)
        return EX_CONFIG
    for warning in config.warnings:
        print(warning, file=sys.stderr)
    warned = f", {len(config.warnings)} warning(s)" if config.warnings else ""
    print(
        f"{args.config}: OK: gateway {config.gateway}, {len(config.devices)} device(s), "
        f"adapters: {', '.join(config.adapters_in_use) or 'none'}{warned}"
    )
    return EX_OK


def _run(args: argparse.Namespace) -> int:
    from edged.app import EXIT_RESTART, Gateway
    from edged.config import load_config
    from edged.logsetup import setup_logging
    from edged.outbox import OutboxError

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EX_CONFIG
    setup_logging(args.log_level or config.logging.level, secrets=[config.token.reveal()])
    for warning in config.warnings:
        log.warning("config: %s", warning)

    restart = False

    async def main() -> None:
        nonlocal restart
        gateway = Gateway(config)
        try:
            await gateway.run()
            restart = gateway.restart_requested
        finally:
            if gateway.stuck_tasks:
                # asyncio.run would wait forever for a task that ignores cancellation.
                log.error("exiting with stuck tasks: %s", ", ".join(gateway.stuck_tasks))
                logging.shutdown()
                os._exit(EX_SOFTWARE)

    try:
        asyncio.run(main())
    except OutboxError as exc:
        # The outbox cannot be used as configured: retrying at once would not help.
        log.error("cannot open the outbox: %s (storage.path in %s)", exc, args.config)
        return EX_CONFIG
    except Exception:
        log.exception("edged stopped on an unexpected error")
        return EX_SOFTWARE
    return EXIT_RESTART if restart else EX_OK


def _demo(args: argparse.Namespace) -> int:
    from edged.demo import run_demo

    return run_demo(seconds=args.seconds)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="edged", description="edged: gateway edge daemon for Watson IoT / Maximo IoT"
    )
    parser.add_argument("--version", action="version", version=f"edged {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the gateway daemon")
    run.add_argument(
        "--config", "-c", default=DEFAULT_CONFIG, help=f"config file (default {DEFAULT_CONFIG})"
    )
    run.add_argument(
        "--log-level", choices=["debug", "info", "warning", "error"], help="override logging.level"
    )
    run.set_defaults(func=_run)

    check = sub.add_parser(
        "check-config", help="validate a config file; exit 78 listing every problem"
    )
    check.add_argument("config", nargs="?", default=DEFAULT_CONFIG)
    check.set_defaults(func=_check_config)

    demo = sub.add_parser(
        "demo", help="run a local broker, the platform emulator and the daemon on config/demo.yaml"
    )
    demo.add_argument(
        "--seconds", type=float, default=None, help="stop after this long (default: until Ctrl-C)"
    )
    demo.set_defaults(func=_demo)

    tool_modules = [
        "edged.statuscli",
        "edged.emulator.cli",
        "edged.appcli",
        *(f"edged.adapters.{name}.cli" for name in registry.BUILTIN_ADAPTERS),
    ]
    for module_name in tool_modules:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name is None or not module_name.startswith(exc.name):
                raise  # a tool module that exists but is broken must not be hidden
            continue
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``edged`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
