-- Projects, conversations and their items.
-- Each table has a `seq` (bigserial): the one sort key and cursor of its lists, so that paging is
-- stable while rows are added.

CREATE TABLE llm_api.projects (
    id          text PRIMARY KEY,                    -- proj_ + 16 random characters
    seq         bigserial NOT NULL UNIQUE,
    user_id     text NOT NULL REFERENCES llm_api.users (id) ON DELETE CASCADE,
    name        text NOT NULL,
    instruction text,
    is_favorite boolean NOT NULL DEFAULT false,
    archived_at timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz                          -- projects are deleted softly
);
-- One active project per name and user; a deleted project's name is free again.
CREATE UNIQUE INDEX projects_active_name ON llm_api.projects (user_id, name) WHERE deleted_at IS NULL;
CREATE INDEX projects_paging ON llm_api.projects (user_id, seq) WHERE deleted_at IS NULL;

CREATE TABLE llm_api.conversations (
    id          text PRIMARY KEY,                    -- conv_ + 16 random characters
    seq         bigserial NOT NULL UNIQUE,
    user_id     text NOT NULL REFERENCES llm_api.users (id) ON DELETE CASCADE,
    project_id  text REFERENCES llm_api.projects (id),
    title       text,
    metadata    jsonb NOT NULL DEFAULT '{}'::jsonb,
    referrer    text,
    archived_at timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX conversations_paging ON llm_api.conversations (user_id, seq);
CREATE INDEX conversations_by_project ON llm_api.conversations (project_id, seq) WHERE project_id IS NOT NULL;

-- Items are deleted with their conversation (a deleted conversation leaves nothing readable behind).
CREATE TABLE llm_api.conversation_items (
    seq             bigserial PRIMARY KEY,
    id              text NOT NULL,                   -- msg_ + random characters, unique per conversation
    conversation_id text NOT NULL REFERENCES llm_api.conversations (id) ON DELETE CASCADE,
    type            text NOT NULL,                   -- message | function_call | function_call_output
    role            text,                            -- messages only
    status          text NOT NULL,
    body            jsonb NOT NULL,                  -- content parts, or the call's fields
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (conversation_id, id)
);
CREATE INDEX conversation_items_paging ON llm_api.conversation_items (conversation_id, seq);
