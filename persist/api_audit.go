package persist

import "context"

// ForEachEvent calls fn with each audit log entry, oldest first: every
// entry, or those about sandbox when it is not "".
func (e *Env) ForEachEvent(ctx context.Context, sandbox string, fn func(*Event) error) error {
	return e.store.ForEachEvent(ctx, sandbox, fn)
}

// VerifyAudit recomputes the audit log's hash chain; it returns the first
// bad entry, or nil when the chain is intact.
func (e *Env) VerifyAudit(ctx context.Context) (*AuditProblem, error) {
	return e.store.VerifyAudit(ctx)
}
