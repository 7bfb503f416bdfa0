package hypervisor

import (
	"strings"
)

// CheckpointPrefix starts the name of every checkpoint (and every dirty
// bitmap named after one) that kura creates.
const CheckpointPrefix = "kura-"

// OwnerLen is the length of an owner tag: the first hex digits of the id
// of the repository a checkpoint belongs to.
const OwnerLen = 8

// OwnerTag returns the owner tag of the repository whose id is repoID.
func OwnerTag(repoID string) string {
	if len(repoID) < OwnerLen {
		return strings.ToLower(repoID)
	}
	return strings.ToLower(repoID[:OwnerLen])
}

// CheckpointName returns the name of the checkpoint a backup creates for
// recovery point pointID of the repository with owner tag owner:
// "kura-<owner>-<point id>" ("kura-<point id>" without an owner). Each
// repository thus keeps its own chain of checkpoints on a VM.
func CheckpointName(owner, pointID string) string {
	if owner == "" {
		return CheckpointPrefix + pointID
	}
	return CheckpointPrefix + owner + "-" + pointID
}

// CheckpointOwner says whether name is a checkpoint kura created, and for
// which owner. Checkpoints of kura versions before owner tags (and any
// other "kura-" name without a tag) have owner "": they belong to no
// identifiable repository.
func CheckpointOwner(name string) (owner string, ours bool) {
	rest, ok := strings.CutPrefix(name, CheckpointPrefix)
	if !ok {
		return "", false
	}
	if len(rest) > OwnerLen && rest[OwnerLen] == '-' && isLowerHex(rest[:OwnerLen]) {
		return rest[:OwnerLen], true
	}
	return "", true
}

func isLowerHex(s string) bool {
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// Superseded reports whether checkpoint name is one a successful backup
// of owner may remove once its new checkpoint exists: an older checkpoint
// of the same owner, or a kura checkpoint of no identifiable owner. The
// checkpoints of other owners (other repositories) are never removed.
func Superseded(name, owner, newCheckpoint string) bool {
	if name == newCheckpoint {
		return false
	}
	o, ours := CheckpointOwner(name)
	return ours && (o == "" || o == owner)
}
