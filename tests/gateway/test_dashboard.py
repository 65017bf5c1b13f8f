"""The dashboard in a real headless Chromium (Debian's /usr/bin/chromium, driven by
Playwright; nothing downloads a browser) against a gateway polling the simulator.

Set ALARMGW_SCREENSHOTS=DIR to keep the screenshots (scripts/screenshots refreshes docs/img)."""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, expect

from alarmgw.gateway.runtime import free_port
from tests.browser import browser
from tests.conftest import ENGINEER_TOKEN, VIEWER_TOKEN, Harness, harness_for, http_extra, write_site

__all__ = ["browser"]  # the fixture

pytestmark = pytest.mark.integration  # real peers: sockets, brokers, processes, a browser


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Harness]:
    path = write_site(tmp_path, free_port(), extra=http_extra(tmp_path))
    async with harness_for(path, start=datetime.now(UTC)) as h:
        await h.start_gateway()
        h.sim.inject("pir-2", "tamper")
        h.sim.inject("smoke-1", "low_battery")
        await h.cycle(3)
        yield h


async def open_dashboard(browser: Browser, h: Harness, token: str) -> Page:
    """The dashboard in a new page, which records what its Content-Security-Policy refused
    (`csp_refusals`): the dashboard must need nothing it forbids."""
    assert h.gateway.http is not None
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    # Injected by the browser's driver, not by the page: the policy does not apply to it.
    await page.add_init_script(
        "window.cspRefusals = [];"
        "document.addEventListener('securitypolicyviolation',"
        " e => window.cspRefusals.push(e.violatedDirective + ' ' + e.blockedURI));"
    )
    response = await page.goto(f"{h.gateway.http.url}#token={token}")
    assert response is not None and "default-src 'none'" in response.headers["content-security-policy"]
    assert response.headers["x-frame-options"] == "DENY"
    return page


async def csp_refusals(page: Page) -> list[str]:
    refused: list[str] = await page.evaluate("window.cspRefusals")
    return refused


