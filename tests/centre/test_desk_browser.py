"""The desk's page in a real headless Chromium (Debian's /usr/bin/chromium, driven by
Playwright) against the desk served by uvicorn on a free port, over a real PostgreSQL.

Set ALARMGW_SCREENSHOTS=DIR to keep the screenshots."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, expect
from psycopg_pool import AsyncConnectionPool

from alarmgw.centre.desk_api import DeskConfig, build_app, make_server
from alarmgw.clock import ManualClock
from alarmgw.gateway.runtime import free_port
from tests.browser import browser
from tests.centre.test_desk_api import EXPECTED_ORDER, NOW, PASSWORD, desk_pool

pytestmark = pytest.mark.integration

__all__ = ["browser", "desk_pool"]  # the fixtures; desk_pool seeded with the same fleet as the API's tests


@pytest.fixture
async def desk_url(desk_pool: AsyncConnectionPool) -> AsyncIterator[str]:
    # The desk's clock stands still here, so its rate bound never refills: give it room.
    config = DeskConfig(port=free_port(), requests_per_s=1000)
    server, sock = make_server(build_app(desk_pool, config, ManualClock(NOW)), config, "warning")
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield f"http://127.0.0.1:{config.port}/"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        sock.close()


async def shot(page: Page, name: str, tmp_path: Path) -> None:
    folder = Path(os.environ.get("ALARMGW_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - a test's own folder
    await page.screenshot(path=str(folder / name), full_page=True)


async def test_log_in_see_tickets_sorted_filter_open_one_and_assign(
    browser: Browser, desk_url: str, desk_pool: AsyncConnectionPool, tmp_path: Path
) -> None:
    # Paris is UTC+1 in March: the page shows and takes local time, the API stores UTC.
    context = await browser.new_context(viewport={"width": 1400, "height": 1000}, timezone_id="Europe/Paris")
    page = await context.new_page()
    await page.add_init_script(
        "window.cspRefusals = [];"
        "document.addEventListener('securitypolicyviolation',"
        " e => window.cspRefusals.push(e.violatedDirective + ' ' + e.blockedURI));"
    )
    await page.goto(desk_url)
    await expect(page.locator("#tz")).to_contain_text("Europe/Paris, UTC+01:00")
    await page.fill("#login-name", "dora")
    await page.fill("#login-password", "not it at all")
    await page.click("#login button[type=submit]")
    await expect(page.locator("#login-error")).to_have_text("wrong name or password")
    await page.fill("#login-password", PASSWORD)
    await page.click("#login button[type=submit]")
    await expect(page.locator("#who")).to_have_text("dora (dispatcher)")

    rows = page.locator("#tickets tbody tr")
    await expect(rows).to_have_count(len(EXPECTED_ORDER))
    assert await rows.evaluate_all("rs => rs.map(r => r.dataset.key)") == [f"{s}/{r}" for s, r, _ in EXPECTED_ORDER]
    await expect(rows.first.locator("td.clock")).to_contain_text("late")
    await expect(page.locator("#incidents li")).to_have_text(["mains loss, suburb, 3 sites, 3 open"])
    await expect(page.locator("#sites tbody tr")).to_have_count(6)
    await expect(page.locator("#sites tr[data-site=north-4] td").nth(2)).to_have_text("dark")
    await shot(page, "desk.png", tmp_path)

    await page.select_option("#f-area", "suburb")
    await expect(rows).to_have_count(4)
    assert await rows.evaluate_all("rs => rs.map(r => r.dataset.key)") == [
        "north-4/c1", "north-1/1", "north-2/1", "north-3/1",
    ]  # fmt: skip
    await page.click("#f-clear")
    await expect(rows).to_have_count(len(EXPECTED_ORDER))

    await page.click("#tickets tr[data-key='city-1/1']")
    detail = page.locator("#detail")
    await expect(detail.locator("#d-title")).to_contain_text("city-1 ticket 1")
    await expect(detail.locator("#d-diagnosis")).to_contain_text("battery at end of life")
    await expect(detail.locator("#d-history li")).to_have_text(["2026-03-02 10:10 opened (open)"])  # 09:10 UTC
    await expect(detail.locator("svg.chart circle.battery")).to_have_count(3)
    await expect(detail.locator("svg.chart path.signal")).to_have_count(1)

    await page.click("#tickets tr[data-key='city-1/2']")
    await expect(detail.locator("#d-plan")).to_have_text("No engineer assigned.")
    await page.fill("#a-engineer", "eric")
    await page.fill("#a-arrival", "2026-03-02T11:30")  # Paris: 10:30 UTC, an hour before the arrival clock's due
    await page.click("#assign button[type=submit]")
    await expect(detail.locator("#d-plan")).to_contain_text("eric planned at 2026-03-02 11:30, 1 h 00 min before")
    await expect(page.locator("#tickets tr[data-key='city-1/2'] td").nth(7)).to_have_text("eric (2026-03-02 11:30)")
    async with desk_pool.connection() as conn:
        cur = await conn.execute("SELECT engineer, planned_arrival, assigned_by FROM desk_assignments")
        assert await cur.fetchall() == [("eric", NOW.replace(minute=30), "dora")]
    await page.click("[data-move=dispatch]")  # no relay behind this desk: the page says so
    await expect(detail.locator("#d-error")).to_contain_text("no relay to the sites is configured")
    await shot(page, "desk-ticket.png", tmp_path)

    # The centre's own ticket (a site gone dark) is moved at the centre: no relay needed.
    await page.click("#tickets tr[data-key='north-4/c1']")
    await expect(detail.locator("#d-title")).to_contain_text("north-4 ticket c1")
    await page.click("[data-move=ack]")
    await expect(detail.locator("#d-error")).to_have_text("ack: done at the centre")
    await expect(detail.locator("#d-history li").last).to_contain_text("acknowledged by dora")
    await expect(detail.locator("#d-moves button")).to_have_text(["dispatch", "resolve"])
    await expect(page.locator("#tickets tr[data-key='north-4/c1'] td").nth(5)).to_have_text("acknowledged")

    # A customer's complaint: recorded, acknowledged, resolved, each against its clock.
    await page.fill("#c-site", "city-1")
    await page.fill("#c-customer", "Ms Adeyemi")
    await page.select_option("#c-channel", "email")
    await page.fill("#c-tickets", "1, 2")
    await page.fill("#c-text", "Nobody came back to us about the siren")
    await page.click("#complain button[type=submit]")
    row = page.locator("#complaints tr[data-complaint]")
    await expect(row).to_have_count(1)
    await expect(row.locator("td").nth(4)).to_have_text("Nobody came back to us about the siren" + "tickets 1, 2")
    await expect(row.locator("td").nth(5)).to_have_text("1 d 0 h left")  # 24 h by default
    await row.locator("[data-complaint-step=acknowledge]").click()
    await expect(row.locator("td").nth(5)).to_have_text("met")
    await row.locator("[data-complaint-step=resolve]").click()  # without saying how: refused
    await expect(page.locator("#c-error")).to_contain_text("say how it was resolved")
    await row.locator("input[data-complaint-note]").fill("engineer visited, siren replaced")
    await row.locator("[data-complaint-step=resolve]").click()
    await expect(page.locator("#complaints tr[data-complaint]")).to_have_count(0)  # no longer open
    async with desk_pool.connection() as conn:
        cur = await conn.execute("SELECT channel, tickets, resolution, resolved_by FROM complaints")
        assert await cur.fetchall() == [("email", ["1", "2"], "engineer visited, siren replaced", "dora")]
    assert await page.evaluate("window.cspRefusals") == []
    await context.close()


async def test_a_viewer_sees_no_dispatch_form_or_moves(
    browser: Browser, desk_url: str, desk_pool: AsyncConnectionPool
) -> None:
    page = await browser.new_page()
    await page.goto(desk_url)
    await page.fill("#login-name", "vera")
    await page.fill("#login-password", PASSWORD)
    await page.click("#login button[type=submit]")
    await page.click("#tickets tr[data-key='city-1/2']")
    await expect(page.locator("#d-plan")).to_have_text("No engineer assigned.")
    await expect(page.locator("#assign")).to_be_hidden()
    await expect(page.locator("#d-moves button")).to_have_count(0)
    await expect(page.locator("#complain")).to_be_hidden()  # a viewer reads complaints, records none
    await page.click("#logout")
    await expect(page.locator("#login")).to_be_visible()
    assert await page.evaluate("sessionStorage.getItem('alarmgw-desk-token')") is None


async def test_a_part_out_shows_on_its_ticket_and_parts_received_at_the_desk_go_to_it(
    browser: Browser, desk_url: str, desk_pool: AsyncConnectionPool, tmp_path: Path
) -> None:
    from tests.centre.test_parts import send, versions

    async with desk_pool.connection() as conn:
        await conn.execute("TRUNCATE depots, depot_sites, depot_stock, part_uses, part_moves RESTART IDENTITY")
        await conn.execute(
            "INSERT INTO depots (name, is_default, created_at, created_by) VALUES ('north', true, now(), 'dora')"
        )
    await send(desk_pool, *versions("city-7", 5, "PSU", in_warranty=False)[:3])  # dispatched: none free at north
    page = await browser.new_page(viewport={"width": 1400, "height": 1200})
    await page.goto(desk_url)
    await page.fill("#login-name", "dora")
    await page.fill("#login-password", PASSWORD)
    await page.click("#login button[type=submit]")
    row = page.locator("#tickets tr[data-key='city-7/5']")
    await expect(row.locator("td").nth(5)).to_have_text("dispatchedpart out")
    await expect(page.locator("#parts-out li")).to_have_text(
        ["part out: city-7 ticket 5 (dispatched) needs PSU, none free at depot north"]
    )
    await expect(page.locator("#parts tr[data-line='north/PSU'] td")).to_have_text(
        ["north (default)", "PSU", "0", "0", "0", "1"]
    )
    await page.click("#parts-out li")
    await expect(page.locator("#d-part")).to_have_text(
        "PSU: part out: none free at depot north; the repair clock cannot be met until one comes in"
        " (out of warranty: charged at cost)"
    )
    await shot(page, "desk-part-out.png", tmp_path)
    await page.fill("#p-depot", "north")
    await page.fill("#p-part", "PSU")
    await page.fill("#p-quantity", "2")
    await page.click("#receive button[type=submit]")
    await expect(page.locator("#parts-out li")).to_have_count(0)
    await expect(page.locator("#parts tr[data-line='north/PSU'] td")).to_have_text(
        ["north (default)", "PSU", "2", "1", "1", "1"]
    )
    await expect(row.locator("td").nth(5)).to_have_text("dispatched")
    await expect(page.locator("#d-part")).to_have_text(
        "PSU: reserved at depot north (out of warranty: charged at cost)"
    )
    await page.click("[data-part-release]")
    await expect(page.locator("#d-part")).to_have_text(
        "PSU: released at depot north (out of warranty: charged at cost)"
    )
    await expect(page.locator("[data-part-release]")).to_have_count(0)
    await page.close()


async def test_the_plans_across_sites_are_on_the_page(
    browser: Browser, desk_url: str, desk_pool: AsyncConnectionPool
) -> None:
    import json
    from datetime import date

    from psycopg.types.json import Jsonb

    from tests.centre.test_plans import site_doc

    doc = json.loads(site_doc("old-2", date(2025, 3, 5))[1])
    next(v for v in doc["visits"] if v["opens"] == "2025-12-05")["done_on"] = "2025-12-20"
    async with desk_pool.connection() as conn:
        await conn.execute(
            "INSERT INTO site_assets (site_id, at, doc, received_at) VALUES ('old-2', %s, %s, %s)",
            (NOW, Jsonb(doc), NOW),
        )
    page = await browser.new_page()
    await page.goto(desk_url)
    await page.fill("#login-name", "vera")
    await page.fill("#login-password", PASSWORD)
    await page.click("#login button[type=submit]")
    visits = page.locator("#plan-visits tbody tr")
    await expect(visits).to_have_count(3)
    await expect(page.locator("#plan-visits tr[data-visit='old-2/7'] td").nth(3)).to_have_text("due")  # pre-expiry
    states = await visits.evaluate_all("rows => rows.map(r => r.cells[3].textContent)")
    assert states == ["overdue", "done", "due"]  # the visit the site recorded is done
    await expect(page.locator("#plan-ending tr[data-device='old-2/host-1'] td").nth(3)).to_have_text("2026-03-04")
    await expect(page.locator("#plan-ending tr[data-device='old-2/pir-9'] td").nth(4)).to_have_text("2026-01-01")
    await expect(page.locator("#plan-count")).to_contain_text("3 visits, 1 overdue")
