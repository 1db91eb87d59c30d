package daemon

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"

	vswitch "github.com/hvnet/hvnet/switch"
)

// Reloading (SIGHUP): the daemon's own ports, those of its configuration,
// follow a new configuration without disturbing what did not change.
// Ports added through the API are the API's and are left alone.

// ReloadResult says what a Reload did, by port name.
type ReloadResult struct {
	Added, Removed, Updated, Restarted, Unchanged []string
}

// Reload applies the ports, ACLs and security groups of a new
// configuration (switch-wide
// settings such as aging take effect only at start): a port that is gone
// is detached and its backend stopped; a new one is started; one whose
// kind settings changed (its socket, its interface) is restarted; one
// whose switch settings alone changed (VLANs, rates, limits) is updated
// live, keeping its backend, its session and its queued frames, as is one
// whose kind settings its backend can take live (Reconfigurer); the rest
// are not touched. A port's changed security group replaces the old one
// without a flush (its tracked connections go on, as the API's PUT
// without flush=true); a group gone from the configuration is removed.
// It stops at the first failure, reporting what it had done; ports it
// had not reached keep their old configuration.
func (r *Running) Reload(ctx context.Context, ports []PortSpec, acls []PortACL, sgs []PortSG) (ReloadResult, error) {
	var res ReloadResult
	if err := CheckNames(ports); err != nil {
		return res, err
	}
	r.reloadMu.Lock()
	defer r.reloadMu.Unlock()
	next := map[string]PortSpec{}
	for _, p := range ports {
		next[p.Name()] = p
	}
	for _, p := range ports { // before any change
		if _, had := r.owned[p.Name()]; !had && r.sw.Port(p.Name()) != nil {
			return res, fmt.Errorf("port %q: %w (added through the API: remove it there first)", p.Name(), vswitch.ErrPortExists)
		}
	}
	nextACL := map[string]PortACL{}
	for _, a := range acls {
		nextACL[a.Port] = a
	}
	nextSG := map[string]PortSG{}
	for _, g := range sgs {
		nextSG[g.Port] = g
	}
	// Gone and restarted ports go first: what they release (a socket,
	// an interface) may be what a new one claims.
	var restart []PortSpec
	live := map[string]bool{}
	for _, name := range slices.Sorted(maps.Keys(r.owned)) {
		old := r.owned[name]
		p, ok := next[name]
		switch {
		case !ok:
			if err := r.removePort(name); err != nil {
				return res, err
			}
			res.Removed = append(res.Removed, name)
		case p.Kind == old.Kind && !reflect.DeepEqual(p.Values, old.Values) && r.reconfigure(name, p):
			live[name] = true
		case p.Kind != old.Kind || !reflect.DeepEqual(p.Values, old.Values):
			if err := r.removePort(name); err != nil {
				return res, err
			}
			restart = append(restart, p)
		}
	}
	// Reservations lowered and egress rates raised go next, alone: the
	// switch admits every port's reservations against every shaped
	// egress's rate (vswitch sched.go), so a file that moves bandwidth
	// from one port to another must release it before the other claims it.
	for _, name := range slices.Sorted(maps.Keys(r.owned)) {
		p, ok := next[name]
		if !ok || slices.ContainsFunc(restart, func(s PortSpec) bool { return s.Name() == name }) {
			continue
		}
		if cfg, ok := released(r.owned[name].Port, p.Port); ok {
			if err := r.sw.UpdatePort(cfg); err != nil {
				return res, fmt.Errorf("port %q: %w", name, err)
			}
		}
	}
	for _, p := range restart {
		if err := r.addPort(ctx, p); err != nil {
			return res, err
		}
		res.Restarted = append(res.Restarted, p.Name())
	}
	for _, p := range ports {
		name := p.Name()
		old, had := r.owned[name]
		switch {
		case slices.Contains(res.Restarted, name):
		case !had:
			if err := r.addPort(ctx, p); err != nil {
				return res, err
			}
			res.Added = append(res.Added, name)
		case live[name] && reflect.DeepEqual(p.Port, old.Port):
			r.owned[name] = p
			res.Updated = append(res.Updated, name)
		case !reflect.DeepEqual(p.Port, old.Port):
			if err := r.sw.UpdatePort(p.Port); err != nil {
				return res, fmt.Errorf("port %q: %w", name, err)
			}
			r.owned[name] = p
			res.Updated = append(res.Updated, name)
		default:
			res.Unchanged = append(res.Unchanged, name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(next)) {
		a, had := r.acls[name]
		n, has := nextACL[name]
		if had == has && reflect.DeepEqual(a, n) && !slices.Contains(res.Restarted, name) && !slices.Contains(res.Added, name) {
			continue
		}
		if err := errors.Join(r.sw.SetACL(name, n.In), r.sw.SetEgressACL(name, n.Out)); err != nil {
			return res, fmt.Errorf("port %q: acl: %w", name, err)
		}
	}
	r.acls = nextACL
	for _, name := range slices.Sorted(maps.Keys(next)) {
		g, had := r.sgs[name]
		n, has := nextSG[name]
		fresh := slices.Contains(res.Restarted, name) || slices.Contains(res.Added, name)
		if had == has && reflect.DeepEqual(g, n) && !fresh || !has && fresh {
			continue // unchanged (one set through the API stays), or a new port without one
		}
		var sg *vswitch.SecurityGroup
		if has {
			sg = &n.Group
		}
		if err := r.sw.SetSecurityGroup(name, sg, false); err != nil {
			return res, fmt.Errorf("port %q: security group: %w", name, err)
		}
	}
	r.sgs = nextSG
	r.log.Info("configuration reloaded", "added", res.Added, "removed", res.Removed, "updated", res.Updated,
		"restarted", res.Restarted, "unchanged", len(res.Unchanged))
	return res, nil
}

// removePort detaches a configuration port and stops its backend.
func (r *Running) removePort(name string) error {
	delete(r.owned, name)
	if err := r.sw.RemovePort(name); err != nil && !errors.Is(err, vswitch.ErrNoSuchPort) {
		return fmt.Errorf("port %q: %w", name, err)
	}
	if err := r.d.Remove(name); err != nil {
		r.log.Warn("port did not close cleanly", "port", name, "error", err)
	}
	return nil
}

// reconfigure offers a port's new kind settings to its backend, and
// reports whether it took them live.
func (r *Running) reconfigure(name string, p PortSpec) bool {
	done, err := r.d.reconfigure(name, p)
	if err != nil {
		r.log.Warn("port's settings not applied live; restarting it", "port", name, "error", err)
		return false
	}
	return done
}

// addPort starts a configuration port.
func (r *Running) addPort(ctx context.Context, p PortSpec) error {
	err := r.d.start(ctx, p, func(vp vswitch.Port) (*vswitch.PortHandle, error) { return r.sw.AddPort(p.Port, vp) })
	if err != nil {
		return err
	}
	r.owned[p.Name()] = p
	return nil
}

// released is port configuration old with what next gives back applied
// alone: a lower reservation, a higher (or no) egress rate. Either only
// makes room at the switch's admission; ok is false when next releases
// nothing.
func released(old, next vswitch.PortConfig) (vswitch.PortConfig, bool) {
	cfg, changed := old, false
	if next.Allocation.Reservation < cfg.Allocation.Reservation {
		cfg.Allocation.Reservation, changed = next.Allocation.Reservation, true
	}
	if r := cfg.Egress.Bytes.Rate; r != 0 && (next.Egress.Bytes.Rate == 0 || next.Egress.Bytes.Rate > r) {
		cfg.Egress.Bytes, changed = next.Egress.Bytes, true
	}
	return cfg, changed
}
