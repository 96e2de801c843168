"""The demo in a real browser: headless Debian Chromium driven by Playwright.

One demo (``egi-notebooks demo`` as a process on a free port, fresh state dir) and one browser
serve the module. Steps, each with a screenshot in ``test-artifacts/browser/``: open the hub,
sign in through the provider's form as alice, land on the hub home page, start a server, see
JupyterLab load, run a cell, stop the server; mallory (no allowed VO) gets the 403 page; the
status page shows the probe's result. At the end Ctrl-C (SIGINT) must stop the demo and leave
no process and no listening port behind.
"""

from __future__ import annotations

import re
import time

import pytest

from tests.harness.browser import DemoProcess, Screenshots, mentioning, stop_and_check
from tests.harness.chromium import browser_context, playwright_session
from tests.harness.ports import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.provider("certified")]
SIGN_IN = "Sign in with EGI Check-in"  # the hub's login button (login_service)
LAB_TIMEOUT = 60_000  # ms: a first JupyterLab start on 2 busy cores
KERNEL_TIMEOUT = 30_000


@pytest.fixture(scope="module")
def playwright_api():
    yield from playwright_session(axe=False)


@pytest.fixture(scope="module")
def demo(playwright_api, tmp_path_factory):
    demo = DemoProcess(free_port(), tmp_path_factory.mktemp("demo") / "state").start()
    try:
        yield demo
    except BaseException:
        demo.kill()
        raise
    problems = stop_and_check(demo)
    assert not problems, "Ctrl-C left the demo half-stopped:\n" + "\n".join(problems)


@pytest.fixture(scope="module")
def browser(playwright_api, demo, tmp_path_factory):
    profile = tmp_path_factory.mktemp("chromium-profile")
    with browser_context(playwright_api, profile, timeout_ms=20_000) as context:
        yield context


@pytest.fixture(scope="module")
def shots():
    return Screenshots("browser")


def sign_in(page, demo: DemoProcess, login: str, shots: Screenshots | None = None) -> None:
    """From the hub's login page through the provider's form (password = login name)."""
    page.goto(f"{demo.url}/hub/home")
    page.get_by_role("button", name=SIGN_IN).wait_for()
    if shots:
        shots.take(page, "hub-login")
    page.get_by_role("button", name=SIGN_IN).click()
    page.locator("#kc-form-login").wait_for()
    assert page.url.startswith("http://127.0.0.1:") and "/auth" in page.url  # the provider
    page.fill("#username", login)
    page.fill("#password", login)
    if shots:
        shots.take(page, "provider-form")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()


def test_alice_signs_in_runs_a_cell_and_stops_her_server(demo, browser, shots):
    page = browser.new_page()
    sign_in(page, demo, "alice", shots)

    # the hub home page, signed in as alice, her server not running yet
    page.wait_for_url(f"{demo.url}/hub/home")
    page.get_by_text("alice@egi.eu").first.wait_for()
    start = page.locator("#start")
    assert start.inner_text().strip() == "Start My Server"
    shots.take(page, "hub-home")

    # start a server (through the profile form when the demo offers profiles): JupyterLab
    # loads in its place
    start.click()
    page.wait_for_load_state()
    if "/hub/spawn/" in page.url and page.locator("#spawn_form").count():
        shots.take(page, "server-options")
        page.locator("#spawn_form").get_by_role("button", name="Start").click()
    page.locator("#jp-main-dock-panel").wait_for(timeout=LAB_TIMEOUT)
    assert page.url.startswith(f"{demo.url}/user/alice@egi.eu/lab")
    page.get_by_text("Python 3 (ipykernel)").first.wait_for(timeout=LAB_TIMEOUT)  # kernelspecs
    no_news = page.get_by_role("button", name="No", exact=True)  # JupyterLab's news pop-up
    if no_news.is_visible():
        no_news.click()
    shots.take(page, "jupyterlab")

    # run a cell in a new Python console (a console writes no file into her home). A new
    # launcher tab first: JupyterLab may restore an earlier workspace without one.
    page.locator(".lm-TabBar-addButton").filter(visible=True).first.click()
    page.locator('.jp-LauncherCard[data-category="Console"]').filter(visible=True).click()
    console = page.locator(".jp-ConsolePanel").filter(visible=True)
    console.wait_for()
    page.get_by_text("Python 3 (ipykernel) | Idle").wait_for(timeout=KERNEL_TIMEOUT)
    prompt = console.locator(".jp-CodeConsole-promptCell .cm-content")
    prompt.click()
    prompt.press_sequentially("6*7")
    page.keyboard.press("Shift+Enter")
    output = console.locator(".jp-CodeConsole-content .jp-OutputArea-output").last
    output.wait_for(timeout=KERNEL_TIMEOUT)
    assert output.inner_text().strip() == "42"
    shots.take(page, "cell-6x7-is-42")

    # stop it from the hub home page: the button turns back into "Start My Server"
    page.goto(f"{demo.url}/hub/home")
    page.locator("#stop").click()
    page.locator("#stop").wait_for(state="hidden", timeout=KERNEL_TIMEOUT)
    assert page.locator("#start").inner_text().strip() == "Start My Server"
    shots.take(page, "server-stopped")
    # ... and her server and kernel processes are gone (other hubs on the machine may have
    # an alice too: only processes in the demo's home for alice count)
    alice_home = f"{demo.state_dir}/home/alice@egi.eu"
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        left = mentioning([alice_home], among=demo.descendants())
        if not left:
            break
        time.sleep(0.3)
    assert not left, f"alice's server processes survived the stop: {left}"
    page.close()


def test_user_without_allowed_vo_gets_403(demo, browser, shots):
    browser.clear_cookies()
    page = browser.new_page()
    sign_in(page, demo, "mallory")
    # the EGI page: one heading, the VOs that give access, the way to enrol
    assert page.get_by_role("heading", level=1).inner_text() == "No access with this account"
    vos = page.locator("#egi-access-vos li").all_inner_texts()
    assert vos == ["Members of vo.access.egi.eu", "Members of vo.notebooks.egi.eu"], vos
    assert "not currently authorized" not in page.locator("body").inner_text()
    shots.take(page, "mallory-403")
    # and no hub session: the home page sends her back to the login page
    page.goto(f"{demo.url}/hub/home")
    page.get_by_role("button", name=SIGN_IN).wait_for()
    page.close()


def test_status_page_shows_the_probe_result(demo, browser, shots):
    """The demo's first probe starts ~5 s after start and takes ~10 s: reload until it reports."""
    page = browser.new_page()
    deadline = time.monotonic() + 90
    while True:
        page.goto(f"{demo.url}/services/status/")
        code = page.locator("#status").inner_text().strip()
        if code != "UNKNOWN" or time.monotonic() > deadline:
            break
        time.sleep(2)
    message = page.locator("#message").inner_text()
    shots.take(page, "status-page")
    assert code == "OK", f"status {code}: {message}"
    assert re.search(r"\d+(\.\d+)? s", page.locator("table").first.inner_text())  # phase timings
    page.close()
