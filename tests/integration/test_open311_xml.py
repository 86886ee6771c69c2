"""GeoReport v2's required format: every Open311 resource, errors included, as XML — the same
document as the JSON one, element for element (real PostgreSQL and RabbitMQ, intake in
process)."""

from __future__ import annotations

from xml.etree import ElementTree as ET

import pytest

from services.intake.apikeys import create_api_key
from tests.integration.test_open311_api import V2, form, verified

pytestmark = pytest.mark.integration


@pytest.fixture
async def portal_key(db):
    _, key = await create_api_key(db, "o311-xml-portal", "portal", "portal-xml")
    return key


def parsed(r, status: int = 200) -> ET.Element:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("text/xml")
    assert r.text.startswith('<?xml version="1.0" encoding="utf-8"?>')
    return ET.fromstring(r.content)


def as_dict(element: ET.Element) -> dict[str, str | None]:
    return {child.tag: child.text for child in element}


async def test_discovery_services_and_definition_in_xml(intake):
    _, client = intake
    discovery = parsed(await client.get(f"{V2}/discovery.xml"))
    assert discovery.tag == "discovery"
    [endpoint] = discovery.find("endpoints")
    assert endpoint.tag == "endpoint"
    assert [f.text for f in endpoint.find("formats")] == ["text/xml", "application/json"]
    assert endpoint.findtext("specification") == "http://wiki.open311.org/GeoReport_v2"

    services = parsed(await client.get(f"{V2}/services.xml"))
    as_json = (await client.get(f"{V2}/services.json")).json()
    assert services.tag == "services" and [s.tag for s in services] == ["service"] * len(as_json)
    first = as_dict(services[0])
    assert first["service_code"] == as_json[0]["service_code"]
    assert first["metadata"] == "true" and first["type"] == "realtime"

    definition = parsed(await client.get(f"{V2}/services/infrastruktur_jalan.xml"))
    assert definition.tag == "service_definition"
    attributes = definition.find("attributes")
    assert attributes is not None and {a.tag for a in attributes} == {"attribute"}
    classification = next(a for a in attributes if a.findtext("code") == "classification")
    assert [v.findtext("key") for v in classification.find("values")] == [
        "pengaduan", "aspirasi", "permintaan_informasi"]


async def test_post_and_read_requests_in_xml(intake, portal_key, db):
    _, client = intake
    created = parsed(await client.post(f"{V2}/requests.xml", data=form(portal_key)))
    assert created.tag == "service_requests"
    [request] = created
    tracking = request.findtext("service_request_id")
    assert request.tag == "request" and tracking and tracking.startswith("SKD-")
    account = request.find("account_id")
    assert account is not None and account.text is None  # null: an empty element

    await verified(db, tracking)
    one = parsed(await client.get(f"{V2}/requests/{tracking}.xml"))
    [req] = one
    as_json = (await client.get(f"{V2}/requests/{tracking}.json")).json()[0]
    assert set(as_dict(req)) == set(as_json)
    assert req.findtext("status") == "open" and req.findtext("lat") == str(as_json["lat"])
    assert req.find("zipcode") is not None and req.find("zipcode").text is None

    listed = parsed(await client.get(f"{V2}/requests.xml", params={"service_request_id": tracking}))
    assert [r.findtext("service_request_id") for r in listed] == [tracking]


async def test_errors_in_xml(intake, portal_key):
    _, client = intake
    missing = parsed(await client.get(f"{V2}/requests/SKD-000000-NOPE00.xml"), 404)
    assert missing.tag == "errors"
    [error] = missing
    assert error.tag == "error" and error.findtext("code") == "404"
    assert error.findtext("description").startswith("service_request_id:")

    forbidden = parsed(await client.post(f"{V2}/requests.xml", data=form(None)), 403)
    assert forbidden[0].findtext("description").startswith("api_key:")
    bad = parsed(await client.post(f"{V2}/requests.xml", data=form(portal_key, long=None)), 400)
    assert any(e.findtext("description").startswith("long:") for e in bad)
    unknown = await client.get(f"{V2}/services.csv")
    assert unknown.status_code == 400 and "use .xml or .json" in unknown.text
