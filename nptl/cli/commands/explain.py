"""``nptl explain``: one element of a formula term by term, or one image walked through a model
(see :mod:`nptl.explain`)."""
from __future__ import annotations

ORDER = 60


def add_parser(subparsers):
    from ... import explain

    p = subparsers.add_parser("explain", help="expand one element of a formula term by term, or walk one image "
                                              "through a model")
    explain.add_arguments(p)
    return p


def run(args) -> int:
    from ... import explain

    return explain.command(args)
