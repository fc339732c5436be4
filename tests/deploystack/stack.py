"""The compose stack under test: deploy/docker-compose.yml + compose.test.yml, its config and secrets."""

from __future__ import annotations

import json
import re
import secrets
import socket
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from assetsync.service import SERVICE_MODULES
from assetsync_emulators.binance import DEMO_API_KEY, DEMO_API_SECRET
from assetsync_emulators.feishu import FeishuEmulator
from assetsync_emulators.feishu_bot import BotEmulator
from assetsync_emulators.okx import DEMO_API_KEY as OKX_API_KEY
from assetsync_emulators.okx import DEMO_API_SECRET as OKX_API_SECRET
from assetsync_emulators.okx import DEMO_PASSPHRASE as OKX_PASSPHRASE

from tests.deploystack.engine import DeployTestError, Dockerd, run
from tests.deploystack.images import REPO, Images

HERE = Path(__file__).resolve().parent
COMPOSE_FILE = REPO / "deploy/docker-compose.yml"
PROJECT = "assetsync-deploy-test"
# Every service the test starts: the whole file but Grafana (no local image), plus the emulators.
SERVICES = ("nats", "emulators", *SERVICE_MODULES, "prometheus")
# Host-port variables of the compose file, bound to loopback ports we pick.
PORT_VARS = ("ASSETSYNC_GATEWAY_PORT", "PROMETHEUS_PORT", "GRAFANA_PORT")
EMULATOR = "http://emulators"


