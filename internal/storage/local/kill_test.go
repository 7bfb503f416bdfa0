package local

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/kurabackup/kura/internal/storage"
)

// object returns the content of version v of object i: an 8-byte header
// (i, v) followed by bytes derived from it, so any mix of versions or a
// truncated object is detected.
func object(i, v uint32) []byte {
	b := make([]byte, 1<<20)
	binary.LittleEndian.PutUint32(b, i)
	binary.LittleEndian.PutUint32(b[4:], v)
	for j := 8; j < len(b); j++ {
		b[j] = byte(uint32(j)*31 + i*7 + v*13)
	}
	return b
}

// TestMain lets the test binary act as a writer that the test kills.
func TestMain(m *testing.M) {
	if dir := os.Getenv("KURA_LOCAL_TEST_WRITER"); dir != "" {
		be, err := Open(dir)
		if err != nil {
			os.Exit(2)
		}
		for v := uint32(0); ; v++ {
			for i := range uint32(8) {
				if err := be.Put(context.Background(), fmt.Sprintf("obj/%d", i), object(i, v)); err != nil {
					os.Exit(3)
				}
			}
		}
	}
	os.Exit(m.Run())
}

// TestKilledWriter kills a process in the middle of Puts (SIGKILL) and
// checks that every object is one complete version and that CleanTemp
// removes the leftovers.
func TestKilledWriter(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	for round := range 3 {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "KURA_LOCAL_TEST_WRITER="+dir)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(150+round*70) * time.Millisecond)
		if err := cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Wait()
		be, err := Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		err = be.List(ctx, "obj/", func(oi storage.ObjectInfo) error {
			data, err := be.Get(ctx, oi.Name)
			if err != nil {
				return err
			}
			if len(data) != 1<<20 {
				return fmt.Errorf("%s: %d bytes", oi.Name, len(data))
			}
			i, v := binary.LittleEndian.Uint32(data), binary.LittleEndian.Uint32(data[4:])
			if oi.Name != fmt.Sprintf("obj/%d", i) || !bytes.Equal(data, object(i, v)) {
				return fmt.Errorf("%s: torn or misplaced object (header %d/%d)", oi.Name, i, v)
			}
			n++
			return nil
		})
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if n == 0 {
			t.Fatalf("round %d: writer stored nothing", round)
		}
		if _, err := be.CleanTemp(ctx, 0); err != nil {
			t.Fatal(err)
		}
		if left, _ := os.ReadDir(dir + "/tmp"); len(left) != 0 {
			t.Fatalf("round %d: %d temp files after CleanTemp(0)", round, len(left))
		}
	}
}
