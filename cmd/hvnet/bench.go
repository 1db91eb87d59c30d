package main

import (
	"errors"
	"flag"
	"fmt"
)

func cmdBench(e *env, args []string) int {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		return 0
	} else if err != nil {
		return 2
	}
	switch fs.Arg(0) {
	case "boot":
		return cmdBenchBoot(e, fs.Args()[1:])
	case "uplink":
		return cmdBenchUplink(e, fs.Args()[1:])
	case "vhost":
		return cmdBenchVhost(e, fs.Args()[1:])
	case "vxlan":
		return cmdBenchVxlan(e, fs.Args()[1:])
	case "evpn":
		return cmdBenchEVPN(e, fs.Args()[1:])
	}
	return fail(e, fmt.Errorf("%w: bench: want one of: boot, uplink, vhost, vxlan, evpn", errUsage))
}
