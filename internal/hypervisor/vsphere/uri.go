package vsphere

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"

	"github.com/kurabackup/kura/internal/hypervisor"
)

// target is a parsed vsphere:// URI.
type target struct {
	user       string
	host       string // host[:port] of vCenter (or ESXi)
	datacenter string // inventory path of the datacenter ("" = the only one)
	insecure   bool
	thumbprint string
	caFile     string
}

var thumbprintRE = regexp.MustCompile(`^[0-9A-F]{2}(:[0-9A-F]{2}){19}$|^[0-9A-F]{2}(:[0-9A-F]{2}){31}$`)

// parseURI parses vsphere://USER@VCENTER[:PORT]/DATACENTER[?insecure=0|1
// &thumbprint=AA:BB:…&cafile=PATH]. A password in the URI is refused.
func parseURI(uri string) (target, error) {
	var t target
	bad := func(format string, args ...any) (target, error) {
		return target{}, fmt.Errorf("%w: %s: %s (want vsphere://USER@VCENTER/DATACENTER?thumbprint=… or ?cafile=PEM)",
			hypervisor.ErrBadURI, redact(uri), fmt.Sprintf(format, args...))
	}
	u, err := url.Parse(uri)
	if err != nil {
		return bad("not a URI")
	}
	if u.Scheme != Scheme {
		return bad("scheme %q is not %s", u.Scheme, Scheme)
	}
	if u.User == nil || u.User.Username() == "" {
		return bad("no user (vsphere://USER@HOST/DC; a domain user is written user%%40domain)")
	}
	if _, ok := u.User.Password(); ok {
		return bad("a password in the URI is refused: it would show in process lists and logs; use --connect-password-file or KURA_CONNECT_PASSWORD")
	}
	if u.Host == "" {
		return bad("no host")
	}
	t.user, t.host = u.User.Username(), u.Host
	t.datacenter = strings.Trim(u.Path, "/")
	for k, vs := range u.Query() {
		v := vs[len(vs)-1]
		switch k {
		case "insecure":
			switch v {
			case "1", "true":
				t.insecure = true
			case "0", "false", "":
			default:
				return bad("insecure=%q: use 0 or 1", v)
			}
		case "thumbprint":
			t.thumbprint = strings.ToUpper(strings.ReplaceAll(v, "-", ":"))
			if !thumbprintRE.MatchString(t.thumbprint) {
				return bad("thumbprint %q is not a SHA-1 or SHA-256 fingerprint like AB:CD:…", v)
			}
		case "cafile":
			t.caFile = v
		default:
			return bad("unknown parameter %q (known: insecure, thumbprint, cafile)", k)
		}
	}
	if t.insecure && (t.thumbprint != "" || t.caFile != "") {
		return bad("insecure=1 with a thumbprint or cafile: choose one")
	}
	return t, nil
}

// redact hides a password if one was given anyway (also in URIs that do
// not parse).
func redact(uri string) string {
	if u, err := url.Parse(uri); err == nil {
		if u.User != nil {
			if _, ok := u.User.Password(); ok {
				u.User = url.UserPassword(u.User.Username(), "xxxxx")
				return u.String()
			}
		}
		return uri
	}
	scheme, rest, ok := strings.Cut(uri, "://")
	at := strings.LastIndex(rest, "@")
	if !ok || at < 0 {
		return uri
	}
	user, _, _ := strings.Cut(rest[:at], ":")
	return scheme + "://" + user + ":xxxxx" + rest[at:]
}