async def shot(page: Page, name: str, tmp_path: Path) -> None:
    folder = Path(os.environ.get("ALARMGW_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - a test's own folder
    await page.screenshot(path=str(folder / name), full_page=True)


def seconds_left(text: str) -> int:
    m = re.fullmatch(r"(\d\d):(\d\d) left", text)
    assert m, f"not a countdown: {text!r}"
    return int(m[1]) * 60 + int(m[2])


async def test_engineer_sees_the_site_and_acknowledges_a_ticket(
    browser: Browser, site: Harness, tmp_path: Path
) -> None:
    h = site
    page = await open_dashboard(browser, h, ENGINEER_TOKEN)
    await expect(page.locator("#who")).to_have_text("eng-1 (engineer)")
    assert "token" not in page.url  # taken out of the address bar and history

    tickets = {t.fault: t for t in h.tickets()}
    assert set(tickets) == {"tamper", "low_battery"}
    rows = page.locator("#tickets tbody tr")
    await expect(rows).to_have_count(2)
    tamper = page.locator(f'#tickets tr[data-ticket="{tickets["tamper"].id}"]')
    await expect(tamper.locator("td[data-state]")).to_have_text("open")

    # every clock counts down live, against the gateway's clock
    response = tamper.locator('td[data-clock="response"]')
    first = seconds_left(await response.inner_text())
    assert 3500 < first <= 3600
    await page.wait_for_timeout(2200)
    assert seconds_left(await response.inner_text()) <= first - 2
    await expect(tamper.locator('td[data-clock="arrival"]')).to_have_text(re.compile(r"^1h \d\dm \d\ds left$"))

    # devices by host and repeater, with battery and signal
    order = await page.locator("#devices tbody tr").evaluate_all(
        "rows => rows.map(r => [r.dataset.device, r.className])"
    )
    assert order[:4] == [["host-1", "host"], ["rep-1", "repeater"], ["smoke-1", "child"], ["rep-2", "repeater"]]
    latest = h.gateway.core.latest["smoke-1"].values
    battery = page.locator('td[data-battery="smoke-1"]')
    await expect(battery).to_have_text(f"{latest['battery_v']:.2f} V")
    await expect(battery).to_have_class(re.compile(r"\blow\b"))
    await expect(page.locator('td[data-signal="smoke-1"]')).to_have_text(f"{round(latest['rssi_dbm'])} dBm")
    # the asset register: the test site was commissioned on 2026-01-01
    warranty = "until 2026-12-31" if h.clock.now().date() <= date(2026, 12, 31) else "ended 2026-12-31: parts at cost"
    await expect(page.locator('td[data-warranty="smoke-1"]')).to_have_text(f"{warranty}rated life to 2032-01-01")
    faults = await page.locator("#faults tbody tr").evaluate_all("rows => rows.map(r => r.dataset.fault)")
    assert sorted(faults) == ["pir-2/tamper", "smoke-1/low_battery"]
    await shot(page, "dashboard.png", tmp_path)

    # acknowledge with a note: the gateway records who and what
    await tamper.locator(f'input[data-note="{tickets["tamper"].id}"]').fill("customer called, cover refitted")
    await tamper.locator('button[data-action="ack"]').click()
    await expect(tamper.locator("td[data-state]")).to_have_text("acknowledged")
    await expect(tamper.locator('td[data-clock="response"]')).to_have_text("met")
    buttons = await tamper.locator("button").all_inner_texts()
    assert buttons == ["dispatch", "resolve", "customer did"]
    moved = h.gateway.store.tickets.get(tickets["tamper"].id)
    assert moved.state.value == "acknowledged"
    (entry,) = [e for e in h.gateway.store.tickets.log(moved.id) if e["action"] == "acknowledged"]
    assert (entry["actor"], entry["note"]) == ("eng-1", "customer called, cover refitted")
    # the failure record's "measures taken by the user", from the note field
    await tamper.locator('button[data-action="user_action"]').click()
    await expect(page.locator("#action-error")).to_contain_text("write what the customer did")
    await tamper.locator(f'input[data-note="{moved.id}"]').fill("the customer refitted the cover")
    await tamper.locator('button[data-action="user_action"]').click()
    await expect(tamper.locator(f'div[data-user-action="{moved.id}"]')).to_have_text(
        "customer: the customer refitted the cover"
    )
    assert h.gateway.store.tickets.get(moved.id).user_action == "the customer refitted the cover"
    # on site, the engineer takes the device out for the repair: its downtime clock runs
    await tamper.locator('button[data-action="dispatch"]').click()
    await expect(tamper.locator("td[data-state]")).to_have_text("dispatched")
    assert await tamper.locator('button[data-action="out_of_service"]').count() == 0  # not before arrival
    await tamper.locator('button[data-action="arrive"]').click()
    await expect(tamper.locator("td[data-state]")).to_have_text("on site")
    await tamper.locator('button[data-action="out_of_service"]').click()
    await expect(tamper.locator(f'div[data-out-of-service="{moved.id}"]')).to_have_text("device out of service")
    await expect(tamper.locator('td[data-clock="downtime"]')).to_contain_text("left")
    assert h.gateway.store.tickets.get(moved.id).out_of_service
    # a maintenance visit, started and finished on the page, with its report
    await page.locator("#visit-start").click()
    await expect(page.locator("#visit")).to_contain_text("visit 1 by eng-1")
    assert h.gateway.core.visit.running
    await page.locator("#visit-finish").click()
    await expect(page.locator("#visit-counts")).to_contain_text("visit 1: ")
    low = page.locator('#visit-report tr[data-device="smoke-1"] td[data-verdict]')
    await expect(low).to_have_text("failed")  # its battery is low
    await expect(page.locator("#visit")).to_contain_text("the last: 1, finished")
    assert await csp_refusals(page) == []  # script, style, API calls, the move: all its own


async def test_the_dashboard_cannot_be_framed_by_another_page(browser: Browser, site: Harness) -> None:
    """Clickjacking: another site's page (here a blank one) that frames the dashboard gets
    nothing in the frame (X-Frame-Options: DENY, CSP frame-ancestors 'none')."""
    assert site.gateway.http is not None
    page = await browser.new_page()
    # set_content returns on the outer page's load event, which waits for its frame's
    await page.set_content(f'<iframe src="{site.gateway.http.url}" width="600" height="400"></iframe>')
    (frame,) = page.main_frame.child_frames
    assert frame.url.startswith("chrome-error:")  # the browser's error page in its place
    assert await frame.locator("#site").count() == 0  # the dashboard never rendered there


async def test_an_overdue_clock_shows_as_breached(browser: Browser, site: Harness, tmp_path: Path) -> None:
    h = site
    h.clock.advance(3600 + 125)  # the response clock ran out two minutes ago, nobody acknowledged
    page = await open_dashboard(browser, h, VIEWER_TOKEN)
    await expect(page.locator("#who")).to_have_text("view-1 (viewer)")
    first = min(h.tickets(), key=lambda t: t.id)
    late = int((h.clock.now() - first.opened_at).total_seconds()) - 3600
    cell = page.locator(f'#tickets tr[data-ticket="{first.id}"] td[data-clock="response"]')
    await expect(cell).to_have_text(re.compile(r"^overdue \d\d:\d\d$"))
    await expect(cell).to_have_class(re.compile(r"\bbreached\b"))
    m = re.fullmatch(r"overdue (\d\d):(\d\d)", await cell.inner_text())
    assert m and late <= int(m[1]) * 60 + int(m[2]) <= late + 10  # counted from the gateway's clock
    assert await page.locator("#tickets button").count() == 0  # a viewer gets no ticket actions
    await shot(page, "dashboard-breached.png", tmp_path)


async def test_an_unknown_token_asks_for_another(browser: Browser, site: Harness) -> None:
    page = await open_dashboard(browser, site, "not-a-token")
    await expect(page.locator("#login")).to_be_visible()
    await expect(page.locator("#login-error")).to_contain_text("not known")
    assert await page.locator("#main").is_hidden()
    await page.locator("#token").fill(ENGINEER_TOKEN)
    await page.locator("#login button").click()
    await expect(page.locator("#who")).to_have_text("eng-1 (engineer)")
    await expect(page.locator("#tickets tbody tr")).to_have_count(2)
    assert await csp_refusals(page) == []  # the sign-in form is the script's (form-action 'none')


async def test_a_gateway_that_stops_answering_is_shown_as_such(browser: Browser, site: Harness) -> None:
    page = await open_dashboard(browser, site, VIEWER_TOKEN)
    await expect(page.locator("#tickets tbody tr")).to_have_count(2)
    await site.stop_gateway()  # the API goes away with it
    status = page.locator("#status")
    await expect(status).to_contain_text("gateway unreachable", timeout=15_000)  # at the next refresh (5 s)
    await expect(page.locator("#tickets tbody tr")).to_have_count(2)  # the last known state stays on screen
    await expect(status).to_have_class(re.compile(r"\bstale\b"), timeout=20_000)  # and is marked old
