-- Model providers from every source: the configuration file, the environment, and the admin API.
-- The file and environment ones are written here at start-up, so that every worker and the admin API
-- see one list. Failover order: source (file, environment, api), then position within it, then age.

CREATE TABLE llm_api.providers (
    id                text PRIMARY KEY,                    -- prov_ + 16 random characters
    seq               bigserial NOT NULL,
    name              text NOT NULL UNIQUE,
    vendor            text NOT NULL,
    base_url          text NOT NULL,
    api_key_sealed    bytea,                               -- AES-GCM, key derived from LLM_API_SECRET_KEY
    api_key_hint      text,                                -- the key's last four characters
    models            jsonb,                               -- configured model ids; null: read from the provider
    discovered_models jsonb NOT NULL DEFAULT '[]'::jsonb,  -- the provider's last GET /models answer
    aliases           jsonb NOT NULL DEFAULT '{}'::jsonb,
    metadata          jsonb NOT NULL DEFAULT '{}'::jsonb,
    active            boolean NOT NULL DEFAULT true,
    source            text NOT NULL CHECK (source IN ('config_file', 'environment', 'api')),
    source_position   integer NOT NULL DEFAULT 0,
    last_synced_at    timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
