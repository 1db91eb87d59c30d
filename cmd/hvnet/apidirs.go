package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// defaultRunDir is the run directory of a daemon serving its API at
// apiSock: the socket's path without its extension (/run/hvnet.sock:
// /run/hvnet, where the examples put vhost-user sockets), or with ".d"
// added when it has none.
func defaultRunDir(apiSock string) string {
	if d := strings.TrimSuffix(apiSock, filepath.Ext(apiSock)); d != apiSock && d != "" && !strings.HasSuffix(d, "/") {
		return d
	}
	return apiSock + ".d"
}

// apiDirs makes and returns the directories the API may write in: the
// run directory (sockets of vhost-user ports added through the API; cfg's
// or defaultRunDir's) and the capture directory (file mirrors; cfg's or
// RUN/captures, mode 0700: captures hold tenants' traffic).
func apiDirs(cfg daemonConfig) (run, capture string, err error) {
	run, capture = cfg.RunDir, cfg.CaptureDir
	if run == "" {
		run = defaultRunDir(cfg.API)
	}
	if capture == "" {
		capture = filepath.Join(run, "captures")
	}
	if run, err = filepath.Abs(run); err != nil {
		return "", "", fmt.Errorf("run directory: %w", err)
	}
	if capture, err = filepath.Abs(capture); err != nil {
		return "", "", fmt.Errorf("capture directory: %w", err)
	}
	if err := os.MkdirAll(run, 0o755); err != nil {
		return "", "", fmt.Errorf("run directory: %w", err)
	}
	if err := os.MkdirAll(capture, 0o700); err != nil {
		return "", "", fmt.Errorf("capture directory: %w", err)
	}
	return run, capture, nil
}
