package serve

import (
	"net/http"

	"github.com/spillway/spillway/persist"
)

// recoveryRows bounds the recovery page: the area can hold a million
// discarded files; the page shows the first ones and counts the rest.
const recoveryRows = 500

type recoveryPage struct {
	Sandbox  string
	Settings *persist.Settings
	Entries  []persist.RecoverEntry
	More     int // entries past recoveryRows
}

// recovery shows what a sandbox's recovery area holds, session by session,
// with its retention settings: what `recover ls` and `config` print.
// Restoring stays a CLI command (it needs a reason and, for risky targets,
// --force).
func (s *Server) recovery(w http.ResponseWriter, r *http.Request) {
	p := recoveryPage{Sandbox: r.URL.Query().Get("sandbox")}
	err := s.withEnv(r.Context(), func(e *persist.Env) (err error) {
		if p.Settings, err = e.Config(p.Sandbox); err != nil {
			return err
		}
		return e.RecoverList(r.Context(), p.Sandbox, 0, "", func(x persist.RecoverEntry) error {
			if len(p.Entries) < recoveryRows {
				p.Entries = append(p.Entries, x)
			} else {
				p.More++
			}
			return nil
		})
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.render(w, r, http.StatusOK, "recovery", p)
}
