package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"

	"github.com/hvnet/hvnet/images"
)

func cmdImages(e *env, args []string) int {
	fs := flag.NewFlagSet("images", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	cache := fs.String("cache", images.DefaultCacheDir(), "cache directory (or $HVNET_CACHE)")
	asEnv := fs.Bool("env", false, "print HVNET_KERNEL=... lines for a shell to eval")
	asJSON := fs.Bool("json", false, "print the image set as JSON")
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		return 0
	} else if err != nil {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	set, err := images.Build(ctx, images.Config{CacheDir: *cache, Log: e.log.Named("images"), Progress: e.stderr, Steps: e.steps})
	if err != nil {
		return fail(e, err)
	}
	switch {
	case *asEnv:
		fmt.Fprintf(e.stdout, "HVNET_KERNEL=%s\nHVNET_VMLINUX=%s\nHVNET_INITRD=%s\nHVNET_KERNEL_VERSION=%s\nHVNET_KERNEL_PACKAGE=%s=%s\n",
			set.Kernel, set.Vmlinux, set.Initrd, set.KernelVersion, set.Package, set.PackageVersion)
	case *asJSON:
		b, _ := json.MarshalIndent(set, "", "  ")
		fmt.Fprintln(e.stdout, string(b))
	default:
		fmt.Fprintf(e.stdout, "kernel:  %s\nvmlinux: %s\ninitrd:  %s\nversion: %s (%s %s)\n",
			set.Kernel, set.Vmlinux, set.Initrd, set.KernelVersion, set.Package, set.PackageVersion)
	}
	return 0
}
