-- Erasing a reporter's identity (POST /v1/reporters/{key}/erase) needs its own scope,
-- identity:erase, which admin koordinator keys carry (services/intake/scopes.py; a unit test
-- compares the two). Existing admin keys get it here.
UPDATE api_keys SET scopes = ARRAY['complaints:submit', 'complaints:read', 'complaints:verify',
    'complaints:defer', 'complaints:resume', 'complaints:archive', 'complaints:dispose',
    'complaints:forward', 'complaints:close', 'complaints:reopen', 'complaints:reclassify',
    'complaints:withdraw', 'complaints:backdate', 'identity:read', 'identity:nik', 'audit:read',
    'identity:erase'] WHERE role = 'admin_koordinator';
