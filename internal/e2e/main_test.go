package e2e

import (
	"os"
	"testing"

	"github.com/kurabackup/kura/internal/cli"
)

// asKura makes the test binary run as kura: the processes kura starts
// (kura instant's server) are this binary with it set.
const asKura = "KURA_E2E_AS_KURA"

func TestMain(m *testing.M) {
	if os.Getenv(asKura) == "1" {
		os.Exit(cli.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}
