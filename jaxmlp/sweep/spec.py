"""What a sweep trains: variants of a base configuration times seeds (`SweepSpec`), built from
a grid, explicit variants or a TOML/JSON spec file, and validated before any work starts."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from jaxmlp.config import Config, ConfigError, positive_int, validate

try:  # Python 3.11 and later; on 3.10 only JSON spec files can be read
    import tomllib
except ModuleNotFoundError:  # pragma: no cover
    tomllib = None


class SpecError(ValueError):
    """A sweep specification that cannot be run; the message says what and how to fix it."""


@dataclasses.dataclass(frozen=True)
class Variant:
    """One point of the grid: a name and the settings it changes from the base configuration."""

    name: str
    overrides: tuple[tuple[str, Any], ...]


@dataclasses.dataclass(frozen=True)
class SweepSpec:
    """What to train: every variant with every seed. Frozen, so it can be hashed and recorded.

    `test_subset` evaluates on the first N test examples only (cheaper per epoch); `probes`
    measures dead units and all-zero outputs at initialisation and at the end of each run.
    """

    base: Config
    variants: tuple[Variant, ...]
    seeds: tuple[int, ...]
    name: str = "sweep"
    target_accuracy: float = 0.9
    test_subset: int | None = None
    probes: bool = False
    note: str = ""

    def config(self, variant: int, seed: int | None = None) -> Config:
        c = dataclasses.replace(self.base, **dict(self.variants[variant].overrides))
        return c if seed is None else dataclasses.replace(c, seed=seed)

    def varied_fields(self) -> list[str]:
        """The fields that differ between variants, in the order the variants name them."""
        configs = [self.config(i) for i in range(len(self.variants))]
        names: list[str] = []
        for v in self.variants:
            for k, _ in v.overrides:
                if k not in names and len({getattr(c, k) for c in configs}) > 1:
                    names.append(k)
        return names

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "note": self.note,
            "base": self.base.to_dict(),
            "variants": [{"name": v.name, **dict(v.overrides)} for v in self.variants],
            "seeds": list(self.seeds),
            "target_accuracy": self.target_accuracy,
            "test_subset": self.test_subset,
            "probes": self.probes,
        }

    def fingerprint(self) -> str:
        """A hash of everything that decides what is trained (not the name, note or target):
        a sweep resumed in the same folder must train exactly the same runs."""
        trained = {
            "configs": [self.config(i).to_dict() for i in range(len(self.variants))],
            "names": [v.name for v in self.variants],
            "seeds": list(self.seeds),
            "test_subset": self.test_subset,
            "probes": self.probes,
        }
        text = json.dumps(trained, sort_keys=True, default=list)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def format_value(value: Any) -> str:
    """A setting as it appears in names and CSV cells: hidden (64, 32) -> 64x32, 0.1 -> 0.1."""
    if isinstance(value, tuple):
        return "x".join(str(v) for v in value) if value else "none"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _label(overrides: Sequence[tuple[str, Any]]) -> str:
    return ", ".join(f"{k}={format_value(v)}" for k, v in overrides) or "base"


_CONFIG_FIELDS = {f.name: f for f in dataclasses.fields(Config)}
# A flag's other spellings (`--lr`), as grid axis names: `--grid lr=0.01,0.1`.
_ALIASES = {alias.lstrip("-").replace("-", "_"): f.name for f in _CONFIG_FIELDS.values()
            for alias in f.metadata.get("aliases", ())}


def field_name(name: str) -> str:
    """The `Config` field a command line names: `learning-rate`, `learning_rate` or `lr`."""
    name = name.strip().replace("-", "_")
    return _ALIASES.get(name, name)


def check_field(name: str, where: str) -> None:
    """A setting a variant or grid axis may change: a `Config` field other than the seed."""
    if name == "seed":
        raise SpecError(f"{where}: 'seed' is not a setting of a variant; list the seeds with "
                        "'seeds' (a count, or a list of integers)")
    if name not in _CONFIG_FIELDS:
        known = ", ".join(sorted(n for n in _CONFIG_FIELDS if n != "seed"))
        raise SpecError(f"{where}: unknown setting {name!r}; known settings: {known}")


def normalise(name: str, value: Any) -> Any:
    """JSON/TOML gives lists where Config wants tuples (hidden)."""
    if name == "hidden" and isinstance(value, list):
        return tuple(value)
    return value


def make_spec(
    base: Config,
    grid: Mapping[str, Sequence[Any]] | None = None,
    seeds: int | Sequence[int] = 5,
    variants: Sequence[Mapping[str, Any]] | None = None,
    **options: Any,
) -> SweepSpec:
    """The spec for every combination of `variants` (explicit lists of settings, each with an
    optional "name") and the `grid` axes (field -> values), each trained with every seed.

        make_spec(base, {"optimizer": ["sgd", "adam"], "learning_rate": [0.01, 0.1]}, seeds=5)

    `options` are SweepSpec's other fields (name, target_accuracy, test_subset, probes, note).
    Every configuration is validated here, so a bad grid fails before any work starts.
    """
    if not isinstance(base, Config):
        raise SpecError("base must be a jaxmlp Config")
    grid = dict(grid or {})
    for name, values in grid.items():
        check_field(name, "grid")
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
            raise SpecError(f"grid: {name} must be a non-empty list of values, got {values!r}")
    explicit = list(variants) if variants is not None else [{}]
    if not explicit:
        raise SpecError("variants: the list is empty; give at least one variant or leave it out")

    axes = [[(k, normalise(k, v)) for v in vals] for k, vals in grid.items()]
    built: list[Variant] = []
    for i, entry in enumerate(explicit):
        if not isinstance(entry, Mapping):
            raise SpecError(f"variants[{i}] must be a table of settings, got {entry!r}")
        entry = dict(entry)
        given_name = entry.pop("name", None)
        for k in entry:
            check_field(k, f"variants[{i}]")
            if k in grid:
                raise SpecError(f"variants[{i}] sets {k}, which is also a grid axis; set it in "
                                "one place")
        fixed = [(k, normalise(k, v)) for k, v in entry.items()]
        for combo in itertools.product(*axes):
            overrides = tuple(fixed) + tuple(combo)
            if given_name is not None:
                name = str(given_name) + (f" | {_label(combo)}" if combo else "")
            else:
                name = _label(overrides)
            built.append(Variant(name, overrides))

    seeds_t = _parse_seeds(seeds)
    try:
        spec = SweepSpec(base=base, variants=tuple(built), seeds=seeds_t, **options)
    except TypeError as e:
        raise SpecError(f"unknown sweep option: {e}") from None
    check_options(spec)
    validate_spec(spec)
    return spec


def _parse_seeds(seeds: Any) -> tuple[int, ...]:
    if isinstance(seeds, bool):
        raise SpecError(f"seeds must be a count or a list of integers, got {seeds!r}")
    if isinstance(seeds, int):
        if seeds <= 0:
            raise SpecError(f"seeds must be a positive count, got {seeds}")
        return tuple(range(seeds))
    if isinstance(seeds, Sequence) and not isinstance(seeds, (str, bytes)) and seeds:
        out = []
        for s in seeds:
            if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s < 2**32:
                raise SpecError(f"seeds: {s!r} is not an integer in 0..2**32-1")
            out.append(s)
        if len(set(out)) != len(out):
            raise SpecError(f"seeds: {out} repeats a seed; each seed would train the same run")
        return tuple(out)
    raise SpecError(f"seeds must be a positive count or a non-empty list of integers, got "
                    f"{seeds!r}")


def check_options(spec: SweepSpec) -> None:
    """The spec's own options (target_accuracy, test_subset, probes) have usable values."""
    t = spec.target_accuracy
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0.0 < t <= 1.0:
        raise SpecError(f"target_accuracy must be a fraction in (0, 1], e.g. 0.9; got {t!r}")
    if spec.test_subset is not None:
        positive_int(spec.test_subset, "test_subset", SpecError)
    if not isinstance(spec.probes, bool):
        raise SpecError(f"probes must be true or false, got {spec.probes!r}")


