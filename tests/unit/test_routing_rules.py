"""Disposition rule matching: pure logic, no I/O."""

from __future__ import annotations

import pytest

from services.routing.rules import (
    Routed,
    Rule,
    Suggested,
    Triage,
    decide,
    match,
    normalize_area,
    normalize_category,
)

OPDS = {"dpupr": "Dinas PUPR", "pdam": "Perumda Air Minum", "disperkim": "Disperkim",
        "kec_belitang": "Kecamatan Belitang", "dishub": "Dinas Perhubungan"}


def rule(id, category, kecamatan="*", opd="dpupr", priority=10, **kw) -> Rule:
    return Rule(id=id, category=category, kecamatan=kecamatan, opd_code=opd, priority=priority, **kw)


def test_category_wildcard_area_matches_any_kecamatan():
    rules = [rule(1, "infrastruktur_jalan")]
    assert match(rules, "infrastruktur_jalan", "Belitang").id == 1
    assert match(rules, "infrastruktur_jalan", None).id == 1


def test_other_category_does_not_match():
    assert match([rule(1, "infrastruktur_jalan")], "pendidikan", "Belitang") is None


def test_no_rules_no_match():
    assert match([], "pendidikan", "Belitang") is None


def test_area_rule_needs_that_area():
    rules = [rule(1, "pelayanan_kecamatan", "Belitang", opd="kec_belitang")]
    assert match(rules, "pelayanan_kecamatan", "Belitang").id == 1
    assert match(rules, "pelayanan_kecamatan", "Belitang Hilir") is None
    assert match(rules, "pelayanan_kecamatan", None) is None


def test_kecamatan_is_case_insensitive_and_trimmed():
    rules = [rule(1, "pelayanan_kecamatan", "Belitang Hilir", opd="kec_belitang")]
    for spelling in ("belitang hilir", "  BELITANG   HILIR ", "belitang_hilir", "Kecamatan Belitang Hilir",
                     "Kec. Belitang Hilir"):
        assert match(rules, "pelayanan_kecamatan", spelling) is not None, spelling
    assert match(rules, "pelayanan_kecamatan", "Belitang") is None


def test_category_is_case_insensitive_and_trimmed():
    rules = [rule(1, "air_bersih", opd="pdam")]
    assert match(rules, " Air_Bersih ", "x").id == 1
    assert normalize_category("Air Bersih") == "air_bersih"


def test_wildcard_category_with_area():
    rules = [rule(1, "*", "Belitang", opd="kec_belitang")]
    assert match(rules, "apa_saja", "belitang").id == 1
    assert match(rules, "apa_saja", "Nanga Mahap") is None


def test_higher_priority_wins_over_specificity():
    general = rule(1, "air_bersih", "*", opd="pdam", priority=30)
    specific = rule(2, "air_bersih", "Nanga Taman", opd="disperkim", priority=20)
    assert match([specific, general], "air_bersih", "Nanga Taman") is general


def test_higher_priority_specific_rule_wins():
    general = rule(1, "air_bersih", "*", opd="pdam", priority=10)
    specific = rule(2, "air_bersih", "Nanga Taman", opd="disperkim", priority=20)
    assert match([general, specific], "air_bersih", "nanga taman") is specific
    assert match([general, specific], "air_bersih", "Sekadau Hilir") is general


def test_priority_tie_goes_to_more_specific_rule():
    by_category = rule(1, "infrastruktur_jalan", "*", opd="dpupr")
    by_area = rule(2, "*", "Belitang", opd="kec_belitang")
    both = rule(3, "infrastruktur_jalan", "Belitang", opd="dishub")
    rules = [by_category, by_area, both]
    assert match(rules, "infrastruktur_jalan", "Belitang") is both
    assert match(rules[:2], "infrastruktur_jalan", "Belitang Hulu") is by_category


