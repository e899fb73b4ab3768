-- Users, the built-in issuer's signing keys, refresh tokens, API keys and rate-limit windows.

CREATE TABLE llm_api.users (
    id           text PRIMARY KEY,                 -- usr_ + 16 random characters
    issuer       text NOT NULL,                    -- users are keyed by (issuer, subject)
    subject      text NOT NULL,
    username     text,
    email        text,
    name         text,
    is_guest     boolean NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (issuer, subject)
);

-- The built-in issuer's RS256 keys. The private key is sealed (AES-GCM, key derived from
-- LLM_API_SECRET_KEY). A retired key signs nothing new but stays published until the last token it
-- signed has expired.
CREATE TABLE llm_api.signing_keys (
    kid                text PRIMARY KEY,
    public_jwk         jsonb NOT NULL,
    private_key_sealed bytea NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    retired_at         timestamptz
);

-- Refresh tokens are stored as keyed hashes only. Each one is spent by one refresh; the tokens of
-- one login form a family, and replaying a spent token revokes the whole family.
CREATE TABLE llm_api.refresh_tokens (
    token_hash bytea PRIMARY KEY,
    family     text NOT NULL,
    user_id    text NOT NULL REFERENCES llm_api.users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at    timestamptz,
    revoked_at timestamptz
);
CREATE INDEX refresh_tokens_family ON llm_api.refresh_tokens (family);

-- API keys are stored as keyed hashes; prefix and suffix let people recognise them.
CREATE TABLE llm_api.api_keys (
    id           text PRIMARY KEY,                 -- key_ + 16 random characters
    user_id      text NOT NULL REFERENCES llm_api.users (id) ON DELETE CASCADE,
    name         text NOT NULL,
    key_hash     bytea NOT NULL UNIQUE,
    prefix       text NOT NULL,
    suffix       text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz,
    last_used_at timestamptz,
    revoked_at   timestamptz
);
CREATE INDEX api_keys_by_user ON llm_api.api_keys (user_id, created_at DESC);

-- One row per rate-limited caller ('user:<id>' or 'ip:<address>'): a one-minute window that opens
-- with the caller's first request, shared by every worker and instance.
CREATE TABLE llm_api.rate_limits (
    key          text PRIMARY KEY,
    window_start timestamptz NOT NULL,
    count        integer NOT NULL
);
