// Package console is kura server's web console: a small single-page
// application (plain JavaScript modules and CSS, no build step, no
// third-party code) embedded in the binary and served by kura server on
// its HTTPS port. The pages call only the public REST API (/api/v1), with
// the session cookie and CSRF header of a signed-in user; the server
// checks every right, the console only hides what a role cannot use.
// docs/design/console.md explains the choice.
package console

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
)

//go:embed assets
var assets embed.FS

// Prefix is where the console's files are served; the page itself is "/".
const Prefix = "/ui/"

// policy allows the console's own files only: no inline script or style,
// no other origin, no framing.
const policy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

type file struct {
	data  []byte
	etag  string
	ctype string
}

// Handler serves the console: "/" is the page, Prefix its scripts and
// styles (revalidated by ETag, so a new kura binary is picked up at once).
func Handler() http.Handler {
	files := map[string]file{}
	_ = fs.WalkDir(assets, "assets", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := assets.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(data)
		ct := mime.TypeByExtension(path.Ext(p))
		if ct == "" {
			ct = "application/octet-stream"
		}
		files[strings.TrimPrefix(p, "assets/")] = file{data: data, etag: `"` + hex.EncodeToString(sum[:8]) + `"`, ctype: ct}
		return nil
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := "index.html"
		if r.URL.Path != "/" {
			name = strings.TrimPrefix(r.URL.Path, Prefix)
		}
		f, ok := files[name]
		if !ok || (r.URL.Path != "/" && !strings.HasPrefix(r.URL.Path, Prefix)) {
			http.NotFound(w, r)
			return
		}
		h := w.Header()
		h.Set("Content-Security-Policy", policy)
		h.Set("Content-Type", f.ctype)
		h.Set("ETag", f.etag)
		h.Set("Cache-Control", "no-cache")
		if r.Header.Get("If-None-Match") == f.etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		_, _ = w.Write(f.data)
	})
}
