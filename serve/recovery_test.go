package serve

import (
	"net/http"
	"strings"
	"testing"
)

// TestRecoveryPage: the sandboxes page links each recovery area; the page
// lists what close discarded, names escaped, with the retention settings.
func TestRecoveryPage(t *testing.T) {
	w := newWorld(t, 0)
	w.session(map[string]string{"tmp/<script>window.pwned=1</script>.txt": "a letter saved in the wrong place"})
	c := w.client()
	c.login()
	if body := c.body(c.get("/")); !strings.Contains(body, `href="/recovery?sandbox=docs"`) {
		t.Fatalf("sandboxes page has no link to the recovery area:\n%s", body)
	}
	resp := c.get("/recovery?sandbox=docs")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("recovery page: %s", resp.Status)
	}
	checkHeaders(t, "recovery", resp)
	body := c.body(resp)
	for _, want := range []string{"/tmp/&lt;script&gt;window.pwned=1&lt;/script&gt;.txt", "discard", "Recovery area of docs", "refused content 7d"} {
		if !strings.Contains(body, want) {
			t.Errorf("recovery page lacks %q:\n%s", want, body)
		}
	}
	if strings.Contains(body, "<script>window.pwned") {
		t.Fatal("a name from the sandbox reached the page unescaped")
	}
	if resp := c.get("/recovery?sandbox=nope"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("recovery page of a missing sandbox: %s, want 404", resp.Status)
	}
}
