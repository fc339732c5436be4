"""`assetsync holdings` and `assetsync report`: aligned tables, colour only on a TTY, JSON, clear errors."""

from __future__ import annotations

import io
import json
import re
from datetime import date, timedelta
from pathlib import Path

import pytest
from assetsync.cli import main
from assetsync.config import load_settings
from assetsync.views import holdings_command, width

from tests.support.portfolio import fill_store

ANSI = re.compile(r"\x1b\[[0-9;]*m")


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def site(tmp_path: Path) -> Path:
    (tmp_path / "config.json").write_text(json.dumps({"asset_sync": {"fx_rates": {"USDT": 7.12}}}))
    (tmp_path / "data").mkdir()
    fill_store(tmp_path / "data" / "assets.db", stale_assets=("SOL",), unpriced_assets=("DOGE",))
    return tmp_path


def run(site: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main([*args, "--config", str(site / "config.json"), "--data-dir", str(site / "data")])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_holdings_table_is_aligned_and_plain_off_a_tty(
    site: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(site, capsys, "holdings")
    assert code == 0
    assert not ANSI.search(out)
    lines = out.splitlines()
    assert lines[0].startswith("资产代码") and "当前价格" in lines[0] and "折合CNY" in lines[0]
    rows = lines[2:8]
    assert [r.split()[0] for r in rows][:1] == ["SOL"]  # largest value in CNY first
    # Every row's cells end where the separator line's columns end (CJK counted as two columns).
    cols = [len(c) for c in lines[1].split("  ")]
    assert len(cols) == 14
    before_flags = sum(cols[:13]) + 2 * 12
    for r in rows:
        body = r.replace("未定价", "").replace("价格过期", "").rstrip()
        assert width(body) == before_flags, r
    doge = next(r for r in rows if r.startswith("DOGE"))
    assert "未定价" in doge and "—" in doge
    assert "价格过期" in next(r for r in rows if r.startswith("SOL"))
    assert "总市值 73,720.00 CNY" in out


def test_holdings_in_colour_on_a_tty(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    settings = load_settings(site / "config.json", data_dir=site / "data")
    tty = Tty()
    assert holdings_command(settings, as_json=False, out=tty) == 0
    text = tty.getvalue()
    assert re.search(r"\x1b\[31m *\+2,000\.00\x1b\[0m", text)  # a gain in red
    assert re.search(
        r"\x1b\[32m *-[0-9,]+\.[0-9]{2}\x1b\[0m", text
    )  # a loss in green (the crypto rows move with time)
    monkeypatch.setenv("NO_COLOR", "1")
    plain = Tty()
    holdings_command(settings, as_json=False, out=plain)
    assert not ANSI.search(plain.getvalue())
    assert ANSI.sub("", text) == plain.getvalue()


def test_holdings_json(site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(site, capsys, "holdings", "--json")
    doc = json.loads(out)
    assert code == 0 and doc["base_currency"] == "CNY"
    by = {h["asset"]: h for h in doc["holdings"]}
    assert by["DOGE"]["unpriced"] is True and by["DOGE"]["value"] is None
    assert by["SOL"]["stale"] is True
    assert by["ETH"]["value_base"] == pytest.approx(by["ETH"]["value"] * 7.12)
    assert doc["totals"]["unpriced"] == 1 and doc["totals"]["asset_count"] == 6


def test_report_for_a_day(site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(site, capsys, "report", "--json")
    latest = json.loads(out)
    assert code == 0
    day = date.fromisoformat(latest["date"]) - timedelta(days=3)
    code, out, _ = run(site, capsys, "report", "--date", day.isoformat(), "--json")
    rep = json.loads(out)
    assert code == 0 and rep["date"] == day.isoformat()
    assert rep["change_day"] is not None and rep["change_week"] is not None
    assert rep["movers"] and abs(rep["movers"][0]["change_pct"]) >= abs(rep["movers"][-1]["change_pct"])
    code, out, _ = run(site, capsys, "report")
    assert code == 0 and "资产日报" in out and "较昨日" in out and "较上周" in out
    assert "xueqiu fund_sync: failed 1" in out


def test_errors_name_the_fix(site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(site, capsys, "report", "--date", "2001-01-01")
    assert code == 1 and "no snapshot for 2001-01-01" in err and "assetsync task snapshot" in err
    with pytest.raises(SystemExit) as exc:
        run(site, capsys, "report", "--date", "2001-13-01")
    assert exc.value.code == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    code = main(["holdings", "--config", str(site / "config.json"), "--data-dir", str(empty)])
    assert code == 1 and "no store database" in capsys.readouterr().err
