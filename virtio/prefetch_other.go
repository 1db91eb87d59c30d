//go:build !amd64

package virtio

func prefetchW([]uintptr) {}
func prefetchR([]uintptr) {}
