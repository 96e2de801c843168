"""Helpers shared by the authenticator's unit tests."""

from __future__ import annotations

from typing import Any

from traitlets.config import Config

from egi_notebooks.auth import EGICheckinAuthenticator


def make_authenticator(**traits: Any) -> EGICheckinAuthenticator:
    """An EGICheckinAuthenticator configured as an operator does it: each keyword is a
    ``c.EGICheckinAuthenticator.<name> = value`` line of jupyterhub_config.py."""
    config = Config()
    for name, value in traits.items():
        setattr(config.EGICheckinAuthenticator, name, value)
    return EGICheckinAuthenticator(config=config)