def validate_spec(spec: SweepSpec) -> list[Config]:
    """Every variant's configuration, validated; names and configurations must be unique."""
    configs = []
    seen: dict[Config, str] = {}
    names: set[str] = set()
    for i, v in enumerate(spec.variants):
        try:
            config = validate(spec.config(i))
        except (ConfigError, TypeError) as e:
            raise SpecError(f"variant {v.name!r}: {e}") from None
        if v.name in names:
            raise SpecError(f"two variants are named {v.name!r}; names must be unique")
        names.add(v.name)
        if config in seen:
            raise SpecError(f"variants {seen[config]!r} and {v.name!r} are the same "
                            "configuration; drop one")
        seen[config] = v.name
        configs.append(config)
    return configs


_SPEC_KEYS = ("name", "note", "base", "grid", "variants", "seeds", "target_accuracy",
              "test_subset", "probes", "max_parallel")


def spec_from_dict(d: Mapping[str, Any], where: str = "spec") -> tuple[SweepSpec, dict[str, Any]]:
    """A spec from a parsed TOML/JSON document; returns (spec, run options such as
    max_parallel). Every problem is a SpecError naming the key."""
    if not isinstance(d, Mapping):
        raise SpecError(f"{where}: the top level must be a table/object")
    unknown = sorted(set(d) - set(_SPEC_KEYS))
    if unknown:
        raise SpecError(f"{where}: unknown keys {', '.join(unknown)}; known keys: "
                        f"{', '.join(_SPEC_KEYS)}")
    base_d = d.get("base", {})
    if not isinstance(base_d, Mapping):
        raise SpecError(f"{where}: base must be a table of settings")
    for k in base_d:
        check_field(k, f"{where}: base")
    try:
        base = Config.from_dict({k: normalise(k, v) for k, v in base_d.items()})
    except (ConfigError, TypeError) as e:
        raise SpecError(f"{where}: base: {e}") from None
    grid = d.get("grid", {})
    if not isinstance(grid, Mapping):
        raise SpecError(f"{where}: grid must be a table of setting = [values]")
    options = {k: d[k] for k in ("name", "note", "target_accuracy", "test_subset", "probes")
               if k in d}
    for k in ("name", "note"):
        if k in options and not isinstance(options[k], str):
            raise SpecError(f"{where}: {k} must be a string")
    spec = make_spec(base, grid, d.get("seeds", 5), d.get("variants"), **options)
    run_options = {}
    if "max_parallel" in d:
        run_options["max_parallel"] = check_max_parallel(d["max_parallel"])
    return spec, run_options


