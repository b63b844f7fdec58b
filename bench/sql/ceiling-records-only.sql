BEGIN;
INSERT INTO records SELECT nextval('rec'), :client_id + 1, '/home/user/Documents/f' || g, 'ex1', 1, true, decode(repeat('ab', 60), 'hex') FROM generate_series(1, 50) g;
UPDATE sandbox SET gen = gen + 1 WHERE id = :client_id + 1;
INSERT INTO audit VALUES (nextval('aud'), :client_id + 1, 'close', now(), '\x0102');
COMMIT;
