"""Command-line flags made from a frozen dataclass: one field, one flag, help from its metadata.

argparse rather than a CLI library: it is in the standard library, its output is plain, and it
lets every bad value reach `config.validate`, so the command line and the Python API refuse bad
settings with the same message.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import types
import typing
from typing import Any, TypeVar

T = TypeVar("T")


def _base_type(tp: Any) -> Any:
    """`int | None` -> int; `tuple[int, ...]` -> tuple."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _base_type(args[0])
    return origin or tp


def add_dataclass_flags(parser: argparse.ArgumentParser, cls: type, title: str) -> None:
    """Add `--field-name` for every field of the dataclass `cls`, defaulting to its default."""
    group = parser.add_argument_group(title)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        help_text = f.metadata.get("help", "")
        choices = f.metadata.get("choices")
        if choices:
            help_text += f" {{{', '.join(choices)}}}"
        help_text += " (default: %(default)s)"
        kind = _base_type(hints[f.name])
        if kind is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default,
                               help=help_text)
        elif kind is tuple:
            group.add_argument(flag, nargs="*", type=int, default=f.default, metavar="N",
                               help=help_text)
        else:
            group.add_argument(flag, type=kind, default=f.default, help=help_text,
                               metavar=f.name.upper())


def dataclass_from_args(cls: type[T], args: argparse.Namespace) -> T:
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)}
    for f in dataclasses.fields(cls):
        if isinstance(values[f.name], list):
            values[f.name] = tuple(values[f.name])
    return cls(**values)


def flags_given(parser: argparse.ArgumentParser, argv: list[str] | None) -> set[str]:
    """The destinations the user set explicitly (so `--resume` can refuse conflicting flags)."""
    probe = argparse.ArgumentParser(add_help=False)
    for action in parser._actions:
        if action.option_strings and action.dest != "help":
            kwargs: dict[str, Any] = {"dest": action.dest, "default": argparse.SUPPRESS}
            if isinstance(action, argparse.BooleanOptionalAction):
                kwargs["action"] = argparse.BooleanOptionalAction
            elif action.nargs == 0:
                kwargs["action"] = "store_const"
                kwargs["const"] = True
            else:
                kwargs["nargs"] = action.nargs
            probe.add_argument(*action.option_strings, **kwargs)
    known, _ = probe.parse_known_args(sys.argv[1:] if argv is None else argv)
    return set(vars(known))


def fail(message: str, code: int = 2) -> typing.NoReturn:
    """A user error: one clear message on stderr, no traceback, a non-zero exit."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)
