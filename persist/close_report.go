package persist

import (
	"bytes"
	"context"
	"encoding/gob"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/spillway/spillway/internal/change"
	"github.com/spillway/spillway/store"
)

// reportVersion is the first byte of a stored close report; gob of
// CloseSummary follows, without Persisted (the session's records are the
// list) so that a report stays small whatever the close persisted.
const reportVersion = 1

// encodeReport encodes the summary a close keeps in its session.
func encodeReport(sum *CloseSummary) ([]byte, error) {
	kept := *sum
	kept.Persisted, kept.AlreadyClosed = nil, false
	var buf bytes.Buffer
	buf.WriteByte(reportVersion)
	if err := gob.NewEncoder(&buf).Encode(&kept); err != nil {
		return nil, fmt.Errorf("encode the close summary: %w", err)
	}
	return buf.Bytes(), nil
}

// storedReport reads back the summary of a closed session: the report
// with the persisted list rebuilt from the session's records, or the JSON
// summary of a session closed before reports.
func (e *Env) storedReport(ctx context.Context, tx *store.Tx, ses *store.Session) (*CloseSummary, error) {
	sum := &CloseSummary{}
	switch {
	case len(ses.Report) > 0:
		if ses.Report[0] != reportVersion {
			return nil, fmt.Errorf("unknown report version %d", ses.Report[0])
		}
		if err := gob.NewDecoder(bytes.NewReader(ses.Report[1:])).Decode(sum); err != nil {
			return nil, err
		}
		sum.Persisted = []PersistedFile{}
		err := tx.ForEachSessionRecord(ctx, ses.Sandbox, ses.N, func(r *store.Record) error {
			if r.Status == change.StatusRefused || r.Exception == RecoverID {
				return nil // refusals of older closes; restores made later
			}
			sum.Persisted = append(sum.Persisted, PersistedFile{Record: r.ID, Path: r.Path, PathBytes: exactBytes(r.Path),
				Kind: r.Kind, Type: r.Type, Size: r.Size, Digest: r.Digest, Exception: r.Exception, Status: r.Status})
			return nil
		})
		return sum, err
	case len(ses.Summary) > 0:
		return sum, json.Unmarshal(ses.Summary, sum)
	}
	return nil, errors.New("the session has no summary")
}
