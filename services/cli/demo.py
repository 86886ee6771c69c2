"""``sp4n demo``: posts a few realistic complaints to a running system and prints where each
went (OPD or triage) and its deadlines."""

from __future__ import annotations

import asyncio
import sys
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import click
import httpx

from services.cli.common import migrations_of, pass_settings
from services.intake.apikeys import create_api_key
from shared.connect import service_connection
from shared.events import CLOCK_LABELS
from shared.settings import Settings

DEMO_COMPLAINTS: list[dict[str, Any]] = [
    {
        "classification": "pengaduan", "category": "infrastruktur_jalan",
        "title": "Jalan berlubang di depan SDN 03 Sungai Ayak",
        "description": "Jalan desa rusak parah dan berlubang sejak bulan lalu, membahayakan "
                       "anak-anak yang berangkat sekolah. Mohon segera diperbaiki.",
        "location": {"kecamatan": "Belitang Hilir", "desa": "Sungai Ayak"},
    },
    {
        "classification": "pengaduan", "category": "kesehatan", "berkadar_pengawasan": True,
        "title": "Puskesmas tutup pada jam layanan",
        "description": "Puskesmas tidak buka pada hari Senin pukul 09.00 padahal jadwal "
                       "layanan dimulai pukul 08.00. Warga menunggu lebih dari satu jam.",
        "location": {"kecamatan": "Nanga Taman", "desa": "Nanga Taman"},
    },
    {
        "classification": "permintaan_informasi", "category": "administrasi_kependudukan",
        "title": "Syarat pembuatan KTP elektronik pertama",
        "description": "Saya ingin menanyakan syarat dan lama proses pembuatan KTP elektronik "
                       "untuk anak yang baru berusia 17 tahun.",
        "location": {"kecamatan": "Sekadau Hilir", "desa": "Mungguk"},
    },
    {
        "classification": "aspirasi", "category": "pelayanan_kecamatan",
        "title": "Usulan layanan keliling kantor kecamatan",
        "description": "Mohon kantor kecamatan mengadakan layanan keliling ke desa-desa yang "
                       "jauh agar warga tidak perlu menempuh perjalanan berjam-jam.",
        "location": {"kecamatan": "Nanga Mahap", "desa": "Nanga Mahap"},
    },
    {
        "classification": "pengaduan", "category": "kategori_belum_dikenal",
        "title": "Keluhan yang belum punya kategori",
        "description": "Laporan ini sengaja memakai kategori yang belum ada aturannya sehingga "
                       "harus ditriase oleh admin koordinator.",
        "location": {"kecamatan": "Belitang", "desa": "Belitang Satu"},
        "anonymous": True,
    },
]


async def _demo_key(settings: Settings) -> str:
    async with service_connection(settings, "intake", migrations=migrations_of("intake")) as conn:
        _key, plaintext = await create_api_key(conn, f"demo-{uuid.uuid4().hex[:6]}", "portal", "demo")
    return plaintext


async def run_demo(settings: Settings, url: str, api_key: str | None, timeout: float) -> int:
    key = api_key or await _demo_key(settings)
    now = datetime.now(UTC)
    headers = {"Authorization": f"Bearer {key}"}
    results: list[tuple[dict[str, Any], dict[str, Any]]] = []
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=10) as client:
        for i, c in enumerate(DEMO_COMPLAINTS):
            body = {
                "source": "demo", "external_id": f"demo-{uuid.uuid4().hex[:10]}",
                "received_at": (now - timedelta(hours=i)).isoformat(),
                "reporter": {"name": "Warga Demo", "phone": "+6281200000000"},
                **c,
            }
            r = await client.post("/v1/complaints", json=body)
            if r.status_code not in (200, 202):
                print(f"rejected ({r.status_code}): {r.text}", file=sys.stderr)
                return 1
            results.append((c, r.json()))
        print(f"posted {len(results)} complaints to {url}; waiting for routing…\n")
        for c, accepted in results:
            status: dict[str, Any] = {}
            deadline = asyncio.get_running_loop().time() + timeout
            while asyncio.get_running_loop().time() < deadline:
                status = (await client.get(f"/v1/complaints/{accepted['tracking_id']}")).json()
                decided = status.get("opd_code") or status.get("needs_triage")
                # routed: verification, completion and the OPD's clock; triage: the first two.
                if decided and len(status.get("clocks", [])) >= (3 if status.get("opd_code") else 2):
                    break
                await asyncio.sleep(0.2)
            where = (status.get("opd_name") or ("triase admin koordinator" if status.get("needs_triage")
                                                else "belum diproses"))
            print(f"{accepted['tracking_id']}  {c['category']:<28} {c['location']['kecamatan']:<15} "
                  f"→ {where}")
            for clock in status.get("clocks", []):
                due = datetime.fromisoformat(clock["deadline"]).astimezone(settings.tz)
                print(f"    tenggat {CLOCK_LABELS.get(clock['clock'], clock['clock']):<28} "
                      f"{due:%d-%m-%Y %H:%M} {settings.tz.key}  "
                      f"({clock['working_days']} HK, {clock['state']})")
    return 0


@click.command("demo", short_help="Post realistic complaints; show their routing and deadlines.")
@click.option("--url", default="http://127.0.0.1:8000", show_default=True, help="intake's base URL")
@click.option("--api-key", help="a portal key; by default a demo key is created")
@click.option("--timeout", type=float, default=15.0, show_default=True,
              help="seconds to wait for each complaint's routing")
@pass_settings
def demo(settings: Settings, url: str, api_key: str | None, timeout: float) -> int:
    """Post realistic complaints to a running system and show where each went and its deadlines."""
    return asyncio.run(run_demo(settings, url, api_key, timeout))


COMMANDS = (demo,)
