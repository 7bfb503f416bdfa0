package crypto

import (
	"errors"
	"testing"
)

var cheap = KDFParams{Time: 1, MemoryKiB: 64, Threads: 1}

func TestWrapUnwrap(t *testing.T) {
	mk, err := NewMasterKey()
	if err != nil {
		t.Fatal(err)
	}
	kf, err := WrapMasterKey(mk, "pw", cheap, "h", "u")
	if err != nil {
		t.Fatal(err)
	}
	data, _ := kf.Encode()
	kf2, err := ParseKeyFile(data)
	if err != nil {
		t.Fatal(err)
	}
	got, err := kf2.Unwrap("pw")
	if err != nil || !got.Equal(mk) {
		t.Fatalf("unwrap: %v", err)
	}
	if _, err := kf2.Unwrap("nope"); !errors.Is(err, ErrWrongPassword) {
		t.Errorf("wrong password: %v", err)
	}
	kf2.Params.MemoryKiB = 1 << 30
	data, _ = kf2.Encode()
	if _, err := ParseKeyFile(data); !errors.Is(err, ErrBadKeyFile) {
		t.Errorf("huge memory accepted: %v", err)
	}
}

func TestSealOpen(t *testing.T) {
	mk, _ := NewMasterKey()
	k, _ := NewKeys(mk)
	s, err := k.Seal(nil, []byte("data"), []byte("aad"))
	if err != nil {
		t.Fatal(err)
	}
	if p, err := k.Open(nil, s, []byte("aad")); err != nil || string(p) != "data" {
		t.Fatalf("open: %v", err)
	}
	if _, err := k.Open(nil, s, []byte("other")); !errors.Is(err, ErrAuth) {
		t.Errorf("other aad: %v", err)
	}
}

func FuzzParseKeyFile(f *testing.F) {
	mk, _ := NewMasterKey()
	kf, _ := WrapMasterKey(mk, "pw", cheap, "h", "u")
	data, _ := kf.Encode()
	f.Add(data)
	f.Add([]byte(`{"version":1,"kdf":"argon2id"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		kf, err := ParseKeyFile(b)
		if err != nil {
			return
		}
		if kf.Params.MemoryKiB > maxKDFMemKiB || kf.Params.Time > maxKDFTime || len(kf.Nonce) != NonceSize {
			t.Fatal("out of bounds key file accepted")
		}
	})
}
