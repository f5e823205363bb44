"""`python -m jaxmlp.data fetch NAME`: find or download a data set now and say where it is.

For getting MNIST before going offline, and for the test suite's full-data tests.
"""

from __future__ import annotations

from collections.abc import Sequence

from jaxmlp import cli
from jaxmlp.config import DATASETS, SOURCES
from jaxmlp.data.errors import DataError
from jaxmlp.data.lookup import load_dataset
from jaxmlp.data.specs import _SPECS


def main(argv: Sequence[str] | None = None) -> int:
    parser = cli.ArgumentParser(prog="python -m jaxmlp.data",
                                     description="Find or download a data set and say where.")
    # One command for now, as a plain positional: the flags stay the top parser's own, so a
    # mistyped one gets the same did-you-mean as every other jaxmlp command.
    parser.add_argument("command", choices=["fetch"],
                        help="fetch: find the data set, downloading it if need be")
    parser.add_argument("name", choices=[d for d in DATASETS if d in _SPECS])  # IDX data sets
    parser.add_argument("--data-dir", default=None,
                        help="a folder that holds it (then only there)")
    parser.add_argument("--source", choices=SOURCES, default="auto")
    args = parser.parse_args(argv)
    try:
        dataset = load_dataset(args.name, data_dir=args.data_dir, source=args.source)
    except DataError as e:
        cli.fail(str(e))
    print(f"{dataset.name}: {len(dataset.y_train)} train and {len(dataset.y_test)} test "
          f"images, from {dataset.source}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
