package nbd

import (
	"fmt"
	"os/exec"
	"testing"
)

// BenchmarkServerNbdcopy copies a 1 GiB in-memory export (all data) to
// null: with nbdcopy, with 1 and 4 connections: the server's own cost.
func BenchmarkServerNbdcopy(b *testing.B) {
	needTool(b, "nbdcopy")
	m := newMemExport(1<<30, 4<<20, func(int64) bool { return true })
	sock, _, _ := serveTest(b, map[string]Export{"": m})
	for _, conns := range []int{1, 4} {
		b.Run(fmt.Sprintf("connections=%d", conns), func(b *testing.B) {
			b.SetBytes(m.Size())
			for b.Loop() {
				out, err := exec.Command("nbdcopy", fmt.Sprintf("--connections=%d", conns), "nbd+unix:///?socket="+sock, "null:").CombinedOutput()
				if err != nil {
					b.Fatalf("nbdcopy: %v %s", err, out)
				}
			}
		})
	}
}
