package lab

import (
	"fmt"

	vswitch "hvnet/switch"
)

// AttachFunc adds ports of the caller's own (an uplink, a mirror sink) to
// the lab's switch: Run calls it once, with the running switch, before any
// guest boots. The switch stays usable after Run returns (its counters, for
// instance); the caller closes what it attached.
type AttachFunc func(sw *vswitch.Switch) error

// attach runs cfg.Attach, if any.
func (cfg *Config) attach(sw *vswitch.Switch) error {
	if cfg.Attach == nil {
		return nil
	}
	if err := cfg.Attach(sw); err != nil {
		return fmt.Errorf("lab: attach: %w", err)
	}
	return nil
}
