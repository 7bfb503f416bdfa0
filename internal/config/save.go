package config

import (
	"fmt"
	"os"
	"path/filepath"

	"gopkg.in/yaml.v3"
)

// header starts every file Save writes.
const header = `# kura server configuration (docs/design/server.md).
# Changes made through the API are written back here; kura server reloads
# the file on SIGHUP. Secrets are never inline: *_file or *_credential.
`

// Marshal encodes c as YAML.
func (c *Config) Marshal() ([]byte, error) {
	body, err := yaml.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encode configuration: %w", err)
	}
	return append([]byte(header), body...), nil
}

// Save validates c and writes it to path atomically (a new file renamed
// over the old one, mode 0600, synced), so a crash never leaves half a
// configuration.
func (c *Config) Save(path string) error {
	data, err := c.Marshal()
	if err != nil {
		return err
	}
	if _, err := Parse(data, path); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("save configuration: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".kura-config-*")
	if err != nil {
		return fmt.Errorf("save configuration: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err = tmp.Write(data); err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o600)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("save configuration: %w", err)
	}
	c.path = path
	return nil
}

// Clone returns a deep copy of c (through its YAML), for changes that may
// be refused.
func (c *Config) Clone() (*Config, error) {
	data, err := c.Marshal()
	if err != nil {
		return nil, err
	}
	n, err := Parse(data, c.path)
	if err != nil {
		return nil, err
	}
	return n, nil
}
