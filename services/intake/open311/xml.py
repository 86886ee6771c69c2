"""GeoReport v2's XML format: the same documents as the JSON ones, element for element.

The spec (wiki.open311.org/GeoReport_v2) makes XML the required format: a list is a
container element whose children are named for the item (``<services><service>…``,
``<service_requests><request>…``, ``<errors><error>…``, and inside a service definition
``<attributes><attribute>`` and ``<values><value>``); a field is an element of the same name;
null is an empty element; booleans are ``true``/``false``. Only serialization happens here
(no XML is ever parsed), with the standard library's ElementTree, which escapes text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any
from xml.etree import ElementTree as ET

MEDIA_TYPE = "text/xml; charset=utf-8"
# A nested list's item element, by the list's field name.
_ITEMS = {"endpoints": "endpoint", "formats": "format", "attributes": "attribute",
          "values": "value"}
# XML 1.0 cannot carry these characters even escaped; they never reach a document.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def document(root: str, data: Mapping[str, Any] | Sequence[Mapping[str, Any]],
             item: str | None = None) -> bytes:
    """``data`` as the spec's XML: a mapping becomes ``<root>`` with its fields; a list
    becomes ``<root>`` with one ``<item>`` per element."""
    element = ET.Element(root)
    if isinstance(data, Mapping):
        _fields(element, data)
    else:
        if item is None:
            raise ValueError("a list needs the item element's name")
        for entry in data:
            _fields(ET.SubElement(element, item), entry)
    return b'<?xml version="1.0" encoding="utf-8"?>' + ET.tostring(element, encoding="unicode").encode()


def _fields(parent: ET.Element, data: Mapping[str, Any]) -> None:
    for name, value in data.items():
        _value(ET.SubElement(parent, name), name, value)


def _value(element: ET.Element, name: str, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, Mapping):
        _fields(element, value)
    elif isinstance(value, list | tuple):
        child = _ITEMS.get(name, "item")
        for entry in value:
            _value(ET.SubElement(element, child), child, entry)
    elif isinstance(value, bool):
        element.text = "true" if value else "false"
    else:
        element.text = _NOT_XML.sub("", str(value))
