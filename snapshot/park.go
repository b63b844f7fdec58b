package snapshot

import (
	"context"
	"errors"
)

// ErrClosed reports the use of a closed Manager.
var ErrClosed = errors.New("snapshots: closed")

// SetReopen sets what a parked Manager runs before it reopens its
// database: the caller takes the lock that keeps other processes out.
func (m *Manager) SetReopen(enter func() error) {
	m.gate.Lock()
	defer m.gate.Unlock()
	m.enter = enter
}

// Park closes the snapshotter and its database until the next use, which
// reopens them (after the SetReopen function): meanwhile another process
// may open them. Mounts stay as they are. The caller makes sure nothing
// uses this Manager meanwhile.
func (m *Manager) Park() error {
	m.gate.Lock()
	defer m.gate.Unlock()
	if m.parked {
		return nil
	}
	m.parked = true
	return m.sn.Close()
}

// Parked says whether the database is closed until the next use.
func (m *Manager) Parked() bool {
	m.gate.RLock()
	defer m.gate.RUnlock()
	return m.parked
}

// use holds the snapshotter open for one call, reopening a parked one
// first; done releases it.
func (m *Manager) use() (done func(), err error) {
	for {
		m.gate.RLock()
		if !m.parked {
			return m.gate.RUnlock, nil
		}
		m.gate.RUnlock()
		if err := m.unpark(); err != nil {
			return nil, err
		}
	}
}

func (m *Manager) unpark() error {
	m.gate.Lock()
	defer m.gate.Unlock()
	if !m.parked {
		return nil
	}
	if m.closed || m.enter == nil {
		return ErrClosed
	}
	if err := m.enter(); err != nil {
		return err
	}
	sn, ms, err := openSnapshotter(context.Background(), m.dir, m.kind, m.timeout)
	if err != nil {
		return err
	}
	m.sn, m.ms, m.parked = sn, ms, false
	return nil
}