def test_full_tie_goes_to_lowest_id_regardless_of_order():
    a = rule(7, "infrastruktur_jalan", opd="dpupr")
    b = rule(3, "infrastruktur_jalan", opd="dishub")
    assert match([a, b], "infrastruktur_jalan", "x").id == 3
    assert match([b, a], "infrastruktur_jalan", "x").id == 3


def test_disabled_rule_is_ignored():
    disabled = rule(1, "air_bersih", "Nanga Taman", opd="disperkim", priority=99, enabled=False)
    general = rule(2, "air_bersih", opd="pdam")
    assert match([disabled, general], "air_bersih", "Nanga Taman") is general
    assert match([disabled], "air_bersih", "Nanga Taman") is None


def test_specificity_counts_named_dimensions():
    assert rule(1, "*", "Belitang").specificity == 1
    assert rule(1, "a", "*").specificity == 1
    assert rule(1, "a", "Belitang").specificity == 2


def test_normalize_area_variants():
    assert normalize_area("  Nanga   MAHAP ") == "nanga mahap"
    assert normalize_area("kecamatan sekadau-hilir") == "sekadau hilir"
    assert normalize_area(None) == ""


def test_decide_routes_with_rule_and_version():
    decision = decide([rule(5, "air_bersih", opd="pdam", version=3)], OPDS, "air_bersih", "Belitang")
    assert decision == Routed("pdam", "Perumda Air Minum", 5, 3)


@pytest.mark.parametrize("kecamatan, area_text", [
    ("Belitang", "di kecamatan 'Belitang'"),
    (None, "(kecamatan tidak diketahui)"),
])
def test_decide_without_match_gives_indonesian_triage_reason(kecamatan, area_text):
    decision = decide([rule(1, "air_bersih")], OPDS, "pertanahan", kecamatan)
    assert isinstance(decision, Triage)
    assert decision.reason == f"Tidak ada aturan disposisi untuk kategori 'pertanahan' {area_text}"
    assert decision.suggested_rule is None


def test_decide_rule_with_auto_dispose_routes():
    r = rule(4, "perizinan", opd="dishub", version=2, auto_dispose=True)
    assert decide([r], OPDS, "perizinan", "Belitang") == Routed("dishub", "Dinas Perhubungan", 4, 2)


def test_decide_rule_without_auto_dispose_only_suggests():
    r = rule(4, "perizinan", opd="dishub", version=2, auto_dispose=False)
    assert decide([r], OPDS, "perizinan", "Belitang") == Suggested("dishub", "Dinas Perhubungan", 4, 2)


def test_auto_dispose_belongs_to_the_winning_rule_only():
    suggest_everywhere = rule(1, "air_bersih", opd="pdam", priority=10, auto_dispose=False)
    route_here = rule(2, "air_bersih", "Nanga Taman", opd="disperkim", priority=20)
    rules = [suggest_everywhere, route_here]
    assert decide(rules, OPDS, "air_bersih", "Nanga Taman") == Routed("disperkim", "Disperkim", 2, 1)
    assert decide(rules, OPDS, "air_bersih", "Belitang") == Suggested("pdam", "Perumda Air Minum", 1, 1)


def test_disabled_suggesting_rule_leaves_triage():
    r = rule(4, "perizinan", opd="dishub", auto_dispose=False, enabled=False)
    assert isinstance(decide([r], OPDS, "perizinan", "Belitang"), Triage)


def test_suggesting_rule_pointing_to_unknown_opd_goes_to_triage():
    r = rule(4, "perizinan", opd="hilang", auto_dispose=False)
    decision = decide([r], OPDS, "perizinan", "Belitang")
    assert isinstance(decision, Triage) and decision.suggested_rule is r
    assert "hilang" in decision.reason


def test_decide_rule_pointing_to_unknown_opd_goes_to_triage():
    decision = decide([rule(4, "perizinan", opd="hilang")], OPDS, "perizinan", "Belitang")
    assert isinstance(decision, Triage)
    assert "hilang" in decision.reason
