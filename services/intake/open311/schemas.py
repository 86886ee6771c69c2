"""GeoReport v2 JSON shapes (field names exactly as the spec's), for the OpenAPI document."""

from __future__ import annotations

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
