package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/spillway/spillway/internal/whoami"
	"github.com/spillway/spillway/persist"
	"github.com/spillway/spillway/serve"
)

// serveOptions are the flags of `spillway serve`.
type serveOptions struct {
	Listen   string
	Open     bool
	Reviewer string
	TLSCert  string
	TLSKey   string
	Host     string // scope: what this host wrote
	Sandbox  string // scope: this sandbox
}

func serveCommand(t *term) *cli.Command {
	return &cli.Command{
		Name:  "serve",
		Usage: "review in a browser: a local web app over the review queue, records, exceptions and the audit log",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "listen", Value: "127.0.0.1:7780", Usage: "address to listen on (loopback unless --tls-cert and --tls-key are given)"},
			&cli.BoolFlag{Name: "open", Usage: "open the login URL in a browser (xdg-open)"},
			&cli.StringFlag{Name: "reviewer", Usage: "name the decisions made in the browser are recorded under (default: the user running serve)"},
			&cli.StringFlag{Name: "tls-cert", Usage: "TLS certificate file (PEM), needed to listen on a non-loopback address"},
			&cli.StringFlag{Name: "tls-key", Usage: "TLS key file (PEM), with --tls-cert"},
			&cli.StringFlag{Name: "host", Usage: "scope the review queue and the audit log to what HOST wrote (a fleet sharing one ledger); requests cannot widen it"},
			&cli.StringFlag{Name: "sandbox", Usage: "scope the review queue and the audit log to one sandbox; requests cannot widen it"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 0 {
				return usageError("usage: spillway serve [--listen ADDR] [--open] [--reviewer NAME]")
			}
			if err := filterValues(c, "host", "sandbox"); err != nil {
				return err // an empty scope would serve the whole ledger
			}
			opts := serveOptions{Listen: c.String("listen"), Open: c.Bool("open"), Reviewer: c.String("reviewer"),
				TLSCert: c.String("tls-cert"), TLSKey: c.String("tls-key"), Host: c.String("host"), Sandbox: c.String("sandbox")}
			return runServe(c.Context, opts, globals(c), t)
		},
	}
}

// runServe serves until ctx ends (SIGINT, SIGTERM). It opens the state
// directory per request only, so CLI commands keep working meanwhile.
func runServe(ctx context.Context, o serveOptions, g globalOptions, t *term) error {
	tls := o.TLSCert != "" || o.TLSKey != ""
	if tls && (o.TLSCert == "" || o.TLSKey == "") {
		return usageError("--tls-cert and --tls-key go together")
	}
	host, _, err := net.SplitHostPort(o.Listen)
	if err != nil {
		return usageError("bad --listen %q: use HOST:PORT, e.g. 127.0.0.1:7780", o.Listen)
	}
	if ip := net.ParseIP(host); (ip == nil || !ip.IsLoopback()) && host != "localhost" && !tls {
		return usageError("--listen %s is not a loopback address: give --tls-cert and --tls-key to serve on the network", o.Listen)
	}
	if o.Reviewer == "" {
		o.Reviewer = whoami.Name()
	}
	// Check the state directory and the scope once before listening: a
	// wrong --root, --sandbox or --host fails here, not in the browser.
	if o.Sandbox != "" {
		if err := persist.ValidateName("sandbox", o.Sandbox); err != nil {
			return err
		}
	}
	if o.Host != "" {
		if err := persist.ValidateName("host", o.Host); err != nil {
			return err
		}
	}
	e, err := persist.OpenEnv(ctx, persist.Options{Root: g.Root, Snapshotter: g.Snapshotter, Store: g.Store, Blobs: g.Blobs, LockTimeout: g.LockTimeout, What: "serve",
		Wait: t.waiting})
	if err != nil {
		return err
	}
	err = e.CheckScope(ctx, o.Host, o.Sandbox)
	if cerr := e.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", o.Listen)
	if err != nil {
		return err
	}
	defer ln.Close()
	// A request opens the state directory for itself; a PostgreSQL
	// ledger's connections stay open between requests.
	pools := persist.NewPools()
	defer pools.Close()
	srv, err := serve.New(serve.Config{
		Persist: persist.Options{Root: g.Root, Snapshotter: g.Snapshotter, Store: g.Store, Blobs: g.Blobs, What: "serve (one request)",
			Pools: pools},
		Reviewer: o.Reviewer, Addr: ln.Addr().String(), TLS: tls,
		Warn:    func(msg string) { t.warnf("%s", msg) },
		Sandbox: o.Sandbox, Host: o.Host,
	})
	if err != nil {
		return err
	}
	url := srv.LoginURL()
	fmt.Fprintf(t.out, "review at %s\n(the link works once; decisions are recorded as %s; %s; Ctrl-C stops)\n", url, name(o.Reviewer), scopeText(o.Host, o.Sandbox))
	if o.Open {
		if err := exec.Command("xdg-open", url).Start(); err != nil {
			t.warnf("cannot open a browser (%v): open the URL above", err)
		}
	}
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second,
		BaseContext: func(net.Listener) context.Context { return ctx }}
	done := make(chan error, 1)
	go func() {
		if tls {
			done <- hs.ServeTLS(ln, o.TLSCert, o.TLSKey)
		} else {
			done <- hs.Serve(ln)
		}
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := hs.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
			hs.Close()
		}
		return ctx.Err()
	}
}

// scopeText says what serve shows: everything, or what its scope keeps.
func scopeText(host, sandbox string) string {
	switch {
	case host != "" && sandbox != "":
		return fmt.Sprintf("showing sandbox %s as host %s wrote it", sandbox, host)
	case host != "":
		return fmt.Sprintf("showing what host %s wrote", host)
	case sandbox != "":
		return fmt.Sprintf("showing sandbox %s", sandbox)
	}
	return "showing every sandbox"
}
