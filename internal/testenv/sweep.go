package testenv

import (
	"encoding/xml"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/digitalocean/go-libvirt"
)

// ownerTag prefixes the domain <description> of test guests; the owning test
// process's PID follows it.
const ownerTag = "kura-testenv pid="

var sweepOnce sync.Once

// sweepOrphans destroys and undefines test guests whose owning test process
// is gone (killed by a timeout, for instance) and removes their images.
// Guests of live processes, and domains not made by testenv, are left alone.
func sweepOrphans(l *libvirt.Libvirt, imageDir string) error {
	doms, _, err := l.ConnectListAllDomains(1, 0)
	if err != nil {
		return fmt.Errorf("list domains: %w", err)
	}
	var errs []error
	for _, d := range doms {
		if !strings.HasPrefix(d.Name, "kura-t-") {
			continue
		}
		desc, err := l.DomainGetXMLDesc(d, 0)
		if err != nil {
			continue // vanished meanwhile
		}
		pid, ok := ownerPID(desc)
		if !ok || processAlive(pid) {
			continue
		}
		_ = l.DomainDestroy(d)
		flags := libvirt.DomainUndefineCheckpointsMetadata | libvirt.DomainUndefineSnapshotsMetadata |
			libvirt.DomainUndefineNvram | libvirt.DomainUndefineManagedSave
		if err := l.DomainUndefineFlags(d, flags); err != nil && !libvirt.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("undefine orphan %s: %w", d.Name, err))
			continue
		}
		if err := os.RemoveAll(filepath.Join(imageDir, d.Name)); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// ownerPID extracts the owner PID from a domain's XML description.
func ownerPID(domXML string) (int, bool) {
	var v struct {
		Description string `xml:"description"`
	}
	if err := xml.Unmarshal([]byte(domXML), &v); err != nil {
		return 0, false
	}
	s, ok := strings.CutPrefix(strings.TrimSpace(v.Description), ownerTag)
	if !ok {
		return 0, false
	}
	pid, err := strconv.Atoi(s)
	if err != nil || pid <= 0 {
		return 0, false
	}
	return pid, true
}

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
