package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/kurabackup/kura/internal/auth"
	"github.com/kurabackup/kura/internal/config"
	"github.com/kurabackup/kura/internal/hypervisor"
	"github.com/kurabackup/kura/internal/repo"
	"github.com/kurabackup/kura/internal/server"
)

// connectURI opens a configured hypervisor connection for the server.
func connectURI(ctx context.Context, cn config.Connection, log *slog.Logger) (hypervisor.Connector, error) {
	c, err := hypervisor.Open(ctx, cn.URI, hypervisor.OpenOptions{Logger: log, Password: cn.Password})
	if err != nil {
		return nil, fmt.Errorf("connection %s: %w", cn.Name, err)
	}
	return c, nil
}

// openConfigured opens a repository named in the server's configuration.
func openConfigured(ctx context.Context, rc config.Repository, log *slog.Logger) (*repo.Repository, error) {
	pw, err := rc.Password()
	if err != nil {
		return nil, err
	}
	be, err := openBackend(ctx, rc.Location, false)
	if err != nil {
		return nil, err
	}
	r, err := repo.Open(ctx, be, pw, repo.OpenOptions{Logger: log})
	if err != nil {
		_ = be.Close()
		return nil, fmt.Errorf("open repository %s: %w", rc.Location, err)
	}
	return r, nil
}

func (a *App) serverCommand() *cobra.Command {
	var cfgPath string
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run kura as a service: protection groups on schedules, the REST API, metrics, notifications",
		Long: `Run kura server in the foreground (logs on stderr): the protection groups of
the configuration file (default /etc/kura/kura.yaml) run on their schedules —
backup, verify, prune with gc — jobs are queued in the catalog and survive a
restart, the REST API (/api/v1, OpenAPI document at /api/v1/openapi.json) and
Prometheus metrics (/metrics) are served over HTTPS (a certificate is made at
first start). SIGHUP re-reads the configuration; SIGTERM stops: running jobs
are cancelled cleanly.

Install it as a systemd service with kura server install.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			s, err := server.New(ctx, server.Options{ConfigPath: cfgPath, Logger: a.logger,
				Connect: connectURI, OpenRepository: openConfigured})
			if err != nil {
				return err
			}
			defer s.Close()
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			go func() {
				for range hup {
					if err := s.Reload(ctx); err != nil {
						a.logger.Error("reload refused; the running configuration stays", "err", err)
					}
				}
			}()
			return s.Run(ctx)
		},
	}
	cmd.PersistentFlags().StringVar(&cfgPath, "config", config.DefaultPath, "configuration file")
	cmd.AddCommand(a.serverRecoverCommand(&cfgPath), a.serverPasswdCommand(&cfgPath), a.serverInstallCommand(&cfgPath),
		a.serverCheckCommand(&cfgPath))
	return cmd
}

func (a *App) serverCheckCommand(cfgPath *string) *cobra.Command {
	return &cobra.Command{
		Use:   "check",
		Short: "Validate the configuration file (every problem, with its line)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(*cfgPath)
			if err != nil {
				return err
			}
			if a.jsonOut {
				return a.printJSON(map[string]any{"config": *cfgPath, "groups": len(cfg.Groups), "ok": true})
			}
			a.out("%s: valid, %d repositories, %d connections, %d groups, %d users", *cfgPath,
				len(cfg.Repositories), len(cfg.Connections), len(cfg.Groups), len(cfg.Users))
			return nil
		},
	}
}

func (a *App) serverRecoverCommand(cfgPath *string) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "recover",
		Short: "Rebuild a lost server from its repository: configuration, certificate, catalog; reconcile the VMs",
		Long: `Rebuild a lost kura server from a repository alone (--repo, with its
passphrase): the newest server point there gives the configuration file
(written to --config), the TLS certificate and a snapshot of the catalog; the
catalog's recovery points are then rebuilt from every configured repository,
and the VMs are reconciled with the hypervisors: VMs deleted since are marked
missing with their points kept, new VMs matching a group are protected from
the next runs. The repositories' passphrase files named in the configuration
must exist on this host.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			r, err := a.openRepo(ctx)
			if err != nil {
				return err
			}
			rep, err := server.Recover(ctx, server.RecoverOptions{Repository: r, ConfigPath: *cfgPath, Force: force,
				Connect: connectURI, Open: openConfigured, Logger: a.logger})
			if err != nil {
				return err
			}
			if a.jsonOut {
				return a.printJSON(rep)
			}
			a.out("recovered from server point %s (host %s)", rep.Point, rep.Host)
			a.out("configuration  %s", rep.Config)
			a.out("catalog        %s", rep.Catalog)
			for name, n := range rep.Rebuilt {
				a.out("repository %s: %d points", name, n)
			}
			for name, e := range rep.NotOpened {
				a.out("repository %s not opened: %s", name, e)
			}
			for name, e := range rep.Unreached {
				a.out("connection %s not reached: %s", name, e)
			}
			if len(rep.Missing) > 0 {
				a.out("VMs no longer defined (marked missing, points kept): %v", rep.Missing)
			}
			a.out("start it: kura server --config %s", rep.Config)
			return nil
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "overwrite an existing configuration and catalog")
	return cmd
}

