package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// version is the release this binary was built as, and revision the VCS
// revision it was built from ("-ldflags '-X main.version=v0.2.0 -X
// main.revision=...'", as run.sh stamps it); without them the Go
// toolchain's own VCS stamp is used where it made one.
var version, revision = "dev", ""

// versionString is what "hvnet version" prints: the release, the VCS
// revision and time the Go toolchain stamped into the binary (with
// "+dirty" for a build from a modified tree), and the Go version.
func versionString() string {
	s := "hvnet " + version
	if bi, ok := debug.ReadBuildInfo(); ok {
		var rev, at, dirty string
		for _, kv := range bi.Settings {
			switch kv.Key {
			case "vcs.revision":
				rev = kv.Value
			case "vcs.time":
				at = kv.Value
			case "vcs.modified":
				if kv.Value == "true" {
					dirty = "+dirty"
				}
			}
		}
		if rev != "" && revision == "" {
			revision = fmt.Sprintf("%s%s (%s)", rev, dirty, at)
		}
	}
	if revision != "" {
		s += " revision " + revision
	} else {
		s += " revision unknown (built without VCS information)"
	}
	return s + fmt.Sprintf(", %s %s/%s", runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// buildInfo labels hvnet_build_info.
func buildInfo() map[string]string {
	versionString() // fills in revision from the toolchain's stamp
	rev := revision
	if rev == "" {
		rev = "unknown"
	}
	return map[string]string{"version": version, "revision": rev, "goversion": runtime.Version()}
}

// cmdVersion is "hvnet version".
func cmdVersion(e *env, args []string) int {
	if len(args) > 0 && args[0] != "-h" && args[0] != "--help" {
		return fail(e, fmt.Errorf("%w: version takes no arguments", errUsage))
	}
	fmt.Fprintln(e.stdout, versionString())
	return 0
}
