"""Formatting the council report: residents' text never becomes markup or a spreadsheet formula."""

from __future__ import annotations

from services.proposals.report import md_escape
from shared.csvsafe import csv_cell


def test_markdown_escape_leaves_no_markup_html_or_link():
    hostile = "<script>alert(1)</script> **fett** [klick](http://evil.example) # Titel\n- Liste\n1. eins | a"
    escaped = md_escape(hostile)
    assert "<script>" not in escaped and "&lt;script&gt;" in escaped
    assert "**" not in escaped.replace("\\*", "")
    assert "](" not in escaped
    assert "\n- " not in escaped and "\n1." not in escaped
    assert "\\|" in escaped


def test_csv_cells_never_start_a_formula():
    for value in ('=HYPERLINK("http://x")', "+1", "-1", "@SUM(A1)", "\tx"):
        assert csv_cell(value).startswith("'")
    assert csv_cell("Sprachcafé") == "Sprachcafé"
    assert csv_cell(None) == ""
