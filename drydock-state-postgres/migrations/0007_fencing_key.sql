-- A cheaper fence (issue 15). Every fenced write locks the lease row so that no change of
-- holder commits between its check and its write. It now takes the row FOR KEY SHARE instead
-- of FOR SHARE: a key-share lock conflicts only with an update of the row's key columns, and
-- this constraint makes the term one. A takeover always raises the term, so it still waits
-- for every fenced write in flight (and a write that waited for it finds the lease gone);
-- a renewal writes only renewed_at and expires_at, so it no longer waits behind the claims
-- and completions of the holder it keeps alive.
ALTER TABLE active_instance ADD CONSTRAINT active_instance_term_key UNIQUE (term);
