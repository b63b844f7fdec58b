package store

import (
	"context"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Pools keeps the PostgreSQL connections of the Stores it opens for the
// life of a process that opens a Store per request (spillway serve), so
// that a request does not pay for a new server connection: 24–26 ms here
// before its first statement, more than the request's own work. Each
// open still reads the schema versions, as OpenURL does; only the
// connections outlive the Store. A nil *Pools keeps nothing: its Open is
// OpenURL. Pools is safe for concurrent use.
type Pools struct {
	mu     sync.Mutex
	byURL  map[string]*pgPools
	closed bool
}

// pgPools are the two pools of a pgBackend (pgBackend.pool, .snapPool).
type pgPools struct{ pool, snapPool *pgxpool.Pool }

// NewPools returns an empty Pools; Close closes what it kept.
func NewPools() *Pools { return &Pools{byURL: map[string]*pgPools{}} }

// Open is OpenURL, with the connections of a PostgreSQL store taken from
// p and left open by the Store's Close. Other drivers are opened as
// OpenURL opens them.
func (p *Pools) Open(ctx context.Context, url, dir string) (*Store, error) {
	if p == nil || !isPGURL(url) {
		return OpenURL(ctx, url, dir)
	}
	return openPGStore(ctx, url, p)
}

// get returns the pools kept for url, creating them with newPools at
// first use. It fails once p is closed.
func (p *Pools) get(url string, newPools func() (*pgPools, error)) (*pgPools, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, ErrClosed
	}
	if pp, ok := p.byURL[url]; ok {
		return pp, nil
	}
	pp, err := newPools()
	if err != nil {
		return nil, err
	}
	p.byURL[url] = pp
	return pp, nil
}

// Close closes every connection p kept. A Store opened through p must not
// be used after.
func (p *Pools) Close() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, pp := range p.byURL {
		pp.pool.Close()
		pp.snapPool.Close()
	}
	p.byURL, p.closed = nil, true
}

func isPGURL(url string) bool {
	return strings.HasPrefix(url, "postgres://") || strings.HasPrefix(url, "postgresql://")
}
