"""Links that carry a token (``…?token=…``) are working keys to a person's data: they go out in mail and
never stay at rest. :func:`without_links` is the SQL that removes them from a JSON document."""

from __future__ import annotations

# A JSON string (as ``jsonb::text`` writes it) that contains ``token=``, in a value's place: not followed
# by ``:`` (a key). Escaped quotes inside the string are part of it.
_LINK_VALUE = r'"(?:[^"\\]|\\.)*token=(?:[^"\\]|\\.)*"(?!\s*:)'


def without_links(document: str) -> str:
    """SQL (a JSONB expression) for the JSONB ``document`` with every string value that carries a token
    replaced by ``null``, at any depth; a document without one is returned as it is, unparsed."""
    return (
        f"CASE WHEN strpos({document}::text, 'token=') > 0 "
        f"THEN regexp_replace({document}::text, '{_LINK_VALUE}', 'null', 'g')::jsonb "
        f"ELSE {document} END"
    )
