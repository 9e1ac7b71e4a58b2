"""``python -m medseg`` runs the CLI."""

import sys

from medseg.cli import main

if __name__ == "__main__":
    sys.exit(main())
