"""Importers that feed complaints from other systems through intake's public HTTP path.

``lapor`` reads an SP4N-LAPOR! Excel export (pure parsing and mapping); ``submit`` posts
the rows to ``POST /v1/complaints`` (bounded concurrency, retries, progress); ``command``
ties both together for ``sp4n import-lapor``.
"""
