package main

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"hvnet/api"
	vswitch "hvnet/switch"
	"hvnet/topology"
)

const ctlAddHelp = `add lab NAME ip=ADDR/PREFIX [KEY=VALUE]... [cmd=SCRIPT]
                                      boot a lab guest whose NIC is the new port; keys: ip,
                                      vlan=N | trunk=10,20 [native=N], mac, mtu (the guest's
                                      eth0), queues, mem (256M, 1G), cpus, vif=eth0.10:ADDR/PREFIX
                                      (repeatable), rate (bytes/s each way: 10M, 100Mbit),
                                      mac-limit, port-security=off (any source MAC; default
                                      on: only the NIC's), cmd (the guest's script: one quoted argument)`

// add is "hvnet ctl add lab NAME KEY=VALUE...": POST /v1/ports.
func (c *ctl) add(args []string) error {
	if len(args) < 2 || args[0] != api.KindLab {
		return usageErr(ctlAddHelp)
	}
	spec, err := labAddSpec(args[1], args[2:])
	if err != nil {
		return err
	}
	var p api.Port
	if ok, err := c.get(http.MethodPost, "/v1/ports", spec, &p); !ok {
		return err
	}
	state := "?"
	if p.Guest != nil {
		state = p.Guest.State
	}
	fmt.Fprintf(c.e.stdout, "port %s added: lab guest %s, %s\n", p.Name, spec.Guest.IP, state)
	return nil
}

// onOff parses a port-security= value.
func onOff(k, v string) (bool, error) {
	ps, err := vswitch.ParsePortSecurity(v)
	if err != nil {
		return false, usageErr("%s=%q: want on or off", k, v)
	}
	return ps == vswitch.PortSecurityOn, nil
}

// labAddSpec turns "hvnet ctl add lab" arguments into a port spec; the
// daemon checks the values.
func labAddSpec(name string, kvs []string) (api.PortSpec, error) {
	spec := api.PortSpec{Kind: api.KindLab, Config: api.PortConfig{Name: name, Mode: "access", PVID: 1}, Guest: &api.GuestSpec{}}
	g := spec.Guest
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return spec, usageErr("add: %q is not KEY=VALUE", kv)
		}
		num := func() (int, error) {
			n, err := strconv.Atoi(v)
			if err != nil {
				return 0, usageErr("add: %s=%q: want a number", k, v)
			}
			return n, nil
		}
		var err error
		switch k {
		case "ip":
			g.IP = v
		case "mac":
			spec.MAC = v
		case "mtu":
			g.MTU, err = num()
		case "queues":
			spec.Queues, err = num()
		case "mem":
			g.Mem = v
		case "cpus":
			g.CPUs, err = num()
		case "vif":
			g.VIFs = append(g.VIFs, v)
		case "cmd":
			g.Script = v
		case "vlan":
			spec.Config.Mode, spec.Config.PVID = "access", 0
			spec.Config.PVID, err = num()
		case "trunk":
			spec.Config.Mode, spec.Config.PVID = "trunk", 0
			for _, f := range splitList(v) {
				n, err := strconv.Atoi(f)
				if err != nil {
					return spec, usageErr("add: trunk=%q: want VLAN IDs (10,20)", v)
				}
				spec.Config.AllowedVLANs = append(spec.Config.AllowedVLANs, n)
			}
		case "native":
			spec.Config.NativeVLAN, err = num()
		case "mac-limit":
			spec.Config.MACLimit, err = num()
		case "port-security":
			var on bool
			if on, err = onOff(k, v); err == nil {
				spec.Config.PortSecurity = &on
			}
		case "rate":
			r, perr := topology.ParseRate(v)
			if perr != nil {
				return spec, usageErr("add: rate: %v", perr)
			}
			spec.Config.Ingress.Bytes.Rate, spec.Config.Egress.Bytes.Rate = r, r
		default:
			return spec, usageErr("add: unknown key %q (want ip, vlan, trunk, native, mac, mtu, queues, mem, cpus, vif, rate, mac-limit, port-security, cmd)", k)
		}
		if err != nil {
			return spec, err
		}
	}
	if spec.Guest.IP == "" {
		return spec, usageErr("add lab %s: ip=ADDR/PREFIX is required", name)
	}
	return spec, nil
}

// del is "hvnet ctl del NAME": DELETE /v1/ports/NAME (a lab guest stops).
func (c *ctl) del(args []string) error {
	if len(args) != 1 {
		return usageErr("del NAME")
	}
	if err := c.c.DeletePort(c.ctx, args[0]); err != nil {
		return err
	}
	fmt.Fprintf(c.e.stdout, "port %s removed\n", args[0])
	return nil
}
