-- The kinerja report (issue 11) reads complaints and their timeline by period: no projection
-- table, so nothing to rebuild; these indexes keep it fast (bench/report.py).
-- One complaint's entries of one kind (the report's per-complaint lookups).
CREATE INDEX timeline_by_complaint_type ON timeline (complaint_id, event_type, occurred_at);
-- Complaints disposed in a period (attribution=event).
CREATE INDEX timeline_by_type_time ON timeline (event_type, occurred_at);
-- Complaints received in a period (attribution=cohort, masuk).
CREATE INDEX complaints_by_received ON complaints (received_at);
