package main

import (
	"bufio"
	"errors"
)

// listPage is how many rows a long listing (review ls, persisted ls)
// aligns and prints at a time.
const listPage = 50

// pagedOutput is the output of a long listing that prints rows as they
// are read: the first page of listPage rows goes out as soon as it is
// complete, later ones when a 64 KiB buffer fills. Without the buffer a
// tabwriter makes a write per cell, which into a pipe cost more than the
// listing itself.
type pagedOutput struct {
	// term writes into the buffer: its table and JSON array go there.
	term  *term
	buf   *bufio.Writer
	table *tableWriter
	rows  int
}

// paged returns the paged output of a listing on t's stdout.
func (t *term) paged() *pagedOutput {
	p := &pagedOutput{buf: bufio.NewWriterSize(t.out, 64<<10)}
	bt := *t
	bt.out = p.buf
	p.term = &bt
	p.table = bt.table()
	return p
}

// row is called after each row is written: it aligns each full page of
// the table and sends out the first.
func (p *pagedOutput) row() error {
	p.rows++
	switch {
	case p.rows == listPage:
		return errors.Join(p.table.Flush(), p.buf.Flush())
	case p.rows%listPage == 0:
		return p.table.Flush()
	}
	return nil
}

// done sends out the rest.
func (p *pagedOutput) done() error { return errors.Join(p.table.Flush(), p.buf.Flush()) }
