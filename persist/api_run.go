package persist

import "path/filepath"

// RunDir is where the runs of the state directory are recorded (package
// sandboxrun keeps its run registry there).
func (e *Env) RunDir() string { return filepath.Join(e.root, "run") }