def read_spec_file(path: str | os.PathLike) -> dict[str, Any]:
    """The parsed document of a TOML (.toml) or JSON (.json) spec file."""
    path = Path(path)
    if path.suffix.lower() not in (".toml", ".json"):
        raise SpecError(f"spec {path}: use a .toml or .json file")
    toml = path.suffix.lower() == ".toml"
    if toml and tomllib is None:
        raise SpecError(f"spec {path}: reading TOML needs Python 3.11 or later; use a .json "
                        "spec")
    try:
        text = path.read_text()
    except OSError as e:
        raise SpecError(f"cannot read the spec {path}: {e.strerror or e}") from None
    errors = (json.JSONDecodeError, *((tomllib.TOMLDecodeError,) if tomllib else ()))
    try:
        doc = tomllib.loads(text) if toml else json.loads(text)
    except errors as e:
        raise SpecError(f"spec {path} is not valid {'TOML' if toml else 'JSON'}: {e}") from None
    if not isinstance(doc, dict):
        raise SpecError(f"spec {path}: the top level must be an object")
    return doc


def check_max_parallel(k: Any) -> int | None:
    """`max_parallel` as given (None: no limit), if it is a positive whole number."""
    if k is not None:
        positive_int(k, "max_parallel", SpecError)
    return k
