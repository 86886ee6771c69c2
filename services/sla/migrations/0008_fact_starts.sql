-- Every fact that starts a clock carries what starting it needs (issue 10 item 1: a
-- complaint's clocks are a function of its facts, the calendar and the policies alone):
-- ``routed``, ``returned`` and ``withdrawn`` the OPD; ``responded`` the OPD and the response
-- number; ``submitted`` its classification's completion policy and its category (and whether it
-- is imported history). New rows get them from the event (``clocks.fact_of``); rows written
-- before are filled in here from the clocks they started (a fact that started no clock — a
-- routing that never took, an imported submission — starts none when derived either).
UPDATE facts f SET detail = json_build_object('opd_code', c.opd_code)::text
FROM clocks c
WHERE f.detail IS NULL AND f.kind = 'routed' AND c.complaint_id = f.complaint_id
  AND c.clock = 'opd_response' AND c.hop = f.hop AND c.instance = 0;

UPDATE facts f SET detail = json_build_object('opd_code', c.opd_code,
                                              'response_no', c.instance)::text
FROM clocks c
WHERE f.detail IS NULL AND f.kind = 'responded' AND c.complaint_id = f.complaint_id
  AND c.clock = 'auto_close' AND c.hop = f.hop AND c.started_at = f.at;

UPDATE facts f SET detail = json_build_object('opd_code', c.opd_code)::text
FROM clocks c
WHERE f.detail IS NULL AND f.kind IN ('returned', 'withdrawn') AND c.complaint_id = f.complaint_id
  AND c.clock = 'redisposition' AND c.hop = f.hop AND c.started_at = f.at;

UPDATE facts f SET detail = json_build_object('policy_key', c.policy_key, 'category', c.category,
                                              'reason', NULL, 'changed_by', NULL)::text
FROM clocks c
WHERE f.detail IS NULL AND f.kind = 'submitted' AND c.complaint_id = f.complaint_id
  AND c.clock = 'completion' AND c.hop = 0 AND c.instance = 0
  -- a correction may have changed the clock's policy since: the submission's is not known
  AND NOT EXISTS (SELECT 1 FROM facts r WHERE r.complaint_id = f.complaint_id
                  AND r.kind = 'reclassified');
