"""The status and accounting pages of the demo in headless Debian Chromium (Playwright).

The demo runs as a user runs it, in a state directory whose accounting database already holds
a month of sessions (three VOs, several users), so that the charts have something to draw.
Each page gets a full-page screenshot in ``test-artifacts/service-pages/`` and an axe-core run
that must find no serious or critical accessibility violation; both pages lead back to the hub.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from egi_notebooks.services.accounting import db
from egi_notebooks.services.accounting.store import Observation, Store, make_vmuuid
from tests.harness.browser import DemoProcess, Screenshots
from tests.harness.chromium import browser_context, check_page, playwright_session
from tests.harness.ports import free_port

pytestmark = pytest.mark.e2e
SIGN_IN = "Sign in with EGI Check-in"
USERS = {
    "alice@egi.eu": "vo.notebooks.egi.eu",
    "bob@egi.eu": "vo.access.egi.eu",
    "carol@egi.eu": "vo.notebooks.egi.eu",
    "dave@egi.eu": "vo.other.eu",
}


def seed_accounting(state: Path) -> None:
    """Sessions on most of the last 30 days, in the demo's accounting database."""
    state.mkdir(parents=True)
    engine, sessions = db.open_database(f"sqlite:///{state / 'accounting.sqlite'}")
    store = Store(sessions)
    today = datetime.now(UTC).replace(hour=8, minute=0, second=0, microsecond=0)
    for days_ago in range(1, 29):
        for i, (user, vo) in enumerate(USERS.items()):
            if (days_ago + i) % 3 == 0:
                continue
            start = int((today - timedelta(days=days_ago)).timestamp()) + i * 600
            hours = 0.5 + ((days_ago * 7 + i * 3) % 5) / 2
            obs = Observation(make_vmuuid("seed", user, "", start), user, "", start, vo)
            store.apply_poll([obs], start + int(hours * 3600))
            store.apply_poll([], start + int(hours * 3600) + 60)
    engine.dispose()


@pytest.fixture(scope="module")
def playwright_api():
    yield from playwright_session()


@pytest.fixture(scope="module")
def demo(playwright_api, tmp_path_factory):
    state = tmp_path_factory.mktemp("demo") / "state"
    seed_accounting(state)
    demo = DemoProcess(free_port(), state)
    demo.command.remove("--fresh")  # keep the seeded database
    demo.start()
    yield demo
    if demo.proc is not None and demo.proc.poll() is None:
        demo.interrupt()


@pytest.fixture(scope="module")
def browser(playwright_api, demo, tmp_path_factory):
    with browser_context(playwright_api, tmp_path_factory.mktemp("chromium-profile")) as context:
        yield context


@pytest.fixture(scope="module")
def shots():
    return Screenshots("service-pages")


def hub_look(page) -> None:  # noqa: ANN001
    """The hub's stylesheet applied, and a header link back to the hub's home."""
    assert page.evaluate(
        "() => [...document.styleSheets].some(s => s.href && s.href.endsWith("
        "'/hub/static/css/style.min.css') && s.cssRules.length > 100)"
    )
    home = page.get_by_role("link", name="Home", exact=True)
    assert home.get_attribute("href") == "/hub/home"


def test_status_page(browser, demo, shots):
    page = browser.new_page()
    page.goto(f"{demo.url}/services/status/")
    deadline = time.monotonic() + 180  # the probe's first run starts 5 s after the hub
    while page.locator("#status").inner_text().strip() == "UNKNOWN":
        assert time.monotonic() < deadline, "no probe result in 180 s"
        time.sleep(2)
        page.reload()
    assert page.locator("svg[role=img] title").count() >= 1
    hub_look(page)
    check_page(page, shots, "status")
    page.get_by_role("link", name="Home", exact=True).click()
    page.get_by_role("button", name=SIGN_IN).wait_for()  # back at the hub
    page.close()


def test_accounting_page(browser, demo, shots):
    page = browser.new_page()
    page.goto(f"{demo.url}/services/accounting/")
    page.get_by_role("button", name=SIGN_IN).click()
    page.locator("#kc-form-login").wait_for()
    # the provider's login page says what it is and lists the demo accounts
    assert page.get_by_role("heading", level=1).inner_text() == "EGI Check-in (demo)"
    accounts = page.get_by_role("table", name="Demo accounts")
    for login in ("alice", "bob", "admin", "mallory"):
        assert accounts.get_by_role("cell", name=login, exact=True).count() == 1
    check_page(page, shots, "provider-login")
    page.fill("#username", "admin")
    page.fill("#password", "admin")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="Sessions per day").wait_for()
    assert page.url.startswith(f"{demo.url}/services/accounting/")
    today = datetime.now(UTC).date()
    assert page.locator("#from").input_value() == str(today - timedelta(days=29))
    assert page.locator("#to").input_value() == str(today)
    for chart in ("sessions-chart", "hours-chart", "users-chart"):
        assert page.locator(f"#{chart} rect").count() > 3, chart
    for user in USERS:
        assert page.get_by_role("cell", name=user).count() == 1
    hub_look(page)
    check_page(page, shots, "accounting")

    # a range that ends before it starts is explained in the form
    page.fill("#from", str(today))
    page.fill("#to", str(today - timedelta(days=3)))
    page.get_by_role("button", name="Show").click()
    page.get_by_role("alert").wait_for()
    assert "before it starts" in page.get_by_role("alert").inner_text()
    check_page(page, shots, "accounting-bad-range")

    # the CSV stays (with the browser's session cookie)
    answer = page.request.get(f"{demo.url}/services/accounting/?format=csv&by=vo")
    assert answer.ok and "attachment" in answer.headers["content-disposition"]
    lines = answer.text().splitlines()
    assert lines[0] == "vo,sessions,wall_hours,cpu_hours" and len(lines) == 4, lines
    page.close()
