"""The QR code of a check-in code (issue 24), drawn by segno: inline SVG for the status page (no image
request and no style attribute, so it passes the pages' Content-Security-Policy; named for screen readers
by its ``<title>``, which segno escapes), PNG for the confirmation mail. A full QR code (phones read Micro QR poorly) of the code
without its hyphen (alphanumeric mode: the smallest symbol)."""

from __future__ import annotations

import io

import segno
from markupsafe import Markup


def _qr(code: str) -> segno.QRCode:
    return segno.make(code.replace("-", ""), error="m", micro=False)


def qr_svg(code: str, label: str) -> Markup:
    svg = _qr(code).svg_inline(scale=5, title=label, svgclass="qr", lineclass=None)
    return Markup(svg.replace("<svg ", '<svg role="img" ', 1))


def qr_png(code: str) -> bytes:
    out = io.BytesIO()
    _qr(code).save(out, kind="png", scale=6)
    return out.getvalue()
