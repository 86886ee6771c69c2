-- Webhook safety (SSRF protection, secret rotation, secrets encrypted at rest).
-- Secrets are stored sealed ('enc:v1:…', AES-256-GCM with SP4N_NOTIFY__SECRETS_KEY); SQL
-- cannot encrypt with the application's key, so rows written before this migration keep
-- their plaintext 'whsec_…' until notify seals them at its next start (the CHECK admits
-- both; notify logs how many it sealed).
ALTER TABLE subscriptions DROP CONSTRAINT IF EXISTS subscriptions_secret_check;
ALTER TABLE subscriptions ADD CONSTRAINT subscriptions_secret_check
    CHECK (secret LIKE 'enc:v1:%' OR secret LIKE 'whsec\_%');
-- Rotation: the previous secret keeps signing (a second 'v1,' signature, as Standard
-- Webhooks allows) until previous_secret_until, so receivers can switch without a gap.
ALTER TABLE subscriptions
    ADD COLUMN previous_secret text
        CHECK (previous_secret IS NULL OR previous_secret LIKE 'enc:v1:%'),
    ADD COLUMN previous_secret_until timestamptz,
    ADD CONSTRAINT subscriptions_previous_secret_pair
        CHECK ((previous_secret IS NULL) = (previous_secret_until IS NULL));
