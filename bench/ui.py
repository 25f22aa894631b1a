"""Same as `mantra bench ui --json [--messages N] [--seconds S]`: prints one JSON object."""

import sys

from mantra.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "ui", "--json", *sys.argv[1:]]))
