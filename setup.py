"""Builds the C extensions: ``_spine`` (atomics, futexes, clock, the dispatcher and books) and
``_fixed`` (venue decimal text -> fixed-point ints), and puts the UI's chart library into the
package (a wheel carries it, so its users need no Node); everything else is in pyproject.toml."""

import shutil
import subprocess
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_py import build_py

UI = Path(__file__).parent / "src" / "mantra" / "ui"
ASSETS = ("uPlot.esm.js", "uPlot.min.css")


class BuildPy(build_py):
    """Copies uPlot from the npm registry (pinned by ui/package-lock.json) into ui/web/vendor."""

    def run(self):
        vendor = UI / "web" / "vendor"
        if not all((vendor / a).exists() for a in ASSETS):
            dist = UI / "node_modules" / "uplot" / "dist"
            if not dist.exists():
                subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--silent"], cwd=UI, check=True)
            vendor.mkdir(parents=True, exist_ok=True)
            for a in ASSETS:
                shutil.copy(dist / a, vendor / a)
        super().run()


FLAGS = ["-O2", "-std=gnu11", "-Wall", "-Wno-missing-field-initializers"]

setup(
    cmdclass={"build_py": BuildPy},
    ext_modules=[
        Extension(
            "mantra._spine",
            ["src/mantra/_spine.c"],
            depends=["src/mantra/_ports.c", "src/mantra/_feedbook.c", "src/mantra/_lane.c", "src/mantra/_decimal.h"],  # included by _spine.c
            extra_compile_args=FLAGS,
        ),
        Extension("mantra._fixed", ["src/mantra/_fixed.c"], depends=["src/mantra/_decimal.h"], extra_compile_args=FLAGS),
        Extension("mantra._risk", ["src/mantra/_risk.c"], extra_compile_args=FLAGS),
    ]
)
