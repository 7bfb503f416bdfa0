package server

import (
	"archive/tar"
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/kurabackup/kura/internal/catalog"
	"github.com/kurabackup/kura/internal/fsread"
)

// get fetches a raw response body with a bearer token.
func (ts *testServer) get(token, path string) (int, http.Header, []byte) {
	ts.t.Helper()
	req, _ := http.NewRequest("GET", ts.url+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := ts.client.Do(req)
	if err != nil {
		ts.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, data
}

// TestFilesAPI: a point's volumes, a directory listing filtered and paged,
// a search by name (truncated at its limit), and a folder as a tar
// archive, on a real XFS filesystem; a restore user of another group gets
// none of them.
func TestFilesAPI(t *testing.T) {
	ts, ops := consoleServer(t)
	var points []catalog.Point
	ts.call(ops, "GET", APIPrefix+"/vms/"+fakeUUID("db-files")+"/points", nil, &points)
	base := APIPrefix + "/points/" + points[0].ID

	var vols []fsread.Volume
	if code := ts.call(ops, "GET", base+"/volumes?disk=vda", nil, &vols); code != 200 || len(vols) != 1 || vols[0].FS != "xfs" {
		t.Errorf("volumes: %d %+v", code, vols)
	}
	var fl FileList
	if ts.call(ops, "GET", base+"/files?path=/big&name=file-1999&offset=5&limit=3", nil, &fl); fl.Total != 10 || len(fl.Items) != 3 ||
		fl.Items[0].Name != "file-19995.txt" {
		t.Errorf("filtered page of /big: total %d, %+v", fl.Total, fl.Items)
	}
	var found FileSearch
	if ts.call(ops, "GET", base+"/files/search?name=*.conf", nil, &found); len(found.Items) != 1 || found.Items[0].Path != "/etc/app/app.conf" || found.Truncated {
		t.Errorf("search *.conf: %+v", found)
	}
	if ts.call(ops, "GET", base+"/files/search?path=/big&name=file-&limit=10", nil, &found); len(found.Items) != 10 || !found.Truncated {
		t.Errorf("search truncated at 10: %d items, truncated %v", len(found.Items), found.Truncated)
	}
	if code := ts.call(ops, "GET", base+"/files/search?name=[", nil, nil); code != http.StatusBadRequest {
		t.Errorf("bad pattern: %d", code)
	}

	code, hdr, data := ts.get(ops, base+"/files/archive?path=/etc&format=tar")
	if code != 200 || hdr.Get("Content-Type") != "application/x-tar" || !strings.Contains(hdr.Get("Content-Disposition"), `filename=etc.tar`) {
		t.Fatalf("tar of /etc: %d %v", code, hdr)
	}
	got := map[string]string{}
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("tar: %v", err)
		}
		body, _ := io.ReadAll(tr)
		got[h.Name] = string(body)
		if h.Name == "etc/motd" && h.Mode != 0o644 {
			t.Errorf("mode of etc/motd in the tar: %o", h.Mode)
		}
	}
	if got["etc/motd"] != "welcome to the console test\n" || got["etc/app/app.conf"] != "port = 8080\n" || len(got) != 4 {
		t.Errorf("tar of /etc: %v", got)
	}
	if code, _, _ := ts.get(ops, base+"/files/archive?path=/etc&format=rar"); code != http.StatusBadRequest {
		t.Errorf("format rar: %d", code)
	}
	var entries []catalog.AuditEntry
	if ts.call(ts.login("admin", "admin password", ""), "GET", APIPrefix+"/audit?action=files.archive", nil, &entries); len(entries) != 1 {
		t.Errorf("archive downloads audited: %+v", entries)
	}

	// The restore user of group db gets nothing of a web point.
	team := ts.login("dbteam", "team password", "")
	var web []catalog.Point
	ts.call(ops, "GET", APIPrefix+"/points?group=web", nil, &web)
	for _, p := range []string{"/files/archive?path=/", "/files/search?name=x", "/volumes"} {
		if code := ts.call(team, "GET", APIPrefix+"/points/"+web[0].ID+p, nil, nil); code != http.StatusForbidden {
			t.Errorf("restore user of db: %s of a web point: %d", p, code)
		}
	}
}

