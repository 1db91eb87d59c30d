package main

import (
	"context"
	"fmt"
	"os"

	"github.com/hvnet/hvnet/images"
	"github.com/hvnet/hvnet/nested"
)

// buildImages builds (or finds in the cache) the test guest images, with
// progress on stderr.
func buildImages(ctx context.Context, e *env) (*images.Set, error) {
	return images.Build(ctx, images.Config{Log: e.log.Named("images"), Progress: e.stderr, Steps: e.steps})
}

// defaultImages fills an empty kernel or initrd path with the test guest
// image's.
func defaultImages(ctx context.Context, e *env, kernel, initrd *string) error {
	if *kernel != "" && *initrd != "" {
		return nil
	}
	set, err := buildImages(ctx, e)
	if err != nil {
		return fmt.Errorf("guest images: %w", err)
	}
	if *kernel == "" {
		*kernel = set.Kernel
	}
	if *initrd == "" {
		*initrd = set.Initrd
	}
	return nil
}

// nestedBase is what every command that re-runs itself inside the nested
// test host starts from: the images the test host boots, and this binary
// at /hvnet/bin/hvnet among the files it carries.
func nestedBase(ctx context.Context, e *env) (*images.Set, []nested.File, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, nil, fmt.Errorf("nested: %w", err)
	}
	set, err := buildImages(ctx, e)
	if err != nil {
		return nil, nil, fmt.Errorf("nested: the test host needs the guest images: %w", err)
	}
	return set, []nested.File{{Src: self, Dst: "/hvnet/bin/hvnet"}}, nil
}
