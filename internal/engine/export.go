package engine

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/kurabackup/kura/internal/hypervisor/libvirt/domxml"
	"github.com/kurabackup/kura/internal/progress"
	"github.com/kurabackup/kura/internal/repo"
)

// ExportOptions control an export.
type ExportOptions struct {
	// OutDir receives the images and the domain XML.
	OutDir string
	// Disk limits the export to one disk target (empty = all).
	Disk string
	// Format of the images: qcow2, raw, or empty (as saved).
	Format string
	// Workers fetching and decoding chunks (default GOMAXPROCS).
	Workers int
	// ScratchDir holds qemu-nbd's sockets.
	ScratchDir string
}

// ExportReport is the outcome of an export.
type ExportReport struct {
	Point string        `json:"point"`
	VM    string        `json:"vm"`
	Disks []DiskRestore `json:"disks"`
	// XML is the path of the domain XML pointing at the exported images
	// (empty when the point has no configuration).
	XML     string   `json:"xml,omitempty"`
	Notes   []string `json:"notes,omitempty"`
	Seconds float64  `json:"seconds"`
}

// Export writes a point's disks as image files <vm>-<target>.<format> in
// opts.OutDir, plus <vm>.xml: the saved domain XML with the disks pointing
// at those files, so that `virsh define` on it gives back the VM (same name
// and UUID). Existing files are never overwritten. The images are written
// under partial names and the XML last.
func (e *Engine) Export(ctx context.Context, m *repo.Manifest, opts ExportOptions) (*ExportReport, error) {
	begun := time.Now()
	rep := &ExportReport{Point: m.ID, VM: m.VM.Name}
	m, release, err := e.lease(ctx, "export", m)
	if err != nil {
		return rep, err
	}
	defer release()
	out, err := filepath.Abs(opts.OutDir)
	if err != nil || opts.OutDir == "" {
		return rep, fmt.Errorf("export: need an output directory (--out)")
	}
	if opts.Disk != "" {
		if _, err := pointDisk(m, opts.Disk); err != nil {
			return rep, err
		}
	}
	format := func(d repo.DiskEntry) string {
		switch {
		case opts.Format != "":
			return opts.Format
		case d.Format == domxml.FormatRaw:
			return domxml.FormatRaw
		}
		return domxml.FormatQCOW2
	}
	if opts.Format != "" && opts.Format != domxml.FormatQCOW2 && opts.Format != domxml.FormatRaw {
		return rep, fmt.Errorf("export: format %q is not qcow2 or raw", opts.Format)
	}
	var plan *domxml.Plan
	if len(m.Config) > 0 && (m.ConfigFormat == "" || m.ConfigFormat == ConfigFormatLibvirt) {
		plan, err = exportPlan(m, out, opts.Format)
		if err != nil {
			return rep, err
		}
	} else {
		rep.Notes = append(rep.Notes, "the point holds no libvirt configuration: disks only")
	}
	var jobs []diskJob
	for _, d := range m.Disks {
		if opts.Disk != "" && d.Target != opts.Disk {
			continue
		}
		path := filepath.Join(out, m.VM.Name+"-"+d.Target+"."+format(d))
		if plan != nil {
			for i := range plan.Disks {
				if plan.Disks[i].Target == d.Target {
					path = plan.Disks[i].Path
				}
			}
		}
		if _, err := os.Lstat(path); err == nil {
			return rep, fmt.Errorf("%w: %s exists (export into an empty directory)", ErrConflict, path)
		}
		jobs = append(jobs, diskJob{entry: d, path: path, format: format(d)})
	}
	if plan != nil {
		for i := range plan.Disks {
			if opts.Disk != "" && plan.Disks[i].Target != opts.Disk {
				plan.Disks[i].Skip = true
			}
			if plan.Disks[i].Skip {
				rep.Notes = append(rep.Notes, fmt.Sprintf("disk %s left out of %s.xml", plan.Disks[i].Target, m.VM.Name))
			}
		}
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return rep, err
	}
	e.emit(progress.Event{Kind: progress.VMStart, VM: m.VM.Name})
	pending, err := e.writeDisks(ctx, "", m.VM.Name, jobs, opts.ScratchDir, opts.Workers)
	if err != nil {
		return rep, err
	}
	if err := ctx.Err(); err != nil {
		pending.abort(context.WithoutCancel(ctx))
		return rep, err
	}
	if err := pending.commit(ctx); err != nil {
		return rep, err
	}
	rep.Disks = pending.results
	if plan != nil {
		xml, notes, err := domxml.ApplyNotes(m.Config, plan)
		if err != nil {
			return rep, err
		}
		rep.Notes = append(rep.Notes, notes...)
		rep.XML = filepath.Join(out, m.VM.Name+".xml")
		if err := writeFileAtomic(rep.XML, xml); err != nil {
			return rep, err
		}
	}
	rep.Seconds = time.Since(begun).Seconds()
	e.emit(progress.Event{Kind: progress.VMDone, VM: m.VM.Name, Data: map[string]any{"point": m.ID}})
	return rep, nil
}

// exportPlan plans the saved VM as is (name, UUID, MAC addresses) with its
// disks in dir.
func exportPlan(m *repo.Manifest, dir, format string) (*domxml.Plan, error) {
	sizes := map[string]int64{}
	for _, d := range m.Disks {
		sizes[d.Target] = d.Size
	}
	// Plan "beside" the original to get paths in dir, then keep the
	// identity: the result is the original VM with its disks moved.
	p, err := domxml.DefaultPlan(m.Config, domxml.Options{PointID: m.ID, NewName: m.VM.Name + "-export", StorageDir: dir,
		Format: format, DiskSizes: sizes})
	if err != nil {
		return nil, err
	}
	p.KeepMACs, p.NVRAM = true, ""
	for i := range p.Networks {
		p.Networks[i].MAC = ""
	}
	for i := range p.Disks {
		d := &p.Disks[i]
		d.Path = filepath.Join(dir, m.VM.Name+"-"+d.Target+"."+d.Format)
		if _, ok := sizes[d.Target]; !ok {
			d.Skip = true
		}
	}
	setIdentity(p, m)
	return p, nil
}

// setIdentity gives the plan the saved VM's name and UUID (read from the
// saved XML, which is the authority).
func setIdentity(p *domxml.Plan, m *repo.Manifest) {
	if in, err := domxml.DefaultPlan(m.Config, domxml.Options{PointID: m.ID, InPlace: true}); err == nil {
		p.Name, p.UUID = in.Name, in.UUID
		return
	}
	// In-place planning fails for disks without a local path; the identity
	// is still the manifest's.
	p.Name, p.UUID = m.VM.Name, m.VM.UUID
}

func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".kura-partial"
	if err := os.WriteFile(tmp, data, 0o600); err != nil { // VM configuration is private too
		return err
	}
	f, err := os.Open(tmp)
	if err == nil {
		err = f.Sync()
		f.Close()
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
