package cli

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/kurabackup/kura/internal/benchmark"
	"github.com/kurabackup/kura/internal/repo"
)

func (a *App) benchmarkCommand() *cobra.Command {
	var opts benchmark.Options
	var size, chunk, writeImage, compression string
	cmd := &cobra.Command{
		Use:   "benchmark",
		Short: "Measure SHA-256, zstd, S2, AES-GCM and repository write/read speed on this machine",
		Long: `Measure the primitives kura's speed depends on, then ingest a disk image
(a synthetic one, half random and half text, or --image FILE) into a fresh
temporary repository, ingest it again (all duplicates) and restore it into an
image file. Each ingest commits a recovery point and syncs the repository as a
backup does; the restore writes a raw image file (thin, synced) as kura export
does and checks it against the image.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if opts.ImageSize, err = parseSize(size); err != nil {
				return usageError("invalid --size: %v", err)
			}
			cs, err := parseSize(chunk)
			if err != nil {
				return usageError("invalid --chunk-size: %v", err)
			}
			opts.ChunkSize = int(cs)
			if opts.Compression, err = repo.ParseCompression(compression); err != nil {
				return usageError("invalid --compression: %v", err)
			}
			if writeImage != "" {
				return benchmark.WriteImageFile(writeImage, opts.ImageSize)
			}
			if !a.jsonOut && !a.quiet {
				opts.Progress = func(step string) { fmt.Fprintf(a.stderr, "measuring %s…\n", step) }
			}
			res, err := benchmark.Run(cmd.Context(), opts)
			if err != nil {
				return err
			}
			if a.jsonOut {
				return a.printJSON(res)
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
			fmt.Fprintln(tw, "measurement\tMB/s\t")
			for _, t := range append(res.Primitives, res.Repository...) {
				fmt.Fprintf(tw, "%s\t%.0f\t\n", t.Name, t.MBps)
			}
			tw.Flush()
			if res.ImageBytes > 0 {
				a.out("image %s stored as %s in %s; peak RSS %s", fmtBytes(res.ImageBytes), fmtBytes(res.StoredBytes), res.Backend, fmtBytes(res.PeakRSS))
			}
			if q := res.Requests; q != nil {
				a.out("backend requests: PUT %d, GET %d, HEAD %d, LIST %d, DELETE %d, retried %d", q.Put, q.Get, q.Head, q.List, q.Delete, q.Retries)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Image, "image", "", "disk image file to ingest instead of a synthetic one")
	f.StringVar(&size, "size", "1GiB", "size of the synthetic image")
	f.StringVar(&chunk, "chunk-size", "4MiB", "chunk size of the temporary repository")
	f.StringVar(&opts.Dir, "dir", "", "where to put the temporary repository (default: the temp dir)")
	f.StringVar(&opts.Location, "location", "", "measure the repository steps on this store instead (e.g. s3:https://host/bucket): a temporary prefix is used and removed")
	f.StringVar(&writeImage, "write-image", "", "only write the synthetic image (--size bytes) to this file, for side-by-side benchmarks")
	f.BoolVar(&opts.Primitives, "primitives", false, "measure only the primitives")
	f.StringVar(&compression, "compression", "auto", "compression of the ingests: auto (S2 while CPU bound, else zstd level 3), fastest (S2), default (zstd 3) or better (zstd 7)")
	return cmd
}
