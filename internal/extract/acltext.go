package extract

import (
	"encoding/binary"
	"errors"
	"strconv"
	"strings"
)

// aclText converts a POSIX ACL from the kernel's xattr format to the
// short text form tar stores (SCHILY.acl.*): "user::rw-,user:1000:r--,
// group::r--,mask::r--,other::---", with numeric ids.
func aclText(b []byte) (string, error) {
	le := binary.LittleEndian
	if len(b) < 4 || le.Uint32(b) != 2 || (len(b)-4)%8 != 0 {
		return "", errors.New("not a POSIX ACL")
	}
	var parts []string
	for p := 4; p < len(b); p += 8 {
		tag, perm, id := le.Uint16(b[p:]), le.Uint16(b[p+2:]), le.Uint32(b[p+4:])
		var who string
		switch tag {
		case 0x01:
			who = "user::"
		case 0x02:
			who = "user:" + strconv.FormatUint(uint64(id), 10) + ":"
		case 0x04:
			who = "group::"
		case 0x08:
			who = "group:" + strconv.FormatUint(uint64(id), 10) + ":"
		case 0x10:
			who = "mask::"
		case 0x20:
			who = "other::"
		default:
			return "", errors.New("unknown ACL entry tag")
		}
		rwx := []byte("---")
		for i, c := range "rwx" {
			if perm&(4>>i) != 0 {
				rwx[i] = byte(c)
			}
		}
		parts = append(parts, who+string(rwx))
	}
	return strings.Join(parts, ","), nil
}
