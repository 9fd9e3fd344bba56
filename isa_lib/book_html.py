"""A Sphinx extension for the book's HTML: each script once per page.

Sphinx 7.4 lists an inline script added after the builder started (sphinx-thebe's and
sphinx-togglebutton's ``const``/``var`` settings) twice, once as ``None`` and once as ``''``, so every page
declared ``const THEBE_JS_URL`` twice and the browser reported a SyntaxError. Enabled in ``_config.yml``
(``sphinx: extra_extensions``).
"""
from __future__ import annotations


def _key(js) -> tuple:
    attributes = getattr(js, "attributes", {})
    return (getattr(js, "filename", str(js)) or "", tuple(sorted(attributes.items())))


def unique_scripts(scripts: list) -> list:
    """``scripts`` without repeats (same file or inline body, same attributes), first occurrence kept."""
    seen, kept = set(), []
    for js in scripts:
        if _key(js) not in seen:
            seen.add(_key(js))
            kept.append(js)
    return kept


def _dedupe(app, pagename, templatename, context, doctree) -> None:
    if "script_files" in context:
        context["script_files"] = unique_scripts(list(context["script_files"]))


def setup(app):
    app.connect("html-page-context", _dedupe, priority=900)  # after the themes and myst-nb have added theirs
    return {"parallel_read_safe": True, "parallel_write_safe": True}
