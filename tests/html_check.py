"""A strict reading of a generated HTML report for tests: html.parser accepts almost
anything, so this also checks that every non-void tag is closed in order and collects
the images and any reference to something outside the file."""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field
from html.parser import HTMLParser

from PIL import Image as PILImage

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


@dataclass
class Parsed:
    doctype: str = ""
    imgs: list[dict[str, str]] = field(default_factory=list)
    external: list[str] = field(default_factory=list)
    placeholders: list[str] = field(default_factory=list)
    text: str = ""
    charset: str = ""


class _Strict(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out = Parsed()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self._chunks: list[str] = []
        self._in_placeholder = 0

    def handle_decl(self, decl: str) -> None:
        self.out.doctype = decl

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "meta" and "charset" in a:
            self.out.charset = a["charset"]
        if tag == "img":
            self.out.imgs.append(a)
        for k in ("src", "href"):
            v = a.get(k, "")
            if v and not v.startswith(("data:", "#")):
                self.out.external.append(v)
        if tag == "script" or tag == "link":
            self.out.external.append(f"<{tag}>")
        if "placeholder" in a.get("class", "").split():
            self._in_placeholder += 1
            self.out.placeholders.append("")
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self.stack.pop()

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            self.errors.append(f"end tag for void element <{tag}>")
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1] if self.stack else 'nothing'}")
            return
        self.stack.pop()
        if tag == "div" and self._in_placeholder:
            self._in_placeholder -= 1

    def handle_data(self, data: str) -> None:
        self._chunks.append(data)
        if self._in_placeholder:
            self.out.placeholders[-1] += data


def parse_report(html_text: str) -> Parsed:
    """The parsed report; fails the test on any unbalanced or misnested tag."""
    p = _Strict()
    p.feed(html_text)
    p.close()
    assert not p.errors, p.errors
    assert not p.stack, f"unclosed tags: {p.stack}"
    p.out.text = "".join(p._chunks)
    return p.out


def decode_data_uri(uri: str) -> tuple[str, PILImage.Image]:
    """(mime type, decoded and verified image) of a base64 ``data:`` URI."""
    head, _, data = uri.partition(",")
    assert head.startswith("data:") and head.endswith(";base64"), head[:40]
    raw = base64.b64decode(data, validate=True)
    PILImage.open(io.BytesIO(raw)).verify()
    img = PILImage.open(io.BytesIO(raw))
    img.load()
    return head[5:-7], img
