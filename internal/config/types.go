// Package config is kura server's declarative configuration: the file
// (default /etc/kura/kura.yaml) naming the repositories, hypervisor
// connections, protection groups with their schedules, retention,
// bandwidth and restore rights, the limits, notifications and the users
// with their API tokens.
//
// Load parses and validates a file and reports every problem with its
// line ("kura.yaml:12: groups[0].schedules[1]: unknown kind \"bakup\"").
// Save writes it back atomically (mode 0600) after a change made through
// the API. Secrets never appear in the file: passphrases and credentials
// are read from files (…_file) or systemd credentials (…_credential, read
// from $CREDENTIALS_DIRECTORY); users' passwords and API tokens are
// stored as hashes only.
package config

import (
	"time"

	"github.com/kurabackup/kura/internal/notify"
	"github.com/kurabackup/kura/internal/throttle"
)

// DefaultPath is where kura server looks for its configuration.
const DefaultPath = "/etc/kura/kura.yaml"

// Config is the whole configuration file.
type Config struct {
	Server        Server         `yaml:"server" json:"server"`
	Repositories  []Repository   `yaml:"repositories" json:"repositories"`
	Connections   []Connection   `yaml:"connections" json:"connections"`
	Groups        []Group        `yaml:"groups" json:"groups"`
	Limits        Limits         `yaml:"limits,omitempty" json:"limits,omitempty"`
	Notifications notify.Config  `yaml:"notifications,omitempty" json:"notifications,omitempty"`
	Users         []User         `yaml:"users,omitempty" json:"users,omitempty"`
	path          string         // where it was loaded from
	lines         map[string]int // YAML path → line, for error messages
}

// Server configures the service itself.
type Server struct {
	// Listen is the HTTPS address (default 127.0.0.1:8443).
	Listen string `yaml:"listen,omitempty" json:"listen,omitempty"`
	// StateDir holds the catalog, certificates and logs (/var/lib/kura).
	StateDir string `yaml:"state_dir,omitempty" json:"state_dir,omitempty"`
	// Catalog is the catalog database (<state_dir>/catalog.db).
	Catalog string `yaml:"catalog,omitempty" json:"catalog,omitempty"`
	TLS     TLS    `yaml:"tls,omitempty" json:"tls,omitempty"`
	// LogLevel: debug, info, warn, error (info).
	LogLevel string `yaml:"log_level,omitempty" json:"log_level,omitempty"`
	// SelfBackup is where the server protects its own configuration and
	// catalog (seed 000): a repository name; empty means the first one.
	SelfBackup SelfBackup `yaml:"self_backup,omitempty" json:"self_backup,omitempty"`
	// ScratchDir holds staging files of restores to other hosts.
	ScratchDir string `yaml:"scratch_dir,omitempty" json:"scratch_dir,omitempty"`
}

// TLS names the certificate; empty files mean a certificate generated at
// first start under <state_dir>/tls.
type TLS struct {
	CertFile string `yaml:"cert_file,omitempty" json:"cert_file,omitempty"`
	KeyFile  string `yaml:"key_file,omitempty" json:"key_file,omitempty"`
	// Disabled serves plain HTTP (only for a loopback address behind a
	// proxy that terminates TLS).
	Disabled bool `yaml:"disabled,omitempty" json:"disabled,omitempty"`
}

// SelfBackup configures the server's protection of itself.
type SelfBackup struct {
	Repository string `yaml:"repository,omitempty" json:"repository,omitempty"`
	// Keep is how many server points are kept (30).
	Keep int `yaml:"keep,omitempty" json:"keep,omitempty"`
}

// Repository is a repository the server writes to.
type Repository struct {
	Name     string `yaml:"name" json:"name"`
	Location string `yaml:"location" json:"location"`
	// The repository passphrase: from a file, or a systemd credential.
	PasswordFile       string `yaml:"password_file,omitempty" json:"password_file,omitempty"`
	PasswordCredential string `yaml:"password_credential,omitempty" json:"password_credential,omitempty"`
}

