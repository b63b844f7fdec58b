package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(childMain())
	}
	os.Exit(m.Run())
}

// TestQuick runs every scenario with tiny sizes: the benchmark must not
// crash and must print its whole table. Timings are not checked.
func TestQuick(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("the benchmark mounts overlay filesystems and needs root (CI runs it as root)")
	}
	var out, log bytes.Buffer
	if err := run(context.Background(), tinyConfig, t.TempDir(), &out, &log); err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	for _, want := range []string{"docsession N=200", "close / floor (a)", "(c) native docsession", "peak RSS", "review ls first page", "persisted ls", "refused by quota", "whole-state export",
		"one-file change, P=", "records of history", "layer bytes / live-state bytes", "persisted ls full listing of a"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}
