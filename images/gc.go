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
	b.prune(filepath.Join(b.cacheDir, "initramfs"), s.Initrd)
	b.prune(filepath.Join(b.cacheDir, "kernel"), filepath.Dir(filepath.Dir(s.ModulesDir)))
	b.prune(filepath.Join(b.cacheDir, "debs"), "")
}

func (b *builder) prune(dir, current string) {
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
				b.remove(p)
			}
			continue
		}
		old = append(old, entry{p, fi.ModTime()})
	}
	slices.SortFunc(old, func(a, b entry) int { return b.mod.Compare(a.mod) })
	for i, e := range old {
		if i >= keepOld {
			b.remove(e.path)
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
