"""Answer documents as Authorize.net writes them: default namespace, xsi/xsd declarations, a UTF-8 BOM first.

Element order follows AnetApiSchema.xsd (tests check every answer against the schema's bindings).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from lxml import etree

NAMESPACE = "AnetApi/xml/v1/schema/AnetApiSchema.xsd"
BOM = b"\xef\xbb\xbf"
_NSMAP = {
    None: NAMESPACE,
    "xsi": "http://www.w3.org/2001/XMLSchema-instance",
    "xsd": "http://www.w3.org/2001/XMLSchema",
}

Child = tuple[str, Any]  # (name, text | list[Child] | None): None leaves the element out


def document(
    kind: str, result_code: str, code: str, text: str, ref_id: str | None, body: Iterable[Child] = ()
) -> bytes:
    root = etree.Element(f"{{{NAMESPACE}}}{kind}", nsmap=_NSMAP)
    children: list[Child] = [
        ("refId", ref_id),
        ("messages", [("resultCode", result_code), ("message", [("code", code), ("text", text)])]),
    ]
    _fill(root, [*children, *body])
    serialised: bytes = etree.tostring(root, xml_declaration=True, encoding="utf-8")
    return BOM + serialised


def _fill(parent: etree._Element, children: Iterable[Child]) -> None:
    for name, value in children:
        if value is None:
            continue
        element = etree.SubElement(parent, f"{{{NAMESPACE}}}{name}")
        if isinstance(value, list):
            _fill(element, value)
        else:
            element.text = str(value)
