package snapshot

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// TestApplyHardLinksCountLogicalSize: the logical-size cap bounds the
// reading time an import may cost, but a hard link to a regular file added
// nothing to it, while countTree reads and hashes the whole content once
// per name: a 33 KB .tar.gz of one 32 MiB file and 32 links hashed 1 GiB,
// and one of 1 GiB and 100,000 links would read some 100 TiB, for hours,
// past SIGINT (found by an attack on 30 November 2026). Each name is
// charged its file's size, as ImportStats counts it.
func TestApplyHardLinksCountLogicalSize(t *testing.T) {
	body := strings.Repeat("A", 1<<20)
	entries := []entry{{name: "f", body: body}}
	for i := range 32 {
		entries = append(entries, entry{name: fmt.Sprintf("h%d", i), typ: tar.TypeLink, link: "f"})
	}
	root := t.TempDir()
	lim := Limits{MaxBytes: 64 << 20, MaxFiles: 1000, MaxLogical: 8 << 20}
	err := applyTar(context.Background(), root, bytes.NewReader(mkTar(t, entries...)), lim, nil, true)
	var le *LimitError
	if !errors.As(err, &le) || le.Limit != "logical size" {
		t.Fatalf("33 names of a 1 MiB file (33 MiB to read and hash) under a logical-size limit of 8 MiB: %v", err)
	}
}
