package crypto

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"testing"
)

// The ids of a repository never change: known answers pin each IDHash
// (the BLAKE3 ones are the official test vectors' key and inputs).
func TestDigestKnownAnswers(t *testing.T) {
	key := MasterKey{}
	copy(key.MAC[:], "whats the Elvish word for friend")
	input := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i % 251)
		}
		return b
	}
	hm := hmac.New(sha256.New, key.MAC[:])
	hm.Write(input(1023))
	for _, c := range []struct {
		h    IDHash
		mk   *MasterKey
		in   []byte
		want string
	}{
		{BLAKE3, nil, nil, "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"},
		{BLAKE3, &key, nil, "92b2b75604ed3c761f9d6f62392c8a9227ad0ea3f09573e783f1498a4ed60d26"},
		{BLAKE3, &key, input(1023), "c951ecdf03288d0fcc96ee3413563d8a6d3589547f2c2fb36d9786470f1b9d6e"},
		// Past every SIMD width and tree level a 4 MiB chunk uses.
		{BLAKE3, &key, input(4<<20 + 1), "0b5c5d536393fb4de018279c0c2734541e74984a0e9bcc2f676e8154e2b97fba"},
		{HMACSHA256, nil, nil, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
		{HMACSHA256, &key, input(1023), hex.EncodeToString(hm.Sum(nil))},
	} {
		d, err := NewDigester(c.h, c.mk)
		if err != nil {
			t.Fatal(err)
		}
		for range 2 { // a pooled hasher is reset
			if got := d.Digest(c.in); hex.EncodeToString(got[:]) != c.want {
				t.Errorf("%s keyed %v, %d bytes: %x, want %s", c.h, c.mk != nil, len(c.in), got, c.want)
			}
		}
	}
}

func TestDigestDependsOnKey(t *testing.T) {
	a, _ := NewMasterKey()
	b, _ := NewMasterKey()
	for _, h := range []IDHash{HMACSHA256, BLAKE3} {
		da, _ := NewDigester(h, a)
		db, _ := NewDigester(h, b)
		plain, _ := NewDigester(h, nil)
		x := []byte("x")
		if da.Digest(x) == db.Digest(x) || da.Digest(x) == plain.Digest(x) {
			t.Errorf("%s: digest does not depend on the key", h)
		}
	}
	if _, err := NewDigester("md5", nil); err == nil {
		t.Error("unknown id hash accepted")
	}
}

func BenchmarkDigest(b *testing.B) {
	mk, _ := NewMasterKey()
	p := make([]byte, 4<<20)
	for _, h := range []IDHash{HMACSHA256, BLAKE3} {
		d, _ := NewDigester(h, mk)
		b.Run(string(h), func(b *testing.B) {
			b.SetBytes(int64(len(p)))
			for b.Loop() {
				d.Digest(p)
			}
		})
	}
}
