package domxml

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

// Sentinel errors.
var (
	// ErrInvalidPlan means a plan field has an invalid value; the wrapping
	// error names the field.
	ErrInvalidPlan = errors.New("invalid restore plan")
	// ErrInvalidXML means the saved domain XML cannot be parsed or lacks
	// what a restore needs.
	ErrInvalidXML = errors.New("invalid domain xml")
	// ErrPlanMismatch means the plan and the domain XML do not describe the
	// same disks or interfaces.
	ErrPlanMismatch = errors.New("plan does not match domain xml")
)

// Formats a restored disk can be written in.
const (
	FormatQCOW2 = "qcow2"
	FormatRaw   = "raw"
)

// Interface source types a plan maps (PlanNet.Type).
const (
	NetNetwork = "network"
	NetBridge  = "bridge"
	NetDirect  = "direct"
)

// Plan is the editable restore plan: everything a restore decides about the
// VM it defines. It is encoded as YAML for `kura restore --plan`.
type Plan struct {
	// Point is the recovery point restored.
	Point string `yaml:"point" json:"point"`
	// Host is the libvirt connection URI of the target host.
	Host string `yaml:"host,omitempty" json:"host,omitempty"`
	// Name of the restored VM.
	Name string `yaml:"name" json:"name"`
	// UUID of the restored VM; empty means a new random one.
	UUID string `yaml:"uuid" json:"uuid"`
	// KeepMACs keeps the interfaces' original MAC addresses.
	KeepMACs bool `yaml:"keep_macs" json:"keep_macs"`
	// MemoryMiB and VCPUs resize the VM; 0 keeps the saved value.
	MemoryMiB int `yaml:"memory_mib" json:"memory_mib"`
	VCPUs     int `yaml:"vcpus" json:"vcpus"`
	// NVRAM is where the UEFI variable store of the restored VM lives; empty
	// lets libvirt choose (from the firmware template).
	NVRAM string `yaml:"nvram,omitempty" json:"nvram,omitempty"`
	// Disks are the VM's disks (cdroms and floppies excluded), one entry
	// per disk of the saved XML.
	Disks []PlanDisk `yaml:"disks" json:"disks"`
	// Networks are the VM's interfaces, in the order of the saved XML.
	Networks []PlanNet `yaml:"networks" json:"networks"`
	// Start the VM once restored.
	Start bool `yaml:"start" json:"start"`
}

// PlanDisk says where and how one disk is restored.
type PlanDisk struct {
	// Target is the guest device name (vda, sdb) identifying the disk.
	Target string `yaml:"target" json:"target"`
	// Source is the disk's path in the saved XML (information only).
	Source string `yaml:"source,omitempty" json:"source,omitempty"`
	// Path is where the restored image is written.
	Path string `yaml:"path" json:"path"`
	// Format is qcow2 or raw.
	Format string `yaml:"format" json:"format"`
	// Size is the virtual size in bytes (0 when unknown).
	Size int64 `yaml:"size" json:"size"`
	// Skip leaves the disk out: not written and removed from the VM.
	Skip bool `yaml:"skip,omitempty" json:"skip,omitempty"`
}

// PlanNet says how one interface is connected.
type PlanNet struct {
	// Type is the interface's type in the saved XML: network, bridge,
	// direct, or another libvirt type (then From/To are not used).
	Type string `yaml:"type" json:"type"`
	// MAC is the interface's address; empty means a new random one (or
	// the original with KeepMACs).
	MAC string `yaml:"mac" json:"mac"`
	// From is the network, bridge or host device in the saved XML.
	From string `yaml:"from,omitempty" json:"from,omitempty"`
	// To is the network, bridge or host device to use instead.
	To string `yaml:"to,omitempty" json:"to,omitempty"`
}

