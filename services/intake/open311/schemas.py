"""GeoReport v2 JSON shapes (field names exactly as the spec's), for the OpenAPI document."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, Field


class Open311ErrorOut(BaseModel):
    code: int = Field(description="usually the HTTP status; may be more specific")
    description: str = Field(description="'<field>: <reason>' when a field is at fault")


class ServiceOut(BaseModel):
    service_code: str
    service_name: str
    description: str
    metadata: bool
    type: Literal["realtime", "batch", "blackbox"]
    keywords: str = Field(description="comma-separated")
    group: str


class AttributeValueOut(BaseModel):
    key: str
    name: str


class AttributeOut(BaseModel):
    variable: bool
    code: str
    datatype: Literal["string", "number", "datetime", "text", "singlevaluelist", "multivaluelist"]
    required: bool
    datatype_description: str | None
    order: int
    description: str
    values: list[AttributeValueOut]


class ServiceDefinitionOut(BaseModel):
    service_code: str
    attributes: list[AttributeOut]


class RequestCreatedOut(BaseModel):
    service_request_id: str = Field(description="the complaint's tracking id")
    service_notice: str
    account_id: str | None = None


class RequestOut(BaseModel):
    service_request_id: str
    status: Literal["open", "closed"]
    status_notes: str | None = Field(description="the latest OPD response (tindak lanjut)")
    service_name: str
    service_code: str
    description: str | None
    agency_responsible: str | None = Field(description="the OPD the complaint is disposed to")
    service_notice: str | None
    requested_datetime: str
    updated_datetime: str | None
    expected_datetime: str | None = Field(description="the completion deadline")
    address: str | None
    address_id: str | None
    zipcode: str | None
    lat: float | None
    long: float | None
    media_url: str | None


class DiscoveryEndpointOut(BaseModel):
    specification: str
    url: str
    changeset: str
    type: Literal["production", "test"]
    formats: list[str]


class DiscoveryOut(BaseModel):
    changeset: str
    contact: str
    key_service: str
    endpoints: list[DiscoveryEndpointOut]


class Format(StrEnum):
    """The ``{fmt}`` of every GeoReport path: XML (the spec's required format) or JSON."""

    xml = "xml"
    json = "json"


_FLAG_TEXT = "true or false (also accepted: 1/0, ya/tidak, yes/no); default false"
_FLAG: dict[str, object] = {"type": "string", "enum": ["true", "false"], "description": _FLAG_TEXT}

# POST requests.{fmt}: the form, as GeoReport v2 defines it, with this jurisdiction's rules.
# Documentation only: ``mapping.to_complaint`` reads the form and states the same rules in
# its error descriptions.
REQUEST_FORM_SCHEMA: dict[str, object] = {
    "type": "object",
    "description": (
        "A GeoReport v2 service request, form-encoded. Rules across fields: lat and long are "
        "sent together; a location is required (lat & long, or address_string; address_id is "
        "not supported); first_name (with last_name) and a phone or email are required unless "
        "attribute[anonim] is true; attribute[berkadar_pengawasan] applies to classification "
        "pengaduan only; every parameter takes a single value; files are not accepted (send "
        "media_url); an attribute[...] not in the service definition is refused."),
    "required": ["service_code", "description"],
    "properties": {
        "api_key": {"type": "string", "description": "required: here or as a query parameter"},
        "service_code": {"type": "string", "pattern": r"\S",
                         "description": "a service_code from services.json (else 404)"},
        "lat": {"type": "number", "minimum": -90, "maximum": 90,
                "description": "WGS84 latitude; with long"},
        "long": {"type": "number", "minimum": -180, "maximum": 180,
                 "description": "WGS84 longitude; with lat"},
        "address_string": {"type": "string", "maxLength": 500,
                           "description": "the place in words; required without lat & long"},
        "address_id": {"type": "string", "description": "not supported by this jurisdiction"},
        "description": {"type": "string", "minLength": 10, "maxLength": 4000,
                        "description": "the report; its start becomes the title"},
        "first_name": {"type": "string", "description": "required unless attribute[anonim] is true"},
        "last_name": {"type": "string"},
        "phone": {"type": "string", "pattern": r"^\+?[0-9][0-9 \-]{6,18}$",
                  "description": "phone or email: required unless anonim"},
        "email": {"type": "string", "format": "email",
                  "description": "phone or email: required unless anonim"},
        "media_url": {"type": "string", "format": "uri", "description": "a photo, by http(s) URL"},
        "account_id": {"type": "string", "description": "echoed back in the answer"},
        "attribute[classification]": {"type": "string",
                                      "enum": ["pengaduan", "aspirasi", "permintaan_informasi"],
                                      "description": "default pengaduan"},
        "attribute[berkadar_pengawasan]": {**_FLAG, "description": (
            "pengaduan only: needs a field inspection; " + _FLAG_TEXT)},
        "attribute[kecamatan]": {"type": "string",
                                 "description": "a kecamatan key from the service definition"},
        "attribute[desa]": {"type": "string", "maxLength": 100},
        "attribute[anonim]": {**_FLAG, "description": (
            "the reporter's identity is withheld; " + _FLAG_TEXT)},
        "attribute[rahasia]": {**_FLAG, "description": (
            "never shown publicly (not in requests.json); " + _FLAG_TEXT)},
        "attribute[external_id]": {"type": "string", "maxLength": 100, "description": (
            "your report number: a retry with the same one is the same request; without it "
            "every POST is a new request")},
        "attribute[received_at]": {"type": "string", "format": "date-time", "description": (
            "when the citizen reported it, with a UTC offset; not in the future; "
            "default: now")},
    },
}


def query_parameter(name: str, description: str, **schema: object) -> dict[str, object]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": {"type": "string", **schema}}


# An empty parameter is an absent one (the spec's rule, see ``mapping.Form.get``).
_DATE_OR_TIME = [{"format": "date-time"}, {"format": "date"}, {"pattern": r"^\s*$"}]
_STATUS = r"\s*([Oo][Pp][Ee][Nn]|[Cc][Ll][Oo][Ss][Ee][Dd])?\s*"
_STATUSES = f"^{_STATUS}(,{_STATUS})*$"
API_KEY_PARAMETER = query_parameter(
    "api_key", "optional for reads; a key that is sent must be valid (else 403)")

# GET requests.{fmt}: the filters (read by ``mapping.request_query``).
REQUEST_QUERY_PARAMETERS = [
    API_KEY_PARAMETER,
    query_parameter("service_request_id", (
        "comma-separated ids (at most 1000); overrides every other filter")),
    query_parameter("service_code", "comma-separated service codes"),
    query_parameter("start_date", (
        "W3C date-time with an offset, or a date (that whole day in the regency's time zone); "
        "default: 90 days before end_date"), anyOf=_DATE_OR_TIME),
    query_parameter("end_date", (
        "as start_date, not before it, at most 90 days after it; default: 90 days after "
        "start_date, or now"), anyOf=_DATE_OR_TIME),
    query_parameter("status", "open, closed, or both comma-separated; default both",
                    pattern=_STATUSES),
]