func (a *App) serverPasswdCommand(cfgPath *string) *cobra.Command {
	var role, pwFile string
	var groups []string
	cmd := &cobra.Command{
		Use:   "passwd USER",
		Short: "Set a user's password (adding the user) in the configuration file",
		Long: `Set the password of a server user in the configuration file, adding the user
(with --role, default admin) when it does not exist: the way to make the first
administrator. The password is read from --new-password-file, KURA_NEW_PASSWORD
or the terminal; only its argon2id hash is written. A running server
picks the change up on SIGHUP.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := config.Load(*cfgPath)
			if errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("%w: write the configuration first (see docs/design/server.md)", err)
			}
			if err != nil {
				return err
			}
			pw, ok := os.LookupEnv("KURA_NEW_PASSWORD")
			if pwFile != "" {
				if pw, err = config.ReadSecret(pwFile, ""); err != nil {
					return err
				}
				ok = true
			}
			if !ok {
				if pw, err = a.askPassword("new password for "+args[0], true); err != nil {
					return err
				}
			}
			hash, err := auth.HashPassword(pw)
			if err != nil {
				return err
			}
			u, found := cfg.User(args[0])
			if !found {
				cfg.Users = append(cfg.Users, config.User{Name: args[0], Role: role, Groups: groups})
				u = &cfg.Users[len(cfg.Users)-1]
			}
			u.PasswordHash = hash
			if err := cfg.Save(*cfgPath); err != nil {
				return err
			}
			a.out("password of %s set in %s (%s)", args[0], *cfgPath, u.Role)
			return nil
		},
	}
	cmd.Flags().StringVar(&role, "role", config.RoleAdmin, "role of a new user: admin, operator, auditor or restore")
	cmd.Flags().StringVar(&pwFile, "new-password-file", "", "read the password from this file")
	cmd.Flags().StringSliceVar(&groups, "group", nil, "groups of a new restore user (repeatable)")
	return cmd
}

// systemdUnit is the service unit kura server install writes.
const systemdUnit = `[Unit]
Description=kura backup server
Documentation=https://github.com/kurabackup/kura
After=network-online.target libvirtd.service
Wants=network-online.target

[Service]
Type=simple
ExecStart=%s server --config %s
ExecReload=/bin/kill -HUP $MAINPID
Restart=on-failure
RestartSec=10s
TimeoutStopSec=5min
# Repository passphrases can come from systemd credentials instead of files:
# LoadCredential=main:/etc/kura/main.pass, then password_credential: main.
UMask=0077
StateDirectory=kura
LimitNOFILE=65536

[Install]
WantedBy=multi-user.target
`

func (a *App) serverInstallCommand(cfgPath *string) *cobra.Command {
	var unitDir string
	cmd := &cobra.Command{
		Use:   "install",
		Short: "Install kura server as a systemd service (kura.service)",
		Long: `Write kura.service into the systemd unit directory (default
/etc/systemd/system), running this kura binary with --config. Then:
systemctl daemon-reload && systemctl enable --now kura.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			exe, err := os.Executable()
			if err != nil {
				return err
			}
			if exe, err = filepath.EvalSymlinks(exe); err != nil {
				return err
			}
			cfg, err := filepath.Abs(*cfgPath)
			if err != nil {
				return err
			}
			path := filepath.Join(unitDir, "kura.service")
			if err := os.MkdirAll(unitDir, 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(path, fmt.Appendf(nil, systemdUnit, exe, cfg), 0o644); err != nil {
				return err
			}
			a.out("wrote %s; now: systemctl daemon-reload && systemctl enable --now kura", path)
			return nil
		},
	}
	cmd.Flags().StringVar(&unitDir, "unit-dir", "/etc/systemd/system", "where to write kura.service")
	return cmd
}
