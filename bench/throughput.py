"""Same as `mantra bench throughput --json [--seconds S] [--messages N]`: prints one JSON object."""

import sys

from mantra.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "throughput", "--json", *sys.argv[1:]]))
