// Package vcsim runs govmomi's vSphere simulator in-process for kura's
// tests, with a real datastore directory holding VMDKs made by qemu-img, and
// adds the vSphere behaviour the simulator lacks, each part written from
// the vSphere API's documented semantics and tested against them
// (vcsim_test.go):
//
//   - Changed Block Tracking: QueryChangedDiskAreas on a VM answers from
//     the real bytes of the snapshot's disk compared with the disk's bytes
//     when the change id was issued (64 KiB blocks); changeId "*" gives the
//     areas in use; an id of another tracking epoch (CBT reset, a disk file
//     replaced) is a fault; one reply covers at most Sim.QuerySpan bytes so
//     callers must loop. Change ids ("<epoch uuid>/<n>") are issued at each
//     snapshot of a VM with changeTrackingEnabled and set on the snapshot's
//     and the VM's disk backings. The epoch lives in a "-ctk.vmdk" file that
//     the disk's descriptor names (ddb.changeTrackPath), as on ESXi.
//   - Delta disks: a snapshot redirects every disk of the VM to a new child
//     disk ("<vm>-00000N.vmdk", qemu-img create -b), so writes after the
//     snapshot leave the snapshot's view (the parent) unchanged; removing
//     the newest snapshot commits its child into the parent and points the
//     VM back at it.
//   - Quiescing: CreateSnapshot with quiesce when VMware Tools is not
//     running fails with ToolsUnavailable.
//
// Not emulated (a real vCenter shows them): VDDK/NBD transports, vmfsSparse
// and seSparse delta formats, real guest quiescing, removing a snapshot
// other than the newest. This package is for tests only (the layer test
// forbids importing it elsewhere).
package vcsim

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/url"
	"path"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"

	// The vAPI endpoints (tags).
	_ "github.com/vmware/govmomi/vapi/simulator"
)

// Login of the simulated vCenter.
const (
	User     = "kura-backup"
	Password = "s3cret pass"
)

// Sim is a running simulated vCenter.
type Sim struct {
	Model  *simulator.Model
	Server *simulator.Server
	// Client is an administrator's connection for the test's own setup.
	Client *govmomi.Client
	// Datacenter and Datastore name the simulated datacenter and its
	// datastore; Dir is the datastore's local directory.
	Datacenter, Datastore, Dir string
	// Thumbprint is the SHA-256 thumbprint of the server's certificate;
	// CAFile a PEM file holding it.
	Thumbprint, CAFile string
	// QuerySpan bounds the bytes one QueryChangedDiskAreas reply covers.
	QuerySpan int64

	ext *extension
}

// Start runs a simulated vCenter (one datacenter, a cluster of three hosts
// and a standalone host, one datastore, no VMs) until the test ends.
func Start(t testing.TB) *Sim {
	t.Helper()
	model := simulator.VPX()
	model.Machine = 0
	if err := model.Create(); err != nil {
		t.Fatalf("vcsim: %v", err)
	}
	model.Service.TLS = new(tls.Config)
	model.Service.RegisterEndpoints = true
	model.Service.Listen = &url.URL{User: url.UserPassword(User, Password)}
	s := &Sim{Model: model, Datacenter: "DC0", Datastore: "LocalDS_0", QuerySpan: 4 << 20}
	s.ext = newExtension(s)
	model.Map().Handler = s.ext.handle
	model.Map().AddHandler(s.ext)
	s.Server = model.Service.NewServer()
	t.Cleanup(func() {
		s.Server.Close()
		model.Remove()
	})
	s.Thumbprint = soap.ThumbprintSHA256(s.Server.Certificate())
	var err error
	if s.CAFile, err = s.Server.CertificateFile(); err != nil {
		t.Fatalf("vcsim: %v", err)
	}
	ctx := context.Background()
	u := *s.Server.URL
	u.User = url.UserPassword(User, Password)
	if s.Client, err = govmomi.NewClient(ctx, &u, true); err != nil {
		t.Fatalf("vcsim: login: %v", err)
	}
	t.Cleanup(func() { _ = s.Client.Logout(context.Background()) })
	ds, err := s.finder().Datastore(ctx, s.Datastore)
	if err != nil {
		t.Fatalf("vcsim: %v", err)
	}
	var mds mo.Datastore
	if err := ds.Properties(ctx, ds.Reference(), []string{"summary"}, &mds); err != nil {
		t.Fatalf("vcsim: %v", err)
	}
	s.Dir = mds.Summary.Url
	s.ext.dirs[s.Datastore] = s.Dir
	t.Cleanup(func() {
		if err := s.Err(); err != nil {
			t.Errorf("vcsim extension: %v", err)
		}
	})
	return s
}

