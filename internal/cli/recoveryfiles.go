package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/kurabackup/kura/internal/engine"
	"github.com/kurabackup/kura/internal/extract"
	"github.com/kurabackup/kura/internal/fsread"
	"github.com/kurabackup/kura/internal/progress"
)

type filesFlags struct {
	disk   string
	volume string
}

func (f *filesFlags) bind(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.disk, "disk", "", "disk target (default: the point's first disk)")
	cmd.Flags().StringVar(&f.volume, "volume", "", "partition number or LVM volume vg/lv (default: the first readable filesystem; see kura files volumes)")
}

func (a *App) filesCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "files",
		Short: "Browse and extract single files of a recovery point (ext2/3/4, XFS, NTFS; no mount, no root)",
		Long: `Read guest filesystems straight from the repository, without mounting, root or
a helper VM. Partition tables MBR and GPT, unpartitioned disks and LVM linear
logical volumes; filesystems ext2/3/4, XFS and NTFS. A filesystem kura cannot
read is named as such: export the disk instead (kura export POINT --disk
TARGET --out DIR).

Names are shown exactly: printable characters as they are, a backslash as \\,
and every byte of anything else (invalid UTF-8, control characters) as \xHH.
Paths given to kura are read the same way, so a name shown can be pasted back.
NTFS alternate data streams are listed and read as FILE:STREAM.`,
	}
	cmd.AddCommand(a.filesVolumesCommand(), a.filesLsCommand(), a.filesGetCommand(), a.filesFindCommand())
	return cmd
}

// openFiles opens the point's filesystem named by the flags.
func (a *App) openFiles(ctx context.Context, point string, f filesFlags) (*engine.FileBrowser, error) {
	r, m, err := a.loadPoint(ctx, point)
	if err != nil {
		return nil, err
	}
	b, err := engine.OpenFilesVolume(ctx, r, m, f.disk, f.volume)
	if err != nil {
		return nil, err
	}
	a.onClose(func() { _ = b.Close() })
	return b, nil
}

