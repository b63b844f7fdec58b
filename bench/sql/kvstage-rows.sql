-- scripts/pg-index-columns.sh: one staging transaction of a 50-record
-- close, variant 'rows' (kvstage-schema-rows.sql). pgbench reads ':name' as a
-- variable, so the keys' prefixes spell ':' as '|' where a letter follows.
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT token FROM lease WHERE sandbox = CAST(:client_id AS int) + 1 FOR SHARE;
UPDATE sb SET gen = gen + 1 WHERE id = CAST(:client_id AS int) + 1 RETURNING gen \gset
INSERT INTO kv (k, v) SELECT x.k, x.v FROM (SELECT nextval('rec') AS id, g FROM generate_series(1, 50) g) r,
 LATERAL (VALUES
  (convert_to('r:', 'UTF8') || int8send(r.id), decode(repeat('ab', 120), 'hex')),
  (convert_to('rs|sb' || (CAST(:client_id AS int) + 1) || chr(1), 'UTF8') || int8send(r.id), '\x'::bytea),
  (convert_to('rh|sb' || (CAST(:client_id AS int) + 1) || chr(1) || '/home/user/Documents/f' || r.g || chr(1), 'UTF8') || int8send(r.id), '\x'::bytea),
  (convert_to('rx|ex1' || chr(1), 'UTF8') || int8send(r.id), '\x'::bytea),
  (convert_to('rn|sb' || (CAST(:client_id AS int) + 1) || chr(1), 'UTF8') || int8send(CAST(:gen AS int8)) || int8send(r.id), '\x'::bytea),
  (convert_to('rq:', 'UTF8') || int8send(r.id), '\x'::bytea),
  (convert_to('rQ|sb' || (CAST(:client_id AS int) + 1) || chr(1), 'UTF8') || int8send(r.id), '\x'::bytea),
  (convert_to('cs|sb' || (CAST(:client_id AS int) + 1) || chr(1) || '/home/user/Documents/f' || r.g || chr(1), 'UTF8') || int8send(-CAST(:gen AS int8)), decode(repeat('ab', 130), 'hex'))
 ) AS x(k, v);
INSERT INTO kv (k, v) SELECT convert_to('cl|sb' || (CAST(:client_id AS int) + 1) || chr(1), 'UTF8') || int8send(CAST(:gen AS int8)) || convert_to('/home/user/Documents/f' || g || chr(1), 'UTF8'), '\x01' FROM generate_series(1, 50) g ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v;
DELETE FROM kv WHERE k = ANY (SELECT convert_to('cs|sb' || (CAST(:client_id AS int) + 1) || chr(1) || '/home/user/Documents/f' || g || chr(1), 'UTF8') || int8send((-(CAST(:gen AS int8) - 2))::int8) FROM generate_series(1, 50) g);
COMMIT;
