"""The EGI pages' words and set-up: error texts, access in words, ``use_egi_pages``, and every
template rendering on top of the installed JupyterHub's templates (and of JupyterHub 5.5's,
when its environment is there) the way JupyterHub loads them."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, PrefixLoader
from traitlets.config import Config

from egi_notebooks.hubconfig import (
    add_accounting_service,
    add_status_service,
    add_tokens_service,
    use_egi_pages,
)
from egi_notebooks.pages import (
    LOGO,
    TEMPLATES,
    EGIPages,
    PageContext,
    access_vos,
    error_text,
    page_context,
    scopes_in_words,
)

ROOT = Path(__file__).resolve().parents[2]
JUPYTERHUB_TEMPLATES = [
    p
    for p in (
        ROOT / ".venv" / "share" / "jupyterhub" / "templates",
        ROOT / ".venv-jh55" / "share" / "jupyterhub" / "templates",
    )
    if p.is_dir()
]


def test_scope_names_become_words():
    message = "Action is not authorized with current scopes; requires any of [admin-ui]"
    assert scopes_in_words(message) == [
        "open the administration page, which is for the hub's administrators"
    ]
    text = error_text(403, message)
    assert text.title == "Not allowed" and "admin-ui" not in text.what
    two = scopes_in_words("requires any of [access:servers!server=bob/, servers!user=bob]")
    assert two == [
        "use this notebook server, which belongs to another account",
        "start or stop this server",
    ]
    assert scopes_in_words("requires any of [custom:thing]") == ["do this"]


@pytest.mark.parametrize(
    "message", [None, "None", "", "No access to resources or resources not found"]
)
def test_404_never_says_none(message):
    text = error_text(404, message)
    assert text.title == "Page not found"
    assert "None" not in text.what and text.what and text.todo


def test_error_texts_have_a_title_what_and_todo():
    for code in (400, 401, 403, 405, 500, 502, 503):
        text = error_text(code, None)
        assert text.title and text.what and text.todo and "None" not in text.what
    assert error_text(503, "EGI Check-in did not answer; try again.").what.startswith("EGI")
    denied = error_text(400, "OAuth error: access_denied")
    assert denied.title == "Sign-in did not complete" and "access_denied" in denied.what


def test_access_in_words():
    authenticator = SimpleNamespace(
        allowed_vos={"vo.b.eu", "vo.a.eu"},
        allowed_entitlements={"vo.c.eu:team:role=manager", "not a pattern:"},
    )
    assert access_vos(authenticator) == [
        "Members of vo.a.eu",
        "Members of vo.b.eu",
        "not a pattern:",
        "Members of vo.c.eu, group team, with the role manager",
    ]
    assert access_vos(None) == []


def test_use_egi_pages_sets_templates_vars_and_logo():
    c = Config()
    c.JupyterHub.template_paths = ["/srv/mine"]
    c.JupyterHub.template_vars = {"x": 1}
    use_egi_pages(c)
    use_egi_pages(c)  # twice: still one entry
    assert c.JupyterHub.template_paths == ["/srv/mine", str(TEMPLATES)]
    assert c.JupyterHub.template_vars == {"x": 1, "egi": page_context}
    assert c.JupyterHub.logo_file == str(LOGO) and LOGO.is_file()
    own = Config()
    own.JupyterHub.logo_file = "/srv/logo.png"
    use_egi_pages(own)
    assert own.JupyterHub.logo_file == "/srv/logo.png"
    use_egi_pages(own, logo_file="/srv/other.svg")
    assert own.JupyterHub.logo_file == "/srv/other.svg"


def test_services_get_readable_names_and_tokens_is_hidden():
    c = Config()
    add_tokens_service(c)
    add_status_service(c)
    add_accounting_service(c)
    by_name = {s["name"]: s for s in c.JupyterHub.services}
    assert by_name["tokens"]["display"] is False
    assert by_name["status"]["info"]["display_name"] == "Service status"
    assert by_name["accounting"]["info"]["display_name"] == "Accounting"
    assert "display" not in by_name["status"]
    app = SimpleNamespace(services=c.JupyterHub.services, base_url="/", public_url="")
    context = PageContext(EGIPages(), app)
    assert context.token_url() == "/services/tokens/token"
    app.authenticator = SimpleNamespace(
        oauth_callback_url="https://nb.example.org/hub/oauth_callback"
    )
    assert context.token_url() == "https://nb.example.org/services/tokens/token"
    app.public_url = "https://public.example.org/base/"
    assert context.token_url() == "https://public.example.org/base/services/tokens/token"
    assert context.probe_users() == ["egi-notebooks-probe"]
    service = SimpleNamespace(name="status", info={"display_name": "Service status"})
    assert context.service_name_of(service) == "Service status"
    renamed = PageContext(EGIPages(service_display_names={"status": "Status"}), app)
    assert renamed.service_name_of(service) == "Status"


def test_token_file_only_with_egispawner():
    from egi_notebooks.spawner import EGISpawner

    app = SimpleNamespace(spawner_class=EGISpawner, config=Config())
    assert PageContext(EGIPages(), app).token_file_env() == "EGI_ACCESS_TOKEN_FILE"
    app.config.EGISpawner.token_file_env = "MY_TOKEN_FILE"
    assert PageContext(EGIPages(), app).token_file_env() == "MY_TOKEN_FILE"
    app.spawner_class = object
    assert PageContext(EGIPages(), app).token_file_env() == ""


class FakeAuthenticator:
    allowed_vos = {"vo.notebooks.egi.eu"}
    allowed_entitlements: set[str] = set()
    custom_403_message = "Sorry, you are not currently authorized to use this hub."
    client_id = "hub"
    metadata = SimpleNamespace(document={"end_session_endpoint": "https://aai/logout"})

    def post_logout_uri_for(self, handler) -> str:
        return "https://hub.example.org/hub/login"


def environment(jupyterhub_templates: Path) -> Environment:
    """JupyterHub's own loader set-up (jupyterhub.app.init_tornado_settings)."""
    loader = ChoiceLoader(
        [
            PrefixLoader({"templates": FileSystemLoader([str(jupyterhub_templates)])}, "/"),
            FileSystemLoader([str(TEMPLATES), str(jupyterhub_templates)]),
        ]
    )
    return Environment(loader=loader, autoescape=True)


