"""One module per ``nptl`` subcommand: ``add_parser(subparsers)`` and ``run(args)``."""
