"""The page's chart as inline SVG, rendered on the server (no script, no image request):
per OPD, three bars — tingkat tindak lanjut, tingkat penyelesaian, ketepatan waktu — and the
regency's target as a dashed line. Pure."""

from __future__ import annotations

from html import escape

from services.intake.reports.model import ReportRow

SERIES = (("follow_up_rate", "Tindak lanjut", "#2f6fb0"),
          ("completion_rate", "Penyelesaian", "#3a9a5b"),
          ("response_on_time_rate", "Ketepatan waktu", "#d08a1e"))
LABEL_W, BAR_W, BAR_H, GAP = 260, 440, 9, 10


def rates_svg(rows: list[ReportRow], target: float) -> str:
    """An SVG document fragment (trusted markup: every text is escaped here)."""
    group_h = BAR_H * len(SERIES) + GAP
    top = 46
    height = top + max(1, len(rows)) * group_h + 26
    width = LABEL_W + BAR_W + 60
    x0 = LABEL_W

    def x(pct: float) -> float:
        return x0 + BAR_W * max(0.0, min(100.0, pct)) / 100

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-labelledby="grafik-judul" '
           f'viewBox="0 0 {width} {height}" width="100%" class="grafik" data-testid="grafik">',
           '<title id="grafik-judul">Grafik tingkat tindak lanjut, penyelesaian dan ketepatan waktu '
           'per OPD</title>']
    for i, (_, name, color) in enumerate(SERIES):  # legend
        lx = x0 + i * 150
        out.append(f'<rect x="{lx}" y="6" width="12" height="12" fill="{color}"/>'
                   f'<text x="{lx + 18}" y="16" font-size="12">{escape(name)}</text>')
    for t in (0, 25, 50, 75, 100):
        out.append(f'<line x1="{x(t):.1f}" y1="{top - 6}" x2="{x(t):.1f}" y2="{height - 22}" '
                   f'stroke="#ddd"/><text x="{x(t):.1f}" y="{height - 8}" font-size="11" '
                   f'text-anchor="middle">{t}%</text>')
    if not rows:
        out.append(f'<text x="{x0}" y="{top + 12}" font-size="12">Belum ada laporan terdisposisi '
                   f'pada periode ini.</text>')
    for r_i, row in enumerate(rows):
        gy = top + r_i * group_h
        label = row.label if len(row.label) <= 38 else row.label[:37] + "…"
        out.append(f'<text x="{x0 - 8}" y="{gy + BAR_H * 2}" font-size="12" text-anchor="end">'
                   f'{escape(label)}</text>')
        for s_i, (attr, name, color) in enumerate(SERIES):
            value = getattr(row, attr)
            y = gy + s_i * BAR_H
            if value is None:
                continue
            out.append(f'<rect x="{x0}" y="{y}" width="{x(value) - x0:.1f}" height="{BAR_H - 1}" '
                       f'fill="{color}"><title>{escape(row.label)} — {escape(name)}: '
                       f'{value:.1f}%</title></rect>')
    tx = x(target)
    out.append(f'<line x1="{tx:.1f}" y1="{top - 6}" x2="{tx:.1f}" y2="{height - 22}" stroke="#c0392b" '
               f'stroke-width="2" stroke-dasharray="5,4" data-testid="garis-target"/>'
               f'<text x="{tx + 4:.1f}" y="{top - 8}" font-size="11" fill="#c0392b">target '
               f'{target:.0f}%</text>')
    out.append("</svg>")
    return "".join(out)
