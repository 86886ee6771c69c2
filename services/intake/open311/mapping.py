"""Pure translation between GeoReport v2 and intake's own contract.

No I/O here: a POSTed form becomes a ``ComplaintIn`` (or the spec's error array naming each
bad field), and a stored complaint (``StoredRequest``) becomes a GeoReport ``request``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, TypedDict
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from services.intake.catalog import Catalog, Service
from services.intake.errors import field_errors
from services.intake.lifecycle import TERMINAL_STATES, State
from services.intake.schemas import EARLIEST, ComplaintIn

SPEC = "http://wiki.open311.org/GeoReport_v2"
DEFAULT_SOURCE = "open311"
# GeoReport v2, GET Service Requests, "Response Volume": the default query limit is a span
# of 90 days or the first 1000 requests, whichever is smallest; a start_date/end_date
# range "may not span more than 90 days".
WINDOW = timedelta(days=90)
MAX_REQUESTS = 1000
# GeoReport knows only open and closed. Closed: finished (SELESAI, though it may be reopened),
# or terminal (archived, forwarded outside the regency) — nothing more is happening to it here.
CLOSED_STATES: frozenset[State] = TERMINAL_STATES | {State.SELESAI}
TITLE_MAX = 80
CLASSIFICATIONS = {
    "pengaduan": "Pengaduan",
    "aspirasi": "Aspirasi",
    "permintaan_informasi": "Permintaan Informasi",
}
_TRUE = {"true", "1", "ya", "yes"}
_FALSE = {"false", "0", "tidak", "no"}
_ATTRIBUTE = re.compile(r"^attribute\[([^\]]+)\](\[\])?$")


class SpecError(TypedDict):
    code: int
    description: str


class Open311Error(Exception):
    """An answer in the spec's error shape: HTTP ``status`` and ``[{"code", "description"}]``.

    The spec: 404 for a resource that does not exist, 403 for a missing or wrong api_key,
    400 for anything else; the body's code may be more specific than the HTTP status.
    """

    def __init__(self, status: int, *descriptions: str, code: int | None = None) -> None:
        super().__init__("; ".join(descriptions))
        self.status = status
        self.errors: list[SpecError] = [{"code": code or status, "description": d}
                                        for d in descriptions]


def bad_request(*descriptions: str) -> Open311Error:
    return Open311Error(400, *descriptions)


# --- service list and definitions ------------------------------------------------------------

def service_out(s: Service) -> dict[str, Any]:
    return {"service_code": s.code, "service_name": s.name, "description": s.description,
            "metadata": True, "type": "realtime", "keywords": ", ".join(s.keywords),
            "group": s.group}


def _bool_values() -> list[dict[str, str]]:
    return [{"key": "true", "name": "Ya"}, {"key": "false", "name": "Tidak"}]


def service_definition(s: Service, catalog: Catalog) -> dict[str, Any]:
    """The attributes every service takes; the spec's ``attribute[code]=value`` on POST."""
    attrs = [
        ("classification", "singlevaluelist", False, "Jenis laporan; bawaan: pengaduan.",
         "Klasifikasi laporan: pengaduan, aspirasi, atau permintaan informasi.",
         [{"key": k, "name": v} for k, v in CLASSIFICATIONS.items()]),
        ("berkadar_pengawasan", "singlevaluelist", False, "Hanya untuk pengaduan; bawaan: false.",
         "Apakah pengaduan memerlukan pemeriksaan lapangan (berkadar pengawasan)?",
         _bool_values()),
        ("kecamatan", "singlevaluelist", False, None,
         "Kecamatan tempat kejadian.",
         [{"key": k.code, "name": k.name} for k in catalog.kecamatan]),
        ("desa", "string", False, "Nama desa atau kelurahan, paling banyak 100 karakter.",
         "Desa atau kelurahan tempat kejadian.", None),
        ("anonim", "singlevaluelist", False, "Bawaan: false.",
         "Anonim: identitas pelapor dirahasiakan dari OPD dan publik.", _bool_values()),
        ("rahasia", "singlevaluelist", False, "Bawaan: false.",
         "Rahasia: seluruh laporan tidak ditampilkan kepada publik.", _bool_values()),
        ("external_id", "string", False,
         "Nomor laporan di sistem pengirim, paling banyak 100 karakter.",
         "Nomor laporan di aplikasi Anda. Kirim ulang dengan nomor yang sama tidak membuat "
         "laporan ganda; tanpa nomor ini setiap kiriman adalah laporan baru.", None),
        ("received_at", "datetime", False, "ISO 8601 dengan zona waktu, mis. 2026-03-17T09:00:00+07:00.",
         "Waktu warga menyampaikan laporan, bila lebih awal dari waktu kiriman ini.", None),
    ]
    return {
        "service_code": s.code,
        "attributes": [
            {"variable": True, "code": code, "datatype": datatype, "required": required,
             "datatype_description": dt_desc, "order": order, "description": desc,
             "values": values or []}
            for order, (code, datatype, required, dt_desc, desc, values) in enumerate(attrs, start=1)
        ],
    }


