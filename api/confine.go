package api

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Paths in requests (a mirror's file, a vhost-user port's socket) name
// files under a directory the daemon was given, never elsewhere: the API's
// caller is trusted less than the operator who started the daemon.
//
// confine checks the name lexically; walkParent then opens its directories
// one component at a time from the root with O_NOFOLLOW, so no symlink
// (planted before or swapped in during the walk) can lead outside: the
// same guarantee as openat2's RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS, on any
// kernel, with errors that name the component at fault.

// confined is a request's path under root: rel is clean, relative, has no
// ".." component and is not ".".
type confined struct {
	field, root, rel string
}

func (p confined) abs() string { return filepath.Join(p.root, p.rel) }

// confine resolves name (the request's field) under root: a relative name
// is taken under root, an absolute one must lie under it. A ".." component
// is refused wherever it is.
func confine(field, root, name string) (confined, *Error) {
	p := confined{field: field, root: root}
	switch {
	case name == "":
		return p, badField(field, "missing (want a file name under %s)", root)
	case strings.IndexByte(name, 0) >= 0:
		return p, badField(field, "%q contains a NUL byte", name)
	case len(name) >= unix.PathMax:
		return p, badField(field, "longer than %d bytes", unix.PathMax-1)
	}
	for _, c := range strings.Split(name, "/") {
		if c == ".." {
			return p, badField(field, "%q: \"..\" is not allowed (names are resolved under %s)", name, root)
		}
	}
	rel := filepath.Clean(name)
	if filepath.IsAbs(rel) {
		r, err := filepath.Rel(root, rel)
		if err != nil || r == ".." || strings.HasPrefix(r, "../") {
			return p, badField(field, "%q is outside %s (give a name under it, or a relative one)", name, root)
		}
		rel = r
	}
	if rel == "." || strings.HasSuffix(name, "/") {
		return p, badField(field, "%q: want a file name under %s, not a directory", name, root)
	}
	p.rel = rel
	return p, nil
}

// pathError answers a failed step on component comp of p.
func (p confined) pathError(comp string, err error) *Error {
	e := &Error{Status: http.StatusUnprocessableEntity, Field: p.field}
	switch {
	case errors.Is(err, unix.ELOOP):
		e.Status = http.StatusForbidden
		e.Message = fmt.Sprintf("%s: %s is a symlink (symlinks are not followed)", p.abs(), comp)
	case errors.Is(err, unix.ENOENT):
		e.Message = fmt.Sprintf("%s: no directory %s", p.abs(), comp)
	case errors.Is(err, unix.ENOTDIR):
		e.Message = fmt.Sprintf("%s: %s is not a directory", p.abs(), comp)
	default:
		e.Message = fmt.Sprintf("%s: %s: %v", p.abs(), comp, err)
	}
	return e
}

