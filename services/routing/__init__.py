"""routing: decides which OPD receives each submitted complaint (disposition), or sends it
to the admin koordinator's triage queue when no explicit rule applies."""
