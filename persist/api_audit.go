package persist

import "context"

// ForEachEvent calls fn with each audit log entry, oldest first: every
// entry, or those about sandbox when it is not "".
func (e *Env) ForEachEvent(ctx context.Context, sandbox string, fn func(*Event) error) error {
	return e.store.ForEachEvent(ctx, sandbox, fn)
}

// ForEachEventAfter is ForEachEvent from the first entry numbered above
// after (0: from the first), reading nothing before it.
func (e *Env) ForEachEventAfter(ctx context.Context, sandbox string, after uint64, fn func(*Event) error) error {
	return e.store.ForEachEventAfter(ctx, sandbox, after, fn)
}

// VerifyAudit recomputes the audit log's hash chain; it returns the first
// bad entry, or nil when the chain is intact.
func (e *Env) VerifyAudit(ctx context.Context) (*AuditProblem, error) {
	return e.store.VerifyAudit(ctx)
}
