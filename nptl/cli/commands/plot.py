"""``nptl plot``: PNG figures from ``train/transfer --json`` results or a saved model (see
:mod:`nptl.plots`)."""
from __future__ import annotations

ORDER = 70


def add_parser(subparsers):
    from ... import plots

    p = subparsers.add_parser("plot", help="PNG figures from 'train/transfer --json' results or a saved model")
    plots.add_arguments(p)
    return p


def run(args) -> int:
    from ... import plots

    return plots.command(args)
