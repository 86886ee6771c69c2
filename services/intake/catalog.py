"""intake's copy of routing's directory: categories (Open311 services), kecamatan, OPDs.

intake never reads routing's tables (one schema per service), so the catalogue ships as
data inside intake: ``catalog.json`` mirrors the categories, kecamatan and OPD directory
of routing's seed migrations (``services/routing/migrations/*.sql``). Regenerate it after
editing that seed (a unit test fails while the two disagree)::

    python -m services.intake.catalog > services/intake/catalog.json

Another regency ships its own seed and regenerates this file from it. Operators' later
edits of routing's tables do not reach this file: a category added at run time becomes a
GeoReport service only after the file is regenerated and intake redeployed.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from datetime import UTC
from functools import lru_cache
from pathlib import Path
from typing import Any

DATA = Path(__file__).parent / "catalog.json"
ROUTING_MIGRATIONS = Path(__file__).parents[1] / "routing" / "migrations"


def routing_seed_sql() -> str:
    """Every routing migration, in order: the seed and the later additions to it."""
    return "\n".join(p.read_text(encoding="utf-8") for p in sorted(ROUTING_MIGRATIONS.glob("*.sql")))


@dataclass(frozen=True)
class Service:
    code: str
    name: str
    group: str
    keywords: tuple[str, ...]
    description: str


@dataclass(frozen=True)
class Kecamatan:
    code: str
    name: str


@dataclass(frozen=True)
class Opd:
    code: str
    name: str
    kind: str


@dataclass(frozen=True)
class Catalog:
    changeset: str
    services: tuple[Service, ...]
    kecamatan: tuple[Kecamatan, ...]
    opds: tuple[Opd, ...]

    def opd(self, code: str) -> Opd | None:
        return next((o for o in self.opds if o.code == code), None)

    def service(self, code: str) -> Service | None:
        return next((s for s in self.services if s.code == code), None)

    def service_name(self, code: str) -> str:
        """A complaint's category may predate the catalogue (an import): show the raw code."""
        found = self.service(code)
        return found.name if found else code

    def kecamatan_named(self, value: str) -> Kecamatan | None:
        """By key (``belitang_hilir``) or name (``Belitang Hilir``), case-insensitively."""
        v = " ".join(value.split()).lower()
        return next((k for k in self.kecamatan if v in (k.code, k.name.lower())), None)


@lru_cache(maxsize=1)
def load_catalog(path: Path = DATA) -> Catalog:
    raw = json.loads(path.read_text(encoding="utf-8"))
    return Catalog(
        changeset=raw["changeset"],
        services=tuple(Service(s["service_code"], s["service_name"], s["group"],
                               tuple(s["keywords"]), s["description"]) for s in raw["services"]),
        kecamatan=tuple(Kecamatan(k["key"], k["name"]) for k in raw["kecamatan"]),
        opds=tuple(Opd(o["code"], o["name"], o["kind"]) for o in raw["opds"]),
    )


# --- generation from routing's seed (run once per seed change, not at run time) -------------

_CATEGORY = re.compile(
    r"\(\s*'(?P<code>[a-z][a-z0-9_]*)'\s*,\s*'(?P<name>(?:[^']|'')*)'\s*,\s*"
    r"'(?P<group>[a-z][a-z0-9_]*)'\s*,\s*'\{(?P<keywords>[^}]*)\}'\s*\)")
_KECAMATAN = re.compile(
    r"\(\s*'(?P<code>[a-z][a-z0-9_]*)'\s*,\s*'(?P<name>[^']+)'\s*,\s*'kec_[a-z0-9_]+'\s*\)")


_OPD = re.compile(
    r"\(\s*'(?P<code>[a-z][a-z0-9_]*)'\s*,\s*'(?P<name>(?:[^']|'')*)'\s*,\s*'(?P<kind>[a-z_]+)'\s*\)")


def _section(sql: str, table: str) -> str:
    start = sql.index(f"INSERT INTO {table} ")
    return sql[start:sql.index(";", start)]


def _sections(sql: str, table: str) -> list[str]:
    out, start = [], sql.find(f"INSERT INTO {table} ")
    while start != -1:
        out.append(sql[start:sql.index(";", start)])
        start = sql.find(f"INSERT INTO {table} ", start + 1)
    return out


def catalog_from_seed(sql: str, changeset: str) -> dict[str, Any]:
    services = []
    for m in _CATEGORY.finditer(_section(sql, "categories")):
        name = m["name"].replace("''", "'")
        keywords = [k.strip() for k in m["keywords"].split(",") if k.strip()]
        services.append({
            "service_code": m["code"], "service_name": name, "group": m["group"],
            "keywords": keywords,
            "description": f"Pengaduan, aspirasi, atau permintaan informasi tentang {name.lower()}.",
        })
    kecamatan = [{"key": m["code"], "name": m["name"]}
                 for m in _KECAMATAN.finditer(_section(sql, "kecamatan"))]
    opds = {m["code"]: {"code": m["code"], "name": m["name"].replace("''", "'"), "kind": m["kind"]}
            for section in _sections(sql, "opds") for m in _OPD.finditer(section)}
    return {
        "mirrors": "services/routing/migrations/*.sql (categories, kecamatan, opds)",
        "changeset": changeset,
        "services": services,
        "kecamatan": kecamatan,
        "opds": sorted(opds.values(), key=lambda o: o["code"]),
    }


def main() -> None:  # pragma: no cover - a maintenance tool
    from datetime import datetime

    changeset = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    data = catalog_from_seed(routing_seed_sql(), changeset)
    json.dump(data, sys.stdout, ensure_ascii=False, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":  # pragma: no cover
    main()
