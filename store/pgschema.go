package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// PGSchemaVersion is the version of the SQL layout (tables, sequences)
// this package reads and writes on PostgreSQL. It is not SchemaVersion,
// the layout of the keys and values, which is kept in kv like badger's.
const PGSchemaVersion = 4

// pgCounters are the counters (Tx.next) that have a sequence.
var pgCounters = []string{"record", "exception", "lease", "audit"}

// pgMigrations[v] takes the SQL layout from version v-1 to v.
var pgMigrations = [PGSchemaVersion + 1]string{
	1: `CREATE TABLE kv (k bytea PRIMARY KEY, v bytea NOT NULL);
CREATE SEQUENCE spillway_ctr_record;
CREATE SEQUENCE spillway_ctr_exception;`,
	// 2: fencing tokens of sandbox leases (lease.go)
	2: `CREATE SEQUENCE spillway_ctr_lease;`,
	// 3: global numbers of audit entries, one chain per sandbox (audit.go);
	// the sequence starts after the single chain's head of a ledger
	// written before ('ah' is its ChainSeq, 8 bytes big-endian, ‖ hash)
	3: `CREATE SEQUENCE spillway_ctr_audit;
SELECT setval('spillway_ctr_audit', ('x' || encode(substring(v from 1 for 8), 'hex'))::bit(64)::bigint)
  FROM kv WHERE k = 'ah'::bytea AND length(v) = 40 AND substring(v from 1 for 8) <> '\x0000000000000000'::bytea;`,
	// 4: the ledger's random id (LedgerID), drawn in the transaction that
	// creates the schema (or brings an older one here): a database that
	// has the schema has its id, even after a failover lost the commits
	// that followed
	4: `ALTER TABLE spillway_schema ADD COLUMN ledger_id text NOT NULL DEFAULT replace(gen_random_uuid()::text, '-', '');`,
}

// migratePG creates the schema in an empty database, or brings an older
// one to PGSchemaVersion, in one SERIALIZABLE transaction: of several
// processes starting at once, one creates it and the others, retried,
// find it done. A database of a newer spillway is refused.
func migratePG(ctx context.Context, pool *pgxpool.Pool) (created bool, err error) {
	err = pgRetry(func() error {
		err := pgx.BeginTxFunc(ctx, pool, pgx.TxOptions{IsoLevel: pgx.Serializable}, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS spillway_schema (
	one boolean PRIMARY KEY DEFAULT true CHECK (one),
	version integer NOT NULL)`); err != nil {
				return err
			}
			var v int
			err := tx.QueryRow(ctx, `SELECT version FROM spillway_schema FOR UPDATE`).Scan(&v)
			created = v == 0
			if errors.Is(err, pgx.ErrNoRows) {
				if _, err := tx.Exec(ctx, `INSERT INTO spillway_schema (version) VALUES (0)`); err != nil {
					return err
				}
			} else if err != nil {
				return err
			}
			if v > PGSchemaVersion {
				return fmt.Errorf("SQL schema version %d is newer than this spillway supports (%d); use a newer spillway: %w", v, PGSchemaVersion, ErrNewerSchema)
			}
			if v > 0 && v < PGSchemaVersion && !migrationAllowed(ctx) {
				return migrationNeeded("", "SQL schema", v, PGSchemaVersion, false)
			}
			for n := v + 1; n <= PGSchemaVersion; n++ {
				if _, err := tx.Exec(ctx, pgMigrations[n]); err != nil {
					return fmt.Errorf("migrate the SQL schema to version %d: %w", n, err)
				}
			}
			if v < PGSchemaVersion {
				_, err = tx.Exec(ctx, `UPDATE spillway_schema SET version = $1`, PGSchemaVersion)
			}
			return err
		})
		var pe *pgconn.PgError
		if errors.As(err, &pe) && (pe.Code == "23505" || pe.Code == "42P07" || pe.Code == "42710") {
			// Another process created the same table, its row type
			// (42710, "type already exists") or its row at once.
			return &pgconn.PgError{Code: "40001", Message: "concurrent schema creation: " + pe.Message}
		}
		return pgErr(err)
	})
	return created, err
}

// pgState is what one query at open reads of a database's schemas.
type pgState struct {
	// sqlCurrent: the SQL layout is at PGSchemaVersion, so migratePG has
	// nothing to do (a newer one, or any failure, is left to its
	// transaction to report).
	sqlCurrent bool
	// keysCurrent: the keys and values are at SchemaVersion with no
	// migration under way, so OpenURL need not check them in transactions
	// (checkSchema, migrating).
	keysCurrent bool
	// ledgerID is the ledger's id (LedgerID), read when sqlCurrent.
	ledgerID string
}

// pgOpenState reads pgState in one round trip, the connection's first.
// An error is returned only when the server did not answer (the database
// is unavailable); an answer that is an error, such as no schema table in
// a new database, reads as nothing current.
func pgOpenState(ctx context.Context, pool *pgxpool.Pool) (pgState, error) {
	rows, err := pool.Query(ctx, `SELECT s.version, s.ledger_id, kv.k, kv.v FROM spillway_schema s LEFT JOIN kv ON kv.k = ANY($1)`,
		pgx.QueryExecModeExec, [][]byte{[]byte(keySchema), []byte(keyMigrating), []byte(keyCopying)})
	var st pgState
	if err == nil {
		keys, other := false, false
		for rows.Next() {
			var v int
			var id string
			var k, kv []byte
			if rows.Scan(&v, &id, &k, &kv) != nil {
				rows.Close()
				return pgState{}, nil // not as written: the transactions decide
			}
			st.sqlCurrent, st.ledgerID = v == PGSchemaVersion, id
			switch {
			case k == nil: // no key row
			case string(k) == keySchema:
				keys = string(kv) == strconv.Itoa(SchemaVersion)
			default:
				other = true
			}
		}
		err = rows.Err()
		st.keysCurrent = st.sqlCurrent && keys && !other
	}
	var ce *pgconn.ConnectError
	var pe *pgconn.PgError
	switch {
	case err == nil:
		return st, nil
	case errors.As(err, &ce): // even when the server refused it
	case errors.As(err, &pe):
		return pgState{}, nil
	}
	return pgState{}, err
}
