"""Same as `mantra bench order-entry --json [--messages N]`: prints one JSON object."""

import sys

from mantra.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "order-entry", "--json", *sys.argv[1:]]))
