"""Every `up` a lifecycle test starts is killed, with all it started, when the test ends."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.lifecycle.support import Up


@pytest.fixture
def make_up(tmp_path: Path) -> Iterator[Callable[..., Up]]:
    made: list[Up] = []

    def make(name: str = "site", **kw: Any) -> Up:
        up = Up(tmp_path, name, **kw)
        made.append(up)
        return up

    yield make
    for up in made:
        up.kill_all()
