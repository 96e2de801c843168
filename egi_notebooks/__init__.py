"""EGI Notebooks for JupyterHub: Check-in authenticator, Kubernetes spawner, hub services."""

__version__ = "0.1.0"
