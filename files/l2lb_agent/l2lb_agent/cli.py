"""Command line: ``l2lb-agent run --config FILE``, ``l2lb-agent check-config FILE``, ``l2lb-agent version``.

Exit codes: 0 success, 2 configuration problems (listed, no traceback), 1 anything else: a start that
failed, or a thread of the running agent that died (so systemd's ``Restart=on-failure`` restarts it).
Either prints one line on stderr; the traceback goes to the log at debug level (a dead thread's at error).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence
from types import FrameType

from . import __version__
from .config import ConfigError, load_config

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2

log = logging.getLogger("l2lb.agent")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="l2lb-agent",
        description="baremetal.l2lb node agent: heartbeat, elected controller (IPAM + scheduling), ARP speaker.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser("run", help="run the agent until SIGTERM (then hand this node's IPs over)")
    run.add_argument("--config", "-c", required=True, metavar="FILE", help="the agent's YAML configuration")
    check = commands.add_parser("check-config", help="validate a configuration file and summarise it")
    check.add_argument("config", metavar="FILE")
    commands.add_parser("version", help="print the agent version")
    return parser


def _print_problems(exc: ConfigError) -> None:
    print(f"l2lb-agent: {exc}", file=sys.stderr)


def check_config(path: str) -> int:
    try:
        config = load_config(path)
    except ConfigError as exc:
        _print_problems(exc)
        return EXIT_CONFIG
    print(f"{path}: configuration is valid")
    print(config.summary())
    return EXIT_OK


def run(path: str) -> int:
    try:
        config = load_config(path)
    except ConfigError as exc:
        _print_problems(exc)
        return EXIT_CONFIG
    from .agent import Agent
    from .logs import setup_logging

    setup_logging(config.log_level, config.log_format)
    try:
        agent = Agent(config)
    except Exception as exc:  # e.g. an unreadable kubeconfig: one line, not a traceback
        print(f"l2lb-agent: cannot start: {exc}", file=sys.stderr)
        log.debug("cannot start", exc_info=True)
        return EXIT_FAILURE

    def on_signal(signum: int, frame: FrameType | None) -> None:
        agent.request_stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        code = agent.run()
    except Exception as exc:  # e.g. the metrics address is taken, netlink unusable: one line, no traceback
        print(f"l2lb-agent: cannot run: {exc}", file=sys.stderr)
        log.debug("cannot run", exc_info=True)
        agent.shutdown(graceful=False)
        return EXIT_FAILURE
    if code != EXIT_OK:
        print(f"l2lb-agent: {agent.exit_reason or 'failed'}", file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "version":
        print(f"l2lb-agent {__version__}")
        return EXIT_OK
    if args.command == "check-config":
        return check_config(args.config)
    return run(args.config)


if __name__ == "__main__":
    sys.exit(main())
