-- The JSON a caller gives is returned exactly as given (issue 10): node_filter,
-- request_context and result_message.extra become `json`, which stores the text it is given,
-- key order included, as Drydock's schema did; `jsonb` stored a parsed form and returned its
-- keys reordered. The store binds these values as text and casts them (`$n::text::json`),
-- since a bound `serde_json::Value` travels as `jsonb` and would be reordered before the cast.
-- Rows written before this migration keep the order jsonb gave them (the original is gone).
-- result_links stays `jsonb`: the store writes it from its own structs and reads it into them.
-- Each ALTER rewrites its table under an exclusive lock.

ALTER TABLE tasks
    ALTER COLUMN node_filter TYPE json USING node_filter::json,
    ALTER COLUMN request_context TYPE json USING request_context::json;

ALTER TABLE result_message
    ALTER COLUMN extra TYPE json USING extra::json;
