package cli

import (
	"os"
	"strings"
	"testing"
)

// An unknown scheme is refused with the known ones, and nothing is created
// (it used to make a local directory named "s3x:http:").
func TestUnknownLocationSchemeRefused(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	for _, loc := range []string{"s3x:http://host/bucket", "sftp:host:/srv", "ftp://host/x"} {
		env := map[string]string{"KURA_REPO": loc, "KURA_PASSWORD": "pw", "KURA_CATALOG": dir + "/c.db"}
		for _, args := range [][]string{{"repo", "init"}, {"points", "list"}} {
			code, _, errs := run(t, env, args...)
			if code != ExitUsage || !strings.Contains(errs, "unknown repository location scheme") ||
				!strings.Contains(errs, "local:") || !strings.Contains(errs, "s3:") {
				t.Errorf("%s %v: exit %d, stderr %q", loc, args, code, errs)
			}
		}
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.Name() != "c.db" {
			t.Errorf("left %s in the working directory", e.Name())
		}
	}
}
