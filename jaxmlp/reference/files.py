"""The case's files, as bytes and text: `case.json` (one flat object, nested lists), `case.npz`
(the same arrays), `settings.json` (the `CaseSpec`, one flat object), and the parsing of a
learner's file.

Pure conversions only; `cli.py` reads and writes the files.
"""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

import numpy as np

from jaxmlp.config import ConfigError
from jaxmlp.reference.case import Case, CaseSpec, validate_spec
from jaxmlp.reference.compare import CaseFileError

CASE_JSON = "case.json"
CASE_NPZ = "case.npz"
SETTINGS = "settings.json"
README = "README.md"
SUFFIXES = (".json", ".npz")
# A case's files. settings.json is moved in last, so a folder holds a whole case exactly when
# it holds settings.json.
CASE_FILES = (CASE_NPZ, CASE_JSON, README, SETTINGS)


def is_case_file(name: str) -> bool:
    """One of a case's files, or what an interrupted atomic write of one leaves
    (`.case.npz.<random>.tmp`)."""
    return name in CASE_FILES or any(name.startswith(f".{own}.") and name.endswith(".tmp")
                                     for own in CASE_FILES)


def _plain(value: np.ndarray) -> Any:
    """Nested lists of Python numbers (ints for labels); repr keeps every float64 digit."""
    return value.tolist()


def case_json(case: Case) -> str:
    """One key per line, so the file reads top to bottom in the order of the computation."""
    lines = [f"  {json.dumps(key)}: {json.dumps(_plain(value))}" for key, value in case.items()]
    return "{\n" + ",\n".join(lines) + "\n}\n"


def case_npz(case: Case) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **case)
    return buffer.getvalue()


def settings_json(spec: CaseSpec, data: str) -> str:
    return json.dumps({**spec.settings(), "data": data}, indent=2) + "\n"


def parse_settings(text: str, where: str) -> tuple[CaseSpec, str]:
    """The case's settings and its inputs in words; a CaseFileError naming what is wrong
    (older cases' files load: the keys are the same, less "classes")."""
    try:
        d = json.loads(text)
        if not isinstance(d, dict):
            raise TypeError(f"a JSON {type(d).__name__}, not an object")
        data = d.pop("data")
        spec = CaseSpec.from_settings(d)
    except KeyError as e:
        raise CaseFileError(f"{where} is damaged (no {e})") from None
    except (ValueError, TypeError, AttributeError) as e:
        raise CaseFileError(f"{where} is damaged ({e})") from None
    try:
        return validate_spec(spec), data
    except ConfigError as e:
        raise CaseFileError(f"{where} holds settings a case cannot have ({e})") from None


def parse_json(raw: bytes, where: str) -> dict[str, Any]:
    """A learner's JSON file: one object, quantity name -> number or nested lists."""
    try:
        value = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise CaseFileError(f"{where} is not a JSON text file (not UTF-8); save it with "
                            f"json.dump, or save arrays with np.savez as .npz") from None
    except json.JSONDecodeError as e:
        raise CaseFileError(f"{where} is not valid JSON: {e.msg} at line {e.lineno} column "
                            f"{e.colno}") from None
    if not isinstance(value, dict):
        raise CaseFileError(f"{where} holds a JSON {type(value).__name__}, not an object; save "
                            f"one object of name -> value, e.g. {{\"loss\": 0.7, \"grad.o\": "
                            f"[[...]]}}")
    return value


def parse_npz(raw: bytes, where: str) -> dict[str, np.ndarray]:
    """A learner's .npz file (np.savez(path, **{"grad.o": ...})); never unpickles anything."""
    try:
        loaded = np.load(io.BytesIO(raw), allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise CaseFileError(f"{where} holds one array, not named ones; save with "
                                f"np.savez(path, **{{'grad.o': grad_o, ...}})")
        with loaded:
            return {key: loaded[key] for key in loaded.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        if isinstance(e, CaseFileError):
            raise
        raise CaseFileError(f"{where} is not a readable .npz file (a zip of .npy arrays); "
                            f"save with np.savez(path, **{{'grad.o': grad_o, ...}})") from None


def parse_yours(raw: bytes, where: str) -> dict[str, Any]:
    if where.endswith(".npz"):
        return parse_npz(raw, where)
    return parse_json(raw, where)
