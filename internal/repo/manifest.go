package repo

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/kurabackup/kura/internal/storage"
)

// ManifestVersion is the manifest schema version written by this code.
const ManifestVersion = 1

// VMInfo identifies the protected VM.
type VMInfo struct {
	Name       string `json:"name"`
	UUID       string `json:"uuid,omitempty"`
	Hypervisor string `json:"hypervisor,omitempty"`
	URI        string `json:"uri,omitempty"`
	Host       string `json:"host,omitempty"`
}

// DiskStats counts what writing one disk did.
type DiskStats struct {
	BytesRead    int64 `json:"bytes_read"`
	BytesZero    int64 `json:"bytes_zero"`
	BytesReused  int64 `json:"bytes_reused"`
	BytesNew     int64 `json:"bytes_new"`
	BytesStored  int64 `json:"bytes_stored"`
	ChunksNew    int64 `json:"chunks_new"`
	ChunksReused int64 `json:"chunks_reused"`
}

// Add accumulates o into s.
func (s *DiskStats) Add(o DiskStats) {
	s.BytesRead += o.BytesRead
	s.BytesZero += o.BytesZero
	s.BytesReused += o.BytesReused
	s.BytesNew += o.BytesNew
	s.BytesStored += o.BytesStored
	s.ChunksNew += o.ChunksNew
	s.ChunksReused += o.ChunksReused
}

// DiskEntry is one disk of a recovery point.
type DiskEntry struct {
	Target      string    `json:"target"`
	Source      string    `json:"source,omitempty"`
	Format      string    `json:"format,omitempty"`
	Size        int64     `json:"size"`
	ChunkSize   int       `json:"chunk_size"`
	Index       string    `json:"index"`
	Stats       DiskStats `json:"stats"`
	Incremental bool      `json:"incremental"`
	// ChangeID is the hypervisor's change-tracking id of the disk at the
	// point in time (vSphere CBT), the base of the next incremental.
	ChangeID string `json:"change_id,omitempty"`
}

// Manifest describes a recovery point. It is stored encrypted under
// points/<ID>; writing it commits the point.
type Manifest struct {
	Version      int         `json:"version"`
	ID           string      `json:"id"`
	VM           VMInfo      `json:"vm"`
	Config       []byte      `json:"config,omitempty"`
	ConfigFormat string      `json:"config_format,omitempty"`
	Disks        []DiskEntry `json:"disks"`
	Consistency  string      `json:"consistency,omitempty"`
	Kind         string      `json:"kind,omitempty"` // "full" or "incremental"
	Parent       string      `json:"parent,omitempty"`
	Checkpoint   string      `json:"checkpoint,omitempty"`
	Started      time.Time   `json:"started"`
	Finished     time.Time   `json:"finished"`
	Tags         []string    `json:"tags,omitempty"`
	KuraHost     string      `json:"kura_host,omitempty"`
	Stats        DiskStats   `json:"stats"`
	Notes        []string    `json:"notes,omitempty"`
	// ConfigMAC is the repository config's MAC when the point was written
	// (spec §2): a config changed since, even with its MAC removed, no
	// longer matches it.
	ConfigMAC string `json:"config_mac,omitempty"`
	// RetainUntil (immutable repositories): every object this point
	// references is locked by the store until at least this time.
	RetainUntil time.Time `json:"retain_until,omitzero"`
	// Requests the backend served while the point was written (S3).
	Requests *storage.RequestStats `json:"requests,omitempty"`
}

// NewPointID returns a fresh sortable point id: UTC time, "-", 8 random hex.
func NewPointID(t time.Time) string {
	var r [4]byte
	_, _ = rand.Read(r[:])
	return t.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(r[:])
}

// validPointID reports whether id has the form produced by NewPointID.
func validPointID(id string) bool {
	if len(id) != 25 || id[8] != 'T' || id[15] != 'Z' || id[16] != '-' {
		return false
	}
	if _, err := time.Parse("20060102T150405Z", id[:16]); err != nil {
		return false
	}
	_, err := hex.DecodeString(id[17:])
	return err == nil
}

// pointName maps a point id to its object name. Object names are lower
// case, so the "T" and "Z" of the id are lowered.
func pointName(id string) string { return "points/" + strings.ToLower(id) }

// pointIDFromName is the inverse of pointName ("" if name is not a point).
func pointIDFromName(name string) string {
	s, ok := strings.CutPrefix(name, "points/")
	if !ok || len(s) != 25 {
		return ""
	}
	id := s[:8] + "T" + s[9:15] + "Z" + s[16:]
	if !validPointID(id) || pointName(id) != name {
		return ""
	}
	return id
}

func decodeManifest(name string, b []byte) (*Manifest, error) {
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, corrupt(name, "manifest: %v", err)
	}
	if err := m.check(name); err != nil {
		return nil, err
	}
	return &m, nil
}

// check applies the rules of spec §6 to a decoded manifest stored as name.
func (m *Manifest) check(name string) error {
	if m.Version != ManifestVersion {
		return corrupt(name, "manifest version %d not supported", m.Version)
	}
	if !validPointID(m.ID) {
		return corrupt(name, "manifest id %q is not valid", m.ID)
	}
	for i, d := range m.Disks {
		if !validID(d.Index) {
			return corrupt(name, "disk %d index id %q is not valid", i, d.Index)
		}
		if d.Size < 0 || d.ChunkSize < MinChunkSize || d.ChunkSize > MaxChunkSize {
			return corrupt(name, "disk %d size or chunk size out of bounds", i)
		}
	}
	return nil
}

func (m *Manifest) encode() ([]byte, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode manifest: %w", err)
	}
	return b, nil
}
