-- The ledger of a close, laid out for SQL (one row per record, real
-- indexes): the upper bound a SQL-native layout could reach on this
-- machine, measured with pgbench (scripts/pg-close-ceiling.sh).
CREATE TABLE sandbox (id int PRIMARY KEY, gen bigint NOT NULL DEFAULT 0, session bigint NOT NULL DEFAULT 0, state text, head bytea);
CREATE TABLE lease (sandbox int PRIMARY KEY, host text, token bigint, expires timestamptz);
CREATE TABLE session (sandbox int, n bigint, state text, opened timestamptz, PRIMARY KEY (sandbox, n));
CREATE TABLE audit (seq bigint PRIMARY KEY, sandbox int, kind text, at timestamptz, body bytea);
CREATE TABLE records (id bigint PRIMARY KEY, sandbox int NOT NULL, path text NOT NULL, exception text NOT NULL, session bigint NOT NULL, pending bool NOT NULL, v bytea NOT NULL);
CREATE TABLE current (sandbox int, path text, gen bigint, rec bigint, v bytea, PRIMARY KEY (sandbox, path, gen));
CREATE TABLE changelog (sandbox int, gen bigint, path text, prev bigint, PRIMARY KEY (sandbox, gen, path));
CREATE SEQUENCE rec;
CREATE SEQUENCE tok;
CREATE SEQUENCE aud;
INSERT INTO sandbox (id) SELECT g FROM generate_series(1, 64) g;
INSERT INTO lease (sandbox) SELECT g FROM generate_series(1, 64) g;
