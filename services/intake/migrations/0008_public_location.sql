-- Public reads (Open311): an anonim complaint shows a coarsened location unless the admin
-- koordinator marks its location public (reclassify with "location_public": true).
ALTER TABLE complaints ADD COLUMN location_public boolean NOT NULL DEFAULT false;
-- The public listing reads verified, non-rahasia complaints by arrival time.
CREATE INDEX complaints_public_by_received ON complaints (received_at DESC)
    WHERE NOT confidential;
