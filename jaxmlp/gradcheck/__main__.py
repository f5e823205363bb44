"""`python -m jaxmlp.gradcheck`: runs `jaxmlp.gradcheck.cli.main` and exits with its code."""

import sys

from jaxmlp.gradcheck.cli import main

sys.exit(main())
