"""A browser stand-in: walks the real redirect chain hub -> provider login form -> callback.

Works with both local providers: the certified one also sends pages that a browser submits by
itself (``form_post`` to end the session of another account first), which are submitted here
as a browser would."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from urllib.parse import urljoin

import httpx

_HIDDEN = re.compile(r'<input type="hidden" name="([^"]*)" value="([^"]*)"')
_ACTION = re.compile(r'<form[^>]*action="([^"]*)"')


def form_fields(page: httpx.Response) -> tuple[str, dict]:
    """(absolute action URL, hidden fields) of the first form on ``page``."""
    match = _ACTION.search(page.text)
    if match is None:
        raise AssertionError(f"no form at {page.url}: {page.status_code} {page.text[:300]}")
    fields = {html.unescape(k): html.unescape(v) for k, v in _HIDDEN.findall(page.text)}
    return urljoin(str(page.url), html.unescape(match.group(1))), fields


def auto_submitted(client: httpx.Client, page: httpx.Response) -> httpx.Response | None:
    """The answer to a page's form if a browser would submit it by itself, else None."""
    if page.status_code != 200 or "document.forms[0].submit()" not in page.text:
        return None
    action, fields = form_fields(page)
    return client.post(action, data=fields)


def sign_out_at_provider(client: httpx.Client, end_session_url: str) -> httpx.Response:
    """Follow the hub's logout redirect to the provider's end_session endpoint and confirm
    there (the certified provider asks, as Check-in does); the answer is the provider's
    redirect back to the post_logout_redirect_uri."""
    page = client.get(end_session_url)
    for _ in range(3):
        if page.status_code in (302, 303):
            return page
        submitted = auto_submitted(client, page)
        if submitted is None:
            action, fields = form_fields(page)
            submitted = client.post(action, data={**fields, "logout": "yes"})
        page = submitted
    raise AssertionError(f"no redirect after sign-out at {end_session_url}: {page.text[:300]}")


def fill_login_form(page: httpx.Response, login: str, password: str | None) -> tuple[str, dict]:
    """(absolute action URL, form fields) of the provider's login form on ``page``."""
    match = _ACTION.search(page.text)
    if page.status_code != 200 or match is None:
        raise AssertionError(f"no login form at {page.url}: {page.status_code} {page.text[:300]}")
    fields = {html.unescape(k): html.unescape(v) for k, v in _HIDDEN.findall(page.text)}
    fields.update(username=login, password=login if password is None else password)
    return urljoin(str(page.url), html.unescape(match.group(1))), fields


@dataclass
class LoginResult:
    client: httpx.Client  # holds the hub cookies: use it as the logged-in browser
    response: httpx.Response  # the hub's answer to the callback (redirect home, or 403 page)
    redirects: list[str]

    @property
    def ok(self) -> bool:
        return self.response.status_code == 302 and "/hub/" in self.response.headers["location"]


def follow(client: httpx.Client, response: httpx.Response, redirects: list[str], limit: int = 10):
    """Follow redirects by hand (recording them) until a non-redirect or the callback's answer."""
    for _ in range(limit):
        submitted = auto_submitted(client, response)
        if submitted is not None:
            response = submitted
            continue
        if response.status_code not in (301, 302, 303, 307):
            return response
        location = urljoin(str(response.url), response.headers["location"])
        redirects.append(location)
        response = client.get(location)
        if "/oauth_callback" in location:
            return response
    raise AssertionError(f"too many redirects: {redirects}")


def login(
    hub_url: str,
    username: str,
    password: str | None = None,
    client: httpx.Client | None = None,
    next_url: str | None = None,
) -> LoginResult:
    """Sign in at the hub through the provider's login form."""
    client = client or httpx.Client(timeout=30)
    redirects: list[str] = []
    params = {"next": next_url} if next_url else None
    start = client.get(f"{hub_url}/hub/oauth_login", params=params)
    form_page = follow(client, start, redirects)
    action, fields = fill_login_form(form_page, username, password)
    after_form = client.post(action, data=fields)
    callback_response = follow(client, after_form, redirects)
    return LoginResult(client, callback_response, redirects)
