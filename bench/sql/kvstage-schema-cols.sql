-- scripts/pg-index-columns.sh, variant 'cols'.
-- The six index keys as columns of the record's row, one partial unique
-- index each: a record is one row, not seven.
CREATE TABLE kv (k bytea PRIMARY KEY, v bytea, i1 bytea, i2 bytea, i3 bytea, i4 bytea, i5 bytea, i6 bytea);
CREATE UNIQUE INDEX kv_i1 ON kv (i1) WHERE i1 IS NOT NULL;
CREATE UNIQUE INDEX kv_i2 ON kv (i2) WHERE i2 IS NOT NULL;
CREATE UNIQUE INDEX kv_i3 ON kv (i3) WHERE i3 IS NOT NULL;
CREATE UNIQUE INDEX kv_i4 ON kv (i4) WHERE i4 IS NOT NULL;
CREATE UNIQUE INDEX kv_i5 ON kv (i5) WHERE i5 IS NOT NULL;
CREATE UNIQUE INDEX kv_i6 ON kv (i6) WHERE i6 IS NOT NULL;
CREATE TABLE sb (id int PRIMARY KEY, gen bigint NOT NULL DEFAULT 1);
CREATE TABLE lease (sandbox int PRIMARY KEY, token bigint);
CREATE SEQUENCE rec;
INSERT INTO sb (id) SELECT g FROM generate_series(1, 64) g;
INSERT INTO lease (sandbox) SELECT g FROM generate_series(1, 64) g;
