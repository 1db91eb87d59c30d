package vmtest

import (
	"os"
	"testing"

	"github.com/hvnet/hvnet/nested"
)

// NestUnless is Nest for tests that need features of the running kernel
// rather than guests: where have is false (this kernel lacks what the test
// needs, e.g. 802.1Q subinterfaces or bridge VLAN filtering), it re-runs
// the calling top-level test inside the nested test host, whose kernel (the
// guest kernel, Debian's cloud build) has them; where have is true it does
// nothing and the test runs here. It does not look at the host's KVM.
//
//	have := probe() // e.g. try to create a VLAN link
//	if vmtest.NestUnless(t, have) {
//		return
//	}
//
// HVNET_NESTED=always nests regardless; HVNET_NESTED=never forbids it (the
// test then runs here and should fail with what is missing). Inside the
// nested test host it always returns false.
func NestUnless(t *testing.T, have bool, opts ...NestOptions) bool {
	t.Helper()
	if InL1() {
		return false
	}
	switch os.Getenv(nested.EnvMode) {
	case "never", "off", "0":
		return false
	case "always", "on", "1":
	default:
		if have {
			return false
		}
		t.Log("this kernel lacks what the test needs: nesting")
		// Nest decides by the host's KVM unless told otherwise.
		t.Setenv(nested.EnvMode, "always")
	}
	return Nest(t, opts...)
}
