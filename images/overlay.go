package images

import (
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"github.com/u-root/u-root/pkg/cpio"
)

// OverlayFile is one file added to an initramfs by AppendOverlay.
type OverlayFile struct {
	Path   string      // path in the guest, e.g. "/etc/hvnet/host.sh"
	Data   []byte      // contents; or, when nil,
	Source string      // a host file to copy (read when AppendOverlay runs)
	Mode   os.FileMode // permission bits; 0 means 0644, or 0755 for an executable Source
}

// baseDirs exist in every image; the overlay does not repeat them (a
// directory record would reset their modes, e.g. /tmp's 1777).
var baseDirs = map[string]bool{
	"bbin": true, "bin": true, "dev": true, "env": true, "etc": true, "lib": true, "lib64": true,
	"proc": true, "sys": true, "tcz": true, "tmp": true, "ubin": true, "usr": true, "usr/lib": true,
	"var": true, "var/log": true, "var/lock": true,
}

// AppendOverlay writes initrd followed by a second newc cpio archive with
// files to out (through a temporary file and a rename). The kernel unpacks
// concatenated archives in order, so the files are added to (or replace
// files of) the image: this is how a guest gets a script for
// hvnet.cmdfile, or the nested test host its hvnet binary and L2 images.
// Parent directories are created with mode 0755.
func AppendOverlay(out, initrd string, files []OverlayFile) (err error) {
	tmp, err := os.CreateTemp(path.Dir(out), ".tmp-overlay-*")
	if err != nil {
		return err
	}
	defer func() {
		tmp.Close()
		if err != nil {
			os.Remove(tmp.Name())
		}
	}()
	base, err := os.Open(initrd)
	if err != nil {
		return err
	}
	n, err := io.Copy(tmp, base)
	base.Close()
	if err != nil {
		return fmt.Errorf("copy %s: %w", initrd, err)
	}
	// The kernel skips NULs between archives but wants each header
	// 4-byte aligned.
	if pad := (512 - n%512) % 512; pad != 0 {
		if _, err := tmp.Write(make([]byte, pad)); err != nil {
			return err
		}
	}
	w := cpio.Newc.Writer(tmp)
	dirs := map[string]bool{}
	var opened []*os.File
	defer func() {
		for _, f := range opened {
			f.Close()
		}
	}()
	for _, f := range files {
		name := strings.TrimPrefix(path.Clean("/"+f.Path), "/")
		if name == "" {
			return fmt.Errorf("overlay: bad path %q", f.Path)
		}
		var parents []string
		for d := path.Dir(name); d != "."; d = path.Dir(d) {
			parents = append([]string{d}, parents...)
		}
		for _, d := range parents {
			if !baseDirs[d] && !dirs[d] {
				if err := w.WriteRecord(cpio.Directory(d, 0o755)); err != nil {
					return err
				}
			}
			dirs[d] = true
		}
		rec, err := overlayRecord(name, f)
		if err != nil {
			return err
		}
		if c, ok := rec.ReaderAt.(*os.File); ok {
			opened = append(opened, c)
		}
		if err := w.WriteRecord(rec); err != nil {
			return fmt.Errorf("overlay: %s: %w", f.Path, err)
		}
	}
	if err := cpio.WriteTrailer(w); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), out)
}

func overlayRecord(name string, f OverlayFile) (cpio.Record, error) {
	mode := uint64(f.Mode.Perm())
	if f.Data != nil || f.Source == "" {
		if mode == 0 {
			mode = 0o644
		}
		return cpio.StaticRecord(f.Data, cpio.Info{Name: name, Mode: cpio.S_IFREG | mode}), nil
	}
	src, err := os.Open(f.Source)
	if err != nil {
		return cpio.Record{}, fmt.Errorf("overlay: %w", err)
	}
	fi, err := src.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		src.Close()
		return cpio.Record{}, fmt.Errorf("overlay: %s is not a regular file", f.Source)
	}
	if mode == 0 {
		mode = 0o644
		if fi.Mode()&0o111 != 0 {
			mode = 0o755
		}
	}
	return cpio.Record{
		ReaderAt: src,
		Info:     cpio.Info{Name: name, Mode: cpio.S_IFREG | mode, FileSize: uint64(fi.Size())},
	}, nil
}
