-- scripts/pg-index-columns.sh, variant 'split'.
-- The six index keys in a table of their own, without values (kvx):
-- the same rows, in two B-trees.
CREATE TABLE kv (k bytea PRIMARY KEY, v bytea NOT NULL);
CREATE TABLE kvx (k bytea PRIMARY KEY);
CREATE TABLE sb (id int PRIMARY KEY, gen bigint NOT NULL DEFAULT 1);
CREATE TABLE lease (sandbox int PRIMARY KEY, token bigint);
CREATE SEQUENCE rec;
INSERT INTO sb (id) SELECT g FROM generate_series(1, 64) g;
INSERT INTO lease (sandbox) SELECT g FROM generate_series(1, 64) g;
