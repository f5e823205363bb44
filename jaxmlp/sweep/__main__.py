"""`python -m jaxmlp.sweep`: runs `jaxmlp.sweep.cli.main` and exits with its code."""

import sys

from jaxmlp import stopping
from jaxmlp.sweep.cli import main

stopping.handle_signals()  # SIGTERM and SIGHUP stop a sweep as Ctrl-C does
sys.exit(main())
