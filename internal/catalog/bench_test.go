package catalog

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

func BenchmarkAddPoint(b *testing.B) {
	c, err := Open(context.Background(), filepath.Join(b.TempDir(), "c.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	i := 0
	for b.Loop() {
		p := samplePoint(fmt.Sprintf("%016x", i), "r", fmt.Sprintf("u%d", i%800), "vm", t0.Add(time.Duration(i)*time.Second))
		if err := c.AddPoint(ctx, p); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkPoints lists the points of one VM, or all points, among 800 VMs × 14
// points (the DPM scale of one server with two weeks of dailies).
func BenchmarkPoints(b *testing.B) {
	ctx := context.Background()
	c, err := Open(ctx, filepath.Join(b.TempDir(), "c.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	var ps []Point
	for v := range 800 {
		for d := range 14 {
			ps = append(ps, samplePoint(fmt.Sprintf("%04d%02d", v, d), "r", fmt.Sprintf("u%d", v),
				fmt.Sprintf("vm%d", v), t0.Add(time.Duration(d)*24*time.Hour)))
		}
	}
	start := time.Now()
	if err := c.Rebuild(ctx, "r", ps, nil); err != nil {
		b.Fatal(err)
	}
	b.Logf("rebuild of %d points with 2 disks each: %v", len(ps), time.Since(start))
	b.Run("one-vm", func(b *testing.B) {
		for b.Loop() {
			got, err := c.Points(ctx, PointFilter{VM: "vm417"})
			if err != nil || len(got) != 14 {
				b.Fatalf("%d points, %v", len(got), err)
			}
		}
	})
	b.Run("all", func(b *testing.B) {
		for b.Loop() {
			got, err := c.Points(ctx, PointFilter{})
			if err != nil || len(got) != len(ps) {
				b.Fatalf("%d points, %v", len(got), err)
			}
		}
	})
	b.Run("prefix", func(b *testing.B) {
		for b.Loop() {
			if _, err := c.Point(ctx, "041707"); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkDPMScale: 800 VMs × 400 points (DPM's per-server scale): one
// VM's points and every VM's status, the two queries a server's API and
// dashboard make most.
func BenchmarkDPMScale(b *testing.B) {
	ctx := context.Background()
	c, err := Open(ctx, filepath.Join(b.TempDir(), "c.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	var ps []Point
	var vms []VM
	for v := range 800 {
		vms = append(vms, VM{UUID: fmt.Sprintf("u%d", v), Name: fmt.Sprintf("vm%d", v)})
		for d := range 400 {
			p := samplePoint(fmt.Sprintf("%04d%03d", v, d), "r", fmt.Sprintf("u%d", v), fmt.Sprintf("vm%d", v),
				t0.Add(time.Duration(d)*6*time.Hour))
			p.Disks = p.Disks[:1]
			ps = append(ps, p)
		}
	}
	start := time.Now()
	if err := c.Rebuild(ctx, "r", ps, vms); err != nil {
		b.Fatal(err)
	}
	b.Logf("rebuild of %d points: %v", len(ps), time.Since(start))
	if err := c.MarkDamaged(ctx, "r", []Damage{{Object: "chunks/x", Kind: "corrupt", Points: []string{"0417399", "0003001"}}}); err != nil {
		b.Fatal(err)
	}
	b.Run("one-vm-points", func(b *testing.B) {
		for b.Loop() {
			got, err := c.Points(ctx, PointFilter{VM: "vm417"})
			if err != nil || len(got) != 400 {
				b.Fatalf("%d points, %v", len(got), err)
			}
		}
	})
	b.Run("vm-statuses", func(b *testing.B) {
		for b.Loop() {
			got, err := c.VMStatuses(ctx, "")
			if err != nil || len(got) != 800 {
				b.Fatalf("%d statuses, %v", len(got), err)
			}
		}
	})
}
