"""EGI Check-in authentication for JupyterHub."""

from .authenticator import EGICheckinAuthenticator

__all__ = ["EGICheckinAuthenticator"]
