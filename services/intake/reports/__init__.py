"""intake's read model of the regency's numbers (issue 11): tingkat tindak lanjut, tingkat
penyelesaian and ketepatan waktu per OPD, as a report (API, CLI, web page) and as gauges.

Shape: ``model`` (the report's public dataclasses) → ``usecases`` (``kinerja_report``) →
``domain`` (pure: the definitions, the counting rule, medians) → ``repository`` (the SQL
over intake's own ``complaints``/``timeline``/``clocks``; nothing else to rebuild)."""
