// Package sockperm gives a unix socket file the mode, owner and group
// that decide who may connect to it (connecting needs write access).
package sockperm

import "os"

// Apply sets path's mode (0: leave it) and its owner and group (nil:
// leave each).
func Apply(path string, mode os.FileMode, owner, group *int) error {
	if mode != 0 {
		if err := os.Chmod(path, mode); err != nil {
			return err
		}
	}
	if owner == nil && group == nil {
		return nil
	}
	uid, gid := -1, -1
	if owner != nil {
		uid = *owner
	}
	if group != nil {
		gid = *group
	}
	return os.Lchown(path, uid, gid)
}
