"""Sphinx extension: the configuration reference, generated from the classes' traits.

``{egi-traits} egi_notebooks.auth.EGICheckinAuthenticator`` writes one ``configtrait`` entry
per ``class_traits(config=True)`` trait: type, default and help. Traits the package defines
come first; inherited ones follow, grouped by the upstream class that defines them, so the
page is complete (every option the class accepts) and still says what is ours.

Defaults: a static default is shown as traitlets reports it; a dynamic one (``@default``)
is computed on a bare instance (``cls.__new__``: no ``__init__``, so nothing starts), and
shown as "computed at start-up" when it needs a running hub. Help strings are parsed as
reStructuredText; one that docutils cannot parse cleanly (upstream help written for other
renderers) is shown verbatim rather than breaking the build.

Why not ``autodoc-traits`` (JupyterHub's own reference extension, 1.3): it shows each trait's
static default, which is wrong wherever this package sets its own with ``@default``
(``enable_auth_state``, ``scope``, ``mem_limit``...); it parses upstream help as
reStructuredText, where kubespawner's ``:ref:`` roles and oauthenticator's named references
fail a ``-W`` build; and it has no ``configtrait`` target for the cross-references.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import io
import os
import re
import textwrap
from typing import Any

from docutils import nodes
from docutils.core import publish_doctree
from docutils.parsers.rst import directives
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles
from traitlets import Undefined

OWN_PACKAGE = "egi_notebooks"


def import_class(path: str) -> type:
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def defining_class(cls: type, name: str) -> type:
    for klass in cls.__mro__:
        if name in vars(klass):
            return klass
    return cls


def type_name(trait: Any) -> str:
    name = type(trait).__name__
    inner = getattr(trait, "_trait", None)
    if inner is not None:
        name += f"[{type(inner).__name__}]"
    return name


@contextlib.contextmanager
def empty_environ():
    """Dynamic defaults read the environment (``OAUTH_CLIENT_SECRET``...): compute them as
    on a hub without those variables, so no value of the build machine reaches the page."""
    saved = dict(os.environ)
    os.environ.clear()
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def own_default(cls: type, name: str) -> bool:
    """Whether this package changed the default of an inherited trait (``@default``)."""
    generator = getattr(cls, "_all_trait_default_generators", {}).get(name)
    module = getattr(generator, "__module__", "") or ""
    return module.startswith(OWN_PACKAGE)


def default_repr(cls: type, name: str, trait: Any) -> str:
    # traitlets keeps, per class, the default generator of every trait: the trait's own
    # ``default`` method unless a class in the MRO has a ``@default`` method for it
    generator = getattr(cls, "_all_trait_default_generators", {}).get(name)
    dynamic = generator is not None and getattr(generator, "__self__", None) is not trait
    if dynamic or trait.default_value is Undefined:
        try:
            with empty_environ():
                value = getattr(cls.__new__(cls), name)
        except Exception:
            return "computed at start-up"
        if callable(value):
            return "a callable (see help)"
        return repr(value)
    try:
        return trait.default_value_repr()
    except Exception:
        return repr(trait.default_value)


SPHINX_ROLE = re.compile(r":[\w:.-]+:`")


def help_is_clean_rst(text: str) -> bool:
    # Sphinx roles (:ref:, :class: ...) point at other projects' pages: shown verbatim
    # named references (`text`_) resolve page-wide, where upstream's targets do not exist
    if SPHINX_ROLE.search(text) or "`_" in text:
        return False
    stream = io.StringIO()
    try:
        publish_doctree(
            text,
            settings_overrides={"warning_stream": stream, "report_level": 2, "halt_level": 5},
        )
    except Exception:
        return False
    return not stream.getvalue()


def trait_entry(cls: type, name: str, trait: Any) -> list[str]:
    helptext = textwrap.dedent(trait.help or "").strip()
    if "\n" in helptext:  # traitlets help: first line flush left, the rest indented
        first, rest = helptext.split("\n", 1)
        helptext = first + "\n" + textwrap.dedent(rest)
    default = default_repr(cls, name, trait).replace("`", "'")
    lines = [
        f".. configtrait:: {cls.__name__}.{name}",
        "",
        f"   :Type: ``{type_name(trait)}``",
        f"   :Default: ``{default}``",
    ]
    if own_default(cls, name) and not defining_class(cls, name).__module__.startswith(OWN_PACKAGE):
        lines.append("   :Note: default set by egi-notebooks (upstream's differs)")
    lines.append("")
    if not helptext:
        lines.append("   (no help text upstream)")
    elif help_is_clean_rst(helptext):
        lines += ["   " + line if line else "" for line in helptext.splitlines()]
    else:
        lines += ["   ::", ""] + ["      " + line for line in helptext.splitlines()]
    return lines + [""]


def reference_lines(cls: type, upstream: bool = True) -> list[str]:
    traits = cls.class_traits(config=True)
    groups: dict[type, list[str]] = {}
    for name in sorted(traits):
        groups.setdefault(defining_class(cls, name), []).append(name)
    own = [k for k in groups if k.__module__.startswith(OWN_PACKAGE)]
    others = [k for k in groups if k not in own]
    lines: list[str] = []
    for klass in own:
        for name in groups[klass]:
            lines += trait_entry(cls, name, traits[name])
    if upstream:
        for klass in others:
            where = f"{klass.__module__}.{klass.__qualname__}"
            lines += [f".. rubric:: Inherited from ``{where}``", ""]
            for name in groups[klass]:
                lines += trait_entry(cls, name, traits[name])
    return lines


class TraitsDirective(SphinxDirective):
    """``{egi-traits} dotted.path.Class`` [``:own-only:``]."""

    required_arguments = 1
    option_spec = {"own-only": directives.flag}

    def run(self) -> list[nodes.Node]:
        cls = import_class(self.arguments[0])
        self.env.note_dependency(inspect.getfile(cls))
        lines = reference_lines(cls, upstream="own-only" not in self.options)
        if str(self.env.doc2path(self.env.docname)).endswith(".md"):
            # in a MyST page nested content is Markdown: hand the reST to MyST's eval-rst
            lines = ["```{eval-rst}", *lines, "```"]
        container = nodes.container()
        source = f"<egi-traits {self.arguments[0]}>"
        nested_parse_with_titles(self.state, StringList(lines, source=source), container)
        return container.children


def setup(app: Any) -> dict[str, Any]:
    app.add_object_type(
        "configtrait",
        "configtrait",
        objname="configuration option",
        indextemplate="pair: %s; configuration option",
    )
    app.add_directive("egi-traits", TraitsDirective)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1"}
