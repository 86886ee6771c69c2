-- auto_dispose per rule: a rule with auto_dispose = false only *suggests* its OPD
-- (complaint.routing_suggested); the admin koordinator disposes. The decision row records
-- it as outcome 'suggested' with the rule and OPD, like a 'routed' one.
--
-- Applied migrations are never edited: the seed change lives here. Like 0002 the whole file
-- is safe to re-run (IF [NOT] EXISTS on the DDL, ON CONFLICT DO NOTHING on natural keys, so
-- an operator's edit of the seeded rows is kept).

ALTER TABLE decisions DROP CONSTRAINT IF EXISTS decisions_outcome_check;
ALTER TABLE decisions ADD CONSTRAINT decisions_outcome_check
    CHECK (outcome IN ('routed', 'suggested', 'triage'));
ALTER TABLE decisions DROP CONSTRAINT IF EXISTS decisions_suggested_has_rule;
ALTER TABLE decisions ADD CONSTRAINT decisions_suggested_has_rule
    CHECK (outcome <> 'suggested' OR (opd_code IS NOT NULL AND rule_id IS NOT NULL AND rule_version IS NOT NULL));
CREATE INDEX IF NOT EXISTS decisions_suggested ON decisions (decided_at) WHERE outcome = 'suggested';

-- The Inspektorat Daerah is the regency's internal auditor (APIP): the usual destination for
-- reports of pungutan liar and abuse of authority.
ALTER TABLE opds DROP CONSTRAINT IF EXISTS opds_kind_check;
ALTER TABLE opds ADD CONSTRAINT opds_kind_check CHECK (kind IN
    ('dinas', 'badan', 'rsud', 'kecamatan', 'sekretariat', 'satuan', 'bumd', 'inspektorat', 'lainnya'));

INSERT INTO opds (code, name, kind) VALUES
    ('inspektorat', 'Inspektorat Daerah Kabupaten Sekadau', 'inspektorat')
ON CONFLICT (code) DO NOTHING;

-- Sensitive: a pungli report may name officials of the very office a rule would send it to,
-- so the rule only suggests the Inspektorat and the admin koordinator reads it first.
-- pertanahan and lainnya still have no rule (pertanahan is mostly the BPN's, outside the
-- regency: forward it), so unmatched complaints keep reaching triage.
INSERT INTO rules (seed_key, category, kecamatan, opd_code, priority, auto_dispose, note) VALUES
    ('skd:pungutan_liar:*', 'pungutan_liar', '*', 'inspektorat', 10, false,
     'Sensitif: hanya saran; admin koordinator memutuskan disposisi')
ON CONFLICT (seed_key) DO NOTHING;
