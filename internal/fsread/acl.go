package fsread

import (
	"encoding/binary"
	"fmt"
)

// POSIX ACLs. Linux shows them as the xattrs system.posix_acl_access and
// system.posix_acl_default in one format (version 2, then 8-byte entries
// tag/perm/id, little-endian); ext4 and XFS store them differently and
// the kernel converts. These functions do the same conversion.
const (
	aclXattrAccess  = "system.posix_acl_access"
	aclXattrDefault = "system.posix_acl_default"
	aclUserObj      = 0x01
	aclUser         = 0x02
	aclGroupObj     = 0x04
	aclGroup        = 0x08
	aclMask         = 0x10
	aclOther        = 0x20
	aclUndefinedID  = 0xFFFFFFFF
	aclMaxEntries   = 8192
)

type aclEntry struct {
	tag, perm uint16
	id        uint32
}

// aclXattr encodes entries in the kernel's xattr format.
func aclXattr(ents []aclEntry) []byte {
	out := make([]byte, 4, 4+8*len(ents))
	binary.LittleEndian.PutUint32(out, 2)
	for _, e := range ents {
		id := e.id
		if e.tag != aclUser && e.tag != aclGroup {
			id = aclUndefinedID
		}
		out = binary.LittleEndian.AppendUint16(out, e.tag)
		out = binary.LittleEndian.AppendUint16(out, e.perm)
		out = binary.LittleEndian.AppendUint32(out, id)
	}
	return out
}

func validACLTag(tag uint16) bool {
	switch tag {
	case aclUserObj, aclUser, aclGroupObj, aclGroup, aclMask, aclOther:
		return true
	}
	return false
}

// extACL converts an ext4 on-disk ACL (version 1; 4-byte entries for
// the owner, group, mask and other classes, 8-byte ones for named users
// and groups).
func extACL(b []byte) ([]byte, error) {
	le := binary.LittleEndian
	if len(b) < 4 || le.Uint32(b) != 1 {
		return nil, fmt.Errorf("ext4 acl header: %w", ErrCorrupt)
	}
	var ents []aclEntry
	for p := 4; p < len(b); {
		if p+4 > len(b) || len(ents) >= aclMaxEntries {
			return nil, fmt.Errorf("ext4 acl truncated: %w", ErrCorrupt)
		}
		e := aclEntry{tag: le.Uint16(b[p:]), perm: le.Uint16(b[p+2:])}
		if !validACLTag(e.tag) {
			return nil, fmt.Errorf("ext4 acl tag %#x: %w", e.tag, ErrCorrupt)
		}
		p += 4
		if e.tag == aclUser || e.tag == aclGroup {
			if p+4 > len(b) {
				return nil, fmt.Errorf("ext4 acl entry truncated: %w", ErrCorrupt)
			}
			e.id = le.Uint32(b[p:])
			p += 4
		}
		ents = append(ents, e)
	}
	return aclXattr(ents), nil
}

// xfsACL converts an XFS on-disk ACL (big-endian count, then 12-byte
// entries tag/id/perm/pad).
func xfsACL(b []byte) ([]byte, error) {
	be := binary.BigEndian
	if len(b) < 4 {
		return nil, fmt.Errorf("xfs acl header: %w", ErrCorrupt)
	}
	n := int(be.Uint32(b))
	if n > aclMaxEntries || 4+12*n > len(b) {
		return nil, fmt.Errorf("xfs acl count %d: %w", n, ErrCorrupt)
	}
	ents := make([]aclEntry, n)
	for i := range ents {
		x := b[4+12*i:]
		tag := be.Uint32(x)
		if tag > 0xffff || !validACLTag(uint16(tag)) {
			return nil, fmt.Errorf("xfs acl tag %#x: %w", tag, ErrCorrupt)
		}
		ents[i] = aclEntry{tag: uint16(tag), id: be.Uint32(x[4:]), perm: be.Uint16(x[8:])}
	}
	return aclXattr(ents), nil
}
