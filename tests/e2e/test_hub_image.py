"""The hub image's install step, without a container engine.

``docker/hub/Dockerfile`` installs the egi-notebooks wheel into the zero-to-jupyterhub hub
image with that image's frozen packages as pip constraints, and a JupyterHub security release
over the image's own 5.5.0. No container engine runs on the test machines, so this does the
same in a fresh virtual environment: the base image's JupyterHub, oauthenticator, kubespawner,
kubernetes_asyncio and pycurl first (as the base image has them), then the Dockerfile's install
step (the wheel with ``[accounting]`` and the packages it names) under the same constraints
file. It checks that pip installed the pinned JupyterHub over the base image's, kept every
other pin, that the environment is consistent and that what the hub loads from the package
(entry points, console script, the accounting schema) works with those versions.

The venv has this machine's Python (3.11), the image has 3.12; the image's other packages
(other authenticators, psycopg2, ...) are not installed here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from tests.harness.hub_image import (
    BASE_PACKAGES,
    CONSTRAINTS,
    ROOT,
    base_pins,
    dockerfile_named_packages,
    pins,
    upgraded,
)
from tests.harness.missing import missing

pytestmark = pytest.mark.e2e

INSTALL_TIMEOUT = 600


class Venv:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.python = path / "bin" / "python"
        self.base_versions: dict[str, str] = {}  # as the base image had them

    def run(self, *args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(a) for a in args], capture_output=True, text=True, timeout=timeout,
            env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
        )  # fmt: skip

    def pip_install(self, *args: str | Path, constraints: Path = CONSTRAINTS) -> None:
        result = self.run(self.python, "-m", "pip", "install", "--constraint", constraints,
                          *args, timeout=INSTALL_TIMEOUT)  # fmt: skip
        if result.returncode == 0:
            return
        message = f"pip install {' '.join(map(str, args))} failed:\n{result.stderr[-3000:]}"
        # a resolver conflict is the defect this test looks for, wherever it runs; anything
        # else (no index reachable) may be skipped on a developer's machine, never in CI
        if "ResolutionImpossible" in result.stderr or "conflict" in result.stderr:
            pytest.fail(message)
        missing(message)

    def script(self, code: str) -> subprocess.CompletedProcess:
        return self.run(self.python, "-c", textwrap.dedent(code))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(out), str(ROOT)],
        capture_output=True, text=True, timeout=INSTALL_TIMEOUT,
    )  # fmt: skip
    if result.returncode != 0:
        missing(f"building the wheel failed:\n{result.stderr[-3000:]}")
    (built,) = out.glob("egi_notebooks-*.whl")
    return built


# what a module needs to issue signed tokens of its own: a signing key and JWT signing
ISSUER_SIGNS = ("jwt.encode(", "generate_private_key(")


def test_the_wheel_ships_no_token_issuer(wheel):
    # the local OpenID provider the fault-injection tests use lives in the test harness: an
    # operator's hub image must not carry something that hands out tokens for passwords
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        sources = {n: archive.read(n).decode() for n in names if n.endswith(".py")}
    assert [n for n in names if n.startswith(("egi_notebooks/demo/provider/", "tests/"))] == []
    assert not [n for n in names if "faulty_provider" in n]
    signing = {n: [s for s in ISSUER_SIGNS if s in text] for n, text in sources.items()}
    assert {n: found for n, found in signing.items() if found} == {}
    assert any(n.startswith("egi_notebooks/auth/") for n in sources)  # the wheel is the package


@pytest.fixture(scope="module")
def venv(tmp_path_factory, wheel) -> Venv:
    base = tmp_path_factory.mktemp("hub-image")
    path = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, timeout=120)
    env = Venv(path)
    # the base image: its own versions, before the Dockerfile's security releases
    base_constraints = base / "base-image.txt"
    base_constraints.write_text("".join(f"{n}=={v}\n" for n, v in base_pins().items()))
    env.pip_install(*BASE_PACKAGES, constraints=base_constraints)
    env.base_versions = installed(env)
    # the Dockerfile's install step
    env.pip_install(f"{wheel}[accounting]", *sorted(dockerfile_named_packages()))
    return env


def installed(venv: Venv) -> dict[str, str]:
    result = venv.script(
        """
        import json
        from importlib.metadata import distributions
        from packaging.utils import canonicalize_name
        print(json.dumps({canonicalize_name(d.metadata["Name"]): d.version
                          for d in distributions()}))
        """
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_the_image_gets_its_security_releases_over_the_base_images_versions(venv):
    base, built = base_pins(), pins()
    replaced = upgraded()
    assert "jupyterhub" in replaced
    present = installed(venv)
    for name in replaced:
        assert venv.base_versions[name] == base[name] != built[name], name
        assert present[name] == built[name], name
    result = venv.script("import jupyterhub; print(jupyterhub.__version__)")
    assert result.stdout.strip() == built["jupyterhub"], result.stderr


def test_pip_kept_the_image_pins(venv):
    frozen, present = pins(), installed(venv)
    for name in BASE_PACKAGES:
        assert present.get(name) == frozen[name], name
    # nothing the image has was replaced by another version
    moved = {n: (v, frozen[n]) for n, v in present.items() if n in frozen and frozen[n] != v}
    assert moved == {}
    assert present["egi-notebooks"] == "0.1.0"


def test_pip_check(venv):
    result = venv.run(venv.python, "-m", "pip", "check")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_hub_loads_the_plugins_by_their_entry_point_names(venv):
    # how JupyterHub resolves authenticator_class = "egicheckin" and
    # spawner_class = "egi-kubespawner" (EntryPointType traits)
    result = venv.script(
        """
        from jupyterhub.app import JupyterHub
        from kubespawner import KubeSpawner
        from oauthenticator.generic import GenericOAuthenticator

        hub = JupyterHub(authenticator_class="egicheckin", spawner_class="egi-kubespawner")
        auth, spawner = hub.authenticator_class, hub.spawner_class
        assert issubclass(auth, GenericOAuthenticator), auth
        assert issubclass(spawner, KubeSpawner), spawner
        print(auth.__module__, auth.__name__, spawner.__module__, spawner.__name__)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "egi_notebooks.auth.authenticator", "EGICheckinAuthenticator",
        "egi_notebooks.spawner.spawner", "EGISpawner",
    ]  # fmt: skip


