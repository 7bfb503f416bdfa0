package cli

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kurabackup/kura/internal/repo"
	"github.com/kurabackup/kura/internal/service"
)

// openRepoAt opens the repository at loc with the passphrase in pwFile
// (else the usual sources: --password-file, KURA_PASSWORD, a prompt).
func (a *App) openRepoAt(ctx context.Context, loc, pwFile, pwEnv string) (*repo.Repository, error) {
	be, err := a.openLocation(ctx, loc, false)
	if err != nil {
		return nil, err
	}
	var pw string
	switch {
	case pwFile != "":
		data, err := os.ReadFile(pwFile)
		if err != nil {
			return nil, fmt.Errorf("read password file: %w", err)
		}
		pw = strings.TrimRight(string(data), "\r\n")
	case pwEnv != "" && os.Getenv(pwEnv) != "":
		pw = os.Getenv(pwEnv)
	default:
		if pw, err = a.password("", false); err != nil {
			return nil, err
		}
	}
	r, err := repo.Open(ctx, be, pw, repo.OpenOptions{Logger: a.logger})
	if err != nil {
		return nil, fmt.Errorf("open repository %s: %w", be.Location(), err)
	}
	a.onClose(func() { _ = r.Close() })
	return r, nil
}

func (a *App) copyCommand() *cobra.Command {
	var from, to, toPwFile string
	var opts repo.CopyOptions
	cmd := &cobra.Command{
		Use:   "copy [VM...] --to LOCATION",
		Short: "Copy recovery points (with their indexes and the chunks missing there) to another repository",
		Long: `Copy recovery points from --from (default --repo) to --to, keeping their ids.
Only the chunks the destination lacks are sent; each point becomes visible
when its manifest, written last, is stored, so an interrupted copy is
continued by running it again. A destination made with
"kura repo init --copy-of SOURCE" takes the encrypted chunks as they are;
any other one gets them re-encrypted (and re-chunked) with its own keys.
The destination's passphrase is read from --to-password-file or
KURA_TO_PASSWORD, else it is the source's.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if to == "" {
				return usageError("no destination: use --to LOCATION")
			}
			if from == "" {
				from = a.repoLocation
			}
			if from == "" {
				return usageError("no source: use --from LOCATION (or --repo, KURA_REPO)")
			}
			if opts.Latest < 0 {
				return usageError("--latest must be positive")
			}
			ctx := cmd.Context()
			src, err := a.openRepoAt(ctx, from, a.passwordFile, "")
			if err != nil {
				return err
			}
			dst, err := a.openRepoAt(ctx, to, toPwFile, "KURA_TO_PASSWORD")
			if err != nil {
				return err
			}
			opts.VMs = args
			svc := &service.Service{Repo: src, Logger: a.logger}
			if svc.Catalog, err = a.openCatalog(ctx); err != nil {
				return err
			}
			rep, err := svc.Copy(ctx, dst, opts)
			if rep != nil {
				a.printCopy(rep)
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&from, "from", "", "source repository location (default: --repo)")
	f.StringVar(&to, "to", "", "destination repository location")
	f.StringVar(&toPwFile, "to-password-file", os.Getenv("KURA_TO_PASSWORD_FILE"), "read the destination's passphrase from this file; env KURA_TO_PASSWORD_FILE (or KURA_TO_PASSWORD)")
	f.StringSliceVar(&opts.Points, "points", nil, "copy only these points (ids or unique prefixes, comma-separated)")
	f.IntVar(&opts.Latest, "latest", 0, "copy only the newest N points of each VM")
	f.BoolVar(&opts.Verify, "verify", false, "re-read and re-hash everything written")
	return cmd
}

func (a *App) printCopy(rep *repo.CopyReport) {
	if a.jsonOut {
		_ = a.printJSON(rep)
		return
	}
	for _, p := range rep.Points {
		if p.Skipped {
			a.out("skip   %s %s (already there)", p.ID, p.VM)
			continue
		}
		a.out("copied %s %s: %d chunks sent, %d already there, %s", p.ID, p.VM, p.Chunks, p.Reused, fmtBytes(p.Bytes))
	}
	mode := "re-encrypted"
	if rep.Raw {
		mode = "as stored (same keys)"
	}
	a.out("%d points copied (%s), %d already there, %s written", rep.Copied, mode, rep.Skipped, fmtBytes(rep.Bytes))
	if rep.Verified > 0 {
		a.out("verified %d objects", rep.Verified)
	}
}

// days converts a number of days to a duration.
func days(d float64) time.Duration { return time.Duration(d * 24 * float64(time.Hour)) }