def namespace(**kw):
    app = SimpleNamespace(
        authenticator=FakeAuthenticator(),
        services=[{"name": "tokens", "command": ["python", "-m", "egi_notebooks.cli", "tokens"]}],
        base_url="/",
        public_url="",
        spawner_class=None,
        config={},
    )
    ns = dict(
        egi=PageContext(EGIPages(), app),
        base_url="/hub/",
        prefix="/",
        user=None,
        login_url="/hub/login",
        logout_url="/hub/logout",
        login_service="EGI Check-in",
        static_url=lambda path, **_: f"/hub/static/{path}",
        services=[],
        parsed_scopes={},
        expanded_scopes=set(),
        xsrf="x",
        xsrf_token="x",
        version_hash="",
    )
    ns.update(kw)
    return ns


@pytest.mark.skipif(not JUPYTERHUB_TEMPLATES, reason="no JupyterHub templates directory found")
@pytest.mark.parametrize("templates", JUPYTERHUB_TEMPLATES, ids=lambda p: p.parts[-4])
def test_templates_render_on_jupyterhub(templates):
    env = environment(templates)
    login = env.get_template("login.html").render(
        **namespace(authenticator_login_url="/hub/oauth_login", custom_html="")
    )
    assert "Sign in with EGI Check-in" in login and "EGI Notebooks" in login
    not_member = env.get_template("error.html").render(
        **namespace(
            status_code=403, status_message="x", message=FakeAuthenticator.custom_403_message
        )
    )
    assert "No access with this account" in not_member
    assert FakeAuthenticator.custom_403_message not in not_member
    assert "Members of vo.notebooks.egi.eu" in not_member
    assert "https://aai/logout?client_id=hub&amp;post_logout_redirect_uri=" in not_member
    missing = env.get_template("404.html").render(
        **namespace(status_code=404, status_message=None, message=None)
    )
    assert "Page not found" in missing and "None" not in missing.split("<main")[1]
