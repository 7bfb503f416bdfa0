package instant

import (
	"errors"
	"testing"
)

func TestParseProbe(t *testing.T) {
	sum := "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
	for _, c := range []struct {
		in   string
		want Probe
	}{
		{"agent", Probe{Kind: ProbeAgent}},
		{"exec:systemctl is-system-running", Probe{Kind: ProbeExec, Command: "systemctl is-system-running"}},
		{"exec[3]:test -e /x", Probe{Kind: ProbeExec, Command: "test -e /x", Exit: 3}},
		{"exec:cat /etc/hostname => web1", Probe{Kind: ProbeExec, Command: "cat /etc/hostname"}},
		{"file:/etc/app.conf=" + sum, Probe{Kind: ProbeFile, Path: "/etc/app.conf", SHA256: sum}},
		{"file:/a=b=" + sum, Probe{Kind: ProbeFile, Path: "/a=b", SHA256: sum}},
		{"tcp:443", Probe{Kind: ProbeTCP, Port: 443}},
	} {
		p, err := ParseProbe(c.in)
		if err != nil {
			t.Errorf("%q: %v", c.in, err)
			continue
		}
		if p.Kind != c.want.Kind || p.Command != c.want.Command || p.Exit != c.want.Exit || p.Path != c.want.Path ||
			p.SHA256 != c.want.SHA256 || p.Port != c.want.Port || p.Spec != c.in {
			t.Errorf("%q: %+v, want %+v", c.in, p, c.want)
		}
	}
	if p, _ := ParseProbe("exec:cat /etc/hostname => web1"); p.Output == nil || *p.Output != "web1" {
		t.Errorf("expected output not parsed: %+v", p)
	}
	for _, in := range []string{"", "ping", "exec:", "exec[x]:ls", "exec[300]:ls", "exec[1:ls", "file:/a", "file:a=" + sum,
		"file:/a=abc", "tcp:0", "tcp:70000", "tcp:http", "agent:x"} {
		if _, err := ParseProbe(in); !errors.Is(err, ErrBadProbe) {
			t.Errorf("%q: error %v, want ErrBadProbe", in, err)
		}
	}
}

func TestListensOn(t *testing.T) {
	table := []byte(`  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1234 1 0000000000000000 100 0 0 10 0
   1: 0100007F:0016 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 1235 1 0000000000000000 20 4 30 10 -1
`)
	if !listensOn(table, 8080) {
		t.Error("port 8080 listens")
	}
	if listensOn(table, 22) {
		t.Error("port 22 is an established connection, not a listener")
	}
	if listensOn(table, 443) || listensOn([]byte("garbage\n"), 80) {
		t.Error("nothing listens on 443")
	}
}
