"""Command-line flags made from a frozen dataclass: one field, one flag, help from its metadata.

argparse rather than a CLI library: it is in the standard library, its output is plain, and it
lets every bad value reach `config.validate`, so the command line and the Python API refuse bad
settings with the same message.

Every command builds its parser with `ArgumentParser` below, which forgives the usual slips the
same way everywhere: `--learning_rate` (the spelling of config.json and `--grid`) means
`--learning-rate`, `--learning-rate -inf` reaches validation instead of being taken for a flag,
and a mistyped flag or any other parse error is one line, with the closest flag suggested.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import re
import sys
import types
import typing
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, TypeVar

from jaxmlp.config import flag_name

T = TypeVar("T")

# argparse's own wording of its errors, rewritten into the house style ("--flag must be ...").
_ARGUMENT_ERROR = re.compile(r"argument (?P<flags>[^:]+): (?P<message>.*)", re.DOTALL)
_INVALID_VALUE = re.compile(r"invalid (?P<kind>int|float) value: (?P<value>.*)", re.DOTALL)
_KIND_WORDS = {"int": "a whole number", "float": "a number"}


class ArgumentParser(argparse.ArgumentParser):
    """argparse.ArgumentParser with one-line errors and the forgiving spellings above."""

    def parse_args(self, args: Sequence[str] | None = None,
                   namespace: argparse.Namespace | None = None) -> argparse.Namespace:
        argv = sys.argv[1:] if args is None else list(args)
        spelled, unknown = spell_flags(argv, self._option_string_actions, self.allow_abbrev)
        if unknown:
            self.error(unknown_flags_message(unknown, self._option_string_actions, self.prog))
        return super().parse_args(spelled, namespace)

    def error(self, message: str) -> typing.NoReturn:
        # One line instead of the 25-line usage: `--help` is there for the whole list.
        fail(one_line_error(message))


def one_line_error(message: str) -> str:
    """argparse's "argument --a/--b: invalid int value: 'x'" -> "--a must be a whole number,
    got 'x'"; other messages lose the "argument " prefix and any line breaks."""
    message = " ".join(message.split())
    match = _ARGUMENT_ERROR.fullmatch(message)
    if not match:
        return message
    flag = match["flags"].split("/")[0]
    invalid = _INVALID_VALUE.fullmatch(match["message"])
    if invalid:
        return f"{flag} must be {_KIND_WORDS[invalid['kind']]}, got {invalid['value']}"
    return f"{flag}: {match['message']}"


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _is_flag(token: str) -> bool:
    """Whether argparse reads `token` as an option (a dash, and not a number or spaced text)."""
    name = token.split("=", 1)[0]
    return token.startswith("-") and len(token) > 1 and not _is_number(token) and " " not in name


def _resolve(name: str, options: Mapping[str, argparse.Action], allow_abbrev: bool
             ) -> str | None:
    """The option string `name` stands for, itself if ambiguous (argparse says so), or None.

    A prefix shared by several spellings of one flag (`--l`: `--learning-rate` and its alias
    `--lr`) is that flag, as it was before the alias existed."""
    if name in options:
        return name
    if not name.startswith("--"):
        return name if name[:2] in options or any(o.startswith(name) for o in options) else None
    if not allow_abbrev:
        return None
    matches = [o for o in options if o.startswith(name)]
    if not matches:
        return None
    return matches[0] if len({id(options[o]) for o in matches}) == 1 else name


def spell_flags(argv: Sequence[str], options: Mapping[str, argparse.Action],
                allow_abbrev: bool = True) -> tuple[list[str], list[str]]:
    """`argv` with each flag in the spelling the parser knows, and the flags it does not know.

    `--batch_size` -> `--batch-size`; `--lr -1e-3` -> `--lr=-1e-3`, since argparse takes a
    dash-led token that is not a plain negative integer or decimal (-1e-3, -inf) for a flag and
    would never pass it to validation. Nothing after `--` is touched."""
    spelled: list[str] = []
    unknown: list[str] = []
    for i, token in enumerate(argv):
        if token == "--":
            return spelled + list(argv[i:]), unknown
        previous = options.get(spelled[-1]) if spelled else None
        if (previous is not None and previous.nargs is None and token.startswith("-")
                and _is_number(token)):  # the one value of the flag before it
            spelled[-1] += "=" + token
            continue
        if not _is_flag(token):
            spelled.append(token)
            continue
        name, eq, value = token.partition("=")
        resolved = _resolve(name, options, allow_abbrev)
        if resolved is None and name.startswith("--"):
            resolved = _resolve(name.replace("_", "-"), options, allow_abbrev)
        if resolved is None:
            unknown.append(name)
        spelled.append((resolved or name) + eq + value)
    return spelled, unknown


