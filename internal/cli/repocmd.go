package cli

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kurabackup/kura/internal/repo"
)

func (a *App) repoCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "repo", Short: "Create and inspect repositories, manage their keys"}
	cmd.AddCommand(a.repoInitCommand(), a.repoInfoCommand(), a.repoKeyCommand(), a.repoExportKeyCommand(), a.repoUnhideCommand())
	return cmd
}

func (a *App) repoInitCommand() *cobra.Command {
	var chunkSize, copyOf string
	var plain bool
	var immutableDays, slackDays float64
	var version int
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create a new repository",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cs, err := parseSize(chunkSize)
			if err != nil {
				return usageError("invalid --chunk-size: %v", err)
			}
			if immutableDays < 0 || slackDays < 0 {
				return usageError("--immutable and --immutable-slack take a positive number of days")
			}
			if version != 0 && (version < repo.MinWriteVersion || version > repo.MaxWriteVersion) {
				return usageError("--format-version %d: this kura creates versions %d to %d", version, repo.MinWriteVersion, repo.MaxWriteVersion)
			}
			opts := repo.InitOptions{Immutable: days(immutableDays), ImmutableSlack: days(slackDays), Version: version}
			if copyOf != "" {
				if opts.CopyOf, err = a.openRepoAt(cmd.Context(), copyOf, a.passwordFile, ""); err != nil {
					return err
				}
			}
			be, err := a.backend(cmd.Context(), true)
			if err != nil {
				return err
			}
			pw := ""
			if !plain && copyOf == "" {
				if pw, err = a.newPassword(); err != nil {
					return err
				}
			}
			host, _ := os.Hostname()
			opts.Password, opts.ChunkSize, opts.Encrypt, opts.Hostname, opts.Username = pw, int(cs), !plain, host, os.Getenv("USER")
			r, err := repo.Init(cmd.Context(), be, opts)
			if err != nil {
				return fmt.Errorf("init repository at %s: %w", be.Location(), err)
			}
			defer r.Close()
			cfg := r.Config()
			if a.jsonOut {
				return a.printJSON(cfg)
			}
			a.out("created kura repository %s at %s (format version %d, chunk size %s, encryption %v, compression %s, ids %s)",
				cfg.ID, be.Location(), cfg.Version, fmtBytes(int64(cfg.ChunkSize)), cfg.Encrypted, cfg.Compression, cfg.IDHash())
			if cfg.CopyOf != "" {
				a.out("copy of repository %s: same chunk size and keys, opened by the same passphrases", cfg.CopyOf)
			}
			if im := cfg.Immutable; im != nil {
				a.out("immutable: the store locks every object of a point, config and key files for %s after it (plus up to %s); prune and gc wait for the locks to expire",
					im.Retain(), im.Slack())
			}
			if cfg.Encrypted {
				a.out("keep the passphrase safe: without it (or an exported master key) the data cannot be read; see kura repo export-key")
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&chunkSize, "chunk-size", "4MiB", "fixed chunk size (1MiB to 32MiB, a power of two)")
	cmd.Flags().BoolVar(&plain, "no-encryption", false, "store data unencrypted (digests unkeyed); not recommended")
	cmd.Flags().StringVar(&copyOf, "copy-of", "", "make the repository a copy of this one (same chunk size and keys), the destination of kura copy")
	cmd.Flags().Float64Var(&immutableDays, "immutable", 0, "lock every object of a point for DAYS after it (S3 bucket with Object Lock, compliance mode)")
	cmd.Flags().IntVar(&version, "format-version", 0, fmt.Sprintf("repository format version (default %d: S2 and BLAKE3 ids; 2 for kura releases that read up to version 2: HMAC-SHA256 ids; 1 for those that read only version 1: zstd only)", repo.CurrentVersion))
	cmd.Flags().Float64Var(&slackDays, "immutable-slack", 0, "lock objects this many DAYS longer, so points within that time extend nothing (default: a quarter of --immutable, at most 7)")
	return cmd
}

// newPassword gets the passphrase for a new repository or key: KURA_PASSWORD,
// --password-file, or asked twice on a terminal.
func (a *App) newPassword() (string, error) {
	if _, ok := os.LookupEnv("KURA_PASSWORD"); ok || a.passwordFile != "" {
		return a.password("", false)
	}
	return a.askPassword("new repository passphrase", true)
}

