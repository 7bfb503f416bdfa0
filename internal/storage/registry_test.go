package storage_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/kurabackup/kura/internal/storage"
)

func TestSplitLocation(t *testing.T) {
	for loc, want := range map[string][2]string{
		"/srv/kura":               {"local", "/srv/kura"},
		"local:/srv/kura":         {"local", "/srv/kura"},
		"./a:b":                   {"local", "./a:b"},
		"repo":                    {"local", "repo"},
		"s3:https://h:9000/b/p":   {"s3", "https://h:9000/b/p"},
		"S3:http://h/b":           {"s3", "http://h/b"},
		"dir/with:colon":          {"local", "dir/with:colon"},
		"sftp:host:/srv":          {"sftp", "host:/srv"},
		"1abc:x":                  {"local", "1abc:x"},
		"with space:x":            {"local", "with space:x"},
		"s3x:http://host/bucket/": {"s3x", "http://host/bucket/"},
	} {
		if s, r := storage.SplitLocation(loc); s != want[0] || r != want[1] {
			t.Errorf("%q: got (%q, %q), want %q", loc, s, r, want)
		}
	}
}

func TestOpenUnknownScheme(t *testing.T) {
	storage.Register("test-scheme", func(context.Context, string, storage.OpenOptions) (storage.Backend, error) {
		return nil, errors.New("opened")
	})
	_, err := storage.Open(context.Background(), "nope:x", storage.OpenOptions{})
	if !errors.Is(err, storage.ErrUnknownScheme) || !strings.Contains(err.Error(), "test-scheme:") {
		t.Fatalf("unknown scheme: %v", err)
	}
	if _, err := storage.Open(context.Background(), "test-scheme:x", storage.OpenOptions{}); err == nil || err.Error() != "opened" {
		t.Fatalf("registered scheme: %v", err)
	}
	defer func() {
		if recover() == nil {
			t.Error("registering a scheme twice did not panic")
		}
	}()
	storage.Register("test-scheme", nil)
}
