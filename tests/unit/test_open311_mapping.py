"""Open311 facade, pure parts: form -> ComplaintIn, error shaping, filters, status mapping."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from services.intake.catalog import DATA, catalog_from_seed, load_catalog, routing_seed_sql
from services.intake.open311.mapping import (
    MAX_REQUESTS,
    Form,
    Open311Error,
    StoredRequest,
    georeport_status,
    make_title,
    request_out,
    request_query,
    service_definition,
    service_out,
    to_complaint,
)

TZ = ZoneInfo("Asia/Pontianak")
NOW = datetime(2026, 3, 20, 3, 0, tzinfo=UTC)
CATALOG = load_catalog()


def form(**over) -> Form:
    items = {
        "api_key": "sp4n_x_y", "service_code": "infrastruktur_jalan",
        "lat": "0.0312", "long": "110.9571", "address_string": "Jl. Merdeka depan SDN 3",
        "description": "Jalan desa berlubang besar di depan sekolah dasar, membahayakan anak.",
        "first_name": "Budi", "last_name": "Santoso", "phone": "+6281234567890",
        "email": "Budi@Example.org", "media_url": "https://foto.example.org/1.jpg",
        "attribute[classification]": "pengaduan", "attribute[berkadar_pengawasan]": "true",
        "attribute[kecamatan]": "belitang_hilir", "attribute[desa]": "Sungai Ayak",
    }
    items.update(over)
    return Form.parse((k, v) for k, v in items.items() if v is not None)


def descriptions(exc: pytest.ExceptionInfo[Open311Error]) -> dict[str, str]:
    return dict(e["description"].split(": ", 1) for e in exc.value.errors)


def test_full_form_maps_onto_the_native_submission():
    sub, extras = to_complaint(form(account_id="acc-7"), source="portal-sekadau", catalog=CATALOG,
                               now=NOW, new_external_id=lambda: "fresh")
    assert sub.source == "portal-sekadau" and sub.external_id == "fresh"
    assert sub.category == "infrastruktur_jalan" and sub.classification == "pengaduan"
    assert sub.berkadar_pengawasan is True
    assert sub.location.kecamatan == "Belitang Hilir" and sub.location.desa == "Sungai Ayak"
    assert (sub.location.lat, sub.location.lon) == (0.0312, 110.9571)
    assert sub.location.address == "Jl. Merdeka depan SDN 3"
    assert sub.reporter.name == "Budi Santoso" and sub.reporter.email == "budi@example.org"
    assert [str(u) for u in sub.attachments] == ["https://foto.example.org/1.jpg"]
    assert sub.received_at == NOW and not sub.anonymous and not sub.confidential
    assert sub.title == "Jalan desa berlubang besar di depan sekolah dasar, membahayakan anak."
    assert extras.account_id == "acc-7" and extras.received_at_defaulted


def test_defaults_and_sp4n_attributes():
    sub, extras = to_complaint(form(**{
        "attribute[classification]": None, "attribute[berkadar_pengawasan]": None,
        "attribute[kecamatan]": "sekadau hulu", "lat": None, "long": None,
        "first_name": None, "last_name": None, "phone": None, "email": None,
        "attribute[anonim]": "true", "attribute[rahasia]": "true",
        "attribute[external_id]": "app-42", "attribute[received_at]": "2026-03-02T08:00:00+07:00",
    }), source="open311", catalog=CATALOG, now=NOW)
    assert not extras.received_at_defaulted
    assert sub.classification == "pengaduan" and not sub.berkadar_pengawasan
    assert sub.location.kecamatan == "Sekadau Hulu"
    assert sub.anonymous and sub.confidential and sub.reporter is None
    assert sub.external_id == "app-42"  # a retry with the same id is the same complaint
    assert sub.received_at == datetime(2026, 3, 2, 1, tzinfo=UTC)


def test_without_external_id_every_post_is_new():
    a, _ = to_complaint(form(), source="open311", catalog=CATALOG, now=NOW)
    b, _ = to_complaint(form(), source="open311", catalog=CATALOG, now=NOW)
    assert a.external_id != b.external_id and a.external_id.startswith("o311-")


def test_title_is_the_start_of_the_description_or_the_service_name():
    long = ("Lampu jalan di sepanjang Jalan Sintang mati sejak dua minggu sehingga sangat gelap "
            "pada malam hari")
    title = make_title(long, "Penerangan Jalan Umum")
    assert len(title) <= 80 and title.endswith("…") and long.startswith(title[:-1])
    assert make_title("  ", "Penerangan Jalan Umum") == "Penerangan Jalan Umum"


def test_missing_and_unknown_service_code():
    with pytest.raises(Open311Error) as exc:
        to_complaint(form(service_code=None), source="open311", catalog=CATALOG, now=NOW)
    assert exc.value.status == 400 and descriptions(exc).keys() == {"service_code"}
    with pytest.raises(Open311Error) as exc:
        to_complaint(form(service_code="graffiti"), source="open311", catalog=CATALOG, now=NOW)
    assert exc.value.status == 404
    assert exc.value.errors[0]["code"] == 404 and "graffiti" in exc.value.errors[0]["description"]


def test_every_bad_field_is_named_in_the_spec_error_shape():
    with pytest.raises(Open311Error) as exc:
        to_complaint(form(**{
            "long": None, "description": "pendek", "phone": None, "email": None,
            "attribute[classification]": "keluhan", "attribute[kecamatan]": "Pontianak",
            "attribute[warna]": "merah", "attribute[rahasia]": "mungkin",
            "media_url": "not a url",
        }), source="open311", catalog=CATALOG, now=NOW)
    assert exc.value.status == 400
    assert all(e["code"] == 400 for e in exc.value.errors)
    named = descriptions(exc)
    assert set(named) == {"long", "description", "first_name", "attribute[classification]",
                          "attribute[kecamatan]", "attribute[warna]", "attribute[rahasia]",
                          "media_url"}
    assert "together" in named["long"] and "anonim" in named["first_name"]
    assert "belitang_hilir" in named["attribute[kecamatan]"]


def test_location_is_required_and_address_id_is_not_supported():
    with pytest.raises(Open311Error) as exc:
        to_complaint(form(lat=None, long=None, address_string=None), source="open311",
                     catalog=CATALOG, now=NOW)
    assert set(descriptions(exc)) == {"lat"}
    with pytest.raises(Open311Error) as exc:
        to_complaint(form(lat=None, long=None, address_string=None, address_id="545483"),
                     source="open311", catalog=CATALOG, now=NOW)
    assert set(descriptions(exc)) == {"address_id"}
    with pytest.raises(Open311Error) as exc:
        to_complaint(form(lat="95", long="east"), source="open311", catalog=CATALOG, now=NOW)
    assert set(descriptions(exc)) == {"lat", "long"}


def test_received_at_needs_an_offset_and_berkadar_only_for_pengaduan():
    with pytest.raises(Open311Error) as exc:
        to_complaint(form(**{"attribute[received_at]": "2026-03-02T08:00:00",
                             "attribute[classification]": "aspirasi"}),
                     source="open311", catalog=CATALOG, now=NOW)
    named = descriptions(exc)
    assert set(named) == {"attribute[received_at]", "attribute[berkadar_pengawasan]"}
    assert "time zone" in named["attribute[received_at]"]


def test_repeated_single_value_attribute_is_refused():
    f = Form.parse([("service_code", "bencana"), ("attribute[kecamatan][]", "belitang"),
                    ("attribute[kecamatan][]", "nanga_mahap")])
    assert f.attributes["kecamatan"] == ["belitang", "nanga_mahap"]
    with pytest.raises(Open311Error) as exc:
        to_complaint(f, source="open311", catalog=CATALOG, now=NOW)
    assert "attribute[kecamatan]" in descriptions(exc)


def test_status_mapping():
    for closed in ("SELESAI", "DIARSIPKAN", "DILIMPAHKAN"):
        assert georeport_status(closed) == "closed"
    for open_ in ("DITERIMA", "TERVERIFIKASI", "DITUNDA", "TERDISPOSISI", "DIKEMBALIKAN",
                  "DITINDAKLANJUTI", "DITANGGAPI_PELAPOR"):
        assert georeport_status(open_) == "open"


def test_request_out_fields_and_times_in_the_regency_zone():
    row = StoredRequest(
        tracking_id="SKD-260317-ABC123", status="TERDISPOSISI", category="bencana",
        kecamatan="Belitang", desa="Tabuan", opd_name="Badan Penanggulangan Bencana Daerah",
        received_at=datetime(2026, 3, 17, 2, tzinfo=UTC),
        updated_at=datetime(2026, 3, 17, 3, tzinfo=UTC),
        description="Banjir setinggi lutut", address="Dusun Tabuan Hulu",
        lat=0.1, lon=110.5, media_url=None,
        expected_at=datetime(2026, 4, 7, 16, 59, 59, tzinfo=UTC),
        status_notes="Tim BPBD sudah ke lokasi.",
    )
    out = request_out(row, CATALOG, TZ, "Kabupaten Sekadau")
    assert out["service_name"] == "Bencana" and out["status"] == "open"
    assert out["requested_datetime"] == "2026-03-17T09:00:00+07:00"
    assert out["expected_datetime"] == "2026-04-07T23:59:59+07:00"
    assert out["agency_responsible"] == "Badan Penanggulangan Bencana Daerah"
    assert out["address"] == "Dusun Tabuan Hulu, Tabuan, Belitang, Kabupaten Sekadau"
    assert out["long"] == 110.5 and out["status_notes"] == "Tim BPBD sudah ke lokasi."
    assert not {"reporter", "email", "phone", "first_name", "last_name"} & set(out)
    unknown = request_out(replace(row, category="Kategori Lama LAPOR"), CATALOG, TZ, "X")
    assert unknown["service_name"] == "Kategori Lama LAPOR"


def test_request_query_defaults_to_90_days_and_1000():
    q = request_query({}, NOW, TZ)
    assert q.end == NOW and q.start == NOW - timedelta(days=90)
    assert q.limit == MAX_REQUESTS == 1000 and q.open_ is None
    q = request_query({"start_date": "2026-01-01T00:00:00Z"}, NOW, TZ)
    assert q.end - q.start == timedelta(days=90)
    q = request_query({"status": "closed", "service_code": "bencana,pendidikan"}, NOW, TZ)
    assert q.open_ is False and q.service_codes == ("bencana", "pendidikan")
    assert request_query({"status": "open,closed"}, NOW, TZ).open_ is None


def test_request_query_ids_override_everything():
    q = request_query({"service_request_id": "skd-1, SKD-2", "status": "bogus"}, NOW, TZ)
    assert q.ids == ("SKD-1", "SKD-2") and q.start is None


def test_request_query_errors_name_the_parameter():
    with pytest.raises(Open311Error) as exc:
        request_query({"status": "pending", "start_date": "kemarin"}, NOW, TZ)
    assert set(descriptions(exc)) == {"status", "start_date"}
    with pytest.raises(Open311Error) as exc:
        request_query({"start_date": "2026-01-01T00:00:00Z", "end_date": "2026-06-01T00:00:00Z"},
                      NOW, TZ)
    assert "90 days" in descriptions(exc)["end_date"]
    with pytest.raises(Open311Error):
        request_query({"start_date": "2026-03-01T00:00:00Z", "end_date": "2026-02-01T00:00:00Z"},
                      NOW, TZ)


def test_bare_dates_cover_whole_local_days():
    q = request_query({"start_date": "2026-03-01", "end_date": "2026-03-01"}, NOW, TZ)
    assert q.start.isoformat() == "2026-03-01T00:00:00+07:00"
    assert q.end.isoformat() == "2026-03-01T23:59:59.999999+07:00"


def test_services_and_definitions_follow_the_spec():
    s = service_out(CATALOG.service("air_bersih"))
    assert s == {"service_code": "air_bersih", "service_name": "Air Bersih",
                 "description": s["description"], "metadata": True, "type": "realtime",
                 "keywords": "air, pdam, air bersih, pipa, keran, sumur", "group": "pelayanan_dasar"}
    d = service_definition(CATALOG.service("air_bersih"), CATALOG)
    attrs = {a["code"]: a for a in d["attributes"]}
    assert list(attrs)[:4] == ["classification", "berkadar_pengawasan", "kecamatan", "desa"]
    assert [a["order"] for a in d["attributes"]] == list(range(1, len(attrs) + 1))
    assert {v["key"] for v in attrs["classification"]["values"]} == {
        "pengaduan", "aspirasi", "permintaan_informasi"}
    assert attrs["berkadar_pengawasan"]["datatype"] == "singlevaluelist"
    assert [v["name"] for v in attrs["kecamatan"]["values"]] == [
        "Belitang", "Belitang Hilir", "Belitang Hulu", "Nanga Mahap", "Nanga Taman",
        "Sekadau Hilir", "Sekadau Hulu"]
    assert attrs["desa"]["datatype"] == "string"
    for a in d["attributes"]:
        assert set(a) == {"variable", "code", "datatype", "required", "datatype_description",
                          "order", "description", "values"}


def test_shipped_catalogue_mirrors_routing_seed():
    """catalog.json is intake's copy of routing's directory: regenerate it when the seed changes."""
    shipped = json.loads(DATA.read_text(encoding="utf-8"))
    fresh = catalog_from_seed(routing_seed_sql(), shipped["changeset"])
    assert shipped == fresh, ("services/intake/catalog.json is stale: run "
                              "python -m services.intake.catalog > services/intake/catalog.json")
