package engine

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/kurabackup/kura/internal/hypervisor"
	"github.com/kurabackup/kura/internal/progress"
	"github.com/kurabackup/kura/internal/repo"
)

// ExportOptions control an export.
type ExportOptions struct {
	// OutDir receives the images and the configuration file.
	OutDir string
	// Disk limits the export to one disk target (empty = all).
	Disk string
	// Format of the images: qcow2, raw, vmdk, or empty (the point's
	// configuration format decides: as saved for libvirt, vmdk for
	// vSphere).
	Format string
	// Workers fetching and decoding chunks (default GOMAXPROCS).
	Workers int
	// ScratchDir holds qemu-nbd's sockets.
	ScratchDir string
}

// ExportFormats are the image formats an export writes.
var ExportFormats = []string{"qcow2", "raw", "vmdk"}

// ExportReport is the outcome of an export.
type ExportReport struct {
	Point string        `json:"point"`
	VM    string        `json:"vm"`
	Disks []DiskRestore `json:"disks"`
	// ConfigFile is the path of the configuration written beside the
	// images (domain XML, .vmx) pointing at them; empty when the point has
	// no configuration kura can render for files.
	ConfigFile string `json:"config_file,omitempty"`
	// Hint says how to use it ("virsh define web.xml").
	Hint    string   `json:"hint,omitempty"`
	Notes   []string `json:"notes,omitempty"`
	Seconds float64  `json:"seconds"`
}

// Export writes a point's disks as image files <vm>-<target>.<format> in
// opts.OutDir, plus the saved configuration rendered for those files by
// the point's configuration format (<vm>.xml for libvirt, <vm>.vmx for
// vSphere: same identity, disks pointing at the files), so the hypervisor
// gives back the VM from them. It needs no connection. Existing files are
// never overwritten. The images are written under partial names and the
// configuration last.
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
	if opts.Format != "" && !slices.Contains(ExportFormats, opts.Format) {
		return rep, fmt.Errorf("export: format %q is not one of %s", opts.Format, strings.Join(ExportFormats, ", "))
	}
	src := restoreSource(m)
	cf, _, known := hypervisor.LookupFormat(src.ConfigFormat)
	format := func(d repo.DiskEntry) string {
		switch {
		case opts.Format != "":
			return opts.Format
		case known && cf.ImageFormat != nil:
			return cf.ImageFormat(d.Format)
		case slices.Contains(ExportFormats, d.Format):
			return d.Format
		}
		return "qcow2"
	}
	var jobs []diskJob
	var exported []hypervisor.ExportedDisk
	for _, d := range m.Disks {
		if opts.Disk != "" && d.Target != opts.Disk {
			continue
		}
		f := format(d)
		path := filepath.Join(out, exportName(m.VM.Name, d.Target)+"."+f)
		if _, err := os.Lstat(path); err == nil {
			return rep, fmt.Errorf("%w: %s exists (export into an empty directory)", ErrConflict, path)
		}
		jobs = append(jobs, diskJob{entry: d, path: path, format: f})
		exported = append(exported, hypervisor.ExportedDisk{Target: d.Target, Path: path, Format: f, Size: d.Size})
	}
	render := len(src.Config) > 0 && known && cf.ExportConfig != nil
	for _, d := range exported {
		if render && !slices.Contains(cf.ImageFormats, d.Format) {
			render = false
			rep.Notes = append(rep.Notes, fmt.Sprintf("no %s configuration written: it cannot refer to %s images (use --format %s)",
				src.ConfigFormat, d.Format, strings.Join(cf.ImageFormats, " or ")))
		}
	}
	if !render && (len(src.Config) == 0 || !known) {
		rep.Notes = append(rep.Notes, fmt.Sprintf("the point holds no configuration kura can write for files (format %q): disks only", src.ConfigFormat))
	}
	var cfg hypervisor.ExportedConfig
	if render {
		// Rendered first: a configuration kura cannot render fails the
		// export before anything is written.
		if cfg, err = cf.ExportConfig(src, exported); err != nil {
			return rep, err
		}
		rep.ConfigFile, rep.Hint = filepath.Join(out, cfg.File), cfg.Hint
		if _, err := os.Lstat(rep.ConfigFile); err == nil {
			return rep, fmt.Errorf("%w: %s exists (export into an empty directory)", ErrConflict, rep.ConfigFile)
		}
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return rep, err
	}
	e.emit(progress.Event{Kind: progress.VMStart, VM: m.VM.Name})
	pending, err := e.writeDisks(ctx, "", m.VM.Name, jobs, opts.ScratchDir, opts.Workers, localImage(e.log()))
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
	if render {
		rep.Notes = append(rep.Notes, cfg.Notes...)
		if err := writeFileAtomic(rep.ConfigFile, cfg.Data); err != nil {
			return rep, err
		}
	}
	rep.Seconds = time.Since(begun).Seconds()
	e.emit(progress.Event{Kind: progress.VMDone, VM: m.VM.Name, Data: map[string]any{"point": m.ID}})
	return rep, nil
}

// exportName is an exported disk's file name without extension. Targets
// such as scsi0:1 hold characters unwelcome in file names.
func exportName(vm, target string) string {
	return vm + "-" + strings.NewReplacer(":", "_", "/", "_").Replace(target)
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
