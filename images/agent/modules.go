package main

import (
	"fmt"
	"slices"
	"time"

	"github.com/u-root/u-root/pkg/kmodule"
)

// loadModules loads mods in order, each with its dependencies from the
// image's modules.dep.
func loadModules(mods []string) error {
	if len(mods) == 0 {
		return nil
	}
	t := time.Now()
	p, err := kmodule.NewProber(kmodule.ProbeOpts{})
	if err != nil {
		return fmt.Errorf("modules: %w", err)
	}
	for _, m := range mods {
		if err := p.Probe(m, ""); err != nil {
			return fmt.Errorf("loading module %s: %w", m, err)
		}
	}
	logf("loaded modules %v in %.2fs", mods, time.Since(t).Seconds())
	return nil
}

// loaded remembers modules loaded on demand (8021q for VLAN interfaces).
var loaded []string

func ensureModule(m string) error {
	if slices.Contains(loaded, m) {
		return nil
	}
	if err := loadModules([]string{m}); err != nil {
		return err
	}
	loaded = append(loaded, m)
	return nil
}
