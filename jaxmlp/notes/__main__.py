"""`python -m jaxmlp.notes`: see `jaxmlp.notes.cli`."""

import sys

from jaxmlp.notes.cli import main

if __name__ == "__main__":
    sys.exit(main())
