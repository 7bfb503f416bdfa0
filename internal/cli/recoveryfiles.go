package cli

import (
	"context"
	"fmt"
	"path"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/kurabackup/kura/internal/engine"
	"github.com/kurabackup/kura/internal/fsread"
	"github.com/kurabackup/kura/internal/progress"
)

type filesFlags struct {
	disk   string
	volume int
}

func (f *filesFlags) bind(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.disk, "disk", "", "disk target (default: the point's first disk)")
	cmd.Flags().IntVar(&f.volume, "volume", 0, "partition number (default: the first readable filesystem; see kura files volumes)")
}

func (a *App) filesCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "files",
		Short: "Browse and extract single files of a recovery point (ext2/3/4, XFS, NTFS; no mount, no root)",
		Long: `Read guest filesystems straight from the repository, without mounting, root or
a helper VM. Partition tables MBR and GPT and unpartitioned disks; filesystems
ext2/3/4, XFS and NTFS. A filesystem kura cannot read is named as such: export
the disk instead (kura export POINT --disk TARGET --out DIR).`,
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
	b, err := engine.OpenFiles(ctx, r, m, f.disk, f.volume)
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
		Short: "List the partitions (volumes) of a disk and their filesystems",
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
				if fs == "" {
					fs = "(not readable: export the disk)"
				}
				fmt.Fprintf(tw, "%d\t%s\t%d\t%s\t%s\t%s\n", v.Index, v.Scheme, v.Offset, fmtBytes(v.Size), fs, v.Label)
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
		Short: "List a directory (name, type, size, mode, mtime)",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			p := "/"
			if len(args) == 2 {
				p = path.Clean("/" + args[1])
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
				if e, err = b.FS.Stat(ctx, p); err == nil && e.Type == "dir" {
					entries, err = b.FS.ReadDir(ctx, p)
				} else if err == nil {
					entries = []fsread.Entry{e}
				}
			}
			if err != nil {
				return fmt.Errorf("%s: %w", p, err)
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
		name := e.Name
		if full {
			name = e.Path
		}
		if e.Type == "symlink" {
			name += " -> " + e.Target
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", e.Mode.String(), e.Type, e.Size,
			e.ModTime.Local().Format("2006-01-02 15:04:05"), name)
	}
	_ = tw.Flush()
}

func (a *App) filesGetCommand() *cobra.Command {
	var f filesFlags
	var out string
	cmd := &cobra.Command{
		Use:   "get POINT PATH... --out DIR",
		Short: "Extract files and whole folders (modes, times and symlinks kept; nothing written outside DIR)",
		Args:  cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if out == "" {
				return usageError("files get needs --out DIR")
			}
			b, err := a.openFiles(ctx, args[0], f)
			if err != nil {
				return err
			}
			sink := a.progressSink()
			var total engine.ExtractStats
			started := time.Now()
			for _, p := range args[1:] {
				p = path.Clean("/" + p)
				last := time.Time{}
				st, err := b.Extract(ctx, p, out, func(done int64) {
					if now := time.Now(); now.Sub(last) >= 100*time.Millisecond {
						last = now
						sink.Emit(progress.Event{Time: now, Kind: progress.DiskProgress, Disk: b.Disk, Msg: p, Done: done})
					}
				})
				total.Files += st.Files
				total.Dirs += st.Dirs
				total.Symlinks += st.Symlinks
				total.Skipped += st.Skipped
				total.Bytes += st.Bytes
				if err != nil {
					endProgress(sink)
					return fmt.Errorf("extract %s: %w", p, err)
				}
			}
			endProgress(sink)
			secs := time.Since(started).Seconds()
			if a.jsonOut {
				return a.printJSON(map[string]any{"out": out, "files": total.Files, "dirs": total.Dirs,
					"symlinks": total.Symlinks, "skipped": total.Skipped, "bytes": total.Bytes, "seconds": secs})
			}
			rate := 0.0
			if secs > 0 {
				rate = float64(total.Bytes) / secs
			}
			a.out("extracted %d files, %d directories, %d symlinks (%s) into %s in %.1fs (%s/s)", total.Files, total.Dirs,
				total.Symlinks, fmtBytes(total.Bytes), out, secs, fmtBytes(int64(rate)))
			if total.Skipped > 0 {
				a.out("skipped %d entries (devices, sockets or unsafe names)", total.Skipped)
			}
			return nil
		},
	}
	f.bind(cmd)
	cmd.Flags().StringVarP(&out, "out", "o", "", "output directory")
	return cmd
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
			if err := b.Find(ctx, args[1], func(e fsread.Entry) error { entries = append(entries, e); return nil }); err != nil {
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
