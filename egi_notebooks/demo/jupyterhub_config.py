"""JupyterHub configuration of ``egi-notebooks demo`` (read by the hub the demo starts).

Everything machine-specific comes from environment variables the demo sets. Production
configuration lives in ``jupyterhub_config.py.example`` at the top of the repository.
"""

import html
import os
from typing import Any

from egi_notebooks.hubconfig import (
    add_accounting_service,
    add_status_service,
    add_tokens_service,
    restrict_admin_role,
    use_egi_pages,
)
from egi_notebooks.spawner.profiles import Membership, filter_profiles
from egi_notebooks.spawner.spawner import ProfileRefused

c = get_config()  # type: ignore[name-defined]  # noqa: F821 (provided by JupyterHub)
env = os.environ
state = env["EGI_DEMO_STATE"]
hub_url = f"http://127.0.0.1:{env['EGI_DEMO_PORT']}"

c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = int(env["EGI_DEMO_PORT"])
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = int(env["EGI_DEMO_HUB_PORT"])
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{env['EGI_DEMO_PROXY_API_PORT']}"
c.JupyterHub.db_url = f"sqlite:///{state}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = f"{state}/jupyterhub_cookie_secret"
c.JupyterHub.cleanup_servers = True

# EGI Check-in, played by the local provider
c.JupyterHub.authenticator_class = "egicheckin"
c.EGICheckinAuthenticator.oidc_issuer = env["EGI_DEMO_ISSUER"]
c.EGICheckinAuthenticator.client_id = env["EGI_DEMO_CLIENT_ID"]
c.EGICheckinAuthenticator.client_secret = env["EGI_DEMO_CLIENT_SECRET"]
c.EGICheckinAuthenticator.oauth_callback_url = f"{hub_url}/hub/oauth_callback"
c.EGICheckinAuthenticator.allowed_vos = {"vo.notebooks.egi.eu", "vo.access.egi.eu"}
c.EGICheckinAuthenticator.admin_entitlements = {"vo.notebooks.egi.eu:role=manager"}
# As in production: the admin role without admin:auth_state, so the users' refresh tokens
# never leave the hub, not even to admins (what the token page says).
restrict_admin_role(c)
c.EGICheckinAuthenticator.vo_priority = ["vo.notebooks.egi.eu"]

# No cluster on a laptop: JupyterLab servers run as local processes. Production uses
# c.JupyterHub.spawner_class = "egi-kubespawner".
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = f"{state}/home/{{username}}"
c.Spawner.default_url = "/lab"
c.JupyterHub.default_url = "/hub/home"
c.JupyterHub.allow_named_servers = True
if os.getuid() == 0:
    c.Spawner.args = ["--ServerApp.allow_root=True"]
c.Spawner.environment = {
    "EGI_NOTEBOOKS_TOKEN_URL": f"{hub_url}/services/tokens/token",
}

# The spawn form offers profiles by VO, as notebooks.egi.eu does (there: EGISpawner's
# profile_list, same vos/entitlements keys). Local processes get no CPU or memory limits: the
# choice is recorded (user_options.profile, the accounting's flavour), and a profile the
# user's VOs do not allow is refused, from the form or the API.
DEMO_PROFILES: list[dict[str, Any]] = [
    {"display_name": "Small (1 CPU, 2 GB)", "slug": "small", "default": True},
    {"display_name": "Large (4 CPU, 8 GB)", "slug": "large", "vos": ["vo.notebooks.egi.eu"]},
]
DEFAULT_PROFILE = "small"  # offered to everyone: the API and the status probe start it


async def offered_profiles(spawner) -> list:
    membership = Membership.from_auth_state(await spawner.user.get_auth_state())
    return filter_profiles(DEMO_PROFILES, membership)


async def profile_form(spawner) -> str:
    choices = []
    for profile in await offered_profiles(spawner):
        slug, checked = profile["slug"], " checked" if profile.get("default") else ""
        choices.append(
            f'<div class="form-check"><input class="form-check-input" type="radio" '
            f'name="profile" id="profile-{slug}" value="{slug}"{checked}>'
            f'<label class="form-check-label" for="profile-{slug}">'
            f"{html.escape(profile['display_name'])}</label></div>"
        )
    return "".join(choices)


async def refuse_profiles_not_offered(spawner) -> None:
    wanted = (spawner.user_options or {}).get("profile") or DEFAULT_PROFILE
    if wanted not in {p["slug"] for p in await offered_profiles(spawner)}:
        raise ProfileRefused(403, f"Profile {wanted!r} is not available to you.")


c.Spawner.options_form = profile_form
c.Spawner.options_from_form = "simple"
c.Spawner.pre_spawn_hook = refuse_profiles_not_offered

use_egi_pages(c)  # the hub's pages in EGI's look (login, 403, errors, home, token)
add_tokens_service(c, url=f"http://127.0.0.1:{env['EGI_DEMO_TOKENS_PORT']}")

# The status probe: a run shortly after start, then hourly; least-privilege role.
add_status_service(
    c,
    url=f"http://127.0.0.1:{env['EGI_DEMO_STATUS_PORT']}",
    proxy_url=hub_url,
    args=[
        f"--StatusApp.history_file={state}/status-history.json",
        "--StatusApp.first_run_delay=5",
        "--StatusApp.check_home=~",
        f"--StatusApp.token_url={hub_url}/services/tokens/token",
    ],
)

# Accounting: sessions every 30 s into SQLite; APEL messages into a dirq queue in the state
# directory (what ssmsend would send); the admin view at /services/accounting/.
add_accounting_service(
    c,
    url=f"http://127.0.0.1:{env['EGI_DEMO_ACCOUNTING_PORT']}",
    db_url=f"sqlite:///{state}/accounting.sqlite",
    args=[
        "--poll-interval=30",
        f"--spool-dir={state}/apel-outgoing",
        "--ApelRenderer.site_name=EGI-NOTEBOOKS-DEMO",
        "--Collector.hub_id=demo.127.0.0.1",
        "--Collector.vo_priority=vo.notebooks.egi.eu",
    ],
)

extra = env.get("EGI_DEMO_EXTRA_CONFIG")
if extra:
    with open(extra) as f:
        exec(compile(f.read(), extra, "exec"))  # noqa: S102 (operator's own file)
