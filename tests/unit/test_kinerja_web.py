"""The /kinerja page's pure parts: the session signer (tamper, expiry, purpose, binding), the
table's sort order and period, the server-rendered chart."""

from __future__ import annotations

from datetime import date

from services.intake.reports.model import ReportRow
from services.intake.web.chart import rates_svg
from services.intake.web.session import Signer
from services.intake.web.view import period_of, sort_rows


def test_sessions_are_signed_expire_and_carry_no_key():
    s = Signer("rahasia")
    token = s.session_token(7, "opd", "dinkes", now=1000.0, ttl_s=60)
    got = s.session(token, now=1030.0)
    assert got is not None and (got.key_id, got.role, got.opd_code) == (7, "opd", "dinkes")
    assert s.session(token, now=1061.0) is None  # expired
    assert Signer("lain").session(token, now=1030.0) is None  # another secret
    payload, mac = token.split(".")
    assert s.session(payload + "x." + mac, now=1030.0) is None  # tampered
    assert s.session(None, now=0) is None and s.session("tanpa-titik", now=0) is None
    assert s.session(s.form_token("sign_in", 1000.0), now=1001.0) is None  # a form token is no session


def test_form_tokens_are_bound_to_purpose_and_session():
    s = Signer("rahasia")
    session = s.session_token(1, "admin_koordinator", None, now=0.0, ttl_s=100)
    out = s.form_token("sign_out", 10.0, session)
    assert s.form_token_ok(out, "sign_out", 11.0, session)
    assert not s.form_token_ok(out, "sign_in", 11.0, session)
    assert not s.form_token_ok(out, "sign_out", 11.0, s.session_token(1, "admin_koordinator", None, 0.0, 100))
    assert not s.form_token_ok(out, "sign_out", 11.0 + 3600, session)
    assert s.form_token_ok(s.form_token("sign_in", 0.0), "sign_in", 1.0)


def rows() -> list[ReportRow]:
    return [ReportRow("b", "Dinas B", disposed=4, completion_rate=50.0),
            ReportRow("a", "Dinas A", disposed=10, completion_rate=90.0),
            ReportRow("c", "Dinas C", disposed=0, completion_rate=None)]


def test_sorting_puts_missing_rates_last_either_way():
    assert [r.key for r in sort_rows(rows(), "penyelesaian", True)] == ["a", "b", "c"]
    assert [r.key for r in sort_rows(rows(), "penyelesaian", False)] == ["b", "a", "c"]
    assert [r.key for r in sort_rows(rows(), "opd", False)] == ["a", "b", "c"]
    assert [r.key for r in sort_rows(rows(), "terdisposisi", True)] == ["a", "b", "c"]
    assert [r.key for r in sort_rows(rows(), "bukan-kolom", True)] == ["a", "b", "c"]  # default


def test_period_defaults_to_this_month_and_is_bounded():
    today = date(2026, 11, 18)
    assert period_of(None, None, today, 3660).date_from == date(2026, 11, 1)
    p = period_of(date(2026, 11, 30), date(2026, 11, 1), today, 3660)  # reversed: swapped
    assert (p.date_from, p.date_to) == (date(2026, 11, 1), date(2026, 11, 30))
    assert p.label == "1 November 2026 – 30 November 2026"
    assert period_of(date(2000, 1, 1), today, today, 10).date_from == date(2026, 11, 8)


def test_the_chart_has_a_bar_per_rate_and_the_target_line_and_escapes_names():
    svg = rates_svg([ReportRow("x", "Dinas <Uji> & Co", follow_up_rate=80.0, completion_rate=50.0,
                               response_on_time_rate=None)], 90.0)
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert "Dinas &lt;Uji&gt; &amp; Co" in svg and "<Uji>" not in svg
    assert svg.count("<rect") == 3 + 2  # legend + two bars (no denominator: no bar)
    assert 'data-testid="garis-target"' in svg and "target 90%" in svg
    assert "Belum ada laporan" in rates_svg([], 90.0)
