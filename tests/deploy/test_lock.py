"""The lock installs where the product runs: every pin admits the image's Python (Debian bookworm 3.11.2)."""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet

REQUIREMENTS = Path(__file__).resolve().parents[2] / "requirements"
IMAGE_PYTHON = "3.11.2"  # python3 of Debian bookworm, the base `./run deploy-test` builds
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==(\S+) \\$", re.M)


@pytest.mark.parametrize("lock", ["runtime.txt", "build.txt"])
def test_every_pin_installs_on_the_images_python(lock: str) -> None:
    pins = PIN.findall((REQUIREMENTS / lock).read_text())
    assert pins, f"no pins found in {lock}"
    refused = []
    for name, version in pins:
        try:
            meta = importlib.metadata.metadata(name)
        except importlib.metadata.PackageNotFoundError:
            continue  # not in this venv (e.g. only a build dependency of another platform)
        assert meta["Version"] == version, f"{name}: .venv has {meta['Version']}, the lock pins {version}"
        needs = (meta.get_all("Requires-Python") or [""])[0]
        if needs and IMAGE_PYTHON not in SpecifierSet(needs):
            refused.append(f"{name}=={version} (Requires-Python {needs})")
    assert not refused, (
        f"pins the image's Python {IMAGE_PYTHON} cannot install: {refused} — "
        "bound them in requirements/constraints.txt and run ./run lock"
    )