ATTRIBUTE_CODES = ("classification", "berkadar_pengawasan", "kecamatan", "desa", "anonim",
                   "rahasia", "external_id", "received_at")


# --- POST requests: form -> ComplaintIn ----------------------------------------------------------

@dataclass
class Form:
    """A form-encoded GeoReport POST: plain fields and ``attribute[code]`` values."""

    fields: dict[str, str] = field(default_factory=dict)
    attributes: dict[str, list[str]] = field(default_factory=dict)
    repeated: set[str] = field(default_factory=set)
    files: set[str] = field(default_factory=set)  # GeoReport sends media by URL, not upload

    @classmethod
    def parse(cls, items: Iterable[tuple[str, Any]]) -> Form:
        form = cls()
        for key, value in items:
            if not isinstance(value, str):
                form.files.add(key)
                continue
            m = _ATTRIBUTE.match(key)
            if m:
                form.attributes.setdefault(m[1], []).append(value)
                if m[2]:
                    form.repeated.add(m[1])
            else:
                if key in form.fields:
                    form.repeated.add(key)
                form.fields[key] = value
        return form

    def get(self, name: str) -> str | None:
        """A field's value; the spec treats an empty parameter as an absent one."""
        v = self.fields.get(name)
        return v.strip() if v and v.strip() else None


@dataclass(frozen=True)
class Extras:
    """What the form carries beyond the complaint."""

    account_id: str | None  # the spec's optional account_id, echoed back
    # No attribute[received_at]: received_at is the arrival time, so a retry differs from
    # the original in it alone and is still the same report.
    received_at_defaulted: bool = False


_FIELD_OF = {
    "source": "api_key", "external_id": "attribute[external_id]",
    "received_at": "attribute[received_at]", "classification": "attribute[classification]",
    "berkadar_pengawasan": "attribute[berkadar_pengawasan]", "category": "service_code",
    "title": "description", "description": "description",
    "location.kecamatan": "attribute[kecamatan]", "location.desa": "attribute[desa]",
    "location.address": "address_string", "location.lat": "lat", "location.lon": "long",
    "location": "lat", "anonymous": "attribute[anonim]", "confidential": "attribute[rahasia]",
    "reporter": "first_name", "reporter.name": "first_name", "reporter.phone": "phone",
    "reporter.email": "email", "attachments": "media_url",
}


def form_field(complaint_field: str) -> str:
    """The form field a client must fix for an error on a ``ComplaintIn`` field."""
    if complaint_field.startswith("attachments"):
        return "media_url"
    return _FIELD_OF.get(complaint_field, complaint_field)


def _new_external_id() -> str:
    return f"o311-{uuid.uuid4()}"


