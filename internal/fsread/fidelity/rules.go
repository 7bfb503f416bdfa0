package fidelity

import (
	"strings"
	"time"
)

// xfsACLNames are how XFS lists POSIX ACLs a second time (as trusted.*
// xattrs, to root); kura shows them once, as system.posix_acl_*.
func xfsACLNames(name string) bool { return strings.HasPrefix(name, "trusted.SGI_ACL_") }

// ListingRules says how kura's listing of a kind is compared with the
// kernel's view of the same image: everything the filesystem keeps.
// NTFS keeps no unix modes or owners (ntfs-3g shows its mount options);
// allocation is compared for ext and XFS only (ntfs-3g rounds resident
// data its own way); FUSE shows no birth times.
func ListingRules(k Kind) Rules {
	r := Rules{Inodes: true, DirSizes: true, CTime: true, BTime: true}
	if k.feat.unix {
		r.Perms, r.Owners, r.Allocated = true, true, true
	}
	if k.FS == "xfs" {
		r.IgnoreXattr = xfsACLNames
	}
	if k.FS == "ntfs" {
		r.TimeEq = ntfs3gTimeEq
	}
	return r
}

// ExtractRules says how a tree kura extracted is compared with the
// kernel's view of the source: names, types, sizes, modes, owners,
// access and modification times, targets, devices, contents, xattrs,
// hard-link groups, and sparse files staying sparse. Inode numbers,
// change and birth times and directory sizes belong to the target.
func ExtractRules(k Kind) Rules {
	r := Rules{Sparse: true}
	if k.feat.unix {
		r.Perms, r.Owners = true, true
	}
	if k.FS == "xfs" {
		r.IgnoreXattr = xfsACLNames
	}
	if k.FS == "ntfs" {
		r.TimeEq = ntfs3gTimeEq
	}
	return r
}

// ntfs3gTimeEq compares a kernel time shown by ntfs-3g with kura's:
// ntfs-3g truncates times before 1970 toward zero seconds and drops
// their fraction (its ntfs2timespec), where kura keeps the exact time.
func ntfs3gTimeEq(want, got time.Time) bool {
	if sec := got.Unix(); sec < 0 {
		if got.Nanosecond() != 0 {
			sec++
		}
		got = time.Unix(sec, 0).UTC()
	}
	return want.Equal(got)
}
