// Package testenv lets a test that needs an optional tool (QEMU, chromium,
// lz4, a guest kernel) skip on a developer's machine, saying why, and fail
// where the whole suite must run: under scripts/test.sh, which installs
// every tool and sets SPILLWAY_TEST_ALL, and in CI (CI set).
package testenv

import (
	"fmt"
	"os"
	"testing"
)

// Missing ends t because something it needs is missing: a failure when
// the whole suite must run, else a skip with the reason.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") != "" || os.Getenv("SPILLWAY_TEST_ALL") != "" {
		t.Fatalf("%s (scripts/test.sh installs it; the whole suite skips nothing)", msg)
	}
	t.Skipf("skipped: %s (scripts/test.sh installs it)", msg)
}
