package virtio

import (
	"runtime"
	"testing"
	"unsafe"
)

// PREFETCHW is there on the CPUs hvnet is measured on, and a prefetch of
// any address (mapped or not, nil) returns without a fault.
func TestPrefetchW(t *testing.T) {
	if runtime.GOARCH == "amd64" && !canPrefetchW {
		t.Log("this CPU has no PREFETCHW: Warm does nothing here")
	}
	b := make([]byte, 256)
	p := uintptr(unsafe.Pointer(&b[0]))
	prefetchW([]uintptr{p, p + 64, 0, 8, ^uintptr(0) - 64, 1 << 47})
	prefetchW(nil)
}