// walkParent opens p's parent directory and returns its O_PATH fd: each
// component is checked with fstatat(AT_SYMLINK_NOFOLLOW) (a symlink is
// refused by name) and opened with O_NOFOLLOW|O_DIRECTORY (one swapped in
// meanwhile fails the open). Missing directories are made with mkdirMode
// when it is not 0 (they can only be made under root), else refused.
func (p confined) walkParent(mkdirMode uint32) (int, *Error) {
	dfd, err := unix.Open(p.root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, &Error{Status: http.StatusInternalServerError, Field: p.field,
			Message: fmt.Sprintf("the daemon's directory %s: %v", p.root, err)}
	}
	dir := filepath.Dir(p.rel)
	if dir == "." {
		return dfd, nil
	}
	walked := p.root
	for _, c := range strings.Split(dir, "/") {
		walked = filepath.Join(walked, c)
		var st unix.Stat_t
		err := unix.Fstatat(dfd, c, &st, unix.AT_SYMLINK_NOFOLLOW)
		switch {
		case errors.Is(err, unix.ENOENT) && mkdirMode != 0:
			if err := unix.Mkdirat(dfd, c, mkdirMode); err != nil && !errors.Is(err, unix.EEXIST) {
				unix.Close(dfd)
				return -1, p.pathError(walked, err)
			}
		case err != nil:
			unix.Close(dfd)
			return -1, p.pathError(walked, err)
		case st.Mode&unix.S_IFMT == unix.S_IFLNK:
			unix.Close(dfd)
			return -1, p.pathError(walked, unix.ELOOP)
		case st.Mode&unix.S_IFMT != unix.S_IFDIR:
			unix.Close(dfd)
			return -1, p.pathError(walked, unix.ENOTDIR)
		}
		nfd, err := unix.Openat(dfd, c, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		unix.Close(dfd)
		if err != nil {
			if errors.Is(err, unix.ENOTDIR) { // a symlink since the fstatat
				err = unix.ELOOP
			}
			return -1, p.pathError(walked, err)
		}
		dfd = nfd
	}
	return dfd, nil
}

// createFile opens p for writing a capture: created with mode 0600, or,
// when overwrite is set, an existing regular file with no other hard link
// is truncated (and made 0600). A symlink is never followed, even with
// overwrite; a FIFO or device is refused without blocking on it.
func (p confined) createFile(overwrite bool) (*os.File, *Error) {
	dfd, e := p.walkParent(0)
	if e != nil {
		return nil, e
	}
	defer unix.Close(dfd)
	base := filepath.Base(p.rel)
	flags := unix.O_WRONLY | unix.O_CREAT | unix.O_NOFOLLOW | unix.O_NONBLOCK | unix.O_CLOEXEC
	if !overwrite {
		flags |= unix.O_EXCL
	}
	fd, err := unix.Openat(dfd, base, flags, 0o600)
	if err != nil {
		switch {
		case errors.Is(err, unix.EEXIST):
			var st unix.Stat_t
			if unix.Fstatat(dfd, base, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
				return nil, p.pathError(p.abs(), unix.ELOOP)
			}
			return nil, &Error{Status: http.StatusConflict, Field: p.field,
				Message: fmt.Sprintf("%s exists (set \"overwrite\": true to replace it)", p.abs())}
		case errors.Is(err, unix.ELOOP):
			return nil, p.pathError(p.abs(), err)
		case errors.Is(err, unix.ENXIO), errors.Is(err, unix.EISDIR):
			return nil, &Error{Status: http.StatusUnprocessableEntity, Field: p.field,
				Message: fmt.Sprintf("%s exists and is not a regular file", p.abs())}
		}
		return nil, &Error{Status: http.StatusUnprocessableEntity, Field: p.field, Message: fmt.Sprintf("%s: %v", p.abs(), err)}
	}
	fail := func(e *Error) (*os.File, *Error) {
		unix.Close(fd)
		return nil, e
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fail(&Error{Status: http.StatusInternalServerError, Field: p.field, Message: fmt.Sprintf("%s: fstat: %v", p.abs(), err)})
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return fail(&Error{Status: http.StatusUnprocessableEntity, Field: p.field,
			Message: fmt.Sprintf("%s exists and is not a regular file", p.abs())})
	}
	if st.Nlink > 1 {
		return fail(&Error{Status: http.StatusForbidden, Field: p.field,
			Message: fmt.Sprintf("%s has %d hard links; not overwritten", p.abs(), st.Nlink)})
	}
	if overwrite {
		if err := unix.Ftruncate(fd, 0); err != nil {
			return fail(&Error{Status: http.StatusUnprocessableEntity, Field: p.field, Message: fmt.Sprintf("%s: truncate: %v", p.abs(), err)})
		}
		if err := unix.Fchmod(fd, 0o600); err != nil {
			return fail(&Error{Status: http.StatusUnprocessableEntity, Field: p.field, Message: fmt.Sprintf("%s: chmod: %v", p.abs(), err)})
		}
	}
	if err := unix.SetNonblock(fd, false); err != nil {
		return fail(&Error{Status: http.StatusInternalServerError, Field: p.field, Message: fmt.Sprintf("%s: %v", p.abs(), err)})
	}
	return os.NewFile(uintptr(fd), p.abs()), nil
}

// maxSocketPath is the longest path a unix socket address holds
// (sockaddr_un.sun_path, 108 bytes with the NUL).
const maxSocketPath = len(unix.RawSockaddrUnix{}.Path) - 1

// socketPath readies p for a vhost-user socket and returns its absolute
// path: missing directories under root are made (0755: a frontend running
// as another user must reach the socket); the name itself must be free or
// a socket (the daemon checks whether one is live). Only root's owner can
// race the path between this check and the bind.
func (p confined) socketPath() (string, *Error) {
	abs := p.abs()
	if len(abs) > maxSocketPath {
		return "", badField(p.field, "%s: longer than a unix socket path may be (%d bytes)", abs, maxSocketPath)
	}
	dfd, e := p.walkParent(0o755)
	if e != nil {
		return "", e
	}
	defer unix.Close(dfd)
	var st unix.Stat_t
	err := unix.Fstatat(dfd, filepath.Base(p.rel), &st, unix.AT_SYMLINK_NOFOLLOW)
	switch {
	case errors.Is(err, unix.ENOENT):
		return abs, nil
	case err != nil:
		return "", p.pathError(abs, err)
	case st.Mode&unix.S_IFMT == unix.S_IFSOCK:
		return abs, nil
	case st.Mode&unix.S_IFMT == unix.S_IFLNK:
		return "", p.pathError(abs, unix.ELOOP)
	}
	return "", &Error{Status: http.StatusConflict, Field: p.field, Message: fmt.Sprintf("%s exists and is not a socket", abs)}
}
