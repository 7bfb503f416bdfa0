package vsphere

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"

	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	govsession "github.com/vmware/govmomi/session"
	"github.com/vmware/govmomi/vapi/rest"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/soap"

	"github.com/kurabackup/kura/internal/hypervisor"
)

// Names of the connector.
const (
	// Scheme is the URI scheme of vSphere connections.
	Scheme = "vsphere"
	// Kind is Capabilities.Kind of vSphere connections.
	Kind = "vsphere"
	// Prefix starts the name of every snapshot kura creates.
	Prefix = "kura-"
)

// Driver registers the vSphere connector for vsphere:// URIs.
func Driver() hypervisor.Driver {
	return hypervisor.Driver{Kind: Kind, Schemes: []string{Scheme},
		Open: func(ctx context.Context, uri string, opts hypervisor.OpenOptions) (hypervisor.Connector, error) {
			return Connect(ctx, uri, opts)
		},
		Formats: []hypervisor.ConfigFormat{Format()}}
}

// Connector talks to one vCenter (or ESXi host) and works in one
// datacenter. It is safe for concurrent use.
type Connector struct {
	uri    string
	t      target
	vc     *vim25.Client
	sm     *govsession.Manager
	dc     *object.Datacenter
	finder *find.Finder
	log    *slog.Logger
	user   *url.Userinfo

	mu      sync.Mutex
	rc      *rest.Client // vAPI (tags), logged in when first needed
	restErr error
	dss     map[string]*object.Datastore
}

// Connect logs in to the vCenter a vsphere:// URI names. The password
// comes from opts.Password (a file or the environment, never the URI). The
// server's certificate is verified against the system's CAs, the cafile
// parameter's CAs, or pinned by its thumbprint; insecure=1 skips the check.
func Connect(ctx context.Context, uri string, opts hypervisor.OpenOptions) (*Connector, error) {
	t, err := parseURI(uri)
	if err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.Password == nil {
		return nil, fmt.Errorf("vsphere %s: no password source", t.host)
	}
	pw, err := opts.Password()
	if err != nil {
		return nil, fmt.Errorf("vsphere %s: password: %w", t.host, err)
	}
	u := &url.URL{Scheme: "https", Host: t.host, Path: vim25.Path}
	sc := soap.NewClient(u, t.insecure)
	if t.caFile != "" {
		if err := sc.SetRootCAs(t.caFile); err != nil {
			return nil, fmt.Errorf("vsphere %s: cafile %s: %w", t.host, t.caFile, err)
		}
	}
	if t.thumbprint != "" {
		sc.SetThumbprint(u.Host, t.thumbprint)
		pin(sc, t.thumbprint)
	}
	if t.insecure {
		log.Warn("vsphere: the server's certificate is not verified (insecure=1)", "host", t.host)
	}
	vc, err := vim25.NewClient(ctx, sc)
	if err != nil {
		return nil, certAdvice(t, err)
	}
	c := &Connector{uri: uri, t: t, vc: vc, sm: govsession.NewManager(vc), log: log,
		user: url.UserPassword(t.user, pw), dss: map[string]*object.Datastore{}}
	if err := c.sm.Login(ctx, c.user); err != nil {
		return nil, fmt.Errorf("vsphere %s: login as %s: %w", t.host, t.user, err)
	}
	c.finder = find.NewFinder(vc, true)
	if t.datacenter != "" {
		c.dc, err = c.finder.Datacenter(ctx, t.datacenter)
	} else {
		c.dc, err = c.finder.DefaultDatacenter(ctx)
	}
	if err != nil {
		_ = c.sm.Logout(ctx)
		return nil, fmt.Errorf("vsphere %s: datacenter %q: %w (name it in the URI: vsphere://USER@HOST/DATACENTER)", t.host, t.datacenter, err)
	}
	c.finder.SetDatacenter(c.dc)
	log.Info("vsphere connected", "host", t.host, "datacenter", c.dc.InventoryPath, "api", vc.ServiceContent.About.ApiVersion)
	return c, nil
}