def to_complaint(form: Form, *, source: str, catalog: Catalog, now: datetime,
                 new_external_id: Callable[[], str] = _new_external_id) -> tuple[ComplaintIn, Extras]:
    """Map a GeoReport POST onto intake's submission; raise ``Open311Error`` naming fields.

    Idempotency: GeoReport has no client-side request id, so only a client that sends
    ``attribute[external_id]`` gets the same ``service_request_id`` back on a retry; any
    other POST is a new complaint with a fresh external id.
    """
    code = form.get("service_code")
    if code is None:
        raise bad_request("service_code: required; see services.json")
    service = catalog.service(code)
    if service is None:  # spec, POST Service Request: 404 - service_code was not found
        raise Open311Error(404, f"service_code: no service '{code}'; see services.json")

    errors: list[str] = []
    for name in sorted(form.repeated):
        label = f"attribute[{name}]" if name in form.attributes else name
        errors.append(f"{label}: takes a single value")
    for name in sorted(form.files):
        errors.append(f"{name}: files are not accepted; send media_url")
    unknown = sorted(set(form.attributes) - set(ATTRIBUTE_CODES))
    for name in unknown:
        errors.append(f"attribute[{name}]: unknown attribute for service '{code}'; "
                      f"see services/{code}.json")

    def attr(name: str) -> str | None:
        values = [v.strip() for v in form.attributes.get(name, []) if v.strip()]
        return values[-1] if values else None

    def flag(name: str) -> bool:
        v = attr(name)
        if v is None:
            return False
        if v.lower() in _TRUE:
            return True
        if v.lower() not in _FALSE:
            errors.append(f"attribute[{name}]: must be true or false")
        return False

    classification = (attr("classification") or "pengaduan").lower()
    if classification not in CLASSIFICATIONS:
        errors.append(f"attribute[classification]: must be one of {', '.join(CLASSIFICATIONS)}")
    berkadar = flag("berkadar_pengawasan")
    anonymous = flag("anonim")
    confidential = flag("rahasia")

    kecamatan = None
    if (raw_kec := attr("kecamatan")) is not None:
        found = catalog.kecamatan_named(raw_kec)
        if found is None:
            errors.append("attribute[kecamatan]: must be one of "
                          + ", ".join(k.code for k in catalog.kecamatan))
        else:
            kecamatan = found.name

    lat, lon = _coordinate(form, "lat", -90, 90, errors), _coordinate(form, "long", -180, 180, errors)
    address = form.get("address_string")
    has_lat, has_long = form.get("lat") is not None, form.get("long") is not None
    if has_lat != has_long:
        errors.append(f"{'long' if has_lat else 'lat'}: lat and long must be sent together")
    elif not has_lat and address is None:
        if form.get("address_id") is not None:
            errors.append("address_id: not supported by this jurisdiction; "
                          "send lat & long or address_string")
        else:
            errors.append("lat: a location is required: lat & long, or address_string")

    received_at: Any = now
    if (raw_at := attr("received_at")) is not None:
        try:
            received_at = parse_datetime(raw_at)
        except ValueError as exc:
            errors.append(f"attribute[received_at]: {exc}")

    description = form.get("description")
    if description is None:
        errors.append("description: required")

    full_name = " ".join(p for p in (form.get("first_name"), form.get("last_name")) if p) or None
    reporter = {k: v for k, v in (("name", full_name), ("phone", form.get("phone")),
                                  ("email", form.get("email"))) if v is not None}
    media_url = form.get("media_url")
    body: dict[str, Any] = {
        "source": source,
        "external_id": attr("external_id") or new_external_id(),
        "received_at": received_at,
        "classification": classification,
        "berkadar_pengawasan": berkadar,
        "category": service.code,
        "title": make_title(description or "", service.name),
        "description": description or "",
        "location": {"kecamatan": kecamatan, "desa": attr("desa"), "address": address,
                     "lat": lat, "lon": lon},
        "anonymous": anonymous,
        "confidential": confidential,
        "reporter": reporter or None,
        "attachments": [media_url] if media_url else [],
    }
    try:
        sub = ComplaintIn.model_validate(body)
    except ValidationError as exc:
        sub = None
        errors.extend(_describe(exc, already=errors))
    if errors:
        raise bad_request(*_unique(errors))
    assert sub is not None
    return sub, Extras(account_id=form.get("account_id"), received_at_defaulted=raw_at is None)


def _coordinate(form: Form, name: str, lo: float, hi: float, errors: list[str]) -> float | None:
    raw = form.get(name)
    if raw is None:
        return None
    try:
        v = float(raw)
    except ValueError:
        errors.append(f"{name}: must be a number (WGS84 degrees)")
        return None
    if not lo <= v <= hi:
        errors.append(f"{name}: must be between {lo:g} and {hi:g}")
        return None
    return v


