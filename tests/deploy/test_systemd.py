"""deploy/systemd: the units parse (`systemd-analyze verify` when present) and run the right commands."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.deploy.manifests import DEPLOY, SERVICES

UNITS = DEPLOY / "systemd"
PLACEHOLDER_DIR = "/path/to/feishu-asset-sync"


KNOWN_SECTIONS = {"Unit", "Service", "Install"}


def parse(path: Path) -> dict[str, dict[str, list[str]]]:
    """A unit file as section -> key -> values (keys may repeat); fails on anything not unit syntax."""
    units: dict[str, dict[str, list[str]]] = {}
    section = ""
    for n, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            assert section in KNOWN_SECTIONS, f"{path.name}:{n}: unknown section [{section}]"
            units.setdefault(section, {})
            continue
        key, sep, value = line.partition("=")
        assert section and sep and key.strip().isidentifier(), f"{path.name}:{n}: not Key=value: {raw!r}"
        units[section].setdefault(key.strip(), []).append(value.strip())
    return units


def one(unit: dict[str, dict[str, list[str]]], section: str, key: str) -> str:
    (value,) = unit[section][key]
    return value


def test_the_original_single_unit_runs_everything_in_one_process() -> None:
    unit = parse(UNITS / "feishu-asset-sync.service")
    assert one(unit, "Service", "User") == "your_username"
    assert one(unit, "Service", "WorkingDirectory") == PLACEHOLDER_DIR
    assert one(unit, "Service", "ExecStart") == f"{PLACEHOLDER_DIR}/.venv/bin/assetsync up"
    assert one(unit, "Service", "Restart") == "on-failure"
    # The embedded nats-server is stopped by assetsync itself, after the consumers drained.
    assert one(unit, "Service", "KillMode") == "mixed"
    # `systemctl reload` is SIGHUP: assetsync re-reads its config without a restart.
    assert one(unit, "Service", "ExecReload") == "/bin/kill -HUP $MAINPID"
    assert one(unit, "Install", "WantedBy") == "multi-user.target"


def test_the_template_runs_one_service_per_unit_with_its_own_metrics_port() -> None:
    unit = parse(UNITS / "assetsync@.service")
    assert one(unit, "Service", "ExecStart").startswith(f"{PLACEHOLDER_DIR}/.venv/bin/assetsync service %i")
    assert "/etc/assetsync/%i.env" in unit["Service"]["EnvironmentFile"]
    ports = set()
    for name in SERVICES:
        env = (UNITS / "instances" / f"{name}.env").read_text(encoding="utf-8")
        port = next(
            line.split("=", 1)[1] for line in env.splitlines() if line.startswith("ASSETSYNC_METRICS__PORT=")
        )
        ports.add(port)
    assert len(ports) == len(SERVICES), "two instances on one host would share a metrics port"
    target = parse(UNITS / "assetsync.target")
    wants = " ".join(target["Unit"]["Wants"]).split()
    for name in SERVICES:
        assert f"assetsync@{name}.service" in wants


def verify(unit_dir: Path, names: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *names],
        cwd=unit_dir,
        capture_output=True,
        text=True,
        timeout=60,
    )


def localized(tmp_path: Path) -> Path:
    """The units with the placeholders pointed at this checkout (so ExecStart exists) and this user."""
    out = tmp_path / "units"
    out.mkdir()
    root = Path(sys.prefix).parent  # <checkout>/.venv -> <checkout>, as the units expect
    assert (root / ".venv" / "bin" / "assetsync").exists(), f"run the tests from {root}/.venv"
    for f in UNITS.iterdir():
        if f.suffix in (".service", ".target"):
            text = (
                f.read_text(encoding="utf-8")
                .replace(PLACEHOLDER_DIR, str(root))
                .replace("your_username", "root")
            )
            text = text.replace("/etc/assetsync/%i.env", str(UNITS / "instances" / "%i.env"))
            (out / f.name).write_text(text)
    return out


def test_every_unit_parses_and_systemd_analyze_verifies_it(tmp_path: Path) -> None:
    for f in UNITS.iterdir():
        if f.suffix in (".service", ".target"):
            unit = parse(f)
            assert "Description" in unit["Unit"] and "WantedBy" in unit["Install"], f.name
    if shutil.which("systemd-analyze") is None:
        return  # Debian package `systemd` adds the full check below; the parse above still ran
    d = localized(tmp_path)
    names = ["feishu-asset-sync.service", "assetsync-nats.service", "assetsync.target"]
    names += [f"assetsync@{n}.service" for n in SERVICES]
    done = verify(d, [f"./{n}" for n in names])
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr
    # And the check has teeth: a unit whose command does not exist is refused.
    bad = d / "feishu-asset-sync.service"
    bad.write_text(bad.read_text().replace("/.venv/bin/assetsync up", "/.venv/bin/no-such-command up"))
    done = verify(d, ["./feishu-asset-sync.service"])
    assert done.returncode != 0 and "no-such-command" in done.stderr
