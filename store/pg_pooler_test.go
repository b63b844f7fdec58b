package store

import (
	"context"
	"os/exec"
	"strings"
	"testing"

	"github.com/spillway/spillway/internal/pgtest"
	"github.com/spillway/spillway/internal/testenv"
)

// TestPGTransactionPooler: behind PgBouncer in transaction pooling, the
// statements pgx prepares by default are left on a server connection that
// the next process is handed too, so it fails; the error names the URL
// setting that avoids it, and with that setting the same work succeeds.
func TestPGTransactionPooler(t *testing.T) {
	if _, err := exec.LookPath("pgbouncer"); err != nil {
		testenv.Missing(t, "pgbouncer is not installed")
	}
	direct := pgtest.URL(t)
	u, stop, err := pgtest.BouncerMode(direct, "transaction")
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	// two processes' work in turn, each with its own connections
	work := func(u string) error {
		for range 2 {
			s, err := OpenURL(context.Background(), u, "")
			if err != nil {
				return err
			}
			err = s.Update(func(tx *Tx) error { return tx.PutMeta("pooled", "yes") })
			if err == nil {
				err = s.View(func(tx *Tx) error { _, _, err := tx.GetMeta("pooled"); return err })
			}
			s.Close()
			if err != nil {
				return err
			}
		}
		return nil
	}
	err = work(u)
	if err == nil {
		t.Fatal("named prepared statements through a transaction pooler: no error (the test no longer shows the failure it guards)")
	}
	if !strings.Contains(err.Error(), "default_query_exec_mode=exec") {
		t.Errorf("the error does not name the setting that avoids it: %v", err)
	}
	if err := work(u + "&default_query_exec_mode=exec"); err != nil {
		t.Errorf("with default_query_exec_mode=exec: %v", err)
	}
}
