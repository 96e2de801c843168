"""Sphinx configuration of the egi-notebooks documentation (MyST Markdown, furo theme).

Built offline: no intersphinx, no remote images; the configuration reference is generated at
build time from the traits by ``_ext/egi_traits.py``.
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))
sys.path.insert(0, str(HERE.parent))

project = "egi-notebooks"
author = "EGI Foundation"
copyright = "EGI Foundation"  # noqa: A001 (Sphinx's name)

extensions = ["myst_parser", "egi_traits"]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build", "deploy/*.yaml"]
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

html_theme = "furo"
html_title = "EGI Notebooks for JupyterHub"
html_static_path = ["_static"]
