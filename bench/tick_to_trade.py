"""Same as `mantra bench tick-to-trade --json [--seconds S] [--rate R]`: prints one JSON object."""

import sys

from mantra.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "tick-to-trade", "--json", *sys.argv[1:]]))
