"""``sp4n report``: the regency's numbers per OPD for a month or a date range, read from
intake's schema with intake's own report use case (``services.intake.reports``): a terminal
table, the XLSX rekap regency reports use, and a PNG chart (per-OPD bars, the target line)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import click

from services.cli.common import migrations_of, pass_settings, run_async
from services.intake.domain.complaint import Actor
from services.intake.reports.domain import month_range
from services.intake.reports.export import one_decimal, percent_text, to_xlsx
from services.intake.reports.model import (
    ATTRIBUTIONS,
    GROUP_BYS,
    Attribution,
    GroupBy,
    KinerjaReport,
    ReportQuery,
)
from services.intake.reports.repository import ReportRepository
from services.intake.reports.usecases import kinerja_report
from services.intake.reports.workdays import WorkCalendar
from shared.connect import service_pool
from shared.settings import Settings
from shared.uow import PgUnitOfWork

TABLE = (("masuk", "received", 6), ("terdisposisi", "disposed", 12), ("ditindaklanjuti", "followed_up", 15),
         ("selesai", "completed", 7), ("tepat waktu", "response_on_time", 11))
RATES = (("% tindak lanjut", "follow_up_rate"), ("% penyelesaian", "completion_rate"),
         ("% tepat waktu", "response_on_time_rate"), ("% selesai tepat waktu", "completion_on_time_rate"))


def render_table(report: KinerjaReport) -> str:
    """The per-group table as people read it in a terminal, the total row last."""
    rows = [*report.rows, report.totals]
    width = max([len(r.label) for r in rows] + [24])
    head = f"{'OPD' if report.query.group_by == 'opd' else report.query.group_by:<{width}}"
    head += "".join(f" {h:>{w}}" for h, _, w in TABLE) + "".join(f" {h:>{len(h)}}" for h, _ in RATES)
    lines = [head, "-" * len(head)]
    for r in rows:
        line = f"{r.label[:width]:<{width}}" + "".join(f" {getattr(r, f):>{w}}" for _, f, w in TABLE)
        line += "".join(f" {percent_text(getattr(r, f)):>{len(h)}}" for h, f in RATES)
        if r is report.totals:
            lines.append("-" * len(head))
        lines.append(line)
    return "\n".join(lines)


def render_chart(report: KinerjaReport, path: Path) -> None:
    """Per-OPD bars (tingkat penyelesaian and ketepatan waktu) with the target line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in report.rows if r.disposed]
    labels = [r.key for r in rows]
    x = list(range(len(rows)))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(rows) + 2), 4.5))
    done = [r.completion_rate or 0.0 for r in rows]
    on_time = [r.response_on_time_rate or 0.0 for r in rows]
    ax.bar([i - 0.2 for i in x], done, width=0.4, label="tingkat penyelesaian")
    ax.bar([i + 0.2 for i in x], on_time, width=0.4, label="ketepatan waktu tindak lanjut")
    ax.axhline(report.target_on_time_rate, color="red", linestyle="--",
               label=f"target {report.target_on_time_rate:.0f}%")
    ax.set_xticks(x, labels, rotation=30, ha="right")
    ax.set_xlim(-0.8, max(len(rows), 3) - 0.2)  # a lone OPD keeps bars of a readable width
    ax.set_ylim(0, 105)
    ax.set_ylabel("%")
    q = report.query
    ax.set_title(f"Kinerja OPD {q.date_from:%d-%m-%Y} s.d. {q.date_to:%d-%m-%Y}")
    ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


@click.command("report")
@click.option("--month", help="a month, e.g. 2026-11")
@click.option("--from", "date_from", type=click.DateTime(["%Y-%m-%d"]), help="first day (with --to)")
@click.option("--to", "date_to", type=click.DateTime(["%Y-%m-%d"]), help="last day, included")
@click.option("--opd", help="one OPD's numbers only")
@click.option("--group-by", type=click.Choice(GROUP_BYS), default="opd", show_default=True)
@click.option("--attribution", type=click.Choice(ATTRIBUTIONS), default="event", show_default=True,
              help="event: by the disposition date; cohort: by the date received")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
              show_default=True, help="where the XLSX rekap and the PNG chart are written")
@click.option("--no-files", is_flag=True, help="print the table only")
@pass_settings
def report(settings: Settings, month: str | None, date_from: datetime | None, date_to: datetime | None,
           opd: str | None, group_by: str, attribution: str, out_dir: Path, no_files: bool) -> int:
    """Tingkat tindak lanjut, penyelesaian and ketepatan waktu per OPD for a month or a date
    range: prints the table, writes kinerja-FROM-TO.xlsx (the rekap) and kinerja-FROM-TO.png."""
    if month:
        try:
            start, end = month_range(month)
        except ValueError:
            raise click.BadParameter(f"{month!r} is not a month like 2026-11", param_hint="--month") from None
    elif date_from and date_to:
        start, end = date_from.date(), date_to.date()
    else:
        raise click.UsageError("give --month, or --from and --to")
    q = ReportQuery(date_from=start, date_to=end, opd=opd, group_by=cast(GroupBy, group_by),
                    attribution=cast(Attribution, attribution))  # click.Choice checked both
    rep = run_report(settings, q)
    click.echo(render_table(rep))
    if not no_files:
        out_dir.mkdir(parents=True, exist_ok=True)
        stem = out_dir / f"kinerja-{start:%Y%m%d}-{end:%Y%m%d}"
        stem.with_suffix(".xlsx").write_bytes(to_xlsx(rep, settings.region_name))
        render_chart(rep, stem.with_suffix(".png"))
        click.echo(f"rekap: {stem.with_suffix('.xlsx')}\ngrafik: {stem.with_suffix('.png')}")
    t = rep.totals
    click.echo(f"tingkat penyelesaian {percent_text(one_decimal(t.completion_rate))}, "
               f"tingkat tindak lanjut {percent_text(one_decimal(t.follow_up_rate))}, "
               f"ketepatan waktu {percent_text(one_decimal(t.response_on_time_rate))}")
    return 0


def run_report(settings: Settings, q: ReportQuery) -> KinerjaReport:
    result: list[KinerjaReport] = []

    async def go() -> int:
        async with service_pool(settings, "intake", migrations=migrations_of("intake")) as pool:
            uow = PgUnitOfWork(lambda: pool, ReportRepository)
            result.append(await kinerja_report(
                uow, q, Actor("admin_koordinator"), calendar=WorkCalendar(settings.tz),
                now=datetime.now(UTC), target_on_time_rate=settings.intake.kinerja_target_on_time_rate))
        return 0

    run_async(go())
    return result[0]




COMMANDS = (report,)
