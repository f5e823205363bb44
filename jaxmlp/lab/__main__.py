import sys

from jaxmlp import stopping
from jaxmlp.lab.cli import main

if __name__ == "__main__":
    stopping.handle_signals()  # SIGTERM and SIGHUP stop the lab as Ctrl-C does
    sys.exit(main())
