-- The record indexes the review queue, history and revocation read
-- (Spillway's rs, rh, rx, rn, rq and rQ keys).
CREATE INDEX ON records (sandbox, id);
CREATE INDEX ON records (sandbox, path, id);
CREATE INDEX ON records (exception, id);
CREATE INDEX ON records (sandbox, session, id);
CREATE INDEX ON records (id) WHERE pending;
CREATE INDEX ON records (sandbox, id) WHERE pending;
