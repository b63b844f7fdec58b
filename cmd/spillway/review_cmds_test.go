package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/rogpeppe/go-internal/testscript"

	"github.com/spillway/spillway/snapshot"
	"github.com/spillway/spillway/store"
)

// Commands that break a state directory on purpose, for the audit and check
// scripts. They run between spillway commands, holding nothing after.
func init() {
	// audittamper MODE SEQ: alter, delete, reorder (swap SEQ and SEQ+1),
	// insert (a forged, self-consistent entry at SEQ, later ones shifted up)
	// or rollback (the head back to SEQ) in the audit log.
	scriptCmds["audittamper"] = func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) != 2 {
			ts.Fatalf("usage: audittamper alter|delete|reorder|insert|rollback SEQ")
		}
		seq, err := strconv.ParseUint(args[1], 10, 64)
		ts.Check(err)
		s, err := store.Open(filepath.Join(ts.Getenv("SPILLWAY_ROOT"), "store"))
		ts.Check(err)
		defer s.Close()
		ts.Check(s.RawDB().Update(func(txn *badger.Txn) error { return tamperAudit(txn, args[0], seq) }))
	}
	// straysnap KEY PARENT: an active snapshot the store knows nothing of.
	scriptCmds["straysnap"] = func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) != 2 {
			ts.Fatalf("usage: straysnap KEY PARENT")
		}
		// The snapshotter in use is the one directory under snapshots/.
		ctx := context.Background()
		dirs, err := filepath.Glob(filepath.Join(ts.Getenv("SPILLWAY_ROOT"), "snapshots", "*"))
		ts.Check(err)
		if len(dirs) != 1 {
			ts.Fatalf("straysnap: snapshotters %q, want one", dirs)
		}
		m, err := snapshot.Open(ctx, dirs[0], filepath.Base(dirs[0]), 10*time.Second)
		ts.Check(err)
		defer m.Close()
		_, err = m.Prepare(ctx, args[0], args[1])
		ts.Check(err)
	}
}

func tamperAudit(txn *badger.Txn, mode string, seq uint64) error {
	get := func(seq uint64) (*store.Event, error) {
		item, err := txn.Get(store.AuditKey(seq))
		if err != nil {
			return nil, fmt.Errorf("entry %d: %w", seq, err)
		}
		v, err := item.ValueCopy(nil)
		if err != nil {
			return nil, err
		}
		return store.DecodeEvent(v)
	}
	put := func(seq uint64, e *store.Event) error {
		b, err := store.EncodeEvent(e)
		if err != nil {
			return err
		}
		return txn.Set(store.AuditKey(seq), b)
	}
	last := func() (uint64, error) {
		n := seq
		for {
			if _, err := txn.Get(store.AuditKey(n + 1)); errors.Is(err, badger.ErrKeyNotFound) {
				return n, nil
			} else if err != nil {
				return 0, err
			}
			n++
		}
	}
	// setHead moves the head of e's chain to e.
	setHead := func(e *store.Event) error {
		return txn.Set(store.AuditChainHeadKey(e.Sandbox), append(binary.BigEndian.AppendUint64(nil, e.ChainSeq), e.Hash[:]...))
	}
	switch mode {
	case "alter":
		e, err := get(seq)
		if err != nil {
			return err
		}
		e.Data["forged"] = "yes"
		return put(seq, e)
	case "delete":
		return txn.Delete(store.AuditKey(seq))
	case "reorder":
		a, err := get(seq)
		if err != nil {
			return err
		}
		b, err := get(seq + 1)
		if err != nil {
			return err
		}
		if err := put(seq, b); err != nil {
			return err
		}
		return put(seq+1, a)
	case "insert":
		n, err := last()
		if err != nil {
			return err
		}
		for i := n; i >= seq; i-- {
			e, err := get(i)
			if err != nil {
				return err
			}
			if err := put(i+1, e); err != nil {
				return err
			}
		}
		prev, err := get(seq - 1)
		if err != nil {
			return err
		}
		f := &store.Event{V: prev.V, Seq: seq, ChainSeq: prev.ChainSeq + 1, Sandbox: prev.Sandbox, Time: prev.Time, Type: "forged", User: prev.User, Prev: prev.Hash}
		f.Hash = f.ComputeHash()
		return put(seq, f)
	case "rollback":
		e, err := get(seq)
		if err != nil {
			return err
		}
		return setHead(e)
	}
	return fmt.Errorf("unknown tamper mode %q", mode)
}
