package server

import (
	"slices"

	"github.com/kurabackup/kura/internal/auth"
	"github.com/kurabackup/kura/internal/service"
)

// TagsRequest replaces a VM's kura tags.
type TagsRequest struct {
	Tags []string `json:"tags"`
}

// putTags sets a VM's tags on its hypervisor. Tags decide which groups
// protect a VM, so changing them is configuring (admins), audited; the
// inventory is refreshed at once so that the VM's groups show the change.
func (s *Server) putTags(rc *reqCtx) (any, error) {
	if err := rc.p.Check(auth.Configure, ""); err != nil {
		return nil, err
	}
	var req TagsRequest
	if err := rc.decode(&req); err != nil {
		return nil, err
	}
	uuid := rc.r.PathValue("uuid")
	cfg, _ := s.config()
	vms, _ := s.membership(cfg)
	i := slices.IndexFunc(vms, func(v invVM) bool { return v.UUID == uuid })
	if i < 0 {
		return nil, notFound("no vm %s on the configured connections", uuid)
	}
	cn, ok := cfg.Connection(vms[i].Connection)
	if !ok {
		return nil, notFound("connection %s of vm %s is no longer configured", vms[i].Connection, uuid)
	}
	conn, err := s.opts.Connect(rc.ctx, cn, s.log)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	svc := &service.Service{Conn: conn, Logger: s.log}
	vm, err := svc.TagVM(rc.ctx, uuid, service.TagEdit{Clear: true, Add: req.Tags})
	if err != nil {
		s.audit(rc, "failed", "tag", vms[i].Name, err)
		return nil, err
	}
	s.audit(rc, "ok", "tag", vm.Name, req)
	s.refreshInventory(rc.ctx)
	sts, err := s.statuses(rc.ctx)
	if err != nil {
		return nil, err
	}
	for _, st := range sts {
		if st.UUID == uuid {
			return st, nil
		}
	}
	return nil, notFound("vm %s vanished", uuid)
}
