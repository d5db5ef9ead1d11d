"""Jinja templates that speak the reader's language, for the edge's and the cloud's pages.

One Environment per (package, folder, locale), built once: Jinja's gettext callables are
per environment, and a page rendered for an English reader must never borrow a Chinese
one's. Newstyle gettext: `{{ _("%(n)s items", n=3) }}` formats and escapes in one step.
"""

from __future__ import annotations

import functools
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from .core import Translator, translator


@functools.cache
def environment(package: str, folder: str, locale: str) -> Environment:
    t = translator(locale)
    env = Environment(
        loader=PackageLoader(package, folder),
        autoescape=select_autoescape(["html", "xml"], default_for_string=True),
        undefined=StrictUndefined,  # a misspelt variable fails the render, not the reader
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.install_gettext_callables(  # type: ignore[attr-defined]  # added by the extension
        t.gettext, t.ngettext, newstyle=True)
    return env


def render(package: str, folder: str, name: str, t: Translator, **context: Any) -> str:
    """Template `name` rendered for `t`'s locale; `t` is in the context for formats."""
    env = environment(package, folder, t.locale)
    return env.get_template(name).render(t=t, lang=t.lang, **context)


__all__ = ["environment", "render", "translator"]
