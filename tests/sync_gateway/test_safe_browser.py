"""§5.1 in real headless Chromium: hostile pages (another site, DNS rebinding) and the manager in every token setup.

Needs Debian's `chromium` (/usr/bin/chromium) and the `playwright` package; a missing browser fails.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from assetsync_sync_gateway.http_server import server_config, start_server, stop_server
from playwright.async_api import Browser, Page, async_playwright, expect
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from tests.support import wait_for
from tests.sync_gateway.support import Site, ext, fill, gw_conf, holding, make_gateway, serve

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-extensions",
    "--no-first-run",
    # DNS rebinding without DNS: the attacker's name resolves to this machine.
    "--host-resolver-rules=MAP rebind.test 127.0.0.1",
]

ATTACK = """<!doctype html><html><body>
<form id="f" method="POST" enctype="text/plain" action="{gw}/api/data-sync/receiver/config">
<input name='{{"remote_url":"http://attacker.test:5000","auto_sync":true,"x":"' value='"}}'>
</form>
<script>
async function go() {{
  const body = JSON.stringify({{"remote_url": "http://attacker.test:5000", "auto_sync": true}});
  const opts = {{method: "POST", mode: "no-cors", headers: {{"Content-Type": "application/json"}}, body}};
  await fetch("{gw}/api/data-sync/receiver/config", opts).catch(() => null);
  await fetch("{gw}/api/data-sync/sender/config", {{...opts, body: '{{"rate_limit": 1}}'}}).catch(() => null);
  await fetch("{gw}/api/data-sync/receiver/sync-all", {{method: "POST", mode: "no-cors"}}).catch(() => null);
  document.title = "fetched";
}}
</script></body></html>"""


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    assert shutil.which(CHROMIUM), "headless test needs Debian chromium: apt-get install -y chromium"
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            await b.close()


def attacker_app(gw_url: str) -> Starlette:
    async def page(request: Request) -> Response:
        return HTMLResponse(ATTACK.format(gw=gw_url))

    return Starlette(routes=[Route("/", page)])


@pytest.mark.browser
async def test_pages_of_other_sites_cannot_change_or_read_anything(tmp_path: Path, browser: Browser) -> None:
    gw = make_gateway(tmp_path, "A", conf=gw_conf(sender={"rate_limit": 0}), extra=[ext("PB001")])
    async with serve(gw) as s:
        await gw.ingest([holding("BTC", 1), holding("ETH", 1)])
        evil = await start_server(server_config(attacker_app(s.url), "127.0.0.1", 0))
        try:
            page = await browser.new_page()
            statuses: dict[str, list[int]] = {}
            page.on(
                "response",
                lambda r: (
                    statuses.setdefault(r.url.split("/api/data-sync/")[-1], []).append(r.status)
                    if "/api/data-sync/" in r.url
                    else None
                ),
            )
            # Another site (localhost vs 127.0.0.1 are different sites), as a user's other tab would be.
            await page.goto(evil.url.replace("127.0.0.1", "localhost") + "/")
            await page.evaluate("go()")
            await expect(page).to_have_title("fetched")
            await wait_for(lambda: len(statuses) >= 3, 10, what="the no-cors requests to arrive")
            assert statuses["receiver/config"] == [403]
            assert statuses["sender/config"] == [403]
            assert statuses["receiver/sync-all"] == [403]
            # The classic JSON-in-a-text/plain-form trick: the browser navigates to the refusal.
            async with page.expect_navigation():
                await page.evaluate("document.getElementById('f').submit()")
            assert "not this gateway" in (await page.content())
            assert statuses["receiver/config"] == [403, 403]
        finally:
            await stop_server(evil)
        assert gw.config.receiver.remote_url == "" and gw.config.receiver.auto_sync is False
        assert gw.config.sender.rate_limit == 0 and not gw.receiver.syncing

        # DNS rebinding: a page at http://rebind.test:<port>/ is same-origin with the gateway, and gets nothing.
        port = s.url.rsplit(":", 1)[1]
        page = await browser.new_page()
        await page.goto(f"http://rebind.test:{port}/data-sync-manager")
        await expect(page.locator("#login-why")).to_contain_text("rebind.test")
        got: Any = await page.evaluate(
            """async () => {
              const d = await fetch('/api/data-sync/sender/data/AS001');
              const c = await fetch('/api/data-sync/receiver/config', {method: 'POST',
                headers: {'Content-Type': 'application/json'}, body: '{"remote_url": "http://attacker.test"}'});
              return [d.status, await d.text(), c.status];
            }"""
        )
        assert got[0] == 403 and "BTC" not in got[1] and got[2] == 403
        assert gw.config.receiver.remote_url == ""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / "manager-dns-rebinding-refused.png"), full_page=True)


async def open_manager(browser: Browser, site: Site) -> tuple[Page, list[str]]:
    page = await browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(f"{site.url}/data-sync-manager")
    return page, errors


async def login(page: Page, token: str) -> None:
    await page.fill("#token", token)
    await page.click("#login")


async def tab(page: Page, label: str) -> None:
    await page.click(f"nav button:text-is('{label}')")


async def stays_logged_in(page: Page, refreshes: int = 2) -> None:
    """The page refreshes every 2 s; after a few rounds it must still show the app (no bounce to login)."""
    seen: list[int] = []
    page.on("response", lambda r: seen.append(r.status) if r.url.endswith("/receiver/status") else None)
    await wait_for(lambda: len(seen) >= refreshes, 15, what="the manager's periodic refresh")
    await expect(page.locator("#app")).to_be_visible()
    await expect(page.locator("#login-view")).to_be_hidden()


SETUPS: dict[str, dict[str, Any]] = {
    "none": {},
    "sender-only": {"sender": {"auth_token": "snd-tok"}},
    "admin-only": {"admin_token": "adm-tok"},
    "both": {"admin_token": "adm-tok", "sender": {"auth_token": "snd-tok"}},
}


@pytest.mark.browser
@pytest.mark.parametrize("setup", list(SETUPS))
async def test_manager_works_in_each_token_setup(tmp_path: Path, browser: Browser, setup: str) -> None:
    conf = gw_conf(**SETUPS[setup], receiver={"auth_token": "rcv-tok"})
    gw = make_gateway(tmp_path, "A", conf=conf, extra=[ext("PB001"), ext("AN001")])
    admin = "admin_token" in SETUPS[setup]
    async with serve(gw) as s:
        await fill(gw, "PB001", 3)
        page, errors = await open_manager(browser, s)
        if admin:
            # The login names the token it wants, and why (the gateway's own answer).
            await expect(page.locator("#login-view")).to_be_visible()
            await expect(page.locator("#login-why")).to_contain_text("sync_gateway.admin_token")
            await login(page, "snd-tok")  # the sender token is not the admin token
            await expect(page.locator("#login-error")).to_contain_text("sync_gateway.admin_token")
            await login(page, "adm-tok")
        # Opened on this machine without an admin token: no login at all.
        await expect(page.locator("#app")).to_be_visible()
        await expect(page.locator("#ov-sender")).to_have_text("运行中")
        await expect(page.locator("#ov-endpoints")).to_have_text("9")
        await stays_logged_in(page)
        await tab(page, "数据目录")
        await expect(page.locator("#cat-rows tr")).to_have_count(9)
        await tab(page, "发送端")
        await page.fill("#sender-rate", "321")
        await page.click("#sender-save")
        await expect(page.locator("#msg")).to_have_text("发送端配置已保存")
        assert gw.config.sender.rate_limit == 321
        if "sender" in SETUPS[setup]:
            await expect(page.locator("#sender-token")).to_have_attribute(
                "placeholder", "已设置（留空则不修改）"
            )
            await page.click("#sender-token-clear")
            await expect(page.locator("#msg")).to_have_text("发送端令牌已清除")
            assert gw.config.sender_tokens() == ()
            await expect(page.locator("#sender-token")).to_have_attribute("placeholder", "未设置")
        await tab(page, "接收端")
        await page.click("#receiver-token-clear")
        await expect(page.locator("#msg")).to_have_text("接收端令牌已清除")
        assert not gw.config.receiver.auth_token
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        await tab(page, "总览")
        await page.screenshot(path=str(ARTIFACTS / f"manager-tokens-{setup}.png"), full_page=True)
        if admin:
            await page.click("#logout")
            await expect(page.locator("#login-view")).to_be_visible()
        assert not errors, errors


@pytest.mark.browser
async def test_manager_with_the_sender_disabled(tmp_path: Path, browser: Browser) -> None:
    conf = gw_conf(admin_token="adm-tok", sender={"enabled": False})
    gw = make_gateway(tmp_path, "A", conf=conf, extra=[ext("PB001")])
    async with serve(gw) as s:
        page, errors = await open_manager(browser, s)
        await login(page, "adm-tok")
        await expect(page.locator("#ov-sender")).to_have_text("已禁用")
        await expect(page.locator("#ov-endpoints")).to_have_text("8")
        await tab(page, "数据目录")
        await expect(page.locator("#cat-rows tr")).to_have_count(8)
        await tab(page, "发送端")
        await expect(page.locator("#sender-enabled")).not_to_be_checked()
        await page.check("#sender-enabled")
        await page.click("#sender-save")
        await expect(page.locator("#msg")).to_have_text("发送端配置已保存")
        assert gw.config.sender.enabled is True
        await tab(page, "总览")
        await expect(page.locator("#ov-sender")).to_have_text("运行中")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / "manager-sender-disabled.png"), full_page=True)
        assert not errors, errors
