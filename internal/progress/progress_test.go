package progress

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 21, 23, 0, 0, 0, time.UTC)

func TestFormatBytes(t *testing.T) {
	cases := map[int64]string{
		0: "0 B", 512: "512 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB",
		1<<20 - 1: "1.0 MiB", 1288490189: "1.2 GiB", 8 << 30: "8.0 GiB", 3 << 40: "3.0 TiB",
		math.MaxInt64: "8.0 EiB", -1536: "-1.5 KiB", math.MinInt64: "-8.0 EiB",
	}
	for n, want := range cases {
		if got := FormatBytes(n); got != want {
			t.Errorf("FormatBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestFormatRate(t *testing.T) {
	cases := map[float64]string{
		0: "0 B/s", 999: "999 B/s", 1000: "1.0 kB/s", 350e6: "350 MB/s", 12.54e6: "12.5 MB/s",
		1.2e9: "1.2 GB/s", 999.6e6: "1.0 GB/s", -1: "-- B/s", math.NaN(): "-- B/s", math.Inf(1): "-- B/s",
	}
	for r, want := range cases {
		if got := FormatRate(r); got != want {
			t.Errorf("FormatRate(%v) = %q, want %q", r, got, want)
		}
	}
}

func TestFormatDuration(t *testing.T) {
	cases := map[time.Duration]string{
		0: "0:00", 19 * time.Second: "0:19", 19600 * time.Millisecond: "0:20", 12*time.Minute + 5*time.Second: "12:05",
		time.Hour + 2*time.Minute + 3*time.Second: "1:02:03", 100 * time.Hour: "100:00:00", -time.Second: "0:00",
	}
	for d, want := range cases {
		if got := FormatDuration(d); got != want {
			t.Errorf("FormatDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

func TestRateAndETA(t *testing.T) {
	clk := &fakeClock{t: t0}
	r := NewRate(5*time.Second, clk.now)
	if r.Rate() != 0 {
		t.Fatal("rate before samples")
	}
	if _, ok := r.ETA(100); ok {
		t.Fatal("ETA known before samples")
	}
	r.Update(0)
	if _, ok := r.ETA(100); ok {
		t.Fatal("ETA known with one sample")
	}
	// 100 MB/s for 10 s.
	for range 10 {
		clk.advance(time.Second)
		r.Update(r.Done() + 100e6)
	}
	if got := r.Rate(); got != 100e6 {
		t.Fatalf("steady rate %v, want 1e8", got)
	}
	eta, ok := r.ETA(2e9)
	if !ok || eta != 10*time.Second {
		t.Fatalf("ETA %v %v, want 10s", eta, ok)
	}
	// Speed drops to 20 MB/s: after 2 s the 5 s window mixes both speeds,
	// after 5 s only the new one counts.
	for i := 1; i <= 5; i++ {
		clk.advance(time.Second)
		r.Update(r.Done() + 20e6)
		if i == 2 {
			if got, want := r.Rate(), (3*100e6+2*20e6)/5; math.Abs(got-want) > 1 {
				t.Errorf("mixed rate %v, want %v", got, want)
			}
		}
	}
	if got := r.Rate(); math.Abs(got-20e6) > 1e-3 {
		t.Fatalf("rate after slowdown %v, want 2e7", got)
	}
	eta, ok = r.ETA(r.Done() + 30e6)
	if !ok || eta != 2*time.Second { // 1.5 s rounds to 2 s
		t.Fatalf("ETA %v %v, want 2s", eta, ok)
	}
	if eta, ok := r.ETA(r.Done() - 1); !ok || eta != 0 {
		t.Errorf("ETA past total: %v %v", eta, ok)
	}
	// Stalled: no progress for a whole window gives rate 0, unknown ETA.
	for range 6 {
		clk.advance(time.Second)
		r.Update(r.Done())
	}
	if r.Rate() != 0 {
		t.Errorf("stalled rate %v", r.Rate())
	}
	if _, ok := r.ETA(r.Done() + 1); ok {
		t.Error("stalled ETA known")
	}
	// Restart: done goes down, history is discarded.
	clk.advance(time.Second)
	r.Update(10)
	if r.Rate() != 0 || r.Done() != 10 {
		t.Errorf("after restart rate %v done %d", r.Rate(), r.Done())
	}
	// Out-of-order samples are ignored.
	r.UpdateAt(t0, 1e12)
	if r.Done() != 10 {
		t.Errorf("old sample accepted: done %d", r.Done())
	}
}

func TestJSONLines(t *testing.T) {
	var buf bytes.Buffer
	s := NewJSON(&buf)
	s.now = func() time.Time { return t0 }
	in := []Event{
		{Time: t0, Kind: JobStart, Job: "j1", Data: map[string]any{"kind": "backup", "vms": 2.0}},
		{Time: t0.Add(time.Second), Kind: DiskProgress, Job: "j1", VM: "vm1", Disk: "vda", Done: 1 << 30,
			Total: 8 << 30, Rate: 350e6, ETA: 19500 * time.Millisecond},
		{Kind: VMFailed, Job: "j1", VM: "vm2", Err: "agent timeout"},
		{Time: t0, Kind: DiskProgress, Rate: math.NaN()},
		{Time: t0, Kind: Message, Msg: "bad data", Data: map[string]any{"ch": make(chan int)}},
	}
	for _, e := range in {
		s.Emit(e)
	}
	if s.Err() != nil {
		t.Fatal(s.Err())
	}
	sc := bufio.NewScanner(&buf)
	var out []Event
	var raw []map[string]any
	for sc.Scan() {
		var e Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		out = append(out, e)
		var m map[string]any
		_ = json.Unmarshal(sc.Bytes(), &m)
		raw = append(raw, m)
	}
	if len(out) != len(in) {
		t.Fatalf("%d lines, want %d", len(out), len(in))
	}
	if !reflect.DeepEqual(out[0], in[0]) || !reflect.DeepEqual(out[1], in[1]) {
		t.Errorf("round trip:\n got %+v\n     %+v\nwant %+v\n     %+v", out[0], out[1], in[0], in[1])
	}
	if raw[1]["eta"] != 19.5 || raw[1]["rate"] != 350e6 || raw[1]["disk"] != "vda" {
		t.Errorf("wire form %v", raw[1])
	}
	if !out[2].Time.Equal(t0) || out[2].Err != "agent timeout" || raw[2]["error"] != "agent timeout" {
		t.Errorf("stamped event %+v", out[2])
	}
	if _, has := raw[3]["rate"]; has {
		t.Errorf("NaN rate written: %v", raw[3])
	}
	if out[4].Msg != "bad data" || out[4].Data["encode_error"] == nil {
		t.Errorf("unencodable data: %+v", out[4])
	}
}

type failWriter struct{ n int }

func (w *failWriter) Write(p []byte) (int, error) {
	w.n++
	return 0, errors.New("disk full")
}

func TestJSONWriteErrorSticks(t *testing.T) {
	w := &failWriter{}
	s := NewJSON(w)
	s.Emit(Event{Kind: Message})
	s.Emit(Event{Kind: Message})
	if s.Err() == nil || w.n != 1 {
		t.Errorf("err %v after %d writes", s.Err(), w.n)
	}
}

func TestJSONConcurrentEmits(t *testing.T) {
	var buf bytes.Buffer
	s := NewJSON(&buf)
	var wg sync.WaitGroup
	const G, N = 8, 200
	for g := range G {
		wg.Go(func() {
			for i := range N {
				s.Emit(Event{Kind: DiskProgress, VM: fmt.Sprintf("vm%d", g), Done: int64(i),
					Msg: strings.Repeat("x", 100)})
			}
		})
	}
	wg.Wait()
	last := map[string]int64{}
	lines := 0
	sc := bufio.NewScanner(&buf)
	for sc.Scan() {
		var e Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("interleaved line %q: %v", sc.Text(), err)
		}
		if prev, ok := last[e.VM]; ok && e.Done != prev+1 {
			t.Fatalf("%s: done %d after %d", e.VM, e.Done, prev)
		}
		last[e.VM] = e.Done
		lines++
	}
	if lines != G*N {
		t.Fatalf("%d lines, want %d", lines, G*N)
	}
}

func TestMultiAndNop(t *testing.T) {
	var a, b bytes.Buffer
	m := Multi(NewJSON(&a), Nop(), NewJSON(&b))
	m.Emit(Event{Time: t0, Kind: Message, Msg: "hi"})
	if a.String() == "" || a.String() != b.String() {
		t.Errorf("multi: %q vs %q", a.String(), b.String())
	}
}

func FuzzEventJSON(f *testing.F) {
	f.Add([]byte(`{"time":"2026-11-21T23:00:00Z","kind":"disk-progress","done":5,"total":9,"rate":1.5,"eta":19.5}`))
	f.Add([]byte(`{"kind":"message","data":{"a":[1,2]},"eta":1e300}`))
	f.Add([]byte(`{"eta":-5}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var e Event
		if err := json.Unmarshal(b, &e); err != nil {
			return
		}
		if e.ETA < 0 {
			t.Fatalf("negative ETA %v", e.ETA)
		}
		enc, err := json.Marshal(e)
		if err != nil {
			t.Fatalf("re-encode %+v: %v", e, err)
		}
		var e2 Event
		if err := json.Unmarshal(enc, &e2); err != nil {
			t.Fatalf("decode own output %s: %v", enc, err)
		}
		enc2, _ := json.Marshal(e2)
		if !bytes.Equal(enc, enc2) {
			t.Fatalf("not stable:\n%s\n%s", enc, enc2)
		}
	})
}