func (a *App) repoInfoCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "info",
		Short: "Show the repository's format, size, deduplication and compression",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := a.openRepo(cmd.Context())
			if err != nil {
				return err
			}
			info, err := r.Info(cmd.Context())
			if err != nil {
				return err
			}
			if a.jsonOut {
				return a.printJSON(info)
			}
			printInfo(a, r.Backend().Location(), info)
			return nil
		},
	}
}

func (a *App) repoKeyCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "key", Short: "Manage the passphrases that open the repository"}
	cmd.AddCommand(&cobra.Command{
		Use: "list", Short: "List keys", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := a.openRepo(cmd.Context())
			if err != nil {
				return err
			}
			keys, err := r.Keys(cmd.Context())
			if err != nil {
				return err
			}
			if a.jsonOut {
				return a.printJSON(keys)
			}
			for _, k := range keys {
				cur := " "
				if k.Current {
					cur = "*"
				}
				a.out("%s %s  %s  %s@%s", cur, k.ID, k.Created.Format("2006-01-02 15:04:05"), k.User, k.Host)
			}
			return nil
		},
	}, &cobra.Command{
		Use: "add", Short: "Add a passphrase (asked on the terminal, or --new-password-file)", Args: cobra.NoArgs,
		RunE: a.withNewPassword(func(cmd *cobra.Command, r *repo.Repository, pw string) (string, error) {
			id, err := r.AddKey(cmd.Context(), pw)
			return "added key " + id, err
		}),
	}, &cobra.Command{
		Use: "remove KEY-ID", Short: "Remove a key (never the last one)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := a.openRepo(cmd.Context())
			if err != nil {
				return err
			}
			if err := r.RemoveKey(cmd.Context(), args[0]); err != nil {
				return err
			}
			a.out("removed key %s", args[0])
			return nil
		},
	}, &cobra.Command{
		Use: "passwd", Short: "Change the passphrase of the key in use", Args: cobra.NoArgs,
		RunE: a.withNewPassword(func(cmd *cobra.Command, r *repo.Repository, pw string) (string, error) {
			return "passphrase changed", r.ChangePassword(cmd.Context(), pw)
		}),
	})
	cmd.PersistentFlags().String("new-password-file", "", "read the new passphrase from this file")
	return cmd
}

// withNewPassword runs fn with the open repository and a new passphrase,
// then prints what fn reports.
func (a *App) withNewPassword(fn func(*cobra.Command, *repo.Repository, string) (string, error)) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, _ []string) error {
		r, err := a.openRepo(cmd.Context())
		if err != nil {
			return err
		}
		pw, err := a.secondPassword(cmd)
		if err != nil {
			return err
		}
		msg, err := fn(cmd, r, pw)
		if err != nil {
			return err
		}
		a.out("%s", msg)
		return nil
	}
}

func (a *App) secondPassword(cmd *cobra.Command) (string, error) {
	if f, _ := cmd.Flags().GetString("new-password-file"); f != "" {
		data, err := os.ReadFile(f)
		if err != nil {
			return "", fmt.Errorf("read new password file: %w", err)
		}
		return strings.TrimRight(string(data), "\r\n"), nil
	}
	return a.askPassword("new passphrase", true)
}

func (a *App) repoExportKeyCommand() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "export-key --out FILE",
		Short: "Write the master key to a file for safe keeping (opens the repository without any passphrase)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return usageError("--out FILE is required")
			}
			r, err := a.openRepo(cmd.Context())
			if err != nil {
				return err
			}
			data, err := r.ExportMasterKey(cmd.Context())
			if err != nil {
				return err
			}
			f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				return fmt.Errorf("write master key: %w", err)
			}
			if _, err := f.Write(data); err != nil {
				f.Close()
				return fmt.Errorf("write master key: %w", err)
			}
			if err := f.Close(); err != nil {
				return fmt.Errorf("write master key: %w", err)
			}
			a.out("master key written to %s (mode 0600): store it offline; anyone holding it can read every backup", out)
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "file to create")
	return cmd
}
