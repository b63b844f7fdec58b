package vm

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/spillway/spillway/internal/sparse"
	"github.com/spillway/spillway/internal/units"
)

// SpoolMaxData bounds the data (not holes) a run's changes spool takes on
// the host: the whole stream's limit when it is applied
// (DefaultStreamLimits.MaxTotal). An honest stream can hold more than the
// scratch disk (init streams each hard link's name as a whole file: a
// local git clone), so the scratch disk's size is no bound. A guest that
// writes to the changes port itself (root in the guest can) is cut off
// there, or where the host's disk runs low, instead of filling it.
var SpoolMaxData = DefaultStreamLimits.MaxTotal

// SpoolMinFree is the free space a spool leaves on its file system: it
// stops there too.
var SpoolMinFree int64 = 512 << 20

// spoolWriter writes the changes stream to the spool, sparse, until it
// goes over SpoolMaxData or the file system's free space falls under
// SpoolMinFree; from then on it drops what comes (the guest is not made
// to block) and Over says why. A spool cut short never verifies against
// init's STREAMED line, so the run treats it as incomplete.
type spoolWriter struct {
	f         *os.File
	w         *sparse.Writer
	maxData   int64
	checkedAt int64 // Data() when free space was last checked
	over      string
}

// freeCheckEvery is how much data goes between two checks of free space.
const freeCheckEvery = 64 << 20

func newSpoolWriter(f *os.File) *spoolWriter {
	return &spoolWriter{f: f, w: sparse.NewWriter(f), maxData: SpoolMaxData, checkedAt: -freeCheckEvery}
}

func (s *spoolWriter) Write(p []byte) (int, error) {
	if s.over != "" {
		return len(p), nil
	}
	if s.w.Data() >= s.maxData { // by at most one write (io.Copy's 32 KiB) over
		s.over = fmt.Sprintf("over %s of data", units.FormatSize(s.maxData))
		return len(p), nil
	}
	if s.w.Data()-s.checkedAt >= freeCheckEvery {
		s.checkedAt = s.w.Data()
		var st unix.Statfs_t
		if err := unix.Fstatfs(int(s.f.Fd()), &st); err == nil {
			if free := int64(st.Bavail) * int64(st.Bsize); free-int64(len(p)) < SpoolMinFree {
				s.over = fmt.Sprintf("the host's file system has under %s free", units.FormatSize(SpoolMinFree))
				return len(p), nil
			}
		}
	}
	return s.w.Write(p)
}

// Finish sets the spool's size (sparse.Writer.Finish).
func (s *spoolWriter) Finish() error { return s.w.Finish() }
