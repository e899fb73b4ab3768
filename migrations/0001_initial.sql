-- The llm_api schema and the installation's identity.
-- Later issues add their tables in migrations of their own.

CREATE TABLE llm_api.service_state (
    key        text PRIMARY KEY,
    value      text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- An id made once, when the database is first set up: it tells installations apart in reports and
-- shows that the data survived a restart (GET /v1/version).
INSERT INTO llm_api.service_state (key, value)
VALUES ('installation_id', 'inst_' || substr(md5(gen_random_uuid()::text), 1, 16));