// TestConsoleEndpoints: what else the console reads — damage,
// connections, notifications, a draft group's preview, the session's
// CSRF token in whoami, and the page itself with its security policy.
func TestConsoleEndpoints(t *testing.T) {
	ts := startServer(t)
	ops := ts.login("admin", "admin password", "operator")
	team := ts.login("dbteam", "team password", "")
	var dmg []DamageInfo
	if code := ts.call(ops, "GET", APIPrefix+"/damage", nil, &dmg); code != 200 || len(dmg) != 0 {
		t.Errorf("damage: %d %+v", code, dmg)
	}
	if code := ts.call(team, "GET", APIPrefix+"/damage", nil, nil); code != http.StatusForbidden {
		t.Errorf("restore user reads damage: %d", code)
	}
	var conns []ConnectionInfo
	if ts.call(team, "GET", APIPrefix+"/connections", nil, &conns); len(conns) != 1 || conns[0].Name != "fake" {
		t.Errorf("connections of the restore user: %+v", conns)
	}
	var n NotificationsInfo
	if code := ts.call(ops, "GET", APIPrefix+"/notifications", nil, &n); code != 200 || len(n.Destinations) != 0 {
		t.Errorf("notifications: %d %+v", code, n)
	}
	jar := &cookieClient{ts: ts}
	var lr LoginResponse
	jar.do("POST", APIPrefix+"/login", LoginRequest{User: "admin", Password: "admin password"}, &lr)
	var who Whoami
	if jar.do("GET", APIPrefix+"/whoami", nil, &who); who.CSRF != lr.CSRF || who.CSRF == "" {
		t.Errorf("whoami of a session: csrf %q, login gave %q", who.CSRF, lr.CSRF)
	}
	if who = (Whoami{}); ts.call(ops, "GET", APIPrefix+"/whoami", nil, &who) != 200 || who.CSRF != "" {
		t.Errorf("whoami of a token shows a CSRF token")
	}
	var pv GroupPreview
	if code := jar.do("POST", APIPrefix+"/groups/preview", map[string]any{"name": "draft", "selectors": []string{"name:web-*"}}, &pv,
		csrfHeader, lr.CSRF); code != 200 || strings.Join(pv.VMs, ",") != "web-1,web-2" {
		t.Errorf("draft preview: %d %+v", code, pv)
	}
	if code := jar.do("POST", APIPrefix+"/groups/preview", map[string]any{"selectors": []string{"name:web-*"}}, nil); code != http.StatusForbidden {
		t.Errorf("draft preview without the CSRF header: %d", code)
	}
	if code := ts.call(team, "POST", APIPrefix+"/groups/preview", map[string]any{"selectors": []string{"any:"}}, nil); code != http.StatusForbidden {
		t.Errorf("restore user previews a draft group: %d", code)
	}
	resp, err := ts.client.Get(ts.url + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Contains(page, []byte(`src="/ui/js/app.js"`)) || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "script-src 'self'") {
		t.Errorf("console page: %s %v", page, resp.Header)
	}
	req, _ := http.NewRequest("GET", ts.url+"/ui/js/app.js", nil)
	if resp, err := ts.client.Get(ts.url + "/ui/js/app.js"); err != nil || resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/javascript") {
		t.Errorf("app.js: %v %v", resp, err)
	} else {
		req.Header.Set("If-None-Match", resp.Header.Get("ETag"))
		resp.Body.Close()
		if resp, err := ts.client.Do(req); err != nil || resp.StatusCode != http.StatusNotModified {
			t.Errorf("app.js revalidated: %v %v", resp, err)
		}
	}
	if resp, err := ts.client.Get(ts.url + "/ui/nope.js"); err != nil || resp.StatusCode != 404 {
		t.Errorf("a file the console does not have: %v %v", resp, err)
	}
}
