package main

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/hvnet/hvnet/api"
	"github.com/hvnet/hvnet/daemon"
)

const ctlAddHelp = `add KIND NAME [KEY=VALUE]...     add a port of KIND (vhost-user, uplink, lab, vxlan; "hvnet switch
                                      --kinds" lists each kind's keys). Keys every port takes: vlan=N |
                                      trunk=10:20 [native=N], mtu, rate and police (bits/s: 10M,
                                      100Mbit), pps, mac-limit, port-security=on|off; the rest are the
                                      kind's: add vhost-user vm1 socket=vm1.sock queues=2;
                                      add uplink up0 if=eth1; add lab web ip=10.0.0.5/24 vlan=10
                                      mem=256M cmd='iperf3 -s' (a lab guest whose NIC is the port)`

// add is "hvnet ctl add KIND NAME KEY=VALUE...": POST /v1/ports.
func (c *ctl) add(args []string) error {
	if len(args) < 2 {
		return usageErr(ctlAddHelp)
	}
	spec, err := addSpec(args[0], args[1], args[2:])
	if err != nil {
		return err
	}
	var p api.Port
	if ok, err := c.get(http.MethodPost, "/v1/ports", spec, &p); !ok {
		return err
	}
	what := spec.Kind
	if p.Guest != nil {
		what = fmt.Sprintf("lab guest %s, %s", spec.Options["ip"], p.Guest.State)
	}
	fmt.Fprintf(c.e.stdout, "port %s added: %s\n", p.Name, what)
	return nil
}

// addSpec turns "hvnet ctl add" arguments into a port spec: the keys
// every port takes (daemon.CommonOptions) into its config, the others
// into the kind's options, which the daemon checks.
func addSpec(kind, name string, kvs []string) (api.PortSpec, error) {
	spec := api.PortSpec{Kind: kind, Options: map[string]api.OptionValue{}}
	common := []string{"name=" + name}
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return spec, usageErr("add: %q is not KEY=VALUE", kv)
		}
		switch {
		case k == "name":
			return spec, usageErr("add: the name is the argument after the kind, not name=")
		case daemon.IsCommon(k):
			common = append(common, kv)
		default:
			spec.Options[k] = append(spec.Options[k], v)
		}
	}
	cfg, err := daemon.ParseSwitchPort(common)
	if err != nil {
		return spec, usageErr("add %s %s: %v", kind, name, err)
	}
	spec.Config = api.ConfigOf(cfg)
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