def test_the_upstream_methods_the_plugins_extend_exist_in_the_image_versions(venv):
    # EGISpawner extends kubespawner's private _start; an override of a method the pinned
    # release does not have would import fine and never be called
    result = venv.script(
        """
        import inspect, re
        from egi_notebooks.auth import EGICheckinAuthenticator
        from egi_notebooks.auth.logout import EGILogoutHandler
        from egi_notebooks.spawner import EGISpawner

        missing, checked = [], []
        for root in (EGICheckinAuthenticator, EGILogoutHandler, EGISpawner):
            mro = root.__mro__
            for i, cls in enumerate(mro):
                if not cls.__module__.startswith("egi_notebooks."):
                    continue  # ours and our mixins, in the order the hub resolves them
                for name in sorted(set(re.findall(r"super\\(\\)\\.(\\w+)",
                                                  inspect.getsource(cls)))):
                    checked.append(f"{cls.__name__}.{name}")
                    if not any(name in vars(base) for base in mro[i + 1:]):
                        missing.append(f"{cls.__name__}.{name}")
        print(" ".join(checked))
        assert not missing, missing
        """
    )
    assert result.returncode == 0, result.stderr
    assert "EGISpawner._start" in result.stdout.split()


def test_every_module_imports_with_the_image_versions(venv):
    # configuration scripts (the demo's jupyterhub_config, alembic's env) only run inside
    # their host program; __main__ modules parse the command line at import
    result = venv.script(
        """
        import importlib, pkgutil, egi_notebooks
        skipped = ("__main__", ".jupyterhub_config", ".migrations.")
        failed, count = [], 0
        for module in pkgutil.walk_packages(egi_notebooks.__path__, "egi_notebooks."):
            if any(part in module.name + "." for part in skipped):
                continue
            count += 1
            try:
                importlib.import_module(module.name)
            except Exception as e:
                failed.append(f"{module.name}: {e!r}")
        print(count)
        assert not failed, failed
        """
    )
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) > 30


def test_console_script(venv):
    result = venv.run(venv.path / "bin" / "egi-notebooks", "--help")
    assert result.returncode == 0, result.stderr
    for subcommand in ("accounting", "status", "tokens", "migrate-claims"):
        assert subcommand in result.stdout
    assert "provider" not in result.stdout


def test_accounting_schema_is_created_with_the_image_sqlalchemy_and_alembic(venv, tmp_path):
    # the migrations ship in the wheel and run with the image's SQLAlchemy and alembic
    db = tmp_path / "accounting.sqlite"
    db.touch()  # the report reads an existing database only (an empty file is one)
    result = venv.run(
        venv.path / "bin" / "egi-notebooks", "accounting", "report", f"--db-url=sqlite:///{db}",
        "--from", "2026-10-01", "--to", "2026-10-31", "--format", "json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []
    tables = venv.script(
        f"""
        import sqlite3
        rows = sqlite3.connect({str(db)!r}).execute(
            "select name from sqlite_master where type = 'table'")
        print(" ".join(sorted(r[0] for r in rows)))
        """
    )
    assert {"alembic_version", "sessions"} <= set(tables.stdout.split()), tables.stderr
