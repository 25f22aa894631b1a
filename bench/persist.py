"""Same as `mantra bench persist --json [--messages N] [--rate R]`: prints one JSON object."""

import sys

from mantra.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "persist", "--json", *sys.argv[1:]]))
