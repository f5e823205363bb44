"""`python -m jaxmlp.plots RUN_DIR` (see `jaxmlp.plots.cli`)."""

import sys

from jaxmlp.plots.cli import main

sys.exit(main())
