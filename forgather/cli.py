"""The `forgather` command line. This path must stay free of torch so --help and --dry-run are instant."""

from __future__ import annotations

import argparse
import difflib
import os
import sys
from typing import Any, Sequence

from . import __version__
from .commands import checkpoint, config_show, data, eval_cmd, generate, init, logs, ls, model, tb, tokenizer, train
from .commands.common import load_composed
from .errors import UserError

COMMANDS = [train, init, config_show, ls, checkpoint, model, data, tokenizer, generate, eval_cmd, tb, logs]
NEEDS_PROJECT = {"train", "config", "data", "tokenizer"}  # tb needs one only without RUN_DIR: it loads it itself


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse that reports a bad argument as a single line instead of usage + error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"{self.prog}: {message} (see --help)")

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> tuple[argparse.Namespace, list[str]]:
        """As argparse's, and records the innermost (sub)parser that ran, to name its options on an unknown one."""
        namespace, extras = super().parse_known_args(args, namespace)
        # A subparser runs (and sets this) before its parent finishes, so the first one to set it is the innermost.
        if not hasattr(namespace, _INNERMOST):
            setattr(namespace, _INNERMOST, self)
        return namespace, extras

    def parse_args(self, args: Any = None, namespace: Any = None) -> argparse.Namespace:  # type: ignore[override]
        """As argparse's, but an unrecognized argument is one line with the nearest option of its own command."""
        namespace, extras = self.parse_known_args(args, namespace)
        if extras:
            raise UserError(unknown_argument_message(getattr(namespace, _INNERMOST, self), extras))
        delattr(namespace, _INNERMOST)
        return namespace


_INNERMOST = "_innermost_parser"


def unknown_argument_message(parser: argparse.ArgumentParser, extras: list[str]) -> str:
    """'PROG: unknown option --x; did you mean --y?' for the first unrecognized argument."""
    options = [o for action in parser._actions for o in action.option_strings if o not in ("-h", "--help")]
    first = next((e for e in extras if e.startswith("-") and len(e) > 1), None)
    if first is None:
        return f"{parser.prog}: unexpected argument {extras[0]!r} (see {parser.prog} --help)"
    name = first.split("=", 1)[0]
    close = difflib.get_close_matches(name, options, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]}?" if close else f" (see {parser.prog} --help)"
    return f"{parser.prog}: unknown option {name}{hint}"


def _global_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-p", "--project", metavar="DIR", help="project directory (default: walk up from cwd)")
    parser.add_argument("-c", "--config", metavar="NAME", help="config under the project's configs/ (default: project.yaml)")


def build_parser(composed: Any) -> argparse.ArgumentParser:
    """The full parser; project flags are added when a project was found."""
    parser = OneLineErrorParser(
        prog="forgather",
        description="Distributed-first launcher and trainer for pretraining LLMs. Run inside a project directory.",
        epilog="Quick start: cd projects/smollm_pretrain && forgather train --init-model",
    )
    parser.add_argument("--version", action="version", version=f"forgather {__version__}")
    _global_options(parser)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineErrorParser)
    for command in COMMANDS:
        command.register(subparsers, composed)
    return parser


def _split_passthrough(argv: list[str]) -> tuple[list[str], list[str]]:
    if "--" in argv:
        at = argv.index("--")
        return argv[:at], argv[at + 1:]
    return argv, []


def _hoist_global_options(argv: list[str]) -> list[str]:
    """Accept -p/-c anywhere (`forgather train -p DIR`) by moving them in front of the subcommand."""
    front, rest = [], []
    i = 0
    while i < len(argv):
        arg = argv[i]
        name, eq, value = arg.partition("=")
        if name in ("-p", "--project", "-c", "--config"):
            if eq:
                front.append(arg)
            else:
                front.extend(argv[i:i + 2])
                i += 1
        else:
            rest.append(arg)
        i += 1
    return front + rest


def _preparse(argv: list[str]) -> argparse.Namespace:
    pre = argparse.ArgumentParser(add_help=False)
    _global_options(pre)
    pre.add_argument("command", nargs="?")
    known, _ = pre.parse_known_args(argv)
    return known


def run(argv: Sequence[str]) -> int:
    """Parse and dispatch; returns the exit status."""
    argv, passthrough = _split_passthrough(list(argv))
    argv = _hoist_global_options(argv)
    pre = _preparse(argv)
    composed = None
    if pre.command in NEEDS_PROJECT:
        wants_help = any(a in ("-h", "--help") for a in argv)
        try:
            composed = load_composed(pre)
        except UserError:
            if not wants_help:
                raise
    parser = build_parser(composed)
    args = parser.parse_args(argv)
    args.torchrun_args = passthrough
    if passthrough and args.command != "train":
        raise UserError(f"arguments after -- are passed to torchrun and only `forgather train` takes them: {passthrough}")
    if not getattr(args, "handler", None):
        parser.print_help()
        return 0 if not argv else 2
    return args.handler(args, composed)


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point: user errors become one line on stderr and a non-zero exit."""
    try:
        return run(sys.argv[1:] if argv is None else argv)
    except UserError as exc:
        print(f"forgather: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `forgather ... | head` closed our stdout: not an error of ours, and nothing more to print.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
