"""`python -m jaxmlp.sweep`: runs `jaxmlp.sweep.cli.main` and exits with its code."""

import sys

from jaxmlp.sweep.cli import main

sys.exit(main())
