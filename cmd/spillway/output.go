package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	xterm "golang.org/x/term"

	"github.com/spillway/spillway/internal/escape"
	"github.com/spillway/spillway/internal/progress"
	"github.com/spillway/spillway/persist"
)

// term holds the streams of one run of the CLI.
type term struct {
	in        io.Reader
	out, err  io.Writer
	json      bool // the command asked for --json: errors too are JSON
	jsonAsked bool // --json is among the arguments (jsonAsked): for errors found before it was parsed
	// completingFlag: a shell asks to complete a word that starts with "-"
	completingFlag bool
}

// errorf prints an error as "spillway: message" (or a JSON object).
func (t *term) errorf(err error) {
	msg := message(err)
	if t.json || t.jsonAsked {
		out := map[string]any{"error": msg}
		var be *persist.BusyError
		if errors.As(err, &be) {
			out["holders"] = be.Holders // pid, command, what, path, more
		}
		b, _ := json.Marshal(out)
		fmt.Fprintln(t.err, string(b))
		return
	}
	fmt.Fprintf(t.err, "spillway: %s\n", msg)
}

// warnf prints a warning line on stderr.
func (t *term) warnf(format string, args ...any) {
	fmt.Fprintf(t.err, "spillway: "+format+"\n", args...)
}

// printJSON writes v as indented JSON on stdout.
func (t *term) printJSON(v any) error {
	enc := json.NewEncoder(t.out)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// table returns a tabwriter for plain aligned columns on stdout.
func (t *term) table() *tableWriter {
	buf := bufio.NewWriterSize(t.out, 64<<10)
	return &tableWriter{Writer: tabwriter.NewWriter(buf, 0, 4, 2, ' ', 0), buf: buf}
}

// tableWriter is a tabwriter whose lines go out in large writes: alone it
// makes a write per cell, 150,000 of them for `ls` of 10,000 sandboxes
// (more than half of that command's time into a pipe).
type tableWriter struct {
	*tabwriter.Writer
	buf *bufio.Writer
}

// Flush aligns and sends out what was written since the last Flush.
func (w *tableWriter) Flush() error { return errors.Join(w.Writer.Flush(), w.buf.Flush()) }

// isTerminal says whether w is a terminal (for progress and colour).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && xterm.IsTerminal(int(f.Fd()))
}

// termProgress shows a long operation's progress as a self-overwriting
// line on the error stream (a progress.Progress).
type termProgress struct{ w io.Writer }

func (p termProgress) Update(s progress.Status) { fmt.Fprintf(p.w, "\r\033[K%s", s) }
func (p termProgress) Done()                    { fmt.Fprint(p.w, "\r\033[K") }

// progress is where long operations report: a terminal line when the error
// stream is a terminal (and SPILLWAY_NO_PROGRESS is not set), else nothing.
func (t *term) progress() progress.Progress {
	if isTerminal(t.err) && os.Getenv("SPILLWAY_NO_PROGRESS") == "" {
		return termProgress{w: t.err}
	}
	return progress.None
}

// name escapes a hostile name for human output.
func name(s string) string { return escape.Name(s) }

// joinNames escapes and joins names.
func joinNames(ss []string) string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = escape.Name(s)
	}
	return strings.Join(out, " ")
}

// jsonArrayWriter streams a JSON array, one element at a time, in the same
// layout as printJSON.
type jsonArrayWriter struct {
	t *term
	n int
}

func (t *term) jsonArray() *jsonArrayWriter { return &jsonArrayWriter{t: t} }

func (a *jsonArrayWriter) add(v any) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("  ", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return err
	}
	b := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	sep := "[\n  "
	if a.n > 0 {
		sep = ",\n  "
	}
	a.n++
	_, err := fmt.Fprintf(a.t.out, "%s%s", sep, b)
	return err
}

func (a *jsonArrayWriter) close() error {
	if a.n == 0 {
		_, err := fmt.Fprintln(a.t.out, "[]")
		return err
	}
	_, err := fmt.Fprint(a.t.out, "\n]\n")
	return err
}

// count is n and noun, the noun's plural form unless n is 1 ("1 lease",
// "2 leases"); plural is the noun with an s when "".
func count[N ~int | ~int32 | ~int64 | ~uint | ~uint32 | ~uint64](n N, noun string, plural ...string) string {
	if n == 1 {
		return fmt.Sprintf("1 %s", noun)
	}
	if len(plural) > 0 {
		return fmt.Sprintf("%d %s", n, plural[0])
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
