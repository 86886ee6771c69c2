-- Default SLA policy (Permenpan RB 62/2018); the regency edits these rows, which bumps
-- their version. Warnings go out 1 working day before each deadline.
INSERT INTO policies (clock, working_days, warn_before_working_days) VALUES
    ('verification', 3, 1),
    ('opd_response', 5, 1),
    ('completion_aspirasi', 5, 1),
    ('completion_permintaan_informasi', 5, 1),
    ('completion_pengaduan', 14, 1),
    ('completion_pengaduan_pengawasan', 60, 1),
    ('auto_close', 10, 1)
ON CONFLICT (clock) DO NOTHING;
