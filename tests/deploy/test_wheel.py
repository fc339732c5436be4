"""The assetsync wheel ships the product only: no emulator, no demo module, no demo credentials."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from assetsync_emulators import binance, feishu, okx

from tests.deploy.manifests import ROOT

# Strings only the emulators and the demo hold: a wheel containing any of them ships test fixtures.
DEMO_SECRETS = (
    binance.DEMO_API_KEY,
    binance.DEMO_API_SECRET,
    feishu.FeishuEmulator.app_id,
    feishu.FeishuEmulator.app_secret,
    feishu.FeishuEmulator.app_token,
    okx.DEMO_API_KEY,
    okx.DEMO_API_SECRET,
    okx.DEMO_PASSPHRASE,
)


def build_wheel(out: Path) -> Path:
    done = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (wheel,) = out.glob("assetsync-*.whl")
    return wheel


def test_the_wheel_has_every_service_and_no_emulator_or_demo_data(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        contents = {n: zf.read(n) for n in names}
    tops = {n.split("/", 1)[0] for n in names if "/" in n and ".dist-info/" not in n}
    assert tops == {
        "assetsync",
        "assetsync_alerter",
        "assetsync_collector_crypto",
        "assetsync_collector_fund",
        "assetsync_collector_okx",
        "assetsync_feishu_writer",
        "assetsync_market",
        "assetsync_store",
        "assetsync_sync_gateway",
    }, tops
    assert "assetsync_sync_gateway/manager.html" in names and "assetsync/cli.py" in names
    assert not [n for n in names if "emulator" in n.lower() or "demo" in n.rsplit("/", 1)[-1].lower()]
    for secret in DEMO_SECRETS:
        leaks = [n for n, data in contents.items() if secret.encode() in data]
        assert not leaks, f"{secret!r} is in {leaks}"


def test_up_demo_without_the_emulators_says_how_to_get_them(tmp_path: Path) -> None:
    # As if only the wheel were installed: the emulators' package cannot be imported.
    code = (
        "import sys; sys.modules['assetsync_emulators'] = None\n"
        "from assetsync.cli import main\n"
        "sys.exit(main(['up', '--demo', '--data-dir', sys.argv[1]]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "data")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "assetsync-emulators" in lines[0] and "services/emulators" in lines[0], lines
    assert not (tmp_path / "data").exists()
