package daemon

import (
	"fmt"
	"os"
	"os/user"
	"strconv"

	"github.com/hvnet/hvnet/api"
)

// ParseSocketAccess parses who may connect to a socket, as the API
// socket's flags and a vhost-user port's socket-mode, socket-owner and
// socket-group keys give it: an octal mode (0660), a user and a group by
// name or number. Empty strings leave each as it is. keys name the three
// settings in errors.
func ParseSocketAccess(mode, owner, group string, keys [3]string) (api.SocketAccess, error) {
	var a api.SocketAccess
	if mode != "" {
		m, err := strconv.ParseUint(mode, 8, 32)
		if err != nil || m > 0o777 || m&0o200 == 0 {
			return a, Bad(keys[0], mode, "is not a socket mode (octal, with the owner's write bit: 0600, 0660)")
		}
		a.Mode = os.FileMode(m)
	}
	if owner != "" {
		id, err := lookupID(owner, func(n string) (string, error) {
			u, err := user.Lookup(n)
			if err != nil {
				return "", err
			}
			return u.Uid, nil
		})
		if err != nil {
			return a, Bad(keys[1], owner, "is not a user on this host")
		}
		a.Owner = &id
	}
	if group != "" {
		id, err := lookupID(group, func(n string) (string, error) {
			g, err := user.LookupGroup(n)
			if err != nil {
				return "", err
			}
			return g.Gid, nil
		})
		if err != nil {
			return a, Bad(keys[2], group, "is not a group on this host")
		}
		a.Group = &id
	}
	return a, nil
}

// lookupID resolves a name or a number to a numeric ID.
func lookupID(s string, byName func(string) (string, error)) (int, error) {
	if n, err := strconv.Atoi(s); err == nil && n >= 0 {
		return n, nil
	}
	id, err := byName(s)
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(id)
	if err != nil {
		return 0, fmt.Errorf("id %q: %w", id, err)
	}
	return n, nil
}
