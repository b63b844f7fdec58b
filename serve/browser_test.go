package serve

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/spillway/spillway/internal/change"
	"github.com/spillway/spillway/internal/testenv"
	"github.com/spillway/spillway/persist"
)

// chromium finds a Chromium to drive. Without one the test is skipped on
// a developer's machine and fails in CI (CI set): scripts/test.sh
// installs Debian's chromium.
func chromium(t *testing.T) string {
	for _, n := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	testenv.Missing(t, "chromium is missing: apt-get install -y chromium")
	return ""
}

// TestBrowser drives a real headless Chromium: it logs in with the token
// URL, moves through the queue with j/k, approves with a, rejects with r
// and a reason, and checks the decisions through persist. No script that
// the sandbox planted may run: each would set window.pwned.
func TestBrowser(t *testing.T) {
	exe := chromium(t)
	w := newWorld(t, 0)
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(exe), chromedp.NoSandbox,
		chromedp.DisableGPU, chromedp.WindowSize(1200, 900))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	bctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	// The first call starts the browser and must not carry the timeout.
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	ctx, cancel := context.WithTimeout(bctx, 45*time.Second)
	defer cancel()
	do := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, actions...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	eval := func(js string) any {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[any](js))
		if err != nil {
			t.Fatalf("evaluate %s: %v", js, err)
		}
		return v
	}
	// waitJS waits until expr is true in a loaded page, across navigations.
	waitJS := func(what, expr string) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			v, err := chromedp.Run(ctx, chromedp.Evaluate[any](`document.readyState === "complete" && (`+expr+`)`))
			if err == nil && v == true {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %s stays false (%v)", what, expr, err)
			}
		}
	}
	noScriptRan := func(where string) {
		t.Helper()
		if eval(`typeof window.pwned !== "undefined"`) != false {
			t.Fatalf("%s: a script from the sandbox ran (window.pwned is set)", where)
		}
	}
	selected := func() string {
		t.Helper()
		return fmt.Sprint(eval(`document.querySelector("tr.rec.sel").dataset.id`))
	}
	rowIDs := func() []string {
		t.Helper()
		var out []string
		for _, v := range eval(`Array.from(document.querySelectorAll("tr.rec")).map(r => r.dataset.id)`).([]any) {
			out = append(out, fmt.Sprint(v))
		}
		return out
	}
	waitStatus := func(id uint64, status change.Status) *persist.Record {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			r := w.record(id)
			if r.Status == status {
				return r
			}
			if time.Now().After(deadline) {
				t.Fatalf("r%d is %s, want %s", id, r.Status, status)
			}
		}
	}

	do("login", chromedp.Navigate(w.srv.LoginURL()), chromedp.Navigate(w.ts.URL+"/queue"), chromedp.WaitVisible(chromedp.ID("queue")))
	noScriptRan("queue")
	names, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("queue")))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{scriptName, imgName, `bad\xff\xfe.txt`, `red\x1b[31m\rforged`} {
		if !strings.Contains(names, want) {
			t.Errorf("the queue does not show %q as text:\n%s", want, names)
		}
	}
	screenshot(t, ctx, "queue")

	rows := rowIDs()
	if len(rows) < 3 || selected() != rows[0] {
		t.Fatalf("rows %v, first not selected", rows)
	}
	do("j j k", chromedp.KeyEvent("j"), chromedp.KeyEvent("j"), chromedp.KeyEvent("k"))
	if got := selected(); got != rows[1] {
		t.Fatalf("after j j k the selection is r%s, want r%s", got, rows[1])
	}
	do("a", chromedp.KeyEvent("a"))
	var id uint64
	fmt.Sscan(rows[1], &id)
	if r := waitStatus(id, change.StatusApproved); r.DecidedBy != "alice" {
		t.Errorf("approved by %q", r.DecidedBy)
	}
	// The page goes back to the queue, without the approved record.
	waitJS("back in the queue", fmt.Sprintf(`document.getElementById("queue") !== null && document.querySelector('tr.rec[data-id="%d"]') === null`, id))
	noScriptRan("queue after approve")

	// Every hostile record page: nothing runs, the preview only for the PNG.
	for _, p := range []string{scriptName, imgName, ctrlName, badUTF8Name, svgName, pngName} {
		do("open "+p, chromedp.Navigate(fmt.Sprintf("%s/record/%d", w.ts.URL, w.byKey[p])), chromedp.WaitVisible(chromedp.ID("path")))
		noScriptRan(p)
	}
	do("png preview", chromedp.WaitVisible(chromedp.ID("preview")))
	if width := eval(`document.getElementById("preview").naturalWidth`); width != float64(2) {
		t.Errorf("the PNG preview is %v pixels wide, want 2", width)
	}

	// Reject with the keyboard: r focuses the reason, Enter submits.
	note := w.byKey[noteName]
	do("open note", chromedp.Navigate(fmt.Sprintf("%s/record/%d", w.ts.URL, note)), chromedp.WaitVisible(chromedp.ID("diff")))
	noScriptRan("note.txt's diff")
	screenshot(t, ctx, "record")
	do("r", chromedp.KeyEvent("r"), chromedp.SendKeys(chromedp.ID("reason"), "not wanted\r"))
	if r := waitStatus(note, change.StatusRejected); r.Reason != "not wanted" {
		t.Errorf("rejected with reason %q", r.Reason)
	}
	// The page moves on to the next record of the queue.
	waitJS("after reject", fmt.Sprintf(`location.pathname !== "/record/%d"`, note))
	noScriptRan("after reject")
}

// screenshot saves the page as docs/review-ui/NAME.png when
// SPILLWAY_SCREENSHOTS names the directory to write to.
func screenshot(t *testing.T, ctx context.Context, name string) {
	dir := os.Getenv("SPILLWAY_SCREENSHOTS")
	if dir == "" {
		return
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}
