"""The hub's EGI pages in a real browser (headless Debian Chromium driven by Playwright).

One hub for the module: EGICheckinAuthenticator against the certified provider (npm
``oidc-provider`` as EGI Check-in), the pages set up as operators do (``use_egi_pages``), the
tokens and status services from their helpers. Each page gets a screenshot in
``test-artifacts/pages/`` and an axe-core run (npm ``axe-core``, injected into the page) that
must find no serious or critical accessibility violation.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.harness.browser import Screenshots
from tests.harness.chromium import browser_context, check_page, playwright_session
from tests.harness.egi_hub import EGIHub
from tests.harness.hub import LOCAL_SPAWNER_CONFIG, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.provider("certified")]
SIGN_IN = "Sign in with EGI Check-in"
NOT_MEMBER_SENTENCE = "Sorry, you are not currently authorized to use this hub."


@pytest.fixture(scope="module")
def playwright_api():
    yield from playwright_session()


def hub_config(hub_url: str, tokens_port: int, status_port: int) -> str:
    return f"""
from egi_notebooks.hubconfig import add_status_service, add_tokens_service, use_egi_pages
{LOCAL_SPAWNER_CONFIG}
use_egi_pages(c)
c.JupyterHub.default_url = "/hub/home"  # signing in opens the home page, starts no server
add_tokens_service(c, url="http://127.0.0.1:{tokens_port}")
add_status_service(
    c,
    url="http://127.0.0.1:{status_port}",
    proxy_url="{hub_url}",
    args=["--StatusApp.first_run_delay=86400"],
)
# the Services menu lists the services a user may access: this hub lets users see them
for role in c.JupyterHub.load_roles:
    if role["name"] == "user":
        role["scopes"] = [*role["scopes"], "access:services"]
"""


@pytest.fixture(scope="module")
def egi(playwright_api, tmp_path_factory):
    egi = EGIHub(tmp_path_factory.mktemp("pages-hub"), provider_implementation="certified")
    egi.hub_config = hub_config(egi.hub.url, free_port(), free_port())
    egi.start()
    yield egi
    egi.stop()


@pytest.fixture(scope="module")
def browser(playwright_api, egi, tmp_path_factory):
    with browser_context(playwright_api, tmp_path_factory.mktemp("chromium-profile")) as context:
        yield context


@pytest.fixture(scope="module")
def shots():
    return Screenshots("pages")


@pytest.fixture
def page(browser):
    browser.clear_cookies()
    page = browser.new_page()
    yield page
    page.close()


def at_provider_form(page, egi: EGIHub) -> str:  # noqa: ANN001
    """From the hub's login page to the provider's form; the authorization request's URL."""
    page.goto(f"{egi.hub.url}/hub/login")
    issuer = egi.provider.issuer
    with page.expect_request(lambda r: r.url.startswith(issuer) and "state=" in r.url) as sent:
        page.get_by_role("button", name=SIGN_IN).click()
    page.locator("#kc-form-login").wait_for()
    assert page.url.startswith(issuer)
    return sent.value.url


def sign_in(page, egi: EGIHub, login: str) -> None:  # noqa: ANN001
    at_provider_form(page, egi)
    page.fill("#username", login)
    page.fill("#password", login)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()


def logo_loaded(page, selector: str) -> bool:  # noqa: ANN001
    return page.eval_on_selector(selector, "img => img.complete && img.naturalWidth > 0")


def test_login_page(egi, page, shots):
    page.goto(f"{egi.hub.url}/hub/login")
    button = page.get_by_role("button", name=SIGN_IN)
    button.wait_for()
    assert page.title() == "EGI Notebooks"
    assert page.get_by_role("heading", level=1).inner_text() == "EGI Notebooks"
    assert "Jupyter notebooks in your browser" in page.locator("main").inner_text()
    assert logo_loaded(page, "#login-main img") and logo_loaded(page, "#jupyterhub-logo img")
    assert (
        page.request.get(f"{egi.hub.url}/hub/logo")
        .headers["content-type"]
        .startswith("image/svg+xml")
    )
    # EGI blue, not JupyterHub's orange
    colour = button.evaluate("b => getComputedStyle(b).backgroundColor")
    assert colour == "rgb(0, 105, 180)", colour
    links = {a.inner_text(): a.get_attribute("href") for a in page.locator("footer a").all()}
    assert links["Documentation"] == "https://docs.egi.eu/users/dev-env/notebooks/"
    assert links["Acceptable use policy"].startswith("https://documents.egi.eu/")
    assert links["Privacy notice"].startswith("https://")
    assert page.locator("#egi-notice").is_hidden()
    check_page(page, shots, "login")
    # JupyterHub follows the system's dark mode: still readable, the logo on its light pill
    page.emulate_media(color_scheme="dark")
    page.reload()
    page.get_by_role("button", name=SIGN_IN).wait_for()
    assert page.evaluate("document.documentElement.dataset.bsTheme") == "dark"
    check_page(page, shots, "login-dark")