func (a *App) filesVolumesCommand() *cobra.Command {
	var disk string
	cmd := &cobra.Command{
		Use:   "volumes POINT",
		Short: "List the partitions and LVM volumes of a disk and their filesystems",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			r, m, err := a.loadPoint(ctx, args[0])
			if err != nil {
				return err
			}
			vols, err := engine.VolumesOf(ctx, r, m, disk)
			if err != nil {
				return err
			}
			if a.jsonOut {
				return a.printJSON(vols)
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "VOLUME\tSCHEME\tOFFSET\tSIZE\tFS\tLABEL")
			for _, v := range vols {
				fs := v.FS
				switch {
				case v.Note != "":
					fs = "(not readable: " + v.Note + ")"
				case fs == "lvm2":
					fs = "lvm2 (physical volume: open its logical volumes)"
				case fs == "":
					fs = "(not readable: export the disk)"
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\n", v.Name(), v.Scheme, v.Offset, fmtBytes(v.Size), fs, v.Label)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&disk, "disk", "", "disk target (default: the point's first disk)")
	return cmd
}

func (a *App) filesLsCommand() *cobra.Command {
	var f filesFlags
	var recursive bool
	cmd := &cobra.Command{
		Use:   "ls POINT [PATH]",
		Short: "List a directory (mode, type, owner, size, mtime, name)",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			p := "/"
			if len(args) == 2 {
				p = path.Clean("/" + fsread.Unescape(args[1]))
			}
			b, err := a.openFiles(ctx, args[0], f)
			if err != nil {
				return err
			}
			var entries []fsread.Entry
			if recursive {
				err = b.Walk(ctx, p, func(e fsread.Entry) error { entries = append(entries, e); return nil })
			} else {
				var e fsread.Entry
				if e, err = b.FS.Stat(ctx, p); err == nil && e.Type == fsread.TypeDir {
					entries, err = b.FS.List(ctx, e)
				} else if err == nil {
					entries = []fsread.Entry{e}
				}
			}
			if err != nil {
				return fmt.Errorf("%s: %w", fsread.Escape(p), err)
			}
			if entries == nil {
				entries = []fsread.Entry{}
			}
			if a.jsonOut {
				return a.printJSON(entries)
			}
			printEntries(a, entries, recursive)
			return nil
		},
	}
	f.bind(cmd)
	cmd.Flags().BoolVarP(&recursive, "recursive", "R", false, "list everything below PATH")
	return cmd
}

func printEntries(a *App, entries []fsread.Entry, full bool) {
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 1, ' ', 0)
	for _, e := range entries {
		name := fsread.EscapeName(e.Name)
		if full {
			name = fsread.Escape(e.Path)
		}
		if e.Type == fsread.TypeSymlink {
			name += " -> " + fsread.Escape(e.Target)
		}
		size := strconv.FormatInt(e.Size, 10)
		if e.Type == fsread.TypeCharDev || e.Type == fsread.TypeBlockDev {
			size = fmt.Sprintf("%d,%d", e.Major, e.Minor)
		}
		owner := fmt.Sprintf("%d:%d", e.UID, e.GID)
		if e.NoOwner {
			owner = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", e.Mode.String(), e.Type, owner, size,
			e.ModTime.Local().Format("2006-01-02 15:04:05"), name)
	}
	_ = tw.Flush()
}

type getFlags struct {
	out, archive                   string
	noHardlinks, noXattrs, noOwner bool
	mapUID, mapGID                 []string
}

func (a *App) filesGetCommand() *cobra.Command {
	var f filesFlags
	var g getFlags
	cmd := &cobra.Command{
		Use:   "get POINT PATH... (--out DIR | --archive tar|zip [--out FILE|-])",
		Short: "Extract files and folders into a directory, or as a tar or zip archive",
		Long: `Extract files and whole folders, keeping what the filesystem keeps: contents
with their holes (sparse files stay sparse), hard links, symlinks, FIFOs,
sockets and device nodes (device nodes need root), modes, owners (when run as
root; --map-uid/--map-gid change numeric ids), access and modification times
to the precision the filesystem has (symlinks too; directories' after their
contents), extended attributes and POSIX ACLs, NTFS streams as user.* xattrs.
Nothing is written outside DIR and nothing is overwritten. "get POINT /"
extracts the whole filesystem into DIR itself.

With --archive, a tar (pax: nanosecond times, xattrs, ACLs, sparse files) or a
zip goes to FILE or, with "-" (or no --out), to standard output; the report
then goes to standard error. Entries that cannot be represented (a name holding
"/" in a crafted image, a socket in tar, a device node without root) are
skipped and listed; the exit code is then 3.`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.filesGet(cmd.Context(), args[0], args[1:], f, g)
		},
	}
	f.bind(cmd)
	fl := cmd.Flags()
	fl.StringVarP(&g.out, "out", "o", "", "output directory (with --archive: output file, - for standard output)")
	fl.StringVar(&g.archive, "archive", "", "write an archive instead: tar or zip")
	fl.BoolVar(&g.noHardlinks, "no-hardlinks", false, "write every name of a hard-linked file as its own copy")
	fl.BoolVar(&g.noXattrs, "no-xattrs", false, "leave extended attributes and ACLs out")
	fl.BoolVar(&g.noOwner, "no-owner", false, "leave owners out (directories: not set; archives: 0:0)")
	fl.StringSliceVar(&g.mapUID, "map-uid", nil, "map a numeric user id, FROM:TO (repeatable)")
	fl.StringSliceVar(&g.mapGID, "map-gid", nil, "map a numeric group id, FROM:TO (repeatable)")
	return cmd
}

func parseIDMap(flag string, specs []string) (map[uint32]uint32, error) {
	if len(specs) == 0 {
		return nil, nil
	}
	m := map[uint32]uint32{}
	for _, s := range specs {
		from, to, ok := strings.Cut(s, ":")
		a, err1 := strconv.ParseUint(from, 10, 32)
		b, err2 := strconv.ParseUint(to, 10, 32)
		if !ok || err1 != nil || err2 != nil {
			return nil, usageError("--%s %q: want FROM:TO with numeric ids", flag, s)
		}
		m[uint32(a)] = uint32(b)
	}
	return m, nil
}

func (a *App) filesGet(ctx context.Context, point string, paths []string, f filesFlags, g getFlags) error {
	if g.archive != "" && len(paths) > 1 && paths[len(paths)-1] == "-" && g.out == "" {
		paths, g.out = paths[:len(paths)-1], "-"
	}
	switch {
	case g.archive == "" && g.out == "":
		return usageError("files get needs --out DIR (or --archive tar|zip)")
	case g.archive != "" && g.archive != "tar" && g.archive != "zip":
		return usageError("--archive %q: want tar or zip", g.archive)
	}
	opt := extract.Options{NoHardlinks: g.noHardlinks, NoXattrs: g.noXattrs, NoOwner: g.noOwner}
	var err error
	if opt.UIDMap, err = parseIDMap("map-uid", g.mapUID); err != nil {
		return err
	}
	if opt.GIDMap, err = parseIDMap("map-gid", g.mapGID); err != nil {
		return err
	}
	for i, p := range paths {
		paths[i] = path.Clean("/" + fsread.Unescape(p))
	}
	// An archive on standard output moves the report and progress to
	// standard error.
	var w io.Writer
	report := a.stdout
	if g.archive != "" {
		switch g.out {
		case "", "-":
			if file, ok := a.stdout.(*os.File); ok && term.IsTerminal(int(file.Fd())) {
				return usageError("refusing to write a %s archive to a terminal: use --out FILE or a pipe", g.archive)
			}
			w, report = a.stdout, a.stderr
		default:
			file, err := os.OpenFile(g.out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				return err
			}
			defer file.Close()
			w = file
		}
	}
	b, err := a.openFiles(ctx, point, f)
	if err != nil {
		return err
	}
	sink := a.progressSink()
	if report != a.stdout {
		sink = progress.Nop()
		if !a.quiet && !a.jsonOut {
			t := progress.NewTerminal(a.stderr, progress.TerminalOptions{})
			a.onClose(func() { _ = t.Close() })
			sink = t
		}
	}
	opt.Progress = func(p extract.Progress) {
		sink.Emit(progress.Event{Time: time.Now(), Kind: progress.DiskProgress, Disk: b.Disk,
			Msg: fsread.Escape(p.Path), Done: p.Bytes, Total: p.TotalBytes})
	}
	var rep *extract.Report
	if g.archive != "" {
		rep, err = b.ExtractArchive(ctx, paths, g.archive, w, opt)
	} else {
		rep, err = b.ExtractTo(ctx, paths, g.out, opt)
	}
	endProgress(sink)
	if err != nil {
		return fmt.Errorf("extract: %w", err)
	}
	if file, ok := w.(*os.File); ok && file != a.stdout {
		if err := file.Sync(); err != nil {
			return err
		}
	}
	if err := a.printGetReport(report, rep, g); err != nil {
		return err
	}
	if len(rep.Skipped) > 0 {
		return withCode(ExitPartial, errReported)
	}
	return nil
}

func (a *App) printGetReport(w io.Writer, rep *extract.Report, g getFlags) error {
	if a.jsonOut {
		out := struct {
			*extract.Report
			Out     string `json:"out"`
			Archive string `json:"archive,omitempty"`
		}{rep, g.out, g.archive}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	rate := 0.0
	if rep.Seconds > 0 {
		rate = float64(rep.DataBytes) / rep.Seconds
	}
	dest := g.out
	if g.archive != "" {
		dest = g.archive + " archive " + dest
	}
	fmt.Fprintf(w, "extracted %d files (%s, %s of data), %d directories, %d symlinks, %d hard links, %d special files into %s in %.1fs (%s/s)\n",
		rep.Files, fmtBytes(rep.Bytes), fmtBytes(rep.DataBytes), rep.Dirs, rep.Symlinks, rep.Hardlinks, rep.Specials,
		dest, rep.Seconds, fmtBytes(int64(rate)))
	list := func(title string, notes []extract.Note) {
		if len(notes) == 0 {
			return
		}
		fmt.Fprintf(w, "%s (%d):\n", title, len(notes))
		for i, n := range notes {
			if i == 20 {
				fmt.Fprintf(w, "  ... and %d more (--json lists them all)\n", len(notes)-20)
				break
			}
			fmt.Fprintf(w, "  %s: %s\n", n.Path, n.Reason)
		}
	}
	list("skipped", rep.Skipped)
	list("extracted without some metadata", rep.NotKept)
	return nil
}

func (a *App) filesFindCommand() *cobra.Command {
	var f filesFlags
	cmd := &cobra.Command{
		Use:   "find POINT GLOB",
		Short: "Find files by name (or by full path when GLOB holds a slash)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			b, err := a.openFiles(ctx, args[0], f)
			if err != nil {
				return err
			}
			entries := []fsread.Entry{}
			if err := b.Find(ctx, fsread.Unescape(args[1]), func(e fsread.Entry) error { entries = append(entries, e); return nil }); err != nil {
				return err
			}
			if a.jsonOut {
				return a.printJSON(entries)
			}
			printEntries(a, entries, true)
			return nil
		},
	}
	f.bind(cmd)
	return cmd
}
