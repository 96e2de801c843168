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
    offenders = []
    for path in sorted(AUTH_PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                names = [("." * node.level) + (node.module or "")]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                if "spawner" in name:
                    offenders.append(f"{path.name}:{node.lineno} {name}")
    assert offenders == []


def test_tokens_changed_hook_is_a_documented_configurable_callable(monkeypatch):
    monkeypatch.setenv("JUPYTERHUB_CRYPT_KEY", "a" * 64)
    trait = EGICheckinAuthenticator.class_traits()["tokens_changed_hook"]
    assert isinstance(trait, Callable)
    assert trait.metadata.get("config") is True
    assert "tokens_changed_hook(authenticator, user, auth_state)" in trait.help
    assert EGICheckinAuthenticator().tokens_changed_hook is None
