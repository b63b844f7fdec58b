package vm

import (
	"context"
	"errors"
	"testing"
	"time"
)

// diffWith asks m for a diff while feeding it the guest's lines.
func diffWith(t *testing.T, lines ...string) (*DiffAnswer, error) {
	t.Helper()
	m := &Machine{}
	m.setRunning(true)
	type result struct {
		a   *DiffAnswer
		err error
	}
	done := make(chan result, 1)
	go func() { a, err := m.Diff(context.Background()); done <- result{a, err} }()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		m.diffMu.Lock()
		n := len(m.diffs)
		m.diffMu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no request")
		}
	}
	res := &Result{}
	for _, l := range lines {
		m.handle(l, res)
	}
	r := <-done
	return r.a, r.err
}

// TestDiffAnswer: the guest's answer is read line by line, each checked.
func TestDiffAnswer(t *testing.T) {
	a, err := diffWith(t, `CHG 1 add file 3 100644 0 0 "/home/a"`, `CHG 2 add file 3 100644 0 0 "/other-request"`, `HB`, `CHG 1 delete dir 0 40755 0 0 "/etc"`, `DIFFEND 1 2`)
	if err != nil || len(a.Changes) != 2 || a.Changes[0].Path != "/home/a" || a.Changes[1].Path != "/etc" {
		t.Fatalf("%+v, %v", a, err)
	}
	for _, bad := range [][]string{
		{`CHG 1 add file 3 100644 0 0 "/a/../../etc/shadow"`, `DIFFEND 1 1`},
		{`CHG 1 add file 3 100644 0 0 "/a"`, `DIFFEND 1 5`},
		{`CHG 1 add file 3`, `DIFFEND 1 1`},
	} {
		if a, err := diffWith(t, bad...); err == nil {
			t.Errorf("%q accepted: %+v", bad, a)
		}
	}
	// The guest ends (EXIT) before answering: the request fails at once.
	if _, err := diffWith(t, `EXIT 0`); !errors.Is(err, ErrNotRunning) {
		t.Errorf("after EXIT: %v", err)
	}
}
