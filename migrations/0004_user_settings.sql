-- Per-user settings. Only what the user changed is stored; reads merge it over the defaults, so a
-- default added later reaches everyone who never changed that field.
CREATE TABLE llm_api.user_settings (
    user_id    text PRIMARY KEY REFERENCES llm_api.users (id) ON DELETE CASCADE,
    settings   jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
