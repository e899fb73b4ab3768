-- Pages read one owner's rows in `seq` order. With an index on `seq` alone the planner may walk it
-- backwards, skipping every newer row of other owners: the first page of an older conversation
-- with 100,000 items took 19 ms instead of 2 once another conversation had 100,000 newer items.
-- Keys now lead with the owner, and nothing indexes `seq` alone.

ALTER TABLE llm_api.conversation_items DROP CONSTRAINT conversation_items_pkey;
ALTER TABLE llm_api.conversation_items ADD PRIMARY KEY (conversation_id, seq);
DROP INDEX llm_api.conversation_items_paging;   -- the new primary key covers it

ALTER TABLE llm_api.conversations DROP CONSTRAINT conversations_seq_key;   -- conversations_paging (user_id, seq) serves
ALTER TABLE llm_api.projects DROP CONSTRAINT projects_seq_key;             -- projects_paging (user_id, seq) serves