var (
	uuidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$`)
	// targetRE matches guest device names (vda, sdb, hdc, xvda, nvme0n1…).
	targetRE = regexp.MustCompile(`^[a-z][a-z0-9]{0,31}$`)
)

func invalid(field, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrInvalidPlan, field, fmt.Sprintf(format, args...))
}

// Validate checks a plan on its own (without the domain XML): names, UUID,
// formats, absolute and unique disk paths, valid and unique MAC addresses.
// Errors wrap ErrInvalidPlan and name the field.
func (p *Plan) Validate() error {
	if p.Name == "" {
		return invalid("name", "empty")
	}
	if strings.ContainsAny(p.Name, "/\x00\n\r\t") || len(p.Name) > 200 {
		return invalid("name", "%q has a forbidden character or is too long", p.Name)
	}
	if p.UUID != "" && !validUUID(p.UUID) {
		return invalid("uuid", "%q is not a UUID", p.UUID)
	}
	if p.MemoryMiB < 0 || p.MemoryMiB > 1<<30 {
		return invalid("memory_mib", "%d out of range", p.MemoryMiB)
	}
	if p.VCPUs < 0 || p.VCPUs > 4096 {
		return invalid("vcpus", "%d out of range", p.VCPUs)
	}
	if p.NVRAM != "" && !filepath.IsAbs(p.NVRAM) {
		return invalid("nvram", "%q is not an absolute path", p.NVRAM)
	}
	targets := map[string]bool{}
	paths := map[string]string{}
	for i, d := range p.Disks {
		f := fmt.Sprintf("disks[%d]", i)
		if !targetRE.MatchString(d.Target) {
			return invalid(f+".target", "%q is not a device name", d.Target)
		}
		if targets[d.Target] {
			return invalid(f+".target", "%q appears twice", d.Target)
		}
		targets[d.Target] = true
		if d.Size < 0 {
			return invalid(f+".size", "negative")
		}
		if d.Skip {
			continue
		}
		if d.Format != FormatQCOW2 && d.Format != FormatRaw {
			return invalid(f+".format", "%q is not qcow2 or raw", d.Format)
		}
		if !filepath.IsAbs(d.Path) || strings.ContainsAny(d.Path, "\x00\n") {
			return invalid(f+".path", "%q is not an absolute path", d.Path)
		}
		clean := filepath.Clean(d.Path)
		if other, ok := paths[clean]; ok {
			return invalid(f+".path", "%q is also the path of disk %s", d.Path, other)
		}
		if p.NVRAM != "" && clean == filepath.Clean(p.NVRAM) {
			return invalid(f+".path", "%q is also the nvram path", d.Path)
		}
		paths[clean] = d.Target
	}
	macs := map[string]int{}
	for i, n := range p.Networks {
		f := fmt.Sprintf("networks[%d]", i)
		if n.MAC != "" {
			m, err := parseMAC(n.MAC)
			if err != nil {
				return invalid(f+".mac", "%v", err)
			}
			if j, ok := macs[m]; ok {
				return invalid(f+".mac", "%s is also the address of networks[%d]", n.MAC, j)
			}
			macs[m] = i
		}
		switch n.Type {
		case NetNetwork, NetBridge, NetDirect:
			if n.To == "" {
				return invalid(f+".to", "empty for a %s interface", n.Type)
			}
			if strings.ContainsAny(n.To, "/\x00\n '\"<>&") {
				return invalid(f+".to", "%q is not a valid %s name", n.To, n.Type)
			}
		case "":
			return invalid(f+".type", "empty")
		}
	}
	return nil
}

func validUUID(s string) bool { return uuidRE.MatchString(s) }

// parseMAC checks a unicast 48-bit MAC address and returns it lower-case.
func parseMAC(s string) (string, error) {
	hw, err := net.ParseMAC(s)
	if err != nil || len(hw) != 6 || strings.Count(s, ":") != 5 {
		return "", fmt.Errorf("%q is not a MAC address like 52:54:00:12:34:56", s)
	}
	if hw[0]&1 != 0 {
		return "", fmt.Errorf("%q is a multicast address", s)
	}
	return hw.String(), nil
}

// NewMAC returns a random locally used address with the QEMU/KVM prefix
// 52:54:00.
func NewMAC() string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("52:54:00:%02x:%02x:%02x", b[0], b[1], b[2])
}

// NewUUID returns a random (version 4) UUID.
func NewUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

const planHeader = `# kura restore plan. Edit, then run: kura restore --plan-file FILE
# uuid: empty = a new random UUID. mac: empty = a new random address
# (or the original one with keep_macs). memory_mib/vcpus: 0 = as saved.
# disks: format qcow2|raw; skip: true leaves the disk out of the VM.
`

// EncodeYAML encodes a plan as commented YAML.
func EncodeYAML(p *Plan) ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteString(planHeader)
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(p); err != nil {
		return nil, fmt.Errorf("encode restore plan: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encode restore plan: %w", err)
	}
	return buf.Bytes(), nil
}

// DecodeYAML decodes and validates a plan. Unknown fields are errors (a
// misspelt key must not be ignored silently).
func DecodeYAML(data []byte) (*Plan, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var p Plan
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidPlan, err)
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: more than one yaml document", ErrInvalidPlan)
	}
	if len(p.Disks) == 0 {
		p.Disks = nil
	}
	if len(p.Networks) == 0 {
		p.Networks = nil
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return &p, nil
}
