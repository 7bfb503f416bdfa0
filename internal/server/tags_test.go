package server

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/kurabackup/kura/internal/config"
)

// TestTagsSelectGroups: a tag set through the API is kept on the VM, shown
// with it, and puts the VM in a group selecting tag:GLOB at once; only
// admins tag, invalid tags are refused.
func TestTagsSelectGroups(t *testing.T) {
	ts := startServerWith(t, nil, func(cfg string) string {
		return strings.Replace(cfg, "users:", `  - name: tagged
    selectors: ["tag:backup/*"]
    retries: 0
users:`, 1)
	})
	admin := ts.login("admin", "admin password", "")
	ops := ts.login("admin", "admin password", config.RoleOperator)
	db := fakeUUID("db-1")
	var st VMStatus
	if code := ts.call(admin, "PUT", APIPrefix+"/vms/"+db+"/tags", TagsRequest{Tags: []string{"backup/daily", "team-db"}}, &st); code != http.StatusOK {
		t.Fatalf("PUT tags: %d", code)
	}
	if !slices.Equal(st.Tags, []string{"backup/daily", "team-db"}) || !slices.Contains(st.Groups, "tagged") || !slices.Contains(st.Groups, "db") {
		t.Fatalf("after tagging: %+v", st)
	}
	vm, err := ts.hv.LookupVM(t.Context(), db)
	if err != nil || !slices.Equal(vm.Attributes["tag"], st.Tags) {
		t.Fatalf("tags on the hypervisor: %v %v", vm.Attributes, err)
	}
	var pv GroupPreview
	if code := ts.call(admin, "GET", APIPrefix+"/groups/tagged/preview", nil, &pv); code != http.StatusOK || !slices.Equal(pv.VMs, []string{"db-1"}) {
		t.Fatalf("preview of the tag group: %d %+v", code, pv)
	}
	if code := ts.call(ops, "PUT", APIPrefix+"/vms/"+db+"/tags", TagsRequest{}, nil); code != http.StatusForbidden {
		t.Fatalf("operator tagging: %d, want 403", code)
	}
	if code := ts.call(admin, "PUT", APIPrefix+"/vms/"+db+"/tags", TagsRequest{Tags: []string{"two words"}}, nil); code != http.StatusBadRequest {
		t.Fatalf("bad tag: %d, want 400", code)
	}
	if code := ts.call(admin, "PUT", APIPrefix+"/vms/"+fakeUUID("nope")+"/tags", TagsRequest{}, nil); code != http.StatusNotFound {
		t.Fatalf("unknown vm: %d, want 404", code)
	}
	var cleared VMStatus
	if code := ts.call(admin, "PUT", APIPrefix+"/vms/"+db+"/tags", TagsRequest{}, &cleared); code != http.StatusOK || len(cleared.Tags) != 0 || slices.Contains(cleared.Groups, "tagged") {
		t.Fatalf("after removing the tags: %d %+v", code, cleared)
	}
}
