"""Reading a GeoReport POST body: form fields only. GeoReport sends media by URL
(``media_url``); a file part is refused as soon as its headers are read, before any of its
content is written anywhere (Starlette would spool it to a temporary file)."""

from __future__ import annotations

from python_multipart.multipart import parse_options_header
from starlette.datastructures import FormData
from starlette.formparsers import FormParser, MultiPartException, MultiPartParser
from starlette.requests import Request

# Plenty for the spec's fields and this facade's attributes.
MAX_FIELDS = 100


class FilePartRefused(MultiPartException):
    """A multipart part with a filename; ``field`` is the part's name."""

    def __init__(self, field: str) -> None:
        super().__init__(f"{field}: files are not accepted; send media_url")
        self.field = field


class _FieldsOnlyParser(MultiPartParser):
    def on_headers_finished(self) -> None:
        # The part's name and filename are known here, before any of its bytes are stored.
        _, options = parse_options_header(self._current_part.content_disposition)
        if b"filename" in options:
            name = options.get(b"name", b"").decode("utf-8", "replace") or "media"
            raise FilePartRefused(name)
        super().on_headers_finished()


async def read_form(request: Request, max_part_size: int) -> FormData:
    """The body as form fields (url-encoded or multipart without files)."""
    content_type, _ = parse_options_header(request.headers.get("content-type"))
    if content_type == b"multipart/form-data":
        parser: MultiPartParser | FormParser = _FieldsOnlyParser(
            request.headers, request.stream(), max_files=0, max_fields=MAX_FIELDS,
            max_part_size=max_part_size)
    else:
        parser = FormParser(request.headers, request.stream(), max_fields=MAX_FIELDS,
                            max_part_size=max_part_size)
    return await parser.parse()
