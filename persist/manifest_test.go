package persist

import (
	"bytes"
	"encoding/json"
	"testing"
	"unicode/utf8"

	"github.com/spillway/spillway/internal/change"
)

// The manifest's hand-written JSON is what encoding/json writes, and reads
// back to the same entry, for hostile names too.
func TestManifestLineIsJSON(t *testing.T) {
	names := []string{"/a", "/quote\"back\\slash", "/nl\nret\rtab\tbs\bff\f", "/ctl\x01\x1b\x7f", "/bad\xff\xfeutf8",
		"/ok é 日本", "/sep\u2028\u2029", "/<html>&amp;", ""}
	for _, n := range names {
		x := ManifestEntry{Path: n, PathBytes: exactBytes(n), Kind: "add", Type: "file", Size: -1 << 40, Verdict: change.VerdictRefuse, Reason: RefuseQuotaF, Exception: "ex1"}
		for _, v := range []ManifestEntry{x, {Path: n, Kind: "delete", Type: "dir", Verdict: change.VerdictDiscard}} {
			var want bytes.Buffer
			enc := json.NewEncoder(&want)
			enc.SetEscapeHTML(false)
			if err := enc.Encode(v); err != nil {
				t.Fatal(err)
			}
			got := append(v.appendJSON(nil), '\n')
			if !bytes.Equal(got, want.Bytes()) {
				t.Errorf("%q:\n got %s\nwant %s", n, got, want.Bytes())
			}
			var back ManifestEntry
			if err := eachManifestEntry(bytes.NewReader(got), func(e ManifestEntry) error { back = e; return nil }); err != nil {
				t.Fatal(err)
			}
			if back.Path != v.Path && (v.PathBytes != nil || utf8.ValidString(n)) {
				t.Errorf("%q read back as %q", n, back.Path)
			}
		}
	}
}
