package vm

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/spillway/spillway/internal/testenv"
)

var (
	initOnce sync.Once
	initPath string
	initErr  error
)

// testInit builds the guest init once per test binary.
func testInit(t *testing.T) string {
	t.Helper()
	initOnce.Do(func() {
		dir, err := os.MkdirTemp("", "vminit-")
		if err != nil {
			initErr = err
			return
		}
		initPath = filepath.Join(dir, InitName)
		cmd := exec.Command("go", "build", "-o", initPath, "github.com/spillway/spillway/cmd/spillway-vminit")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			initErr = err
			t.Logf("%s", out)
		}
	})
	if initErr != nil {
		t.Fatalf("build guest init: %v", initErr)
	}
	return initPath
}

// testConfig sets up VMs in a fresh state directory, or skips the test
// where QEMU or a guest kernel is missing.
func testConfig(t *testing.T) (*Config, string) {
	t.Helper()
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		testenv.Missing(t, "qemu-system-x86_64 is not installed")
	}
	if _, err := FindKernel(t.TempDir(), "", ""); err != nil {
		testenv.Missing(t, "no guest kernel: %v", err)
	}
	root := t.TempDir()
	c, err := Setup(context.Background(), root, SetupOptions{Init: testInit(t), Accel: AccelAuto}, func(s string) { t.Log(s) })
	if err != nil {
		t.Fatal(err)
	}
	return c, root
}

// procAlive returns an error when pid is gone or a zombie.
func procAlive(pid int) (bool, error) {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false, err
	}
	s := string(data)
	if i := strings.LastIndexByte(s, ')'); i > 0 && strings.HasPrefix(s[i+1:], " Z") {
		return false, errors.New("zombie")
	}
	return true, nil
}
