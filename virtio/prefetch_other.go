//go:build !amd64

package virtio

const canPrefetchW = false

func prefetchW([]uintptr) {}
