package libvirt

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"

	"github.com/kurabackup/kura/internal/hypervisor"
	"github.com/kurabackup/kura/internal/nbd"
)

// beginOnline starts a pull-mode backup job of a running or paused VM.
func (c *Connector) beginOnline(ctx context.Context, d golibvirt.Domain, vm hypervisor.VM, disks []hypervisor.Disk, opts hypervisor.BackupOptions) (_ *session, err error) {
	s := &session{c: c, dom: d, online: true, owner: opts.Owner}
	// A second job would wait ~30 s for libvirt's job lock: fail fast.
	if typ, _, _, _, _, _, _, _, _, _, _, _, err := c.lv.DomainGetJobInfo(d); err == nil && golibvirt.DomainJobType(typ) != golibvirt.DomainJobNone {
		return nil, fmt.Errorf("backup of %s: %w (job type %d active)", vm.Name, hypervisor.ErrBusy, typ)
	}
	if _, err := c.lv.DomainCheckpointLookupByName(d, opts.NewCheckpoint, 0); err == nil {
		return nil, fmt.Errorf("backup of %s: checkpoint %s: %w", vm.Name, opts.NewCheckpoint, hypervisor.ErrExists)
	}
	if opts.BaseCheckpoint != "" {
		if _, err := c.lv.DomainCheckpointLookupByName(d, opts.BaseCheckpoint, 0); err != nil {
			return nil, mapErr(fmt.Sprintf("base checkpoint %s of %s", opts.BaseCheckpoint, vm.Name), err)
		}
	}
	if s.config, err = c.configXML(d); err != nil {
		return nil, err
	}
	x, _, err := c.domainXML(d, 0)
	if err != nil {
		return nil, err
	}
	if s.dir, err = c.sessionDir(vm.UUID, opts.NewCheckpoint); err != nil {
		return nil, err
	}
	sock := filepath.Join(s.dir, "nbd.sock")
	backupXML, cpXML := c.jobXML(x, disks, opts, s.dir, sock)
	if cpXML != "" {
		s.checkpoint = opts.NewCheckpoint
	}
	began := false
	defer func() {
		if err != nil {
			if !began {
				s.checkpoint = "" // nothing was created
			}
			_ = s.Close(ctx, false)
		}
	}()
	if err := c.quiesceAndBegin(ctx, d, vm, s, opts.Consistency, backupXML, cpXML); err != nil {
		return nil, err
	}
	began = true

	exports, err := c.backupExports(d)
	if err != nil {
		return nil, err
	}
	for _, dk := range disks {
		ex, ok := exports[dk.Target]
		if !ok {
			return nil, fmt.Errorf("backup of %s: libvirt exports no disk %s", vm.Name, dk.Target)
		}
		incr := opts.BaseCheckpoint != "" && ex.Bitmap != ""
		sd, cl, err := c.openExport(ctx, dk, sock, ex.Name, "qemu:dirty-bitmap:"+ex.Bitmap, incr)
		if cl != nil {
			s.clients = append(s.clients, cl)
		}
		if err != nil {
			return nil, fmt.Errorf("backup of %s disk %s: %w", vm.Name, dk.Target, err)
		}
		if opts.BaseCheckpoint != "" && !incr {
			s.notes = append(s.notes, fmt.Sprintf("disk %s (%s) has no change tracking: read in full", dk.Target, dk.Format))
		}
		s.disks = append(s.disks, sd)
	}
	return s, nil
}

