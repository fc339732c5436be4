"""The web manager in real headless Chromium: log in, change settings, trigger a sync, watch the numbers.

Needs Debian's `chromium` (/usr/bin/chromium) and the `playwright` package; a missing browser fails.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from assetsync.endpoints import SEED_BY_CODE
from assetsync_sync_gateway.registry import native_endpoint
from playwright.async_api import Page, async_playwright, expect

from tests.support import wait_for
from tests.sync_gateway.support import ext, fill, gw_conf, holding, make_gateway, serve

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
]


async def tab(page: Page, label: str) -> None:
    await page.click(f"nav button:text-is('{label}')")


@pytest.mark.browser
async def test_manager_page_drives_the_gateway(tmp_path: Path) -> None:
    assert shutil.which(CHROMIUM), "headless test needs Debian chromium: apt-get install -y chromium"
    a = make_gateway(tmp_path / "a", "A", extra=[ext("PB001"), ext("AN001")])
    b = make_gateway(
        tmp_path / "b",
        "B",
        conf=gw_conf(admin_token="admin-tok", receiver={"enabled": True}),
        extra=[ext("PB001")],
        native=[native_endpoint(SEED_BY_CODE["SAR001"])],
    )
    async with serve(a) as sa, serve(b) as sb, async_playwright() as pw:
        await fill(a, "PB001", 1200)
        await a.ingest([holding("BTC", 1), holding("ETH", 1)])
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1400, "height": 1000})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.goto(f"{sb.url}/data-sync-manager")
            # A wrong token is refused; the right one logs in.
            await page.fill("#token", "nope")
            await page.click("#login")
            await expect(page.locator("#login-error")).to_contain_text("令牌错误")
            await page.fill("#token", "admin-tok")
            await page.click("#login")
            await expect(page.locator("#app")).to_be_visible()
            await expect(page.locator("#ov-endpoints")).to_have_text("9")
            await expect(page.locator("#site")).to_contain_text("B")

            # 接收端: point at site A, set the interval, save.
            await tab(page, "接收端")
            await page.fill("#receiver-url", sa.url)
            await page.fill("#receiver-interval", "120")
            await page.click("#receiver-save")
            await expect(page.locator("#msg")).to_have_text("接收端配置已保存")
            assert b.config.receiver.remote_url == sa.url and b.config.receiver.sync_interval == 120

            # 发送端: rate limit and allowlist change through the form.
            await tab(page, "发送端")
            await page.fill("#sender-rate", "1000")
            await page.fill("#sender-ips", "127.0.0.1\n10.0.0.0/8")
            await page.click("#sender-save")
            await expect(page.locator("#msg")).to_have_text("发送端配置已保存")
            assert b.config.sender.rate_limit == 1000 and b.config.sender.allowed_ips == [
                "127.0.0.1",
                "10.0.0.0/8",
            ]

            # 立即全量同步, then the live statistics move.
            await tab(page, "接收端")
            await expect(page.locator("#r-records")).to_have_text("0")
            await page.click("#sync-all")
            await expect(page.locator("#r-records")).to_have_text("1202", timeout=20000)
            await expect(page.locator("#r-endpoints")).to_contain_text("PB001")
            await wait_for(lambda: b.receiver.counts.get("PB001") == 1200, 10)
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / "data-sync-manager-receiver.png"), full_page=True)

            # 自动同步 on and off.
            await page.click("#auto-start")
            await expect(page.locator("#msg")).to_have_text("自动同步已启动")
            assert b.config.receiver.auto_sync is True
            await page.click("#auto-stop")
            await expect(page.locator("#msg")).to_have_text("自动同步已停止")
            assert b.config.receiver.auto_sync is False

            # 数据目录 with search.
            await tab(page, "数据目录")
            await expect(page.locator("#cat-rows tr")).to_have_count(9)
            await page.fill("#cat-search", "pb001")
            await expect(page.locator("#cat-rows tr")).to_have_count(1)
            await expect(page.locator("#cat-rows")).to_contain_text("/api/test/pb001")
            await expect(page.locator("#cat-rows")).to_contain_text("上游接口")
            # A native entry: its source and the seed's `{coin}` path as they are.
            await page.fill("#cat-search", "本系统计算")
            await expect(page.locator("#cat-rows tr")).to_have_count(1)
            await expect(page.locator("#cat-rows")).to_contain_text("/api/sar/current-cycle/{coin}")

            # 日志: the sync log lists the run.
            await tab(page, "日志")
            await page.select_option("#log-kind", "sync")
            await expect(page.locator("#log-rows")).to_contain_text("PB001")

            await tab(page, "总览")
            await expect(page.locator("#ov-syncs")).not_to_have_text("0")
            await page.screenshot(path=str(ARTIFACTS / "data-sync-manager.png"), full_page=True)
            assert not errors, errors
        finally:
            await browser.close()
