"""The /portfolio page in real headless Chromium: charts drawn from the store, the 持仓 table sorts, login as the manager."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest
from assetsync_sync_gateway.portfolio import PortfolioOptions
from playwright.async_api import Page, async_playwright, expect

from tests.support.portfolio import fill_store
from tests.sync_gateway.support import gw_conf, make_gateway, serve
from tests.sync_gateway.test_manager_browser import ARGS, ARTIFACTS, CHROMIUM

DRAWN_JS = """(sel) => {
  const c = document.querySelector(sel);
  if (!c) return 0;
  const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
  let n = 0;
  for (let i = 3; i < d.length; i += 4) if (d[i] !== 0) n++;
  return n;
}"""


async def drawn(page: Page, selector: str) -> int:
    """Non-transparent pixels on the canvas matching `selector`."""
    n: int = await page.evaluate(DRAWN_JS, selector)
    return n


async def wait_drawn(page: Page, selector: str, pixels: int = 2000) -> None:
    """Wait until the canvas has drawn content (charts draw after their data arrives)."""
    await page.wait_for_function(f"({DRAWN_JS})({selector!r}) > {pixels}", timeout=10000)


async def column(page: Page, index: int) -> list[str]:
    cells = await page.locator(f"#h-rows tr td:nth-child({index})").all_inner_texts()
    return [c.split("\n")[0].replace("未定价", "").replace("价格过期", "").strip() for c in cells]


def number(text: str) -> float:
    return float(text.replace(",", "").replace("%", "").replace("+", "")) if text not in ("—", "") else -1e18


@pytest.mark.browser
async def test_portfolio_page_draws_charts_and_sorts(tmp_path: Path) -> None:
    assert shutil.which(CHROMIUM), "headless test needs Debian chromium: apt-get install -y chromium"
    db = tmp_path / "assets.db"
    fill_store(db, crypto=4, funds=2, stale_assets=("SOL",), unpriced_assets=("DOGE",))
    gw = make_gateway(tmp_path / "gw", "home", portfolio=PortfolioOptions(db, fx_rates={"USDT": 7.12}))
    async with serve(gw) as site, async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1400, "height": 1000})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            outside: list[str] = []
            page.on(
                "request",
                lambda r: outside.append(r.url) if not r.url.startswith(site.url) else None,
            )
            # Linked from the manager.
            await page.goto(f"{site.url}/data-sync-manager")
            await page.click("#portfolio-link")
            await expect(page.locator("#app")).to_be_visible()
            assert page.url == f"{site.url}/portfolio"

            await expect(page.locator("#t-count")).to_have_text("6")
            await expect(page.locator("#warnings")).to_contain_text("1 个资产未定价")
            await expect(page.locator("#nw-note")).to_contain_text("90 个每日快照")
            await expect(page.locator("#nw-chart canvas")).to_have_count(1)
            await expect(page.locator("#price-chart canvas")).to_have_count(1)
            for sel in ("#nw-chart canvas", "#price-chart canvas", "#alloc-type", "#alloc-asset"):
                await wait_drawn(page, sel)
                assert await drawn(page, sel) > 2000, f"{sel} is empty"
            await expect(page.locator("#alloc-type-legend li")).to_have_count(2)
            await expect(page.locator("#alloc-type-legend")).to_contain_text("加密货币")
            await expect(page.locator("#price-note")).to_contain_text("成本价")

            # Flags: the unpriced and the stale row.
            await expect(page.locator("#h-rows tr[data-asset=DOGE]")).to_contain_class("unpriced")
            await expect(page.locator("#h-rows tr[data-asset=DOGE]")).to_contain_text("未定价")
            await expect(page.locator("#h-rows tr[data-asset=SOL]")).to_contain_class("stale")
            await expect(page.locator("#h-rows tr[data-asset=SOL]")).to_contain_text("价格过期")

            # Sorting: by value (default, descending), by code both ways, by PnL%.
            values = [number(v) for v in await column(page, 8)]
            assert values == sorted(values, reverse=True)
            await page.click("#holdings th[data-key=asset]")
            codes = await column(page, 1)
            assert codes == sorted(codes)
            await page.click("#holdings th[data-key=asset]")
            assert await column(page, 1) == sorted(codes, reverse=True)
            await expect(page.locator("#holdings th[data-key=asset]")).to_contain_class("sorted-desc")
            await page.click("#holdings th[data-key=pnl_pct]")
            pct = [number(v) for v in await column(page, 12)]
            assert pct == sorted(pct, reverse=True)

            # Another asset's chart (a fund: observed prices), and ranges.
            await page.select_option("#asset-select", "110011")
            await expect(page.locator("#price-note")).to_contain_text("观测价格")
            await page.click("#price-range button[data-range='1y']")
            await page.click("#nw-range button[data-range='1m']")
            await expect(page.locator("#nw-note")).to_contain_text("32 个每日快照")
            await wait_drawn(page, "#nw-chart canvas")
            await page.click("#h-rows tr[data-asset=ETH]")
            await expect(page.locator("#price-note")).to_contain_text("ETH/USDT")

            # Freshness: the failed fund source is shown.
            await expect(page.locator("#s-rows")).to_contain_text("xueqiu")
            await expect(page.locator("#s-rows")).to_contain_text("失败")
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / "portfolio.png"), full_page=True)
            assert not errors, errors
            assert not outside, f"the page fetched outside the gateway: {outside}"
        finally:
            await browser.close()


@pytest.mark.browser
async def test_portfolio_login_like_the_manager(tmp_path: Path) -> None:
    db = tmp_path / "assets.db"
    fill_store(db, crypto=2, funds=1)
    gw = make_gateway(
        tmp_path / "gw",
        "home",
        conf=gw_conf(admin_token="admin-tok"),
        portfolio=PortfolioOptions(db, fx_rates={"USDT": 7.12}),
    )
    async with serve(gw) as site, async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1200, "height": 900})
            await page.goto(f"{site.url}/portfolio")
            await expect(page.locator("#login-view")).to_be_visible()
            await expect(page.locator("#app")).to_be_hidden()
            await page.fill("#token", "nope")
            await page.click("#login")
            await expect(page.locator("#login-error")).to_have_text("令牌错误")
            await page.fill("#token", "admin-tok")
            await page.click("#login")
            await expect(page.locator("#app")).to_be_visible()
            await expect(page.locator("#t-count")).to_have_text("3")
            await wait_drawn(page, "#nw-chart canvas")
            # The token is the manager's: its page opens logged in.
            await page.goto(f"{site.url}/data-sync-manager")
            await expect(page.locator("#app")).to_be_visible()
            await page.screenshot(path=str(ARTIFACTS / "portfolio-login.png"))
        finally:
            await browser.close()


@pytest.mark.parametrize("admin_token", ["", "admin-tok"])
async def test_portfolio_api_answers_exactly_as_the_admin_api(tmp_path: Path, admin_token: str) -> None:
    db = tmp_path / "assets.db"
    fill_store(db, crypto=1, funds=1, logs=False)
    gw = make_gateway(
        tmp_path / "gw",
        "home",
        conf=gw_conf(admin_token=admin_token) if admin_token else None,
        portfolio=PortfolioOptions(db),
    )
    cases: list[dict[str, str]] = [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "Bearer admin-tok"},
        {"Authorization": "Basic admin-tok"},
        {"X-Forwarded-For": "203.0.113.9"},
        {"Authorization": "Bearer admin-tok", "X-Forwarded-For": "203.0.113.9"},
    ]
    async with serve(gw) as site, httpx.AsyncClient(base_url=site.url) as c:
        for headers in cases:
            admin = await c.get("/api/data-sync/receiver/status", headers=headers)
            for path in ("/api/portfolio/overview", "/api/portfolio/networth", "/api/portfolio/report"):
                got = await c.get(path, headers=headers)
                assert got.status_code == admin.status_code, (path, headers, got.text)
                if admin.status_code == 401:
                    assert got.headers["www-authenticate"] == admin.headers["www-authenticate"]
        # The page and the chart library are open, like the manager page; the API is read-only.
        assert (await c.get("/portfolio")).status_code == 200
        lib = await c.get("/portfolio/static/uplot/uPlot.iife.min.js")
        assert lib.status_code == 200 and b"uPlot" in lib.content
        assert (await c.get("/portfolio/static/../app.py")).status_code == 404
        auth = {"Authorization": "Bearer admin-tok"} if admin_token else {}
        # A state change must be JSON (§5.1 CSRF rule, checked before routing); a JSON POST meets the
        # read-only route.
        assert (await c.post("/api/portfolio/overview", headers=auth)).status_code == 415
        assert (await c.post("/api/portfolio/overview", headers=auth, json={})).status_code == 405
        bad = await c.get("/api/portfolio/prices/BTC?range=5y", headers=auth)
        assert bad.status_code == 400 and "range" in bad.json()["error"]
        assert (await c.get("/api/portfolio/prices/NOPE", headers=auth)).status_code == 404
        assert (await c.get("/api/portfolio/report?date=2020-01-01", headers=auth)).status_code == 404


@pytest.mark.browser
async def test_portfolio_page_on_a_new_store(tmp_path: Path) -> None:
    """No holdings, snapshots or runs yet: the page says so instead of failing; no store file: says why."""
    import sqlite3

    from assetsync_store import schema

    db = tmp_path / "assets.db"
    with sqlite3.connect(db) as conn:
        schema.migrate(conn)
    gw = make_gateway(tmp_path / "gw", "home", portfolio=PortfolioOptions(db))
    missing = make_gateway(tmp_path / "gw2", "home", portfolio=PortfolioOptions(tmp_path / "none.db"))
    async with serve(gw) as site, serve(missing) as site2, async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1200, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.goto(f"{site.url}/portfolio")
            await expect(page.locator("#app")).to_be_visible()
            await expect(page.locator("#t-count")).to_have_text("0")
            await expect(page.locator("#nw-note")).to_contain_text("暂无快照")
            await expect(page.locator("#price-note")).to_have_text("暂无持仓")
            await expect(page.locator("#s-rows")).to_contain_text("还没有任务记录")
            assert not errors, errors
            await page.goto(f"{site2.url}/portfolio")
            await expect(page.locator("#denied")).to_be_visible()
            await expect(page.locator("#denied-msg")).to_contain_text("no store database")
        finally:
            await browser.close()
