"""Argument helpers shared by the commands: config flags and one parser for ``HxW`` sizes."""

from __future__ import annotations

import argparse


def add_override_argument(parser: argparse.ArgumentParser, help_text: str = "override, e.g. model.head=bins") -> None:
    """``--set KEY=VALUE`` (repeatable) into ``args.overrides``, applied after every config file."""
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=help_text)


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """The config flags every config-driven command shares."""
    parser.add_argument("--config", "-c", action="append", default=[], help="YAML config (repeatable; later wins)")
    add_override_argument(parser)
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")


def parse_hw(text: str, flag: str = "--size", minimum: int = 1) -> tuple[int, int]:
    """``"480x640"`` -> (480, 640).

    Raises:
        ValueError: naming ``flag`` when the text is not ``HxW`` or a side is below ``minimum`` pixels.
    """
    try:
        h, w = (int(v) for v in text.lower().strip().split("x"))
    except ValueError:
        raise ValueError(f"{flag} {text!r}: expected HEIGHTxWIDTH, e.g. 480x640") from None
    if h < minimum or w < minimum:
        raise ValueError(f"{flag} {text!r}: height and width must be at least {minimum} pixels")
    return h, w


def hw_type(flag: str, minimum: int = 1):
    """An argparse ``type=`` for ``HxW`` values: argparse prints the one-line error and exits 2."""

    def parse(text: str) -> tuple[int, int]:
        try:
            return parse_hw(text, flag, minimum)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def parse_hw_list(text: str, flag: str, minimum: int = 1) -> list[tuple[int, int]]:
    """``"480x640,352x1216"`` -> [(480, 640), (352, 1216)] (see :func:`parse_hw`)."""
    return [parse_hw(item, flag, minimum) for item in text.split(",")]
