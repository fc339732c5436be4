"""`python -m assetsync` is the `assetsync` command."""

from assetsync.cli import run

run()
