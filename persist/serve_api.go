package persist

// SetReviewer names who the review decisions made through e are recorded
// as deciding (Record.DecidedBy, and "reviewer" in the audit entry); ""
// (the default) is the OS user. The audit entry's user stays the OS user.
func (e *Env) SetReviewer(name string) { e.reviewer = name }
