"""``nptl summary``: a saved model's layers and parameter counts."""
from __future__ import annotations

ORDER = 50


def add_parser(subparsers):
    p = subparsers.add_parser("summary", help="print a saved model's layers and parameter counts",
                              description="Print a checkpoint's layers, output shapes and parameter counts.")
    p.add_argument("model", metavar="CHECKPOINT", help="an .npz checkpoint written by nptl")
    return p


def run(args) -> int:
    from ... import io

    io.load(args.model).summary()
    return 0
