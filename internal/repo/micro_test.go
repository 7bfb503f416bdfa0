package repo

import (
	"crypto/sha256"
	"testing"

	"github.com/kurabackup/kura/internal/crypto"
)

func benchCodec(b *testing.B, text bool) {
	img := mixedImage()
	mk, _ := crypto.NewMasterKey()
	c := testCodec(mk, true)
	off := 0
	if text {
		off = len(img) / 2
	}
	p := img[off : off+DefaultChunkSize]
	b.SetBytes(int64(len(p)))
	var env []byte
	for b.Loop() {
		_ = c.digest(p)
		env, _ = c.seal(env[:0], typeChunk, "x", p)
	}
	b.ReportMetric(float64(len(env))/float64(len(p)), "ratio")
}

func BenchmarkSealRandom(b *testing.B) { benchCodec(b, false) }
func BenchmarkSealText(b *testing.B)   { benchCodec(b, true) }

func BenchmarkCalibrateSHA(b *testing.B) {
	p := mixedImage()[:DefaultChunkSize]
	b.SetBytes(int64(len(p)))
	for b.Loop() {
		_ = sha256.Sum256(p)
	}
}