// Connection is a hypervisor connection.
type Connection struct {
	Name string `yaml:"name" json:"name"`
	URI  string `yaml:"uri" json:"uri"`
	// The login's password for connections that need one (vsphere://):
	// from a file, or a systemd credential; never in the URI.
	PasswordFile       string `yaml:"password_file,omitempty" json:"password_file,omitempty"`
	PasswordCredential string `yaml:"password_credential,omitempty" json:"password_credential,omitempty"`
}

// Group is a protection group: which VMs, how, how often, for how long.
type Group struct {
	Name        string   `yaml:"name" json:"name"`
	Repository  string   `yaml:"repository,omitempty" json:"repository,omitempty"`
	Connections []string `yaml:"connections,omitempty" json:"connections,omitempty"`
	// Selectors are evaluated at every run (name:GLOB, uuid:, ipaddr:,
	// powerstate:, any:, tag:NAME, or a plain name).
	Selectors   []string        `yaml:"selectors" json:"selectors"`
	Consistency string          `yaml:"consistency,omitempty" json:"consistency,omitempty"` // auto, application, crash, pause
	Retries     *int            `yaml:"retries,omitempty" json:"retries,omitempty"`         // 2
	RetryDelay  Duration        `yaml:"retry_delay,omitempty" json:"retry_delay,omitempty"` // 1m
	Parallel    int             `yaml:"parallel,omitempty" json:"parallel,omitempty"`       // VMs of the group at once (2)
	RPO         Duration        `yaml:"rpo,omitempty" json:"rpo,omitempty"`                 // newest good point no older than this
	Schedules   []Sched         `yaml:"schedules,omitempty" json:"schedules,omitempty"`
	Retention   Retention       `yaml:"retention,omitempty" json:"retention,omitempty"`
	Bandwidth   throttle.Config `yaml:"bandwidth,omitempty" json:"bandwidth,omitempty"`
	Restore     Rights          `yaml:"restore,omitempty" json:"restore,omitempty"`
	Unprotected string          `yaml:"unprotected,omitempty" json:"unprotected,omitempty"` // skip (default) or fail
	// Copies are off-site copies of the group's points, made by copy
	// schedules.
	Copies []Copy `yaml:"copies,omitempty" json:"copies,omitempty"`
}

// Copy is an off-site copy of a group: its points copied (same ids, only
// missing chunks) to another repository, which keeps them by its own
// retention (7 days at home, 12 monthly and 7 yearly off-site, say).
type Copy struct {
	// To names the destination in repositories.
	To string `yaml:"to" json:"to"`
	// Retention on the destination, applied (then gc) after each copy;
	// empty keeps every copied point.
	Retention Retention `yaml:"retention,omitempty" json:"retention,omitempty"`
	// Latest copies only the newest N points of each VM (0: every point
	// not there yet).
	Latest int `yaml:"latest,omitempty" json:"latest,omitempty"`
	// Verify re-reads and re-hashes what each copy wrote.
	Verify bool `yaml:"verify,omitempty" json:"verify,omitempty"`
}

// Schedule kinds.
const (
	KindBackup = "backup"
	KindVerify = "verify"
	KindPrune  = "prune"
	KindCopy   = "copy"
	// KindBootVerify boots each VM's newest point of the group as a
	// throw-away VM on an isolated network and runs the probes.
	KindBootVerify = "boot-verify"
)