def unknown_flags_message(unknown: Sequence[str], options: Mapping[str, argparse.Action],
                          prog: str) -> str:
    """ "unknown flag --learnig-rate; did you mean --learning-rate?" (difflib's closest)."""
    # Compared without the dashes, which every flag shares and would make anything look close.
    known = [o[2:] for o in options if o.startswith("--")]
    parts = []
    for name in unknown:
        close = difflib.get_close_matches(name.lstrip("-").replace("_", "-"), known, n=1)
        parts.append((name, "--" + close[0] if close else None))
    if len(parts) == 1:
        name, close = parts[0]
        hint = f"did you mean {close}?" if close else f"{prog} --help lists the flags"
        return f"unknown flag {name}; {hint}"
    listed = ", ".join(f"{n} (did you mean {c}?)" if c else n for n, c in parts)
    return f"unknown flags {listed}; {prog} --help lists the flags"


def _base_type(tp: Any) -> Any:
    """`int | None` -> int; `tuple[int, ...]` -> tuple."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _base_type(args[0])
    return origin or tp


def number_or_text(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    """A `type=` that converts what it can and passes the rest on as text, so `--epochs abc`
    meets the same check, and message, as `--epochs 0` (config.validate) instead of argparse's."""
    def convert(text: str) -> Any:
        try:
            return kind(text)
        except ValueError:
            return text
    return convert


def default_words(f: dataclasses.Field) -> str:
    """A field's default as `--help` says it: its `default_words` metadata if any, else the
    value as it would be typed (on/off, `512 512`), with None as "unset"."""
    words = f.metadata.get("default_words")
    if words is not None:
        return words
    value = f.default
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple):
        return " ".join(str(v) for v in value) or "none"
    return str(value)


def _help_text(f: dataclasses.Field) -> str:
    text = f.metadata.get("help", "")
    choices = f.metadata.get("choices")
    if choices:
        text += f" {{{', '.join(choices)}}}"
    # Said here once, in words; argparse would expand %(default)s to "None" or "(512, 512)".
    return text + f" (default: {default_words(f)})".replace("%", "%%")


def add_dataclass_flags(parser: argparse.ArgumentParser, cls: type, title: str,
                        fields: Collection[str] | None = None) -> None:
    """Add `--field-name` (and the field's `aliases` metadata, e.g. `--lr`) for every field of
    the dataclass `cls` (or only those named in `fields`), defaulting to its default."""
    group = parser.add_argument_group(title)
    if parser.epilog is None:
        parser.epilog = ("Every flag may also be written with underscores, the way config.json "
                         "names the settings: --batch_size is --batch-size.")
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if fields is not None and f.name not in fields:
            continue
        flags = [flag_name(f.name), *f.metadata.get("aliases", ())]
        help_text = _help_text(f)
        kind = _base_type(hints[f.name])
        if kind is bool:
            action = group.add_argument(*flags, action=argparse.BooleanOptionalAction,
                                        default=f.default)
            action.help = help_text  # set after: Python 3.10 appends its own "(default: ...)"
        elif kind is tuple:
            group.add_argument(*flags, nargs="*", type=number_or_text(int), default=f.default,
                               metavar="N", help=help_text)
        else:
            convert = number_or_text(kind) if kind in (int, float) else kind
            group.add_argument(*flags, type=convert, default=f.default, help=help_text,
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
    argv = sys.argv[1:] if argv is None else argv
    # The spellings the command itself accepted (`--batch_size`, `--lr=-1`) count as given.
    spelled, _ = spell_flags(argv, parser._option_string_actions, parser.allow_abbrev)
    known, _ = probe.parse_known_args(spelled)
    return set(vars(known))


def fail(message: str, code: int = 2) -> typing.NoReturn:
    """A user error: one clear message on stderr, no traceback, a non-zero exit."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)
