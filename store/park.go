package store

import "errors"

// ErrClosed reports a transaction on a closed store.
var ErrClosed = errors.New("store: closed")

// SetReopen sets what a parked store runs before it reopens its database:
// the caller takes the lock that keeps other processes out of it.
func (s *Store) SetReopen(enter func() error) {
	s.gate.Lock()
	defer s.gate.Unlock()
	s.enter = enter
}

// Park closes a badger store's database until the next transaction, which
// reopens it (after the SetReopen function): between the two another
// process may open the store. It does nothing on PostgreSQL, which many
// processes share, or on a parked store. The caller makes sure no
// transaction of this Store runs meanwhile.
func (s *Store) Park() error {
	if s.opts == nil {
		return nil
	}
	s.gate.Lock()
	defer s.gate.Unlock()
	if s.parked {
		return nil
	}
	s.parked = true
	return translate(s.db.Close())
}

// Parked says whether the store's database is closed until its next use.
func (s *Store) Parked() bool {
	s.gate.RLock()
	defer s.gate.RUnlock()
	return s.parked
}

// use holds the database open for one transaction, reopening a parked
// one first; done releases it.
func (s *Store) use() (done func(), err error) {
	for {
		s.gate.RLock()
		if !s.parked {
			return s.gate.RUnlock, nil
		}
		s.gate.RUnlock()
		if err := s.unpark(); err != nil {
			return nil, err
		}
	}
}

// unpark reopens a parked database.
func (s *Store) unpark() error {
	s.gate.Lock()
	defer s.gate.Unlock()
	if !s.parked {
		return nil
	}
	if s.enter == nil || s.opts == nil {
		return ErrClosed
	}
	if err := s.enter(); err != nil {
		return err
	}
	db, err := openBadger(*s.opts)
	if err != nil {
		return translateOpen(s.dir, err)
	}
	s.db, s.be = db, &badgerBackend{db: db, dir: s.dir}
	s.parked = false
	return nil
}