def _describe(exc: ValidationError, already: list[str]) -> list[str]:
    out = []
    named = {e.split(":", 1)[0] for e in already}
    for e in field_errors(exc.errors()):
        target = form_field(e["field"])
        if target in named or (e["field"] == "location" and named & {"lat", "long"}):
            continue  # already reported in the form's own words
        reason = e["reason"]
        if e["field"] == "reporter":
            reason = ("needs first_name (and last_name) and a phone or email, "
                      "unless attribute[anonim] is true")
        elif e["field"] == "title":
            reason = f"too short to title the report: {reason}"
        out.append(f"{target}: {reason}")
    return out


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def make_title(description: str, service_name: str) -> str:
    """The first ~80 characters of the description, cut at a word; else the service name."""
    text = " ".join(description.split())
    if len(text) < 3:
        return service_name
    if len(text) <= TITLE_MAX:
        return text
    cut = text[:TITLE_MAX - 1]
    if " " in cut[TITLE_MAX // 2:]:
        cut = cut[:cut.rindex(" ")]
    return cut.rstrip(" ,.;:-") + "…"


def parse_datetime(raw: str) -> datetime:
    """ISO 8601 / W3C date-time with a UTC offset (``Z`` or ``±HH:MM``)."""
    try:
        value = datetime.fromisoformat(raw.strip())
    except ValueError:
        raise ValueError("must be an ISO 8601 date-time, e.g. 2026-03-17T09:00:00+07:00") from None
    if value.tzinfo is None:
        raise ValueError("must include a time zone: Z or an offset such as +07:00")
    return value


# --- GET requests: filters and serialisation -------------------------------------------------------

@dataclass(frozen=True)
class RequestQuery:
    ids: tuple[str, ...] = ()
    service_codes: tuple[str, ...] = ()
    start: datetime | None = None
    end: datetime | None = None
    open_: bool | None = None  # None: both open and closed
    limit: int = MAX_REQUESTS


# A filter's dates lie in this range (outside it nothing is stored, and date arithmetic on
# year 1 or 9999 overflows).
FILTER_EARLIEST = EARLIEST
FILTER_LATEST = datetime(2100, 1, 1, tzinfo=UTC)


def _bound(raw: str, name: str, tz: ZoneInfo, end: bool) -> datetime:
    """A start_date/end_date; a bare date means that whole day in the regency's time zone."""
    bare = re.fullmatch(r"\d{4}-\d{2}-\d{2}", raw.strip()) is not None
    try:
        value = (datetime.combine(date.fromisoformat(raw.strip()), time(0), tzinfo=tz) if bare
                 else parse_datetime(raw))
    except ValueError as exc:
        raise bad_request(f"{name}: {'must be a valid date (YYYY-MM-DD)' if bare else exc}") from None
    if not FILTER_EARLIEST <= value < FILTER_LATEST:
        raise bad_request(f"{name}: must be between {FILTER_EARLIEST:%Y-%m-%d} and "
                          f"{FILTER_LATEST:%Y-%m-%d}")
    if bare and end:  # up to the end of that day
        return value + timedelta(days=1) - timedelta(microseconds=1)
    return value


def _csv(params: Mapping[str, str], name: str) -> tuple[str, ...]:
    raw = ",".join(v for v in _all(params, name))
    return tuple(dict.fromkeys(p.strip() for p in raw.split(",") if p.strip()))


def _all(params: Mapping[str, str], name: str) -> list[str]:
    getlist = getattr(params, "getlist", None)
    if getlist is not None:
        return list(getlist(name))
    v = params.get(name)
    return [v] if v is not None else []


def request_query(params: Mapping[str, str], now: datetime, tz: ZoneInfo) -> RequestQuery:
    """GET requests.json filters, with the spec's defaults (90 days, 1000 requests)."""
    ids = _csv(params, "service_request_id")
    if ids:  # spec: service_request_id "overrides all other arguments"
        if len(ids) > MAX_REQUESTS:
            raise bad_request(f"service_request_id: at most {MAX_REQUESTS} ids per call")
        return RequestQuery(ids=tuple(i.upper() for i in ids))
    errors: list[str] = []
    statuses = {s.lower() for s in _csv(params, "status")}
    if statuses - {"open", "closed"}:
        errors.append("status: must be open, closed, or both comma-separated")
    raw_start = (params.get("start_date") or "").strip()
    raw_end = (params.get("end_date") or "").strip()
    start: datetime | None = None
    end: datetime | None = None
    try:
        start = _bound(raw_start, "start_date", tz, end=False) if raw_start else None
    except Open311Error as exc:
        errors.extend(e["description"] for e in exc.errors)
    try:
        end = _bound(raw_end, "end_date", tz, end=True) if raw_end else None
    except Open311Error as exc:
        errors.extend(e["description"] for e in exc.errors)
    if errors:
        raise bad_request(*errors)
    if start is None:  # none given: the last 90 days; only end_date: the 90 days before it
        end = end or now
        start = end - WINDOW
    elif end is None:
        end = start + WINDOW
    if end < start:
        raise bad_request("end_date: must not be before start_date")
    if end - start > WINDOW:
        raise bad_request("end_date: a start_date/end_date range may not span more than 90 days")
    open_ = None if len(statuses) != 1 else statuses == {"open"}
    return RequestQuery(service_codes=_csv(params, "service_code"), start=start, end=end,
                        open_=open_)


def georeport_status(status: str) -> str:
    return "closed" if status in CLOSED_STATES else "open"


def service_notice(status: str, opd_name: str | None) -> str:
    if status == State.SELESAI:
        return "Laporan telah selesai ditindaklanjuti."
    if status == State.DIARSIPKAN:
        return "Laporan diarsipkan oleh admin koordinator."
    if status == State.DILIMPAHKAN:
        return "Laporan dilimpahkan kepada instansi di luar pemerintah kabupaten."
    if opd_name:
        return f"Laporan sedang ditangani oleh {opd_name}."
    return ("Laporan akan diverifikasi oleh admin koordinator lalu diteruskan kepada "
            "perangkat daerah yang berwenang.")


def accepted_notice(tracking_id: str, confidential: bool) -> str:
    notice = (f"Laporan Anda telah diterima dengan nomor pelacakan {tracking_id}. Admin koordinator "
              "akan memverifikasi dan meneruskannya kepada perangkat daerah yang berwenang.")
    if confidential:
        notice += (" Laporan ini bersifat rahasia: tidak ditampilkan kepada publik dan tidak "
                   "dapat dilihat melalui requests.json.")
    return notice


def iso(value: datetime | None, tz: ZoneInfo) -> str | None:
    """W3C date-time with the regency's offset, e.g. ``2026-03-17T09:00:00+07:00``."""
    return value.astimezone(tz).isoformat(timespec="seconds") if value else None


@dataclass(frozen=True)
class StoredRequest:
    """A complaint as the facade reads it: what a public GeoReport ``request`` may show.

    No reporter field exists here at all (GeoReport reads are public).
    """

    tracking_id: str
    status: str  # a lifecycle ``State`` value
    category: str
    kecamatan: str | None
    desa: str | None
    opd_name: str | None
    received_at: datetime
    updated_at: datetime | None
    description: str | None
    address: str | None
    lat: float | None
    lon: float | None
    media_url: str | None
    expected_at: datetime | None  # the latest completion deadline
    status_notes: str | None  # the latest OPD response
    anonymous: bool = False
    location_public: bool = False  # the admin koordinator made an anonim one's location public


def request_out(r: StoredRequest, catalog: Catalog, tz: ZoneInfo, region_name: str, *,
                location_decimals: int = 3) -> dict[str, Any]:
    """A complaint as a GeoReport ``request``. Never any reporter data (not even for named
    reporters): GeoReport reads are public. An anonim complaint's location could point at
    its reporter (a house, a shop): unless the admin koordinator made it public, lat/long are
    rounded to ``location_decimals`` and the street address is left out (desa and
    kecamatan stay)."""
    exact = not r.anonymous or r.location_public
    street = r.address if exact else None
    address = ", ".join(p for p in (street, r.desa, r.kecamatan) if p)
    lat, lon = r.lat, r.lon
    if not exact:
        lat = round(lat, location_decimals) if lat is not None else None
        lon = round(lon, location_decimals) if lon is not None else None
    return {
        "service_request_id": r.tracking_id,
        "status": georeport_status(r.status),
        "status_notes": r.status_notes,
        "service_name": catalog.service_name(r.category),
        "service_code": r.category,
        "description": r.description,
        "agency_responsible": r.opd_name,
        "service_notice": service_notice(r.status, r.opd_name),
        "requested_datetime": iso(r.received_at, tz),
        "updated_datetime": iso(r.updated_at, tz),
        "expected_datetime": iso(r.expected_at, tz),
        "address": f"{address}, {region_name}" if address else None,
        "address_id": None,
        "zipcode": None,
        "lat": lat,
        "long": lon,
        "media_url": r.media_url,
    }
