"""Same as `mantra bench feeds --json [--captures DIR] [--seconds S]`: prints one JSON object."""

import sys

from mantra.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "feeds", "--json", *sys.argv[1:]]))
