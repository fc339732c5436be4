"""`./run bench NAME [ARGS]`: run one benchmark module's `main(argv)`."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def names() -> list[str]:
    return sorted(
        m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)]) if not m.name.startswith("_")
    )


def run(argv: list[str]) -> int:
    if not argv or argv[0] not in names():
        print(f"usage: ./run bench NAME [ARGS]   (NAME: {', '.join(names())})", file=sys.stderr)
        return 2
    mod = importlib.import_module(f"tests.bench.{argv[0]}")
    code: int = mod.main(argv[1:])
    return code


if __name__ == "__main__":
    raise SystemExit(run(sys.argv[1:]))
