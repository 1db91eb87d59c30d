package images

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Cache garbage collection: every input change leaves a 25 MiB initramfs
// (and a kernel update a kernel directory and a .deb) behind. After a
// build, under the lock, gc keeps the current entries and the newest few
// others (another test process may still be booting them), and removes
// temporary files that a killed build left.
const (
	keepOld   = 2             // older entries kept per kind
	staleTemp = 1 * time.Hour // temporary files older than this are leftovers
)

func (b *builder) gc(s *Set) {
	Prune(filepath.Join(b.cacheDir, "initramfs"), s.Initrd, keepOld, b.remove)
	Prune(filepath.Join(b.cacheDir, "kernel"), filepath.Dir(filepath.Dir(s.ModulesDir)), keepOld, b.remove)
	Prune(filepath.Join(b.cacheDir, "debs"), "", keepOld, b.remove)
}

// Prune removes the entries of a cache directory but current and the keep
// most recently modified others, and temporary files (AppendOverlay's,
// a build's) left for more than an hour, with remove.
func Prune(dir, current string, keep int, remove func(path string)) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	type entry struct {
		path string
		mod  time.Time
	}
	var old []entry
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		fi, err := e.Info()
		if err != nil || p == current {
			continue
		}
		if strings.Contains(e.Name(), ".tmp-") || strings.HasPrefix(e.Name(), "tmp-") || strings.HasPrefix(e.Name(), ".work-") || strings.HasSuffix(e.Name(), ".x") {
			if time.Since(fi.ModTime()) > staleTemp {
				remove(p)
			}
			continue
		}
		old = append(old, entry{p, fi.ModTime()})
	}
	slices.SortFunc(old, func(a, b entry) int { return b.mod.Compare(a.mod) })
	for i, e := range old {
		if i >= keep {
			remove(e.path)
		}
	}
}

func (b *builder) remove(p string) {
	if err := os.RemoveAll(p); err != nil {
		b.log.Warn("cache cleanup", "path", p, "error", err)
		return
	}
	b.log.Debug("removed old cache entry", "path", p)
}
