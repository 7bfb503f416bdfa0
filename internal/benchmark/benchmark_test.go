package benchmark

import (
	"bytes"
	"context"
	"testing"
)

func TestImageIsDeterministicHalfRandomHalfText(t *testing.T) {
	var a, b bytes.Buffer
	if _, err := (Image{Size: 4 << 20, Seed: 7}).WriteTo(&a); err != nil {
		t.Fatal(err)
	}
	if _, err := (Image{Size: 4 << 20, Seed: 7}).WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatal("same seed, different image")
	}
	text := a.Bytes()[2<<20:]
	if bytes.Count(text, []byte(" ")) < len(text)/16 {
		t.Fatal("second half is not text")
	}
}

func TestRunSmallImage(t *testing.T) {
	res, err := Run(context.Background(), Options{ImageSize: 16 << 20, ChunkSize: 1 << 20, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Primitives) < 5 || len(res.Repository) != 4 {
		t.Fatalf("measurements missing: %+v", res)
	}
	for _, m := range append(res.Primitives, res.Repository...) {
		if m.MBps <= 0 {
			t.Errorf("%s: %v MB/s", m.Name, m.MBps)
		}
	}
	// Half the image is text: the repository must store clearly less.
	if res.StoredBytes <= 0 || res.StoredBytes > res.ImageBytes*80/100 {
		t.Errorf("stored %d of %d bytes", res.StoredBytes, res.ImageBytes)
	}
}
