package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os/signal"
	"syscall"

	"hvnet/topology"
	"hvnet/uplink"
	"hvnet/vhost"
)

const upUsage = `usage: hvnet up [--api SOCKET] FILE
Brings up a topology file (see topology/testdata/lab.yaml): the switch, its
vhost-user ports, the uplink and the control API, until SIGTERM or SIGINT.`

// cmdUp is "hvnet up FILE": the switch daemon configured by a topology
// file.
func cmdUp(e *env, args []string) int {
	fs := flag.NewFlagSet("up", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	apiSock := fs.String("api", "", "control API socket (default: the file's switch.api, else "+defaultSocket+")")
	fs.Usage = func() { fmt.Fprintln(e.stderr, upUsage); fs.PrintDefaults() }
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		return 0
	} else if err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	t, err := topology.Load(fs.Arg(0))
	if err != nil {
		return fail(e, fmt.Errorf("%w: up: %v", errUsage, err))
	}
	cfg, err := topologyConfig(t)
	if err != nil {
		return fail(e, fmt.Errorf("%w: up: %v", errUsage, err))
	}
	if *apiSock != "" {
		cfg.API = *apiSock
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := runDaemon(ctx, e.log, cfg); err != nil {
		return fail(e, err)
	}
	return 0
}

// topologyConfig turns a checked topology into the daemon's
// configuration. Lab guests are refused: the lab package boots guests on
// a switch of its own, so the daemon cannot host them yet.
func topologyConfig(t *topology.Topology) (daemonConfig, error) {
	if len(t.Guests) > 0 {
		return daemonConfig{}, fmt.Errorf("%s:%d: guests: lab guests: not supported by hvnet up yet; use hvnet lab",
			t.File, t.LineOf("guests"))
	}
	cfg := daemonConfig{API: t.Switch.API, Aging: t.Switch.Aging}
	if cfg.API == "" {
		cfg.API = envOr("HVNET_SOCKET", defaultSocket)
	}
	for _, p := range t.Ports {
		c := vhost.PortConfig{Port: p.Config(p.Name), Socket: p.Socket, QueuePairs: p.Queues, MTU: uint16(p.MTU)}
		if p.SocketMode == "client" {
			c.Mode = vhost.Client
		}
		if p.MAC != "" {
			hw, err := net.ParseMAC(p.MAC) // checked by Load
			if err != nil {
				return cfg, fmt.Errorf("%s:%d: mac: %v", t.File, p.LineOf("mac"), err)
			}
			copy(c.MAC[:], hw)
		}
		cfg.Vhost = append(cfg.Vhost, c)
	}
	if u := t.Uplink; u != nil {
		uc := uplinkConfig{Port: u.Config(u.Name), Interface: u.Interface}
		if u.TXMode != "" {
			m, err := uplink.ParseTXMode(u.TXMode) // checked by Load
			if err != nil {
				return cfg, fmt.Errorf("%s:%d: uplink.tx_mode: %v", t.File, u.LineOf("tx_mode"), err)
			}
			uc.TX = m
		}
		cfg.Uplinks = append(cfg.Uplinks, uc)
	}
	return cfg, nil
}