// URI is the kura connection URI of the simulator (certificate pinned by
// thumbprint); query adds parameters ("insecure=1").
func (s *Sim) URI(query string) string {
	q := "thumbprint=" + s.Thumbprint
	if query != "" {
		q = query
	}
	return fmt.Sprintf("vsphere://%s@%s/%s?%s", User, s.Server.URL.Host, s.Datacenter, q)
}

func (s *Sim) finder() *find.Finder {
	f := find.NewFinder(s.Client.Client, true)
	dc, err := f.Datacenter(context.Background(), s.Datacenter)
	if err == nil {
		f.SetDatacenter(dc)
	}
	return f
}

// LocalPath maps a datastore path ("[LocalDS_0] vm/vm.vmdk") to its file.
func (s *Sim) LocalPath(dsPath string) string {
	p, err := s.ext.localPath(dsPath)
	if err != nil {
		panic(err)
	}
	return p
}

// Err returns what went wrong inside the extension (it runs inside the
// simulator's handlers, where it cannot fail a test itself).
func (s *Sim) Err() error {
	s.ext.mu.Lock()
	defer s.ext.mu.Unlock()
	return errors.Join(s.ext.errs...)
}

// VM returns the simulator's object for a VM (for the test's own checks).
func (s *Sim) VM(t testing.TB, name string) *object.VirtualMachine {
	t.Helper()
	vm, err := s.finder().VirtualMachine(context.Background(), name)
	if err != nil {
		t.Fatalf("vcsim: vm %s: %v", name, err)
	}
	return vm
}

// dsPathOf splits "[ds] dir/file" into the datastore and the path.
func dsPathOf(p string) (ds, rel string, err error) {
	var dp object.DatastorePath
	if !dp.FromString(p) || dp.Datastore == "" {
		return "", "", fmt.Errorf("%q is not a datastore path", p)
	}
	return dp.Datastore, path.Clean(strings.TrimPrefix(dp.Path, "/")), nil
}

// extension holds the emulated vSphere behaviour (see the package doc).
type extension struct {
	sim  *Sim
	mu   sync.Mutex
	dirs map[string]string // datastore name -> local directory
	errs []error
	// cbt: tracking epoch (ctk file path) -> change id -> block hashes
	states map[string]map[string][]blockHash
	// views caches the block hashes of a snapshot's disk (frozen while
	// the snapshot exists), by snapshot and device key.
	views map[string]diskView
	// deltas: snapshot MoRef value -> device key -> the child made at it
	deltas map[string]map[int32]delta
	seq    int
	now    func() time.Time
	// sessions the extension put vmExt objects into
	sessions []*simulator.Session
}

type delta struct{ child, parent string } // datastore paths

func newExtension(s *Sim) *extension {
	return &extension{sim: s, dirs: map[string]string{}, states: map[string]map[string][]blockHash{},
		views: map[string]diskView{}, deltas: map[string]map[int32]delta{}, now: time.Now}
}

func (e *extension) fail(err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.errs = append(e.errs, err)
}

func (e *extension) localPath(dsPath string) (string, error) {
	ds, rel, err := dsPathOf(dsPath)
	if err != nil {
		return "", err
	}
	e.mu.Lock()
	dir, ok := e.dirs[ds]
	e.mu.Unlock()
	if !ok {
		return "", fmt.Errorf("unknown datastore %s", ds)
	}
	return path.Join(dir, rel), nil
}
