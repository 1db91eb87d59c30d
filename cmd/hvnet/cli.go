package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	stdlog "log"
	"os"
	"strconv"

	"github.com/hashicorp/go-hclog"

	"github.com/hvnet/hvnet/internal/progress"
	"github.com/hvnet/hvnet/units"
)

// env carries the process's streams and logger to the subcommands.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	log            hclog.Logger
	// steps shows long work (image builds, the nested test host's start)
	// on stderr: a spinner on a terminal, plain lines otherwise. The log
	// goes through it, so its lines never land inside the spinner's.
	steps *progress.Reporter
}

type command struct {
	name, summary string
	run           func(e *env, args []string) int
}

func commands() []command {
	return []command{
		{"run", "boot a Linux guest: hvnet run --kernel K --initrd I [--mem 512M] [--cpus N] [--cmdline ...]", cmdRun},
		{"images", "build the test guest images (kernel, initramfs) into the cache", cmdImages},
		{"lab", "boot several guests on the built-in switch: hvnet lab --guest ... | --config FILE", cmdLab},
		{"demo", "the whole system: switch, uplink, three guests in two VLANs, and a summary", cmdDemo},
		{"switch", "run the switch daemon (vhost-user ports, uplinks, API): hvnet switch --port ... --uplink ... | --config FILE", cmdSwitch},
		{"up", "bring up a topology file (switch, ports, uplink, API, lab guests): hvnet up FILE", cmdUp},
		{"bench", "benchmarks: hvnet bench boot|vhost|uplink|vxlan|evpn", cmdBench},
		{"ctl", "talk to a running daemon: hvnet ctl ports|port|add|del|set|queues|fdb|mirror|capture|acl|sg|conntrack|flows|flow-export|trace|metrics", cmdCtl},
		{"version", "print the version and the VCS revision it was built from (also hvnet --version)", cmdVersion},
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: hvnet [--log-level LEVEL] [--log-json] [--version] COMMAND [ARGS]")
	fmt.Fprintln(w, "\ncommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun \"hvnet COMMAND -h\" for a command's flags.")
}

// run is the whole program; main only exits with its status.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("hvnet", flag.ContinueOnError)
	fs.SetOutput(stderr)
	level := fs.String("log-level", envOr("HVNET_LOG_LEVEL", "info"), "log level: trace, debug, info, warn, error")
	jsonLog := fs.Bool("log-json", os.Getenv("HVNET_LOG_JSON") == "1", "log in JSON")
	showVersion := fs.Bool("version", false, "print the version and exit")
	fs.Usage = func() { usage(stderr) }
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		return 0
	} else if err != nil {
		return 2
	}
	if *showVersion {
		fmt.Fprintln(stdout, versionString())
		return 0
	}
	lvl := hclog.LevelFromString(*level)
	if lvl == hclog.NoLevel {
		fmt.Fprintf(stderr, "hvnet: --log-level %q: want trace, debug, info, warn or error\n", *level)
		return 2
	}
	steps := progress.New(stderr)
	if steps.Terminal() {
		// Libraries that print with the standard logger (u-root's
		// bzimage warns on signed kernels) must not land inside the
		// spinner's line either.
		stdlog.SetOutput(steps.Wrap(stderr))
	}
	e := &env{stdin: stdin, stdout: stdout, stderr: stderr, steps: steps,
		log: hclog.New(&hclog.LoggerOptions{Name: "hvnet", Level: lvl, Output: steps.Wrap(stderr), JSONFormat: *jsonLog})}
	if fs.NArg() == 0 {
		usage(stderr)
		return 2
	}
	name, rest := fs.Arg(0), fs.Args()[1:]
	if name == "help" || name == "-h" {
		usage(stdout)
		return 0
	}
	for _, c := range commands() {
		if c.name == name {
			return c.run(e, rest)
		}
	}
	fmt.Fprintf(stderr, "hvnet: unknown command %q\n", name)
	usage(stderr)
	return 2
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// errUsage marks errors in the command line (exit status 2).
var errUsage = errors.New("usage")

// fail prints err and returns the exit status for it.
func fail(e *env, err error) int {
	fmt.Fprintf(e.stderr, "hvnet: %v\n", err)
	if errors.Is(err, errUsage) {
		return 2
	}
	return 1
}

// bitRate is a flag in bits per second, as every rate is given
// (units.ParseBitRate: 2M, 2mbit, 1500000).
type bitRate int64

func (r *bitRate) String() string { return strconv.FormatInt(int64(*r), 10) }
func (r *bitRate) Set(s string) error {
	v, err := units.ParseBitRate(s)
	*r = bitRate(v)
	return err
}
