package internal_test

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

// layer ranks kura's packages; a package may import only packages of a lower
// or equal rank (equal only within the same layer group listed in allowSame).
// See docs/design/architecture.md.
var layers = []struct {
	prefix string
	rank   int
}{
	{"internal/phase", 0},
	{"internal/procinfo", 0},
	{"internal/storage", 1},
	{"internal/crypto", 2},
	{"internal/lock", 2},
	{"internal/retention", 2},
	{"internal/repo", 2},
	{"internal/catalog", 2},
	{"internal/nbd", 3},
	{"internal/hypervisor", 3},
	{"internal/diskwrite", 3},
	{"internal/vmdk", 3},
	{"internal/fsread", 3},
	{"internal/extract", 3},
	{"internal/testenv", 3},
	{"internal/throttle", 3},
	{"internal/progress", 4},
	{"internal/engine", 4},
	{"internal/instant", 4},
	{"internal/benchmark", 4},
	{"internal/service", 5},
	{"internal/notify", 5},
	{"internal/schedule", 5},
	{"internal/config", 5},
	{"internal/auth", 5},
	{"internal/server", 6},
	{"internal/console", 6},
	{"internal/cli", 7},
	{"cmd/kura", 8},
	{"internal/e2e", 8},
}

// forbidden lists imports that would couple siblings of one layer.
var forbidden = map[string][]string{
	"internal/repo":       {"internal/hypervisor", "internal/catalog", "internal/nbd"},
	"internal/catalog":    {"internal/repo", "internal/hypervisor"},
	"internal/hypervisor": {"internal/repo", "internal/catalog", "internal/fsread"},
	"internal/fsread":     {"internal/repo", "internal/hypervisor", "internal/extract"},
	"internal/extract":    {"internal/repo", "internal/hypervisor", "internal/catalog", "internal/nbd"},
	"internal/nbd":        {"internal/hypervisor", "internal/repo"},
	"internal/progress":   {"internal/engine", "internal/repo"},
	"internal/notify":     {"internal/engine", "internal/service", "internal/config", "internal/auth", "internal/cli", "internal/server", "internal/repo", "internal/catalog", "internal/hypervisor"},
	// The engine knows connectors only through package hypervisor's
	// interfaces and registry; the CLI picks them by URI scheme.
	"internal/engine": {"internal/hypervisor/libvirt", "internal/hypervisor/vsphere", "internal/hypervisor/connectors"},
	"internal/cli":    {"internal/hypervisor/libvirt", "internal/hypervisor/vsphere"},
}

// testOnly lists packages that only tests may import.
var testOnly = []string{"internal/testenv", "internal/hypervisor/vsphere/vcsim"}

const module = "github.com/kurabackup/kura/"

func rankOf(pkg string) (string, int) {
	best, rank := "", -1
	for _, l := range layers {
		if (pkg == l.prefix || strings.HasPrefix(pkg, l.prefix+"/")) && len(l.prefix) > len(best) {
			best, rank = l.prefix, l.rank
		}
	}
	return best, rank
}

func TestLayering(t *testing.T) {
	out, err := exec.Command("go", "list", "-json", "github.com/kurabackup/kura/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	checked := 0
	for dec.More() {
		var p struct {
			ImportPath string
			Imports    []string
		}
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkg := strings.TrimPrefix(p.ImportPath, module)
		layer, rank := rankOf(pkg)
		if rank < 0 {
			if pkg != "internal" {
				t.Errorf("package %s has no layer: add it to arch_test.go and docs/design/architecture.md", pkg)
			}
			continue
		}
		checked++
		for _, imp := range p.Imports {
			if !strings.HasPrefix(imp, module) {
				continue
			}
			dep := strings.TrimPrefix(imp, module)
			_, drank := rankOf(dep)
			if drank > rank {
				t.Errorf("%s (layer %d) imports %s (layer %d): lower layers must not import higher ones", pkg, rank, dep, drank)
			}
			for _, only := range testOnly {
				if (dep == only || strings.HasPrefix(dep, only+"/")) && !strings.HasPrefix(pkg, only) {
					t.Errorf("%s imports %s outside tests", pkg, dep)
				}
			}
			for _, f := range forbidden[layer] {
				if dep == f || strings.HasPrefix(dep, f+"/") {
					t.Errorf("%s must not import %s", pkg, dep)
				}
			}
		}
	}
	if checked < 5 {
		t.Fatalf("only %d packages checked", checked)
	}
}
