"""The authenticator and the spawner talk through a hook, never through imports."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

from traitlets import Callable

from egi_notebooks.auth import EGICheckinAuthenticator

AUTH_PACKAGE = Path(__file__).resolve().parents[2] / "egi_notebooks" / "auth"
SPAWNER_PACKAGE = AUTH_PACKAGE.parent / "spawner"


def imported_names(package: Path) -> list[tuple[str, int, str]]:
    """(file, line, module) of every import in ``package``, function-level ones included."""
    found = []
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                names = [("." * node.level) + (node.module or "")]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            found += [(path.name, node.lineno, name) for name in names]
    return found


def test_importing_the_authenticator_loads_neither_the_spawner_nor_kubespawner():
    probe = (
        "import sys\n"
        "from egi_notebooks.auth import EGICheckinAuthenticator\n"
        "EGICheckinAuthenticator()\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] == 'kubespawner'\n"
        "             or m.startswith('egi_notebooks.spawner'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env={**os.environ, "JUPYTERHUB_CRYPT_KEY": "a" * 64},
    )
    assert out.stdout.strip() == ""


def test_no_module_of_the_authenticator_imports_the_spawner_even_lazily():
    # function-level imports run only at refresh time: read the source, not sys.modules
    offenders = [f"{f}:{n} {m}" for f, n, m in imported_names(AUTH_PACKAGE) if "spawner" in m]
    assert offenders == []


def test_no_module_of_the_spawner_imports_the_authenticator():
    # the spawner revokes a shared server's tokens through the authenticator's
    # revoke_access_tokens method, found on the instance JupyterHub gives it
    offenders = [
        f"{f}:{n} {m}"
        for f, n, m in imported_names(SPAWNER_PACKAGE)
        if m.startswith(("..auth", "egi_notebooks.auth", "oauthenticator"))
    ]
    assert offenders == []


def test_tokens_changed_hook_is_a_documented_configurable_callable(monkeypatch):
    monkeypatch.setenv("JUPYTERHUB_CRYPT_KEY", "a" * 64)
    trait = EGICheckinAuthenticator.class_traits()["tokens_changed_hook"]
    assert isinstance(trait, Callable)
    assert trait.metadata.get("config") is True
    assert "tokens_changed_hook(authenticator, user, auth_state)" in trait.help
    assert EGICheckinAuthenticator().tokens_changed_hook is None
