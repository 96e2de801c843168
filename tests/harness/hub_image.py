"""The hub image recipe (docker/hub/) as data: its base image and the pins it installs with.

One reading of ``docker/hub/constraints.txt`` and the Dockerfile's ``FROM`` lines, shared by
the unit tests that compare them and the e2e test that installs the wheel with those pins.

The pins are the versions the built image has. Where the Dockerfile installs a newer release
over the base image's own (a security fix), a ``# base: name==version`` line names what the
base image has.
"""

from __future__ import annotations

import re
from pathlib import Path

from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
HUB_IMAGE_DIR = ROOT / "docker" / "hub"
DOCKERFILE = HUB_IMAGE_DIR / "Dockerfile"
CONSTRAINTS = HUB_IMAGE_DIR / "constraints.txt"

#: What the image has that decides how egi-notebooks behaves in it: the hub and its plugin
#: APIs, the Kubernetes client, and pycurl (with it installed JupyterHub makes tornado's
#: AsyncHTTPClient, which oauthenticator uses, the curl client).
BASE_PACKAGES = ("jupyterhub", "oauthenticator", "jupyterhub-kubespawner", "kubernetes-asyncio",
                 "pycurl")  # fmt: skip

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)\s*$")
_IMAGE = re.compile(r"^#\s*image:\s*(\S+)\s*$")
_BASE = re.compile(r"^#\s*base:\s*([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")
_FROM = re.compile(r"^FROM\s+(?:--platform=\S+\s+)?(\S+)", re.IGNORECASE)


def pins(path: Path = CONSTRAINTS) -> dict[str, str]:
    """{canonical name: version} of every ``name==version`` line; any other line is an error."""
    found: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _PIN.match(line.strip())
        if not match:
            raise ValueError(f"{path.name}:{number}: not a name==version pin: {line!r}")
        found[canonicalize_name(match[1])] = match[2]
    return found


def base_pins(path: Path = CONSTRAINTS) -> dict[str, str]:
    """{canonical name: version} of the base image itself: the pins, with the base image's
    own version of each package the Dockerfile replaces (``# base: name==version``)."""
    found = pins(path)
    for line in path.read_text().splitlines():
        if match := _BASE.match(line.strip()):
            name = canonicalize_name(match[1])
            if name not in found:
                raise ValueError(f"{path.name}: '# base: {name}' names no pinned package")
            found[name] = match[2]
    return found


def upgraded(path: Path = CONSTRAINTS) -> dict[str, str]:
    """{canonical name: version} of what the Dockerfile installs over the base image."""
    built, base = pins(path), base_pins(path)
    return {name: version for name, version in built.items() if base[name] != version}


def constraints_image(path: Path = CONSTRAINTS) -> str:
    """The image the pins were frozen from (the ``# image: ...`` header line)."""
    images = [m[1] for line in path.read_text().splitlines() if (m := _IMAGE.match(line))]
    if len(images) != 1:
        raise ValueError(f"{path.name}: expected one '# image: <name:tag>' line, got {images}")
    return images[0]


def dockerfile_bases(path: Path = DOCKERFILE) -> list[str]:
    """The images of the Dockerfile's ``FROM`` lines (stage names are not images)."""
    stages: set[str] = set()
    bases: list[str] = []
    for line in path.read_text().splitlines():
        match = _FROM.match(line.strip())
        if not match:
            continue
        if match[1].lower() not in stages:
            bases.append(match[1])
        parts = line.split()
        if len(parts) >= 4 and parts[-2].upper() == "AS":
            stages.add(parts[-1].lower())
    return bases


def dockerfile_named_packages(path: Path = DOCKERFILE) -> set[str]:
    """Canonical names of the packages the Dockerfile's install step names besides the wheel
    (those pip must install at their pinned version even where the base image has another)."""
    wheel = '"${wheel}[accounting]"'
    # one logical line per instruction: continuation lines joined
    for line in path.read_text().replace("\\\n", " ").splitlines():
        if wheel in line:
            after = line.split(wheel, 1)[1].split(";", 1)[0]
            return {canonicalize_name(word) for word in re.findall(r"[A-Za-z0-9][\w.-]*", after)}
    raise ValueError(f"{path.name}: no install step of the wheel")
