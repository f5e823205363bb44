"""Rerun every command example in README.md and the guide (docs/*.md) and rewrite its output.

    JAXMLP_DATA_DIR=../shared/data python scripts/readme_examples.py          # rewrite them
    JAXMLP_DATA_DIR=../shared/data python scripts/readme_examples.py --check  # only compare

An example is a line `$ COMMAND` in a fenced block, followed by its output and a line
`[exit status N]`; what lies between is replaced with what the command prints now, less the
lines that change from run to run (`seconds:`, `start-up:`, and a train example's `outputs in`
and `reached 98% ... after`; a sweep's wall time is written `wall ...`, `--overfit`'s seconds
`(timings left out)`). An output that starts with `...` keeps only as many
of its last lines as it showed.

`python -m jaxmlp.train` examples run each in a folder of their own, written as `runs/...`; an
example shown in several places runs once. Every other command runs through the shell, in one
fresh working folder per document, in the document's order, so a document can write a case,
run a learner's script on it and check the result: a ```python block whose paragraph says
"saved as `NAME.py`" is written there as NAME.py before the commands below it run, and
`python` is this interpreter. The sentence that introduces a page's examples names the machine
they were last run on (CPU model and vector extensions), since some outcomes depend on it.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from jaxmlp import compilation

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
COMMAND = re.compile(r"^\$ (.+)$")
TRAIN = re.compile(r"^python -m jaxmlp\.train(\s|$)")
VARYING = re.compile(r"^(seconds:|outputs in|start-up:|reached \d+% test accuracy after)")
OVERFIT_TIMES = re.compile(r"\(\d[\d.]* s(; compile \d[\d.]* s)?\)")  # --overfit's own line
TIMING = re.compile(r"^(seconds:|start-up:)")  # a shell example's folder names stay
WALL = re.compile(r"\bwall [\d.]+ s\b.*$")  # a sweep's timings, on the line that counts its runs
PROGRESS = re.compile(r"^[^|]*\d+%\|")  # a progress bar's redraw (the bars ignore TQDM_DISABLE)
SAVED = re.compile(r"saved as `([\w.-]+\.py)`")
ELIDED = "..."
MACHINE = re.compile(r"(Every command below was run as shown, on MNIST \(found through\s+"
                     r"`JAXMLP_DATA_DIR`, see \[How data\s+is found\]\([^)]*\)\), on )([^;]*)(;)")


def documents() -> list[Path]:
    """The files whose examples this script keeps true: README.md and every guide page."""
    return [README, *sorted((REPO / "docs").glob("*.md"))]


def machine() -> str:
    """'a 2-core Intel(R) Xeon(R) Processor (AVX-512)': what the outcomes may depend on."""
    return f"a {compilation.describe_cpu()}"


def run(command: str, out: Path) -> list[str]:
    args = command.split()[3:]  # after "python -m jaxmlp.train"
    proc = subprocess.run([sys.executable, "-m", "jaxmlp.train", "--no-progress", "--out",
                           str(out), *args], capture_output=True, text=True, timeout=600)
    lines = (proc.stdout + proc.stderr).splitlines()
    lines = [OVERFIT_TIMES.sub("(timings left out)", line.replace(str(out), "runs/..."))
             for line in lines if not VARYING.match(line)]
    return [*lines, f"[exit status {proc.returncode}]"]


def run_in(command: str, cwd: Path) -> list[str]:
    """A shell command run in `cwd`, `python` being this interpreter, no progress bars."""
    bin_dir = cwd / ".bin"
    bin_dir.mkdir(exist_ok=True)
    if not (bin_dir / "python").exists():
        (bin_dir / "python").symlink_to(sys.executable)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
           "TQDM_DISABLE": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(["bash", "-c", command], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=600)
    lines = [WALL.sub("wall ...", line.replace(f"{cwd}/", "").replace(str(cwd), "."))
             for line in proc.stdout.splitlines() + without_bars(proc.stderr)
             if not TIMING.match(line)]
    return [*lines, f"[exit status {proc.returncode}]"]


def without_bars(stderr: str) -> list[str]:
    """stderr's lines without progress bars: each redraw starts with a carriage return, so
    the blank pieces between redraws go with them."""
    pieces = re.split(r"\r\n|\r|\n", stderr)
    bar = [bool(PROGRESS.match(p)) for p in pieces]
    near = [bar[i] or (not p and (bar[i - 1:i] == [True] or bar[i + 1:i + 2] == [True]))
            for i, p in enumerate(pieces)]
    kept = [p for p, drop in zip(pieces, near, strict=True) if not drop]
    return kept[:-1] if kept and not kept[-1] else kept  # the final newline's empty piece


def saved_files(lines: list[str]) -> dict[int, tuple[str, str]]:
    """{line of its opening fence: (name, text)} of every python block saved as a file."""
    found = {}
    for i, line in enumerate(lines):
        if line.strip() == "```python":
            before = "\n".join(lines[max(0, i - 4):i])
            if m := SAVED.search(before):
                end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
                found[i] = (m.group(1), "\n".join(lines[i + 1:end]) + "\n")
    return found


def is_example(lines: list[str], start: int) -> bool:
    """Whether the `$` line at `start` has an exit status below it before the next command or
    the end of its block (a command shown without its output is no example)."""
    for line in lines[start + 1:]:
        if line.startswith("[exit status"):
            return True
        if line.startswith("$ ") or line.strip().startswith("```"):
            return False
    return False


def shown(lines: list[str], start: int) -> list[str]:
    """The output an example shows now: the lines after its command, to its exit status."""
    end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("[exit status"))
    return lines[start + 1:end + 1]


def elide(new: list[str], old: list[str]) -> list[str]:
    """`new`, cut to its last lines where the page shows only the end of the output."""
    if old and old[0] == ELIDED:
        return [ELIDED, *new[-(len(old) - 1):]]
    return new


def rewrite(text: str, outputs: dict[int, list[str]]) -> str:
    lines = text.split("\n")
    for start in sorted(outputs, reverse=True):
        end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("[exit status"))
        lines[start + 1:end + 1] = outputs[start]
    return "\n".join(lines)


def document_outputs(text: str, ran: dict[str, list[str]], tmp: Path) -> dict[int, list[str]]:
    """The new output of every example of one document (train examples from `ran`, filled as
    they first run)."""
    lines = text.split("\n")
    files = saved_files(lines)
    session = Path(tempfile.mkdtemp(dir=tmp))
    outputs = {}
    for i, line in enumerate(lines):
        if not ((m := COMMAND.match(line)) and is_example(lines, i)):
            continue
        command = m.group(1)
        if TRAIN.match(command):
            if command not in ran:
                ran[command] = run(command, tmp / f"example-{len(ran)}")
                print(f"{command}: {ran[command][-1]}", flush=True)
            new = ran[command]
        else:
            for at in [at for at in files if at < i]:
                name, body = files.pop(at)
                (session / name).write_text(body)
            new = run_in(command, session)
            print(f"{command[:100]}: {new[-1]}", flush=True)
        outputs[i] = elide(new, shown(lines, i))
    return outputs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="do not write; exit 1 if an example's output has changed")
    args = parser.parse_args(argv)
    texts = {path: path.read_text() for path in documents()}
    ran: dict[str, list[str]] = {}  # a train example shown in two places runs once
    changed = []
    with tempfile.TemporaryDirectory() as tmp:
        for path, text in texts.items():
            outputs = document_outputs(text, ran, Path(tmp))
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
