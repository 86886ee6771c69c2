-- The deadline engine (issue 10): the admin's redisposition clock, the DITUNDA expiry clock,
-- the completion clock's two outcomes (the OPD's final tindak lanjut and the close), a
-- recomputed policy on reclassification, and the calendar coverage an operator confirmed.

ALTER TABLE clocks DROP CONSTRAINT clocks_clock_check;
ALTER TABLE clocks ADD CONSTRAINT clocks_clock_check CHECK (clock IN (
    'verification', 'opd_response', 'completion', 'auto_close', 'redisposition', 'deferral'));

-- When the OPD's final tindak lanjut and the close happened (either may meet the completion
-- clock, by the ``completion_met_by`` setting); both kept whatever the rule.
ALTER TABLE clocks ADD COLUMN final_response_at timestamptz;
ALTER TABLE clocks ADD COLUMN closed_at timestamptz;

-- Defaults: the admin koordinator re-disposes a returned or withdrawn complaint within the
-- verification's 3 HK; DITUNDA ends by itself (archived by the system) after 10 HK with no
-- answer from the reporter (no warning: the reporter is not staff).
INSERT INTO policies (clock, working_days, warn_before_working_days) VALUES
    ('redisposition', 3, 1),
    ('deferral', 10, 0)
ON CONFLICT (clock) DO NOTHING;

-- Years whose cuti bersama an operator confirmed (entered the SKB's days as overrides where
-- the holidays package lacks them): ``sp4n calendar confirm YEAR``.
CREATE TABLE calendar_confirmed_years (
    year         int PRIMARY KEY CHECK (year BETWEEN 2000 AND 2200),
    confirmed_by text NOT NULL,
    confirmed_at timestamptz NOT NULL DEFAULT now()
);