// jobXML builds the backup and checkpoint XML documents. Only qcow2 disks
// get a bitmap; raw disks are exported in full.
func (c *Connector) jobXML(x *libvirtxml.Domain, disks []hypervisor.Disk, opts hypervisor.BackupOptions, dir, sock string) (backup, checkpoint string) {
	esc := func(s string) string {
		var b strings.Builder
		_ = xml.EscapeText(&b, []byte(s))
		return b.String()
	}
	var bx, cx strings.Builder
	bx.WriteString("<domainbackup mode='pull'>")
	if opts.BaseCheckpoint != "" {
		fmt.Fprintf(&bx, "<incremental>%s</incremental>", esc(opts.BaseCheckpoint))
	}
	fmt.Fprintf(&bx, "<server transport='unix' socket='%s'/><disks>", esc(sock))
	fmt.Fprintf(&cx, "<domaincheckpoint><name>%s</name><disks>", esc(opts.NewCheckpoint))
	bitmaps := 0
	for _, xd := range x.Devices.Disks {
		if xd.Target == nil || xd.Target.Dev == "" {
			continue
		}
		t := xd.Target.Dev
		i := -1
		for j, dk := range disks {
			if dk.Target == t {
				i = j
			}
		}
		if i < 0 {
			fmt.Fprintf(&bx, "<disk name='%s' backup='no'/>", esc(t))
			if xd.Device == "" || xd.Device == "disk" {
				fmt.Fprintf(&cx, "<disk name='%s' checkpoint='no'/>", esc(t))
			}
			continue
		}
		mode := ""
		if disks[i].Format == "qcow2" {
			fmt.Fprintf(&cx, "<disk name='%s' checkpoint='bitmap'/>", esc(t))
			bitmaps++
		} else {
			fmt.Fprintf(&cx, "<disk name='%s' checkpoint='no'/>", esc(t))
			if opts.BaseCheckpoint != "" {
				mode = " backupmode='full'"
			}
		}
		fmt.Fprintf(&bx, "<disk name='%s' backup='yes' type='file'%s><scratch file='%s'/></disk>",
			esc(t), mode, esc(filepath.Join(dir, t+".scratch")))
	}
	bx.WriteString("</disks></domainbackup>")
	cx.WriteString("</disks></domaincheckpoint>")
	if bitmaps == 0 {
		return bx.String(), ""
	}
	return bx.String(), cx.String()
}

// quiesceAndBegin applies the consistency mode around DomainBackupBegin
// (whose checkpoint is atomic with the point in time), and records the
// level reached. Filesystems are thawed and the VM resumed whatever
// happens.
func (c *Connector) quiesceAndBegin(ctx context.Context, d golibvirt.Domain, vm hypervisor.VM, s *session, mode hypervisor.ConsistencyMode, backupXML, cpXML string) error {
	begin := func() error {
		var cp golibvirt.OptString
		if cpXML != "" {
			cp = golibvirt.OptString{cpXML}
		}
		if err := c.lv.DomainBackupBegin(d, backupXML, cp, 0); err != nil {
			return mapErr("begin backup of "+vm.Name, err)
		}
		return nil
	}
	s.consistency = hypervisor.ConsistencyCrash
	quiesce := mode != hypervisor.ModeCrash && mode != hypervisor.ModePause && vm.State != hypervisor.PowerPaused && vm.HasAgent
	done, err := markPending(s.dir, pendingCall{Call: "backup begin", Quiesce: quiesce,
		Pause: mode == hypervisor.ModePause && vm.State != hypervisor.PowerPaused})
	if err != nil {
		return err
	}
	defer done()
	switch mode {
	case hypervisor.ModeCrash:
		return begin()
	case hypervisor.ModePause:
		if vm.State == hypervisor.PowerPaused {
			s.consistency = hypervisor.ConsistencyPause
			return begin()
		}
		if err := c.lv.DomainSuspend(d); err != nil {
			return mapErr("pause "+vm.Name, err)
		}
		berr := begin()
		if err := c.lv.DomainResume(d); err != nil {
			c.log.Error("resume after backup begin failed", "vm", vm.Name, "err", err)
			if berr == nil {
				return mapErr("resume "+vm.Name, err)
			}
		}
		if berr == nil {
			s.consistency = hypervisor.ConsistencyPause
		}
		return berr
	}
	// ModeAuto, ModeApplication (and an empty mode, treated as auto).
	why := ""
	switch {
	case vm.State == hypervisor.PowerPaused:
		why = "vm is paused"
	case !vm.HasAgent:
		why = "guest agent channel not connected"
	default:
		if err := c.agentCallFor(ctx, "fsfreeze "+vm.Name, freezeTimeout, func(lv *golibvirt.Libvirt) error {
			_, err := lv.DomainFsfreeze(d, nil, 0)
			return err
		}); err != nil {
			why = "fsfreeze failed: " + err.Error()
			if errors.Is(err, context.DeadlineExceeded) {
				// The freeze may still be carried out: undo it.
				if _, terr := c.thaw(ctx, d, vm); terr != nil {
					return fmt.Errorf("backup of %s: %w; its filesystems may be left frozen: %w (virsh domfsthaw %s)", vm.Name, err, terr, vm.Name)
				}
			}
		}
	}
	if why != "" {
		if mode == hypervisor.ModeApplication {
			return fmt.Errorf("application-consistent backup of %s: %w (%s)", vm.Name, hypervisor.ErrNoAgent, why)
		}
		s.notes = append(s.notes, "not quiesced ("+why+"): crash-consistent")
		return begin()
	}
	berr := begin()
	if _, err := c.thaw(ctx, d, vm); err != nil {
		c.log.Error("fsthaw after backup begin failed", "vm", vm.Name, "err", err)
		s.notes = append(s.notes, "fsthaw failed: "+err.Error())
	}
	if berr == nil {
		s.consistency = hypervisor.ConsistencyApplication
	}
	return berr
}

