"""Template filters of the Duet pages."""

from __future__ import annotations

from django import template
from django.utils.safestring import SafeString, mark_safe

from annotate.rendering import render_markdown

register = template.Library()


@register.filter(name="markdown")
def markdown_filter(text: str | None) -> SafeString:
    """Render untrusted Markdown; the output passed the sanitiser, so it is marked safe."""
    return mark_safe(render_markdown(text or ""))  # noqa: S308 - sanitised by nh3 in render_markdown
