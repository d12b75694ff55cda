"""The ``nptl`` command line (also ``python -m nptl``).

Each subcommand is one module in :mod:`nptl.cli.commands`, found automatically: it defines
``add_parser(subparsers)`` (adds and returns its parser; ``ORDER`` places it in the help, default
100) and ``run(args) -> int``.  Shared checks and helpers live in :mod:`nptl.cli.common`.

Errors: a user mistake (:class:`~nptl.cli.common.UsageError`, a bad data file or checkpoint, a
missing optional package) is one line on stderr and exit status 2; anything else is an internal
error: one line, a hint, exit status 1.  ``--debug`` shows the traceback instead.  Ctrl-C stops
with status 130.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import re
import sys

from .common import UsageError

__all__ = ["main", "build_parser", "UsageError"]

DESCRIPTION = """\
CNN transfer learning in NumPy with Numba kernels.

Data (--data): fashion-mnist (the Debian package dataset-fashion-mnist, files in
/usr/share/datasets/fashion-mnist/), synthetic (generated in code), cifar10:DIR, or a
directory: IDX files, CIFAR-10 binary batches, or one sub-folder of images per class.
The default is Fashion-MNIST when installed, else the synthetic set.  Nothing is downloaded."""

EPILOG = "Run 'nptl COMMAND --help' for a command's options."


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions as written; every option's default appended to its help (unless the help
    already states it, or there is nothing to state: None, False, a flag)."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if (default is None or default is False or default is argparse.SUPPRESS or "default" in text
                or isinstance(action, (argparse._StoreTrueAction, argparse._VersionAction, argparse._HelpAction))):
            return text
        if isinstance(default, (list, tuple)):
            default = ",".join(map(str, default))
        return f"{text} (default: {str(default).replace('%', '%%')})"


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``nptl train: error: --epochs must be >= 1, got 0``."""

    def error(self, message):
        match = re.match(r"argument (\S+?)(?:/\S+)?: (must .*)", message, flags=re.S)
        if match:
            message = f"{match.group(1)} {match.group(2)}"
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    from .. import __version__

    parts = []
    for dist in ("numpy", "numba"):
        try:
            parts.append(f"{dist} {version(dist)}")
        except PackageNotFoundError:  # pragma: no cover - both are dependencies
            parts.append(f"{dist} missing")
    return f"nptl {__version__} ({', '.join(parts)}, Python {sys.version.split()[0]})"


def _commands():
    """The subcommand modules in help order."""
    from . import commands

    mods = [importlib.import_module(f"{commands.__name__}.{m.name}")
            for m in pkgutil.iter_modules(commands.__path__) if not m.name.startswith("_")]
    mods = [m for m in mods if hasattr(m, "add_parser") and hasattr(m, "run")]
    return sorted(mods, key=lambda m: (getattr(m, "ORDER", 100), m.__name__))


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="nptl", description=DESCRIPTION, epilog=EPILOG, formatter_class=HelpFormatter)
    p.add_argument("--version", action="version", version=_versions())
    p.add_argument("--debug", action="store_true", help="show the full traceback of any error")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=Parser)
    for mod in _commands():
        sp = mod.add_parser(sub)
        sp.formatter_class = HelpFormatter
        # also accepted after the command; SUPPRESS keeps a --debug given before it
        sp.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the full traceback of any error")
        sp.set_defaults(_run=mod.run)
    return p


def _user_errors() -> tuple:
    """Exceptions that mean bad input (a file, a checkpoint, a flag), not a bug in nptl."""
    from ..data.errors import DataError
    from ..io import CheckpointError

    return (UsageError, DataError, CheckpointError, FileNotFoundError, PermissionError, IsADirectoryError,
            NotADirectoryError, ImportError)


def main(argv=None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 internal error, 2 usage or input
    error, 130 interrupted)."""
    args = build_parser().parse_args(argv)
    prog = f"nptl {args.command}"
    try:
        return args._run(args)
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(f"\n{prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `nptl predict ... | head`: the reader left
        sys.stderr.close()
        return 0
    except Exception as err:
        if args.debug:
            raise
        if isinstance(err, SystemError) and isinstance(err.__context__, KeyboardInterrupt):
            # Ctrl-C that landed inside a compiled kernel outside a training loop (e.g. predicting)
            print(f"\n{prog}: interrupted", file=sys.stderr)
            return 130
        message = " ".join(str(err).split()) or type(err).__name__
        from ..errors import NonFiniteError
        from ..sweep import WorkerLostError

        if isinstance(err, _user_errors()):
            print(f"{prog}: error: {message}", file=sys.stderr)
            return 2
        if isinstance(err, NonFiniteError):
            print(f"{prog}: error: {message} (try a lower --lr)", file=sys.stderr)
            return 1
        if isinstance(err, WorkerLostError):
            print(f"{prog}: error: {message}", file=sys.stderr)
            return 1
        if isinstance(err, (ValueError, OSError)):  # the library's argument checks, file-system errors
            print(f"{prog}: error: {message}", file=sys.stderr)
            return 2
        print(f"{prog}: internal error: {type(err).__name__}: {message} (a bug in nptl: run again with --debug "
              "for the traceback and report it)", file=sys.stderr)
        return 1
