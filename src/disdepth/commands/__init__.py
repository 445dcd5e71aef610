"""The command line, one module per command: argument parsing and printing only.

Each module exposes ``add_arguments(parser)`` and ``run(args) -> int`` and calls the library below it
(``pipeline``, ``deploy``, ``engine``, ``data``, ``eval``); nothing below this package imports it.
"""
