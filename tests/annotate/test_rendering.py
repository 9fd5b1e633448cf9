"""The Markdown renderer must never let model text execute: real XSS payloads, checked as parsed HTML."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from django.template import Context, Template

from annotate.rendering import LINK_REL, render_markdown, sanitize_html

ALLOWED_SCHEMES = ("http:", "https:", "mailto:")
DANGEROUS_TAGS = {
    "script",
    "style",
    "iframe",
    "frame",
    "object",
    "embed",
    "svg",
    "math",
    "img",
    "video",
    "audio",
    "source",
    "link",
    "meta",
    "base",
    "form",
    "input",
    "button",
    "textarea",
    "template",
    "noscript",
}

PAYLOADS = [
    "<script>alert(1)</script>",
    "<SCRIPT SRC=https://evil.example/x.js></SCRIPT>",
    "<img src=x onerror=alert(1)>",
    '<img src="x" onerror="alert(document.cookie)">',
    "<svg onload=alert(1)>",
    "<svg><script>alert(1)</script></svg>",
    '<iframe src="https://evil.example"></iframe>',
    '<iframe srcdoc="<script>alert(1)</script>"></iframe>',
    "<body onload=alert(1)>",
    '<a href="javascript:alert(1)">x</a>',
    '<div style="background:url(javascript:alert(1))">x</div>',
    '<p style="position:fixed;top:0">overlay</p>',
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
    '<object data="javascript:alert(1)"></object>',
    '<embed src="javascript:alert(1)">',
    '<form action="javascript:alert(1)"><button>go</button></form>',
    '<meta http-equiv="refresh" content="0;url=javascript:alert(1)">',
    '<base href="https://evil.example/">',
    "<details open ontoggle=alert(1)>",
    "<<script>script>alert(1)<</script>/script>",
    "<!--<script>alert(1)//-->",
    "[x](javascript:alert(1))",
    "[x](JaVaScRiPt:alert(1))",
    "[x]( javascript:alert(1) )",
    "[x](&#106;avascript:alert(1))",
    "[x](&#x6A;&#x61;vascript&#58;alert(1))",
    "[x](java\tscript:alert(1))",
    "[x](vbscript:msgbox(1))",
    "[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "[x](data:text/html,<script>alert(1)</script>)",
    "[x](file:///etc/passwd)",
    "[x]: javascript:alert(1)\n\n[link][x]",
    "<javascript:alert(1)>",
    '[x](https://ok.example "title\\" onmouseover=\\"alert(1)")',
    "![a](x onerror=alert(1))",
    '![a](x" onerror="alert(1))',
    "![a](javascript:alert(1))",
    "![a](data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+)",
    '![x"><img src=x onerror=alert(1)>](https://ok.example/a.png)',
    "```html\n<script>alert(1)</script>\n```",
    "`<img src=x onerror=alert(1)>`",
    "    <script>alert(1)</script>",
    "| a |\n|---|\n| <img src=x onerror=alert(1)> |",
    "> <iframe src=https://evil.example>",
]


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    handle_startendtag = handle_starttag


def _parsed(html: str) -> list[tuple[str, dict[str, str | None]]]:
    collector = _Collector()
    collector.feed(html)
    collector.close()
    return collector.tags


def assert_inert(html: str) -> None:
    """No element or attribute the browser would run, load, or style from the output."""
    for tag, attrs in _parsed(html):
        assert tag not in DANGEROUS_TAGS, html
        for name, value in attrs.items():
            assert not name.startswith("on"), html
            assert name not in {"style", "src", "srcset", "srcdoc", "action", "formaction", "data", "xlink:href"}, html
            if name == "href":
                compact = re.sub(r"[\x00-\x20]", "", value or "").lower()
                assert compact.startswith(ALLOWED_SCHEMES), html


@pytest.mark.parametrize("payload", PAYLOADS)
def test_payload_renders_inert(payload):
    assert_inert(render_markdown(payload))


@pytest.mark.parametrize("payload", PAYLOADS)
def test_payload_is_inert_even_as_raw_html_through_the_sanitiser(payload):
    assert_inert(sanitize_html(payload))


def test_html_in_text_is_shown_as_text():
    assert render_markdown("<b>hi</b>") == "<p>&lt;b&gt;hi&lt;/b&gt;</p>\n"


def test_html_in_a_fenced_code_block_stays_escaped_text():
    html = render_markdown("```html\n<script>alert(1)</script>\n```")
    assert html == '<pre><code class="language-html">&lt;script&gt;alert(1)&lt;/script&gt;\n</code></pre>\n'


def test_code_language_class_cannot_carry_other_classes():
    assert "<code>" in render_markdown('```x" onmouseover="alert(1)\ncode\n```')


def test_javascript_link_is_not_a_link():
    assert "<a" not in render_markdown("[click](javascript:alert(1))")


def test_safe_links_open_in_a_new_tab_without_referrer_or_opener():
    _, (tag, attrs) = _parsed(render_markdown("[docs](https://docs.example/a?b=1)"))
    assert tag == "a"
    assert attrs == {
        "href": "https://docs.example/a?b=1",
        "target": "_blank",
        "rel": LINK_REL,
    }
    assert set(LINK_REL.split()) == {"noopener", "noreferrer", "nofollow"}


def test_mailto_links_are_kept():
    assert 'href="mailto:a@example.org"' in render_markdown("<mailto:a@example.org>")


def test_relative_links_are_dropped():
    assert "href" not in render_markdown("[admin](/admin/auth/user/)")


def test_images_become_links_and_nothing_is_fetched():
    html = render_markdown("![a cat](https://img.example/cat.png)")
    assert "<img" not in html
    assert '<a href="https://img.example/cat.png"' in html
    assert "[image: a cat]" in html


def test_markdown_features_render():
    html = render_markdown("# T\n\n**b** *i* ~~s~~ `c`\n\n- one\n\n3. three\n\n| a |\n|---|\n| 1 |\n\n> q")
    for fragment in ("<h1>T</h1>", "<strong>b</strong>", "<em>i</em>", "<s>s</s>", "<code>c</code>", "<li>one</li>",
                     '<ol start="3">', "<td>1</td>", "<blockquote>"):  # fmt: skip
        assert fragment in html


def test_table_alignment_styles_are_dropped():
    assert "style" not in render_markdown("| a |\n|--:|\n| 1 |")


def test_template_filter_renders_and_marks_safe():
    html = Template("{% load duet %}{{ text|markdown }}").render(Context({"text": "*x* <script>y</script>"}))
    assert html == "<p><em>x</em> &lt;script&gt;y&lt;/script&gt;</p>\n"


def test_template_filter_takes_none():
    assert Template("{% load duet %}{{ text|markdown }}").render(Context({"text": None})) == ""
