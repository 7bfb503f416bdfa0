package config

import (
	"path/filepath"
	"time"
)

// Defaults.
const (
	DefaultListen     = "127.0.0.1:8443"
	DefaultStateDir   = "/var/lib/kura"
	DefaultSelfKeep   = 30
	DefaultRetries    = 2
	DefaultRetryDelay = time.Minute
	DefaultParallel   = 2
	DefaultVMsPerHost = 4
	DefaultVMsPerRepo = 4
	DefaultJobs       = 4
)

// ListenAddr is the address to serve on.
func (s Server) ListenAddr() string { return or(s.Listen, DefaultListen) }

// Dir is the state directory.
func (s Server) Dir() string { return or(s.StateDir, DefaultStateDir) }

// CatalogPath is the catalog database.
func (s Server) CatalogPath() string { return or(s.Catalog, filepath.Join(s.Dir(), "catalog.db")) }

// CertFiles are the TLS certificate and key, generated when not given.
func (s Server) CertFiles() (cert, key string, generated bool) {
	if s.TLS.CertFile != "" {
		return s.TLS.CertFile, s.TLS.KeyFile, false
	}
	dir := filepath.Join(s.Dir(), "tls")
	return filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key"), true
}

// Scratch is the staging directory.
func (s Server) Scratch() string { return or(s.ScratchDir, filepath.Join(s.Dir(), "scratch")) }

// RepositoryOf returns the repository a group writes to.
func (c *Config) RepositoryOf(g Group) (Repository, bool) {
	name := g.Repository
	if name == "" && len(c.Repositories) == 1 {
		return c.Repositories[0], true
	}
	for _, r := range c.Repositories {
		if r.Name == name {
			return r, true
		}
	}
	return Repository{}, false
}

// ConnectionsOf returns the connections a group selects VMs on.
func (c *Config) ConnectionsOf(g Group) []Connection {
	if len(g.Connections) == 0 {
		return c.Connections
	}
	var out []Connection
	for _, n := range g.Connections {
		for _, cn := range c.Connections {
			if cn.Name == n {
				out = append(out, cn)
			}
		}
	}
	return out
}

// Group returns the group of that name.
func (c *Config) Group(name string) (Group, bool) {
	for _, g := range c.Groups {
		if g.Name == name {
			return g, true
		}
	}
	return Group{}, false
}

// Connection returns the connection of that name.
func (c *Config) Connection(name string) (Connection, bool) {
	for _, cn := range c.Connections {
		if cn.Name == name {
			return cn, true
		}
	}
	return Connection{}, false
}

// User returns the user of that name.
func (c *Config) User(name string) (*User, bool) {
	for i := range c.Users {
		if c.Users[i].Name == name {
			return &c.Users[i], true
		}
	}
	return nil, false
}

// RetriesOr returns the group's retries, or the default.
func (g Group) RetriesOr() int {
	if g.Retries == nil {
		return DefaultRetries
	}
	return *g.Retries
}

func or(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
