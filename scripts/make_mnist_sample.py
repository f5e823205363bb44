"""Write tests/data/mnist-sample: the first 1,000 training and first 500 test images of MNIST.

The test suite's small real data set, for tests that need some real handwritten digits but not
all 70,000 (they then run on a machine with no MNIST at all). The IDX headers are rewritten for
the new counts; gzip's timestamp is fixed so the files come out byte for byte the same.

    python scripts/make_mnist_sample.py DIR    # DIR: a folder with MNIST's four IDX .gz files
"""

from __future__ import annotations

import gzip
import hashlib
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "mnist-sample"
COUNTS = {"train": 1000, "t10k": 500}
STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def first_items(raw: bytes, count: int) -> bytes:
    """The IDX file `raw` cut to its first `count` items, with the header saying so."""
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * d: 8 + 4 * d], "big") for d in range(ndim)]
    item_size = 1
    for d in dims[1:]:
        item_size *= d  # MNIST's files hold unsigned bytes
    header = raw[:4] + count.to_bytes(4, "big") + raw[8: 4 + 4 * ndim]
    body_start = 4 + 4 * ndim
    return header + raw[body_start: body_start + count * item_size]


def main(source: Path) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    sums = []
    for stem in STEMS:
        content = first_items(gzip.decompress((source / f"{stem}.gz").read_bytes()),
                              COUNTS[stem.split("-")[0]])
        (OUT / f"{stem}.gz").write_bytes(gzip.compress(content, compresslevel=9, mtime=0))
        sums.append(f"{hashlib.sha256(content).hexdigest()}  {stem}")
    (OUT / "SHA256SUMS").write_text("\n".join(sums) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
