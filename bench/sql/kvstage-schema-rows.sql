-- scripts/pg-index-columns.sh, variant 'rows'.
-- Today's layout: every key a row of kv (k bytea PRIMARY KEY, v bytea):
-- the record, its six index keys, its current-state version; then the
-- change log's upserts and the stale versions' delete, as a close's
-- staging transaction writes them (store.StageBlindForBench).
CREATE TABLE kv (k bytea PRIMARY KEY, v bytea NOT NULL);
CREATE TABLE sb (id int PRIMARY KEY, gen bigint NOT NULL DEFAULT 1);
CREATE TABLE lease (sandbox int PRIMARY KEY, token bigint);
CREATE SEQUENCE rec;
INSERT INTO sb (id) SELECT g FROM generate_series(1, 64) g;
INSERT INTO lease (sandbox) SELECT g FROM generate_series(1, 64) g;