def test_user_in_no_allowed_vo_sees_the_vos_that_give_access(egi, page, shots):
    sign_in(page, egi, "mallory")
    heading = page.get_by_role("heading", level=1)
    assert heading.inner_text() == "No access with this account"
    body = page.locator("main").inner_text()
    assert NOT_MEMBER_SENTENCE not in body and "403 :" not in body, body
    vos = page.locator("#egi-access-vos li").all_inner_texts()
    assert vos == ["Members of vo.access.egi.eu", "Members of vo.notebooks.egi.eu"], vos
    enrol = page.get_by_role("link", name="Ask to join a VO that gives access")
    assert enrol.get_attribute("href") == "https://aai.egi.eu/registry/co_petitions/start/coef:111"
    check_page(page, shots, "not-member-403")

    # "sign in with another account": signed out at the provider, back on the login page
    page.locator("#egi-switch-account").click()
    page.wait_for_url(re.compile(re.escape(egi.provider.issuer)))
    shots.take(page, "provider-sign-out")
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(f"{egi.hub.url}/hub/login")
    page.get_by_role("button", name=SIGN_IN).click()
    page.locator("#kc-form-login").wait_for()  # the provider asks for a login again


def test_cancel_at_the_provider_returns_to_the_login_page(egi, page, shots):
    authorize = at_provider_form(page, egi)
    # what the provider does when the user cancels: back to the callback with access_denied
    state = parse_qs(urlsplit(authorize).query)["state"][0]
    page.goto(
        f"{egi.hub.url}/hub/oauth_callback?error=access_denied"
        f"&error_description=User+cancelled&state={state}"
    )
    page.wait_for_url(re.compile(re.escape(f"{egi.hub.url}/hub/login")))
    notice = page.locator("#egi-notice")
    notice.wait_for()
    assert "cancelled" in notice.inner_text()
    page.get_by_role("button", name=SIGN_IN).wait_for()
    check_page(page, shots, "login-cancelled")


def test_error_pages_say_what_happened_in_words(egi, page, shots):
    page.goto(f"{egi.hub.url}/hub/no-such-page")
    assert page.get_by_role("heading", level=1).inner_text() == "Page not found"
    body = page.locator("main").inner_text()
    assert "None" not in body and "404 :" not in body, body
    assert page.get_by_role("button", name="Back to EGI Notebooks").is_visible()
    check_page(page, shots, "error-404")

    sign_in(page, egi, "alice")
    page.wait_for_url(f"{egi.hub.url}/hub/home")
    page.goto(f"{egi.hub.url}/hub/admin")
    assert page.get_by_role("heading", level=1).inner_text() == "Not allowed"
    body = page.locator("main").inner_text()
    assert "administration page" in body and "admin-ui" not in body, body
    check_page(page, shots, "error-403-not-admin")


def test_home_page_shows_the_users_vos(egi, page, shots):
    sign_in(page, egi, "alice")
    page.goto(f"{egi.hub.url}/hub/home")
    section = page.locator("#egi-vos")
    section.wait_for()
    items = section.locator("li").all_inner_texts()
    assert "vo.access.egi.eu (primary VO)" in items and "vo.notebooks.egi.eu" in items, items
    assert page.locator("#egi-primary-vo").inner_text() == "vo.access.egi.eu"
    # the Services menu: readable names, no tokens service
    page.get_by_role("button", name="Services").click()
    menu = page.locator(".dropdown-menu a").all_inner_texts()
    assert menu == ["Service status"], menu
    check_page(page, shots, "home")


def test_token_page_says_how_notebooks_get_the_checkin_token(egi, page, shots):
    sign_in(page, egi, "alice")
    page.goto(f"{egi.hub.url}/hub/token")
    section = page.locator("#egi-checkin-token")
    section.wait_for()
    text = section.inner_text()
    assert f"{egi.hub.url}/services/tokens/token" in text and "JUPYTERHUB_API_TOKEN" in text, text
    check_page(page, shots, "token")


def test_admin_page_labels_the_probe_user(egi, page, shots):
    sign_in(page, egi, "admin")
    page.goto(f"{egi.hub.url}/hub/admin")
    note = page.locator("#egi-probe-note")
    note.wait_for()
    assert "monitoring account" in note.inner_text()
    # the React app still renders below the note, with its list of users
    page.locator("#react-admin-hook").get_by_text("admin@egi.eu").first.wait_for()
    shots.take(page, "admin")
