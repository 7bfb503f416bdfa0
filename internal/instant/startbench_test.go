package instant

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kurabackup/kura/internal/engine"
	"github.com/kurabackup/kura/internal/testenv"
)

// BenchmarkInstantVsRestore measures, for a point of a guest whose data
// disk holds 512 MiB of random data in a 1 GiB and in a 100 GiB (sparse)
// disk, the time from the command to a running VM and to its guest
// agent's answer: kura instant against a full kura restore of the same
// point (repository in a local directory). Run with -benchtime 1x.
func BenchmarkInstantVsRestore(b *testing.B) {
	for _, gib := range []int{1, 100} {
		b.Run(fmt.Sprintf("disk=%dGiB", gib), func(b *testing.B) {
			env, c := connect(b)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
			defer cancel()
			data := make([]byte, 512<<20)
			_, _ = rand.Read(data)
			g := env.NewGuest(b, testenv.GuestOptions{Agent: true, MemoryMiB: 256, Disks: []testenv.DiskSpec{{SizeMiB: gib << 10,
				Files: map[string][]byte{"data.bin": data}}}})
			dir := filepath.Join("/var/tmp", "kura-instant-bench-"+randHex(4))
			b.Cleanup(func() { os.RemoveAll(dir) })
			r := dirRepo(b, dir, ServeCacheBytes)
			point := backup(b, ctx, r, c, g)
			storage := imageDir(b, env)
			m := &Manager{Repo: r, Conn: c, StateDir: b.TempDir()}
			for b.Loop() {
				name := "kura-t-bench-i-" + randHex(3)
				t0 := time.Now()
				if _, err := m.Start(ctx, point.ID, StartOptions{Name: name, Storage: storage, Start: true}); err != nil {
					b.Fatal(err)
				}
				running := time.Since(t0)
				waitAgent(b, ctx, c, name)
				agent := time.Since(t0)
				if _, err := m.Stop(ctx, name, StopOptions{Force: true, Discard: true}); err != nil {
					b.Fatal(err)
				}
				rname := "kura-t-bench-r-" + randHex(3)
				t0 = time.Now()
				if _, err := (&engine.Engine{Repo: r, Conn: c}).Restore(ctx, point, engine.RestoreOptions{Name: rname,
					Storage: storage, Start: true, OnConflict: engine.ConflictAbort}); err != nil {
					b.Fatal(err)
				}
				rrunning := time.Since(t0)
				waitAgent(b, ctx, c, rname)
				ragent := time.Since(t0)
				_ = c.UndefineVM(context.Background(), rname)
				b.ReportMetric(running.Seconds(), "s-instant-running")
				b.ReportMetric(agent.Seconds(), "s-instant-agent")
				b.ReportMetric(rrunning.Seconds(), "s-restore-running")
				b.ReportMetric(ragent.Seconds(), "s-restore-agent")
			}
		})
	}
}

// BenchmarkVerifyBoot measures one boot verification end to end (a guest
// booting from its disk through SYSLINUX, the agent, one file probe, the
// screenshot, teardown). Run with -benchtime 1x or more.
func BenchmarkVerifyBoot(b *testing.B) {
	env, c := connect(b)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	g := env.NewGuest(b, testenv.GuestOptions{Agent: true, Disks: []testenv.DiskSpec{{Boot: true, Format: "raw", SizeMiB: 40},
		{Target: "vdb", SizeMiB: 16, Files: map[string][]byte{"hello.txt": []byte("hello\n")}}}})
	r := memRepo(b)
	point := backup(b, ctx, r, c, g)
	p, err := ParseProbe("file:/mnt/vdb/hello.txt=" + sum([]byte("hello\n")))
	if err != nil {
		b.Fatal(err)
	}
	m := &Manager{Repo: r, Conn: c}
	for b.Loop() {
		res, err := m.VerifyBoot(ctx, []string{point.ID}, VerifyOptions{Probes: []Probe{p}, ScreenshotDir: b.TempDir()})
		if err != nil || !res[0].OK {
			b.Fatalf("%+v %v", res, err)
		}
		b.ReportMetric(res[0].BootSeconds, "s-boot-to-agent")
		b.ReportMetric(res[0].Seconds, "s-verify")
	}
}
