"""The page shell of the services' own pages (status, accounting) in the hub's look.

The services run as processes of their own, without the hub's templates: a page links the
hub's stylesheet (``<hub prefix>static/css/style.min.css``, Bootstrap 5 in JupyterHub 5.5 and
6.x) and the hub's logo, and has a header whose navigation leads back to the hub.
"""

from __future__ import annotations

import os
from html import escape

# EGI's blue and its darker shade, as on the hub's pages
EGI_CSS = """
:root { --egi-blue: #0069b4; --egi-blue-dark: #00508a; --bs-link-color: #0069b4;
  --bs-link-color-rgb: 0, 105, 180; --bs-link-hover-color: #00508a; }
.navbar { border-bottom: 4px solid var(--egi-blue); }
.navbar .egi-logo { display: inline-block; background: #fff; border-radius: 6px;
  padding: 2px 6px; }
.navbar .egi-logo img { height: 36px; }
.navbar .nav-link { color: var(--bs-body-color); }
.navbar .nav-link[aria-current="page"] { font-weight: 600; color: var(--egi-blue-dark);
  text-decoration: underline; }
main.egi-service { padding-top: 1.5rem; padding-bottom: 3rem; }
main.egi-service h1 { font-size: 1.75rem; font-weight: 600; margin-bottom: 1rem; }
main.egi-service h2 { font-size: 1.25rem; font-weight: 600; margin-top: 2rem; }
main.egi-service table { width: auto; }
.egi-chart { max-width: 100%; height: auto; }
.btn-egi { --bs-btn-color: #fff; --bs-btn-bg: var(--egi-blue);
  --bs-btn-border-color: var(--egi-blue); --bs-btn-hover-color: #fff;
  --bs-btn-hover-bg: var(--egi-blue-dark); --bs-btn-hover-border-color: var(--egi-blue-dark); }
"""


def hub_prefix(service_prefix: str) -> str:
    """The hub's URL prefix (``/hub/`` under the default base URL) for a service's prefix
    (``<base>services/<name>/``); ``$JUPYTERHUB_BASE_URL`` when the hub sets it."""
    base = os.environ.get("JUPYTERHUB_BASE_URL")
    if not base:
        base = service_prefix.rsplit("services/", 1)[0] if "services/" in service_prefix else "/"
    return base.rstrip("/") + "/hub/"


def nav_links(hub: str) -> list[tuple[str, str, str]]:
    """(key, label, href) of the header's links."""
    base = hub[: -len("hub/")]
    return [
        ("home", "Home", f"{hub}home"),
        ("status", "Status", f"{base}services/status/"),
        ("accounting", "Accounting", f"{base}services/accounting/"),
        ("admin", "Admin", f"{hub}admin"),
    ]


def render(
    title: str,
    body: str,
    service_prefix: str,
    current: str,
    links: list[str] | None = None,
    extra_css: str = "",
) -> str:
    """A whole page: ``body`` (HTML) inside the hub's header and a ``<main>``.

    ``current``: the header link of this page; ``links``: the keys of the header links to show
    (default: all)."""
    hub = hub_prefix(service_prefix)
    items = []
    for key, label, href in nav_links(hub):
        if links is not None and key not in links:
            continue
        here = ' aria-current="page"' if key == current else ""
        items.append(
            f'<li class="nav-item"><a class="nav-link" href="{escape(href)}"{here}>'
            f"{escape(label)}</a></li>"
        )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title>
<link rel="stylesheet" href="{escape(hub)}static/css/style.min.css">
<style>{EGI_CSS}{extra_css}</style>
</head><body>
<header><nav class="navbar navbar-expand bg-body-tertiary" aria-label="EGI Notebooks">
<div class="container-fluid">
<a class="navbar-brand egi-logo" href="{escape(hub)}home"><img src="{escape(hub)}logo"
 alt="EGI Notebooks: home"></a>
<ul class="navbar-nav me-auto">{"".join(items)}</ul>
</div></nav></header>
<main class="container egi-service" id="main">
{body}
</main>
</body></html>"""
