package hypervisor

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// ErrInvalidPlan means a restore plan field has an invalid value; the
// wrapping error names the field.
var ErrInvalidPlan = errors.New("invalid restore plan")

// RestorePlan is the editable restore plan: everything a restore decides
// about the VM it defines. The fields the engine uses (name, UUID, disks,
// start) and those every hypervisor shares are common; Section holds the
// target connector's own settings (libvirt: nvram; vSphere: datastore,
// folder, resource pool), encoded in YAML under the key named by
// Hypervisor. One file format serves every hypervisor (kura restore --plan,
// --plan-file).
type RestorePlan struct {
	// Point is the recovery point restored.
	Point string `yaml:"point" json:"point"`
	// Hypervisor is the kind of the target connector ("libvirt",
	// "vsphere"); a plan is applied by a connector of that kind only.
	Hypervisor string `yaml:"hypervisor" json:"hypervisor"`
	// Host is the connection URI of the target.
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
	// Disks are the VM's disks (removable media excluded), one entry per
	// disk of the saved configuration.
	Disks []PlanDisk `yaml:"disks" json:"disks"`
	// Networks are the VM's interfaces, in the order of the saved
	// configuration.
	Networks []PlanNet `yaml:"networks" json:"networks"`
	// Start the VM once restored.
	Start bool `yaml:"start" json:"start"`
	// Section is the connector's own part: a value of the connector's type
	// when the connector made the plan, a *yaml.Node when it was decoded
	// from a file (see DecodeSection). Nil when the connector has none.
	Section any `yaml:"-" json:"section,omitempty"`
}

// PlanDisk says where and how one disk is restored.
type PlanDisk struct {
	// Target is the guest device name (vda, scsi0:1) identifying the disk.
	Target string `yaml:"target" json:"target"`
	// Source is the disk's path in the saved configuration (information).
	Source string `yaml:"source,omitempty" json:"source,omitempty"`
	// Path is where the restored image is written, in the target's terms
	// (a host path for libvirt, "[datastore] dir/file.vmdk" for vSphere).
	Path string `yaml:"path" json:"path"`
	// Format is the image format (qcow2, raw, vmdk).
	Format string `yaml:"format" json:"format"`
	// Size is the virtual size in bytes (0 when unknown).
	Size int64 `yaml:"size" json:"size"`
	// Skip leaves the disk out: not written and removed from the VM.
	Skip bool `yaml:"skip,omitempty" json:"skip,omitempty"`
}

// PlanNet says how one interface is connected.
type PlanNet struct {
	// Type is the interface's kind in the saved configuration (libvirt:
	// network, bridge, direct…; vSphere: network, dvportgroup).
	Type string `yaml:"type" json:"type"`
	// MAC is the interface's address; empty means a new one (or the
	// original with KeepMACs).
	MAC string `yaml:"mac" json:"mac"`
	// From is the network the saved configuration names.
	From string `yaml:"from,omitempty" json:"from,omitempty"`
	// To is the network to use instead.
	To string `yaml:"to,omitempty" json:"to,omitempty"`
}

// planKeys are the YAML keys of the common part, in file order.
var planKeys = []string{"point", "hypervisor", "host", "name", "uuid", "keep_macs", "memory_mib", "vcpus", "disks", "networks", "start"}

// legacySection lists, per hypervisor, top-level keys that plan files
// written before the hypervisor-specific section existed carried, and that
// now belong to the section. Those files have no "hypervisor" key and were
// all libvirt plans.
var legacySection = map[string][]string{"libvirt": {"nvram"}}

// LegacyHypervisor is the kind assumed for a plan file without a
// "hypervisor" key (kura wrote only libvirt plans before).
const LegacyHypervisor = "libvirt"

var uuidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$`)

// PlanError returns an ErrInvalidPlan error naming field.
func PlanError(field, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrInvalidPlan, field, fmt.Sprintf(format, args...))
}

// ValidUUID reports whether s is a UUID (with or without dashes).
func ValidUUID(s string) bool { return uuidRE.MatchString(s) }

// Validate checks what every hypervisor requires of a plan: a name, a valid
// UUID, sane sizes, unique disk targets, valid and unique MAC addresses.
// Connectors check the rest (paths, formats, network names).
func (p *RestorePlan) Validate() error {
	if p.Name == "" {
		return PlanError("name", "empty")
	}
	if strings.ContainsAny(p.Name, "/\x00\n\r\t") || len(p.Name) > 200 {
		return PlanError("name", "%q has a forbidden character or is too long", p.Name)
	}
	if p.UUID != "" && !ValidUUID(p.UUID) {
		return PlanError("uuid", "%q is not a UUID", p.UUID)
	}
	if p.MemoryMiB < 0 || p.MemoryMiB > 1<<30 {
		return PlanError("memory_mib", "%d out of range", p.MemoryMiB)
	}
	if p.VCPUs < 0 || p.VCPUs > 4096 {
		return PlanError("vcpus", "%d out of range", p.VCPUs)
	}
	targets := map[string]bool{}
	for i, d := range p.Disks {
		f := fmt.Sprintf("disks[%d]", i)
		if d.Target == "" || strings.ContainsAny(d.Target, "/\x00\n ") || len(d.Target) > 32 {
			return PlanError(f+".target", "%q is not a device name", d.Target)
		}
		if targets[d.Target] {
			return PlanError(f+".target", "%q appears twice", d.Target)
		}
		targets[d.Target] = true
		if d.Size < 0 {
			return PlanError(f+".size", "negative")
		}
	}
	macs := map[string]int{}
	for i, n := range p.Networks {
		f := fmt.Sprintf("networks[%d]", i)
		if n.Type == "" {
			return PlanError(f+".type", "empty")
		}
		if n.MAC == "" {
			continue
		}
		m, err := ParseMAC(n.MAC)
		if err != nil {
			return PlanError(f+".mac", "%v", err)
		}
		if j, ok := macs[m]; ok {
			return PlanError(f+".mac", "%s is also the address of networks[%d]", n.MAC, j)
		}
		macs[m] = i
	}
	return nil
}

// ParseMAC checks a unicast 48-bit MAC address and returns it lower-case.
func ParseMAC(s string) (string, error) {
	hw, err := net.ParseMAC(s)
	if err != nil || len(hw) != 6 || strings.Count(s, ":") != 5 {
		return "", fmt.Errorf("%q is not a MAC address like 52:54:00:12:34:56", s)
	}
	if hw[0]&1 != 0 {
		return "", fmt.Errorf("%q is a multicast address", s)
	}
	return hw.String(), nil
}

// NewUUID returns a random (version 4) UUID.
func NewUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// DecodeSection decodes the plan's connector section into dst (a pointer
// to the connector's section type). Unknown keys are errors. A nil section
// leaves dst untouched.
func (p *RestorePlan) DecodeSection(dst any) error {
	if p.Section == nil {
		return nil
	}
	b, err := yaml.Marshal(p.Section)
	if err != nil {
		return fmt.Errorf("%w: %s section: %w", ErrInvalidPlan, p.Hypervisor, err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(dst); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: %s section: %w", ErrInvalidPlan, p.Hypervisor, err)
	}
	return nil
}

const planHeader = `# kura restore plan. Edit, then run: kura restore --plan-file FILE
# uuid: empty = a new random UUID. mac: empty = a new random address
# (or the original one with keep_macs). memory_mib/vcpus: 0 = as saved.
# disks: skip: true leaves the disk out of the VM. The section named after
# the hypervisor holds that hypervisor's own settings.
`

// EncodePlanYAML encodes a plan as commented YAML: the common fields, then
// the connector's section under the key named by p.Hypervisor.
func EncodePlanYAML(p *RestorePlan) ([]byte, error) {
	var root yaml.Node
	if err := root.Encode(p); err != nil {
		return nil, fmt.Errorf("encode restore plan: %w", err)
	}
	if p.Section != nil {
		if p.Hypervisor == "" {
			return nil, fmt.Errorf("encode restore plan: a section needs the hypervisor's name")
		}
		sec, ok := p.Section.(*yaml.Node)
		if !ok {
			sec = &yaml.Node{}
			if err := sec.Encode(p.Section); err != nil {
				return nil, fmt.Errorf("encode restore plan section: %w", err)
			}
		}
		root.Content = append(root.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: p.Hypervisor}, sec)
	}
	var buf bytes.Buffer
	buf.WriteString(planHeader)
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&root); err != nil {
		return nil, fmt.Errorf("encode restore plan: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encode restore plan: %w", err)
	}
	return buf.Bytes(), nil
}

// DecodePlanYAML decodes a plan file and checks its common part (Validate).
// Unknown fields are errors: a misspelt key must not be ignored silently.
// Files written before plans had a hypervisor section (no "hypervisor"
// key) are libvirt plans whose libvirt-only keys were at the top level:
// they are read as such.
func DecodePlanYAML(data []byte) (*RestorePlan, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidPlan, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: more than one yaml document", ErrInvalidPlan)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%w: not a yaml mapping", ErrInvalidPlan)
	}
	m := doc.Content[0]
	hv := ""
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == "hypervisor" {
			hv = m.Content[i+1].Value
		}
	}
	legacy := hv == ""
	if legacy {
		hv = LegacyHypervisor
	}
	common := &yaml.Node{Kind: yaml.MappingNode}
	var section *yaml.Node
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		switch {
		case slices.Contains(planKeys, k.Value):
			common.Content = append(common.Content, k, v)
		case k.Value == hv:
			section = v
		case legacy && slices.Contains(legacySection[hv], k.Value):
			if section == nil {
				section = &yaml.Node{Kind: yaml.MappingNode}
			}
			section.Content = append(section.Content, k, v)
		default:
			return nil, fmt.Errorf("%w: line %d: unknown field %q", ErrInvalidPlan, k.Line, k.Value)
		}
	}
	b, err := yaml.Marshal(common)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidPlan, err)
	}
	strict := yaml.NewDecoder(bytes.NewReader(b))
	strict.KnownFields(true)
	var p RestorePlan
	if err := strict.Decode(&p); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: %w", ErrInvalidPlan, err)
	}
	p.Hypervisor = hv
	if section != nil && section.Tag != "!!null" {
		p.Section = section
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
