"""CSV for spreadsheet programs: UTF-8 with a byte order mark, ``;`` between cells, and no cell that a
spreadsheet would run as a formula (CSV injection)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from datetime import datetime
from typing import Any


def csv_cell(value: Any) -> str:
    """``value`` as a cell's text; a text starting with = + - @ (or a tab/CR) gets a leading ``'`` so that a
    spreadsheet shows it instead of evaluating it."""
    text = "" if value is None else (value.isoformat() if isinstance(value, datetime) else str(value))
    if text and text[0] in "=+-@\t\r":
        text = "'" + text
    return text


def spreadsheet_csv(rows: Iterable[Iterable[Any]]) -> str:
    """The rows as CSV text. The byte order mark makes spreadsheet programs read UTF-8 (umlauts, Cyrillic,
    Arabic); cells are written as given, so pass residents' text through ``csv_cell``."""
    buffer = io.StringIO()
    buffer.write("\ufeff")
    writer = csv.writer(buffer, delimiter=";")
    writer.writerows(rows)
    return buffer.getvalue()
