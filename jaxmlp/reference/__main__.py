"""`python -m jaxmlp.reference`: runs `jaxmlp.reference.cli.main` and exits with its code."""

import sys

from jaxmlp.reference.cli import main

sys.exit(main())