// pin makes every TLS handshake of the client check the server's leaf
// certificate against the thumbprint (SHA-256, or SHA-1 as vSphere shows
// it) instead of the system's CAs. soap.Client's own fallback makes a
// failing verified handshake first on every new connection: a wasted round
// trip, and an error in the server's log each time.
func pin(sc *soap.Client, thumbprint string) {
	tc := sc.DefaultTransport().TLSClientConfig
	tc.InsecureSkipVerify = true // verified below, by the pin
	tc.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
		if len(raw) == 0 {
			return errors.New("the server sent no certificate")
		}
		cert, err := x509.ParseCertificate(raw[0])
		if err != nil {
			return fmt.Errorf("server certificate: %w", err)
		}
		if !strings.EqualFold(thumbprint, soap.ThumbprintSHA256(cert)) && !strings.EqualFold(thumbprint, soap.ThumbprintSHA1(cert)) {
			return fmt.Errorf("thumbprint does not match %s (the server's is %s)", thumbprint, soap.ThumbprintSHA256(cert))
		}
		return nil
	}
}

// certAdvice explains certificate failures.
func certAdvice(t target, err error) error {
	if soap.IsCertificateUntrusted(err) || strings.Contains(err.Error(), "thumbprint does not match") || strings.Contains(err.Error(), "certificate") {
		return fmt.Errorf("vsphere %s: the server's certificate is not trusted: %w (pin it with ?thumbprint=AA:BB:… — "+
			"openssl s_client -connect %s </dev/null | openssl x509 -noout -fingerprint -sha256 — or give its CA with ?cafile=PEM)",
			t.host, err, t.host)
	}
	return fmt.Errorf("vsphere %s: %w", t.host, err)
}

// URI implements hypervisor.Connector.
func (c *Connector) URI() string { return c.uri }

// Capabilities implements hypervisor.Connector: change ids (CBT) that the
// points keep, for running and shut-off VMs alike; restored disks staged
// locally and uploaded to a datastore; a restore in place keeps the VM
// object.
func (c *Connector) Capabilities() hypervisor.Capabilities {
	return hypervisor.Capabilities{Kind: Kind, ConfigFormat: ConfigFormat, RestoreFormats: []string{ConfigFormat},
		Backup: true, ChangeTracking: hypervisor.TrackChangeIDs, OfflineChangeTracking: true,
		RemoteDisks: true, ReplaceInPlace: true}
}

// Host implements hypervisor.Connector: the vCenter's host name.
func (c *Connector) Host(context.Context) (string, error) {
	host := c.t.host
	if h, _, ok := strings.Cut(host, ":"); ok && !strings.Contains(h, "[") {
		host = h
	}
	return host, nil
}

// Close implements hypervisor.Connector.
func (c *Connector) Close() error {
	ctx := context.Background()
	c.mu.Lock()
	rc := c.rc
	c.mu.Unlock()
	if rc != nil {
		_ = rc.Logout(ctx)
	}
	if err := c.sm.Logout(ctx); err != nil {
		return fmt.Errorf("vsphere logout: %w", err)
	}
	return nil
}

// restClient returns a logged-in vAPI client, or the error of the first
// attempt (vAPI may be absent: an ESXi host has no tags).
func (c *Connector) restClient(ctx context.Context) (*rest.Client, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.rc != nil || c.restErr != nil {
		return c.rc, c.restErr
	}
	rc := rest.NewClient(c.vc)
	if err := rc.Login(ctx, c.user); err != nil {
		c.restErr = fmt.Errorf("vapi login: %w", err)
		c.log.Warn("vsphere: no tags (vAPI login failed)", "err", err)
		return nil, c.restErr
	}
	c.rc = rc
	return rc, nil
}

// datastore finds a datastore of the datacenter by name (cached).
func (c *Connector) datastore(ctx context.Context, name string) (*object.Datastore, error) {
	c.mu.Lock()
	ds, ok := c.dss[name]
	c.mu.Unlock()
	if ok {
		return ds, nil
	}
	ds, err := c.finder.Datastore(ctx, name)
	if err != nil {
		var nf *find.NotFoundError
		if errors.As(err, &nf) {
			return nil, fmt.Errorf("datastore %q not found in %s: %w", name, c.dc.InventoryPath, hypervisor.ErrUnsupported)
		}
		return nil, fmt.Errorf("datastore %q: %w", name, err)
	}
	c.mu.Lock()
	c.dss[name] = ds
	c.mu.Unlock()
	return ds, nil
}

var _ hypervisor.Connector = (*Connector)(nil)
