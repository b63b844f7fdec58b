package store

import (
	"context"
	"encoding/binary"
)

// BareCurrentForTest rewrites every copy in sandbox's index as the bare
// record id that spillway wrote before the index held copies (uvarint id,
// store/current_value.go), so tests can open a store as older code left
// it. It returns how many values it rewrote. For tests only.
func (s *Store) BareCurrentForTest(ctx context.Context, sandbox string) (int, error) {
	var ks, vs [][]byte
	err := s.View(func(tx *Tx) error {
		return tx.scanCtx(ctx, key(pCurrent, sandbox), true, func(k, v []byte) error {
			if len(v) > 0 && v[0] == currentCopy {
				id, _, err := decodeCurrent(v)
				if err != nil {
					return err
				}
				ks, vs = append(ks, append([]byte(nil), k...)), append(vs, binary.AppendUvarint(nil, id))
			}
			return nil
		})
	})
	if err != nil {
		return 0, err
	}
	return len(ks), s.Update(func(tx *Tx) error {
		for i, k := range ks {
			if err := tx.set(k, vs[i]); err != nil {
				return err
			}
		}
		return nil
	})
}