def free_port() -> int:
    """A TCP port free on loopback now (for the host side of a published port)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _port_values(compose_text: str) -> dict[str, str]:
    """Each host-port variable as a loopback binding, whether or not the file already pins an address."""
    out = {}
    for var in PORT_VARS:
        port = str(free_port())
        # A list item starting with the variable (`- "${VAR:-5000}:5000"`) publishes on every address
        # unless the value carries one; a file that pins the address itself takes the bare port.
        unbound = re.search(r"-\s*[\"']?\$\{" + var + r"\b", compose_text) is not None
        out[var] = f"127.0.0.1:{port}" if unbound else port
    return out


class Stack:
    """docker-compose of the real file against local images; config and secrets in a private dir."""

    def __init__(self, engine: Dockerd, images: Images, workdir: Path) -> None:
        self.engine = engine
        self.workdir = workdir
        self.xueqiu_token = secrets.token_hex(20)
        self.admin_token = secrets.token_urlsafe(24)
        self.sender_token = secrets.token_urlsafe(24)
        self.feishu = FeishuEmulator()  # the defaults serve.py's tenant uses (app id, secret, app token)
        self.ports = _port_values(COMPOSE_FILE.read_text())
        # A crypto slot that never comes during the test, until the scale-out check asks for every minute.
        self.crypto_minute = str((datetime.now(UTC).minute + 30) % 60)
        self.env = {
            **engine.env,
            "COMPOSE_PROJECT_NAME": PROJECT,
            "ASSETSYNC_IMAGE": images.assetsync,
            "DEPLOY_TEST_EMULATORS_IMAGE": images.emulators,
            "NATS_IMAGE": images.nats,
            "PROMETHEUS_IMAGE": images.prometheus,
            "ASSETSYNC_CONFIG": str(workdir / "config.json"),
            "ASSETSYNC_ENV_FILE": str(workdir / "assetsync.env"),
            "GRAFANA_ADMIN_PASSWORD": secrets.token_urlsafe(16),
            "DEPLOY_TEST_XUEQIU_TOKEN": self.xueqiu_token,
            "DEPLOY_TEST_CRYPTO_MINUTE": self.crypto_minute,
            # Compose refuses to start the gateway without both tokens (`${…:?}`), as it would a user.
            "ASSETSYNC_SYNC_GATEWAY__ADMIN_TOKEN": self.admin_token,
            "ASSETSYNC_SYNC_GATEWAY__SENDER__AUTH_TOKEN": self.sender_token,
            **self.ports,
        }
        self._write_config()

    # --- files ----------------------------------------------------------------------------
    def _write_config(self) -> None:
        """The example config, pointed at the emulators; secrets in an env file only we can read."""
        cfg: dict[str, Any] = json.loads((REPO / "deploy/config.example.json").read_text())
        a = cfg["asset_sync"]
        cfg["mcp_server"]["app_id"] = self.feishu.app_id
        a["binance"]["base_url"] = f"{EMULATOR}:8001"
        a["xueqiu"] = {"base_url": f"{EMULATOR}:8002", "fund_base_url": f"{EMULATOR}:8002"}
        a["okx"] = {"base_url": f"{EMULATOR}:8005"}
        a["feishu"]["app_token"] = self.feishu.app_token
        a["feishu"]["base_url"] = f"{EMULATOR}:8003"
        a["alerts"]["alert_on_partial_success"] = True
        a["assets"]["crypto"]["kline_backfill_hours"] = 48
        a["scheduler"]["crypto_sync"] = {"enabled": True, "hour": "*", "minute": 0}
        cfg["sync_gateway"]["site_id"] = "deploy-test"
        config = self.workdir / "config.json"
        config.write_text(json.dumps(cfg, ensure_ascii=False, indent=2))
        config.chmod(0o644)  # read by uid 10001 in the containers; it holds no secret
        bot = BotEmulator()
        env = {
            "ASSETSYNC_ASSET_SYNC__BINANCE__API_KEY": DEMO_API_KEY,
            "ASSETSYNC_ASSET_SYNC__BINANCE__API_SECRET": DEMO_API_SECRET,
            "ASSETSYNC_ASSET_SYNC__XUEQIU__COOKIES": f"xq_a_token={self.xueqiu_token}",
            "ASSETSYNC_ASSET_SYNC__OKX__API_KEY": OKX_API_KEY,
            "ASSETSYNC_ASSET_SYNC__OKX__API_SECRET": OKX_API_SECRET,
            "ASSETSYNC_ASSET_SYNC__OKX__PASSWORD": OKX_PASSPHRASE,
            "ASSETSYNC_MCP_SERVER__APP_SECRET": self.feishu.app_secret,
            "ASSETSYNC_ASSET_SYNC__ALERTS__FEISHU_WEBHOOK": bot.url(f"{EMULATOR}:8004"),
            "ASSETSYNC_SYNC_GATEWAY__ADMIN_TOKEN": self.admin_token,
            "ASSETSYNC_SYNC_GATEWAY__SENDER__AUTH_TOKEN": self.sender_token,
        }
        path = self.workdir / "assetsync.env"
        path.touch(mode=0o600)
        path.write_text("".join(f"{k}={v}\n" for k, v in env.items()))

    # --- compose --------------------------------------------------------------------------
    def compose(self, *args: str, check: bool = True, extra_env: dict[str, str] | None = None) -> str:
        argv = ["docker-compose", "-f", str(COMPOSE_FILE), "-f", str(HERE / "compose.test.yml"), *args]
        return run(argv, env={**self.env, **(extra_env or {})}, cwd=REPO / "deploy", check=check).stdout

    def popen(self, *args: str) -> subprocess.Popen[str]:
        argv = ["docker-compose", "-f", str(COMPOSE_FILE), "-f", str(HERE / "compose.test.yml"), *args]
        return subprocess.Popen(
            argv,
            env=self.env,
            cwd=REPO / "deploy",
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )

    def containers(self, service: str | None = None) -> list[str]:
        """Ids of the project's containers (of one service), running or not."""
        filters = ["--filter", f"label=com.docker.compose.project={PROJECT}"]
        if service:
            filters += ["--filter", f"label=com.docker.compose.service={service}"]
        return self.engine.docker("ps", "-aq", "--no-trunc", *filters).split()

    def inspect(self, cid: str) -> dict[str, Any]:
        data: list[dict[str, Any]] = json.loads(self.engine.docker("inspect", cid))
        return data[0]

    def wait_healthy(self, timeout: float = 180.0) -> None:
        """Until every container of the project is running and healthy; a dead one fails at once."""
        deadline = time.monotonic() + timeout
        pending: list[str] = []
        while time.monotonic() < deadline:
            pending = []
            for cid in self.containers():
                info = self.inspect(cid)
                name = info["Name"].lstrip("/")
                state = info["State"]
                health = (state.get("Health") or {}).get("Status", "none")
                if state["Status"] in ("exited", "dead"):
                    raise DeployTestError(f"{name} exited {state['ExitCode']}:\n{self.logs(cid)}")
                if state["Status"] != "running" or health != "healthy":
                    pending.append(f"{name} ({state['Status']}, {health})")
            if not pending:
                return
            time.sleep(1)
        raise DeployTestError("not healthy in time: " + ", ".join(pending))

    def logs(self, cid: str, lines: int = 30) -> str:
        proc = run(
            ["docker", "logs", "--tail", str(lines), cid], env=self.engine.env, check=False, quiet=True
        )
        return (proc.stdout + proc.stderr).strip()

    def exec_python(self, service: str, script: str) -> Any:
        """Run a Python snippet in a service's container; it prints one JSON value, returned decoded."""
        out = self.compose("exec", "-T", service, "python", "-c", script)
        return json.loads(out.strip().splitlines()[-1])

    def published(self, service: str, port: int) -> str:
        """`127.0.0.1:NNNN` a container port is published on (refusing anything but loopback)."""
        addr = self.compose("port", service, str(port)).strip()
        if not addr.startswith("127.0.0.1:"):
            raise DeployTestError(f"{service}:{port} is published on {addr}, not on loopback only")
        return addr

    def check_loopback_only(self) -> None:
        """Every published port of every container binds 127.0.0.1: the stack is not reachable from outside."""
        for cid in self.containers():
            info = self.inspect(cid)
            for port, binds in (info["NetworkSettings"]["Ports"] or {}).items():
                for b in binds or []:
                    if b["HostIp"] != "127.0.0.1":
                        raise DeployTestError(
                            f"{info['Name'].lstrip('/')} publishes {port} on {b['HostIp'] or '0.0.0.0'}"
                        )

    def down(self) -> None:
        self.compose("down", "--volumes", "--remove-orphans", "--timeout", "30", check=False)
