package whoami

import (
	"os"
	"os/user"
	"strconv"
	"testing"
)

func TestNameIsCurrentUser(t *testing.T) {
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	if got := Name(); got != u.Username {
		t.Fatalf("Name() = %q, want %q", got, u.Username)
	}
}

func TestUnknownUIDFallsBackToNumber(t *testing.T) {
	const uid = 2147480001 // no such user in any test image
	if _, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		t.Fatalf("uid %d unexpectedly exists", uid)
	}
	if got := name(uid); got != "2147480001" {
		t.Fatalf("name(%d) = %q, want the uid, never root", uid, got)
	}
}

func TestSudoUserIgnored(t *testing.T) {
	t.Setenv("SUDO_USER", "mallory")
	if got := name(os.Getuid()); got == "mallory" {
		t.Fatal("SUDO_USER must not decide the recorded user")
	}
}