// Sched is one schedule of a group.
type Sched struct {
	Kind     string   `yaml:"kind" json:"kind"`                             // backup, verify, prune (prune then gc), copy
	Cron     string   `yaml:"cron,omitempty" json:"cron,omitempty"`         // 5 fields, or @daily…
	Every    Duration `yaml:"every,omitempty" json:"every,omitempty"`       // or an interval
	Timezone string   `yaml:"timezone,omitempty" json:"timezone,omitempty"` // IANA; default local
	Window   Duration `yaml:"window,omitempty" json:"window,omitempty"`     // start window; 0 = none
	CatchUp  string   `yaml:"catch_up,omitempty" json:"catch_up,omitempty"` // once (default) or skip
	// Backup: read everything instead of changes only.
	Full bool `yaml:"full,omitempty" json:"full,omitempty"`
	// Verify: re-hash chunk data, only chunks not verified for OutdatedAfter.
	ReadData      bool     `yaml:"read_data,omitempty" json:"read_data,omitempty"`
	OutdatedAfter Duration `yaml:"outdated_after,omitempty" json:"outdated_after,omitempty"`
	// Boot-verify: probes once the guest agent answers (exec:CMD,
	// exec[N]:CMD, exec:CMD => TEXT, file:PATH=SHA256, tcp:PORT), the time
	// each point has (5m), points booted at once (1).
	Probes   []string `yaml:"probes,omitempty" json:"probes,omitempty"`
	Timeout  Duration `yaml:"timeout,omitempty" json:"timeout,omitempty"`
	Parallel int      `yaml:"parallel,omitempty" json:"parallel,omitempty"`
}

// Retention is a group's retention policy: short-term and long-term (GFS).
type Retention struct {
	Last      int      `yaml:"last,omitempty" json:"last,omitempty"`
	Within    Duration `yaml:"within,omitempty" json:"within,omitempty"`
	Hourly    int      `yaml:"hourly,omitempty" json:"hourly,omitempty"`
	Daily     int      `yaml:"daily,omitempty" json:"daily,omitempty"`
	Weekly    int      `yaml:"weekly,omitempty" json:"weekly,omitempty"`
	Monthly   int      `yaml:"monthly,omitempty" json:"monthly,omitempty"`
	Quarterly int      `yaml:"quarterly,omitempty" json:"quarterly,omitempty"`
	Yearly    int      `yaml:"yearly,omitempty" json:"yearly,omitempty"`
}

// Rights are what a restore-only user of the group may restore into.
type Rights struct {
	// Storage are directories (or "pool:NAME") new disks may go to.
	Storage []string `yaml:"storage,omitempty" json:"storage,omitempty"`
	// Networks are the networks restored VMs may be attached to.
	Networks []string `yaml:"networks,omitempty" json:"networks,omitempty"`
}

// Limits bound how much runs at once.
type Limits struct {
	VMsPerHost       int `yaml:"vms_per_host,omitempty" json:"vms_per_host,omitempty"`             // 4
	VMsPerRepository int `yaml:"vms_per_repository,omitempty" json:"vms_per_repository,omitempty"` // 4
	Jobs             int `yaml:"jobs,omitempty" json:"jobs,omitempty"`                             // jobs at once (4)
}

// Roles.
const (
	RoleAdmin    = "admin"    // everything
	RoleOperator = "operator" // run and cancel jobs, restore anything
	RoleAuditor  = "auditor"  // read only
	RoleRestore  = "restore"  // see and restore the VMs of its groups only
)

// User may sign in and hold API tokens.
type User struct {
	Name string `yaml:"name" json:"name"`
	// PasswordHash is the argon2id PHC string ($argon2id$v=19$m=…,t=…,p=…$salt$hash).
	PasswordHash string   `yaml:"password_hash,omitempty" json:"-"`
	Role         string   `yaml:"role" json:"role"`
	Groups       []string `yaml:"groups,omitempty" json:"groups,omitempty"` // restore role: its groups
	Tokens       []Token  `yaml:"tokens,omitempty" json:"tokens,omitempty"`
}

// Token is an API token; only its hash is stored.
type Token struct {
	ID      string    `yaml:"id" json:"id"`
	Name    string    `yaml:"name,omitempty" json:"name,omitempty"`
	Hash    string    `yaml:"hash" json:"-"` // sha256:<hex> of the secret
	Role    string    `yaml:"role,omitempty" json:"role,omitempty"`
	Created time.Time `yaml:"created" json:"created"`
	Expires time.Time `yaml:"expires,omitempty" json:"expires,omitempty"`
}