// freezeTimeout bounds a filesystem freeze: the guest flushes its dirty
// data first, which may take a while, but a guest that does not answer
// must not hold the backup (and libvirt's connection) forever. A variable
// for tests.
var freezeTimeout = time.Minute

// thaw thaws the guest's filesystems, bounded like every agent call, and
// returns how many it thawed.
func (c *Connector) thaw(ctx context.Context, d golibvirt.Domain, vm hypervisor.VM) (n int32, err error) {
	err = c.agentCall(ctx, "fsthaw "+vm.Name, func(lv *golibvirt.Libvirt) error {
		n, err = lv.DomainFsthaw(d, nil, 0)
		return err
	})
	return n, err
}

type exportInfo struct{ Name, Bitmap string }

// backupExports reads the running job's XML for each disk's NBD export
// and dirty-bitmap names.
func (c *Connector) backupExports(d golibvirt.Domain) (map[string]exportInfo, error) {
	raw, err := c.lv.DomainBackupGetXMLDesc(d, 0)
	if err != nil {
		return nil, mapErr("backup xml of "+d.Name, err)
	}
	var doc struct {
		Disks []struct {
			Name   string `xml:"name,attr"`
			Backup string `xml:"backup,attr"`
			Export string `xml:"exportname,attr"`
			Bitmap string `xml:"exportbitmap,attr"`
		} `xml:"disks>disk"`
	}
	if err := xml.Unmarshal([]byte(raw), &doc); err != nil {
		return nil, fmt.Errorf("parse backup xml of %s: %w", d.Name, err)
	}
	out := map[string]exportInfo{}
	for _, dk := range doc.Disks {
		if dk.Backup == "no" {
			continue
		}
		if dk.Export == "" {
			dk.Export = dk.Name
		}
		out[dk.Name] = exportInfo{Name: dk.Export, Bitmap: dk.Bitmap}
	}
	return out, nil
}

// openExport connects to one NBD export and computes its extent map.
func (c *Connector) openExport(ctx context.Context, dk hypervisor.Disk, sock, export, bitmapCtx string, incremental bool) (hypervisor.SessionDisk, io.Closer, error) {
	metas := []string{"base:allocation"}
	if incremental {
		metas = append(metas, bitmapCtx)
	}
	cl, err := nbd.Dial(ctx, "unix", sock, nbd.Options{Export: export, MetaContexts: metas, Logger: c.log, MaxInFlight: 32})
	if err != nil {
		return hypervisor.SessionDisk{}, nil, fmt.Errorf("connect to nbd export %s: %w", export, err)
	}
	dk.Size = cl.Size()
	alloc, err := cl.Map(ctx, "base:allocation")
	if err != nil {
		return hypervisor.SessionDisk{}, cl, fmt.Errorf("allocation map: %w", err)
	}
	var dirty []nbd.Extent
	if incremental {
		if dirty, err = cl.Map(ctx, bitmapCtx); err != nil {
			return hypervisor.SessionDisk{}, cl, fmt.Errorf("dirty bitmap map: %w", err)
		}
	}
	ext, err := buildExtents(dk.Size, alloc, dirty, incremental)
	if err != nil {
		return hypervisor.SessionDisk{}, cl, err
	}
	// QEMU's backup exports and read-only qemu-nbd allow several
	// connections (multi-conn): reads spread over them go about 1.5-2x
	// faster than through one (docs/benchmarks.md).
	m := nbd.DialMore(ctx, cl, "unix", sock, nbd.Options{Export: export, Logger: c.log, MaxInFlight: 32}, c.nbdConns())
	return hypervisor.SessionDisk{Disk: dk, Reader: m, Extents: ext, Incremental: incremental}, m, nil
}

// nbdConns is how many connections read each disk (NBDConnections).
func (c *Connector) nbdConns() int {
	if c.NBDConnections > 0 {
		return c.NBDConnections
	}
	return DefaultNBDConnections
}
