"""The page's settings: which of `Config`'s fields the lab offers, how the text typed on the page
becomes a `Config` (as the command line turns flags into one: `cli.number_or_text`, then
`config.validate`, so a bad value is refused with the command line's own one-line message), the
presets, and the `python -m jaxmlp.train` command a run's settings stand for.

The page sends only the settings a person set (or a preset set): the others keep `Config`'s
defaults, or the data set's own (`config.DATASET_DEFAULTS`), as on the command line. Fields
that name places on this machine (`data_dir`) and the ones about where data comes from are not
offered: the server's own flags decide them, and a request that sends one is refused.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jaxmlp
from jaxmlp import cli, data
from jaxmlp.config import (
    DATASET_DEFAULTS,
    Config,
    ConfigError,
    check_against_data,
    dataset_defaults,
    flag_name,
    validate,
)
from jaxmlp.notes.budget import NOTES_SETUP
from jaxmlp.pages.facts import flags

# The page's groups of settings, in the order shown.
GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("data", ("dataset", "train_subset", "data_seed", "input_scale")),
    ("network", ("hidden", "activation", "init", "init_scale", "dropout", "input_dropout")),
    ("loss", ("output", "error", "class_reduction", "example_reduction", "targets")),
    ("optimizer", ("optimizer", "learning_rate", "momentum", "weight_decay", "schedule",
                   "warmup_epochs")),
    ("run", ("batch_size", "epochs", "seed")),
)
OFFERED = frozenset(name for _, names in GROUPS for name in names)
PRESETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    # Each output over the total, MSE averaged over the classes, raw pixels (jaxmlp.notes').
    "notes": dict(NOTES_SETUP),
}
# What `config.json` records as a lab run's command: `python -m jaxmlp.train` with its flags.
TRAIN_PROGRAM = str(Path(jaxmlp.__file__).with_name("train.py"))
_FIELDS = {f.name: f for f in dataclasses.fields(Config)}
_HINTS = typing.get_type_hints(Config)


class SettingsError(ConfigError):
    """A request's settings cannot be used: the message is one line, naming the setting."""


def meaning(name: str) -> str:
    """A setting's one-line meaning: its `--help` up to the first full stop or semicolon (the
    page shows the rest when pointed at)."""
    text = _FIELDS[name].metadata.get("help", "")
    return re.split(r"\.\s+(?=[A-Z])|;\s", text, maxsplit=1)[0]


def form() -> dict[str, Any]:
    """What the page builds its form from: every offered setting with its flag, kind, choices,
    default and meaning; the data sets' own defaults; the presets."""
    groups = []
    for title, names in GROUPS:
        fields = []
        for name in names:
            f = _FIELDS[name]
            kind = cli._base_type(_HINTS[name]).__name__
            fields.append({"name": name, "flag": flag_name(name), "kind": kind,
                           "choices": list(f.metadata.get("choices") or []),
                           "default": text_of(f.default), "meaning": meaning(name),
                           "help": f.metadata.get("help", "")})
        groups.append({"title": title, "fields": fields})
    return {"groups": groups,
            "dataset_defaults": {k: {n: text_of(v) for n, v in d.items()}
                                 for k, d in DATASET_DEFAULTS.items()},
            "presets": {k: {n: text_of(v) for n, v in p.items()} for k, p in PRESETS.items()}}


def text_of(value: Any) -> str:
    """A setting's value as the page shows it: `512 512`, `0.001`, "" for unset."""
    if value is None:
        return ""
    if isinstance(value, (tuple, list)):
        return " ".join(map(str, value))
    return str(value)


def _value(name: str, text: Any) -> Any:
    """The value of one setting from the page's text, converted as its flag converts it."""
    if isinstance(text, bool) or not isinstance(text, (str, int, float)):
        raise SettingsError(f"{flag_name(name)}: send its value as text, got {text!r}")
    text = str(text).strip()
    kind = cli._base_type(_HINTS[name])
    if kind is tuple:
        return tuple(cli.number_or_text(int)(t) for t in re.split(r"[\s,]+", text) if t)
    if text == "" and _FIELDS[name].default is None:
        return None
    if kind in (int, float):
        return cli.number_or_text(kind)(text)
    return text


def parse(settings: Any) -> tuple[Config, dict[str, Any]]:
    """(the configuration asked for, the settings given) from the page's `{name: text}`;
    refused, with the command line's message, as `python -m jaxmlp.train` refuses them."""
    if not isinstance(settings, Mapping):
        raise SettingsError("settings must be an object of setting names and their values")
    unknown = sorted(set(settings) - OFFERED)
    if unknown:
        name = unknown[0]
        why = ("the server's own flags choose it" if name in _FIELDS
               else "there is no such setting")
        raise SettingsError(f"{name!r} is not a setting the lab takes ({why}); the settings "
                            f"are {', '.join(sorted(OFFERED))}")
    given = {name: _value(name, text) for name, text in settings.items()}
    config = Config(**given)
    check(config, set(given))
    return config, given


def check(config: Config, given: set[str]) -> Config:
    """`config` with its data set's own defaults, validated as a run validates it, and checked
    against the data set's size (known before it is read)."""
    used, _ = dataset_defaults(config, given)
    validate(used)
    check_against_data(used, data.expected_shape(used.dataset or "mnist").num_train)
    return used


def command(given: Mapping[str, Any], out: Path, data_dir: str | None = None) -> list[str]:
    """The command a run with these settings is (as `sys.argv`, which config.json records):
    `python -m jaxmlp.train` with the given flags (and the server's `--data-dir`), its folder,
    and what the lab writes."""
    where = {"data_dir": data_dir} if data_dir is not None else {}
    return [TRAIN_PROGRAM, *flags({**given, **where}), "--out", str(out), "--diagnose",
            "--plots"]
