package domxml

import (
	"crypto/rand"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/kurabackup/kura/internal/hypervisor"
)

// Sentinel errors.
var (
	// ErrInvalidPlan means a plan field has an invalid value; the wrapping
	// error names the field. It is hypervisor.ErrInvalidPlan.
	ErrInvalidPlan = hypervisor.ErrInvalidPlan
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

// Plan is a libvirt restore plan: the hypervisor-neutral plan plus what
// only libvirt has (the UEFI variable store). It is kept in plan files as
// a hypervisor.RestorePlan with a "libvirt" Section (ToRestorePlan,
// FromRestorePlan).
type Plan struct {
	hypervisor.RestorePlan
	// NVRAM is where the UEFI variable store of the restored VM lives; empty
	// lets libvirt choose (from the firmware template).
	NVRAM string
}

// PlanDisk says where and how one disk is restored.
type PlanDisk = hypervisor.PlanDisk

// PlanNet says how one interface is connected: Type is network, bridge,
// direct, or another libvirt type (then From/To are not used).
type PlanNet = hypervisor.PlanNet

// Section is the libvirt section of a restore plan file.
type Section struct {
	NVRAM string `yaml:"nvram" json:"nvram"`
}

// ToRestorePlan returns the plan in its file form, its section set.
func (p *Plan) ToRestorePlan() *hypervisor.RestorePlan {
	rp := p.RestorePlan
	rp.Section = &Section{NVRAM: p.NVRAM}
	return &rp
}

// FromRestorePlan reads a plan in its file form; kind is the connector's
// (the plan must be for it, or for no one in particular).
func FromRestorePlan(rp *hypervisor.RestorePlan, kind string) (*Plan, error) {
	if rp.Hypervisor != "" && rp.Hypervisor != kind {
		return nil, fmt.Errorf("%w: hypervisor: the plan is for a %s target, this connection is %s", ErrInvalidPlan, rp.Hypervisor, kind)
	}
	var sec Section
	if err := rp.DecodeSection(&sec); err != nil {
		return nil, err
	}
	p := &Plan{RestorePlan: *rp, NVRAM: sec.NVRAM}
	p.Section = nil
	return p, nil
}

// targetRE matches guest device names (vda, sdb, hdc, xvda, nvme0n1…).
var targetRE = regexp.MustCompile(`^[a-z][a-z0-9]{0,31}$`)

func invalid(field, format string, args ...any) error {
	return hypervisor.PlanError(field, format, args...)
}

// Validate checks a plan on its own (without the domain XML): names, UUID,
// formats, absolute and unique disk paths, valid and unique MAC addresses.
// Errors wrap ErrInvalidPlan and name the field.
func (p *Plan) Validate() error {
	if err := p.RestorePlan.Validate(); err != nil {
		return err
	}
	if p.NVRAM != "" && !filepath.IsAbs(p.NVRAM) {
		return invalid("nvram", "%q is not an absolute path", p.NVRAM)
	}
	paths := map[string]string{}
	for i, d := range p.Disks {
		f := fmt.Sprintf("disks[%d]", i)
		if !targetRE.MatchString(d.Target) {
			return invalid(f+".target", "%q is not a device name", d.Target)
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
	for i, n := range p.Networks {
		f := fmt.Sprintf("networks[%d]", i)
		switch n.Type {
		case NetNetwork, NetBridge, NetDirect:
			if n.To == "" {
				return invalid(f+".to", "empty for a %s interface", n.Type)
			}
			if strings.ContainsAny(n.To, "/\x00\n '\"<>&") {
				return invalid(f+".to", "%q is not a valid %s name", n.To, n.Type)
			}
		}
	}
	return nil
}

// NewMAC returns a random locally used address with the QEMU/KVM prefix
// 52:54:00.
func NewMAC() string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("52:54:00:%02x:%02x:%02x", b[0], b[1], b[2])
}
