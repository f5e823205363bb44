"""Rerun every `$ python -m jaxmlp.train ...` example in README.md and the guide (docs/*.md) and
rewrite its output block.

    JAXMLP_DATA_DIR=../shared/data python scripts/readme_examples.py          # rewrite them
    JAXMLP_DATA_DIR=../shared/data python scripts/readme_examples.py --check  # only compare

An example is a fenced block whose first line is `$ python -m jaxmlp.train ARGS` and whose last
line is `[exit status N]`; what lies between is replaced with what the command prints now,
less the lines that change from run to run (`seconds:`, `outputs in`, `start-up:`), with the
run folder written as `runs/...`. The sentence that introduces the examples names the machine
they were last run on (CPU model and vector extensions), since some outcomes depend on it.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
COMMAND = re.compile(r"^\$ (python -m jaxmlp\.train.*)$")
VARYING = re.compile(r"^(seconds:|outputs in|start-up:)")
MACHINE = re.compile(r"(Every command below was run as shown, on MNIST \(found through\s+"
                     r"`JAXMLP_DATA_DIR`, see \[How data\s+is found\]\([^)]*\)\), on )([^;]*)(;)")


def documents() -> list[Path]:
    """The files whose examples this script keeps true: README.md and every guide page."""
    return [README, *sorted((REPO / "docs").glob("*.md"))]


def machine() -> str:
    """'a 2-core Intel(R) Xeon(R) Processor (AVX-512)': what the outcomes may depend on."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines()
                  if line.startswith("model name")), "unknown CPU")
    flags = set(next((line.split(":", 1)[1].split() for line in info.splitlines()
                      if line.startswith("flags")), []))
    vector = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    cores = sum(1 for line in info.splitlines() if line.startswith("processor"))
    return f"a {cores}-core {model} ({vector})"


def run(command: str, out: Path) -> list[str]:
    args = command.split()[3:]  # after "python -m jaxmlp.train"
    proc = subprocess.run([sys.executable, "-m", "jaxmlp.train", "--no-progress", "--out",
                           str(out), *args], capture_output=True, text=True, timeout=600)
    lines = (proc.stdout + proc.stderr).splitlines()
    lines = [line.replace(str(out), "runs/...") for line in lines if not VARYING.match(line)]
    return [*lines, f"[exit status {proc.returncode}]"]


def rewrite(text: str, outputs: dict[int, list[str]]) -> str:
    lines = text.split("\n")
    for start in sorted(outputs, reverse=True):
        end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("[exit status"))
        lines[start + 1:end + 1] = outputs[start]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="do not write; exit 1 if an example's output has changed")
    args = parser.parse_args(argv)
    texts = {path: path.read_text() for path in documents()}
    ran: dict[str, list[str]] = {}  # an example shown in two places runs once
    changed = []
    with tempfile.TemporaryDirectory() as tmp:
        for path, text in texts.items():
            outputs = {}
            for i, line in enumerate(text.split("\n")):
                if m := COMMAND.match(line):
                    if m.group(1) not in ran:
                        ran[m.group(1)] = run(m.group(1), Path(tmp) / f"example-{len(ran)}")
                        print(f"{m.group(1)}: {ran[m.group(1)][-1]}", flush=True)
                    outputs[i] = ran[m.group(1)]
            new = MACHINE.sub(lambda m: m.group(1) + machine() + m.group(3),
                              rewrite(text, outputs))
            if new != text:
                changed.append(path)
                if not args.check:
                    path.write_text(new)
    if args.check:
        print("examples " + (f"differ from this run in {', '.join(p.name for p in changed)}"
                             if changed else "are up to date"))
        return int(bool(changed))
    print(f"reran {len(ran)} examples; rewrote {len(changed)} of {len(texts)} files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
