"""Same as `mantra bench backtest --json [--dataset PATH]`: prints one JSON object."""

import sys

from mantra.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "backtest", "--json", *sys.argv[1:]]))
