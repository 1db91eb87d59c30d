package virtio

// prefetchW asks for the cache lines at addrs with intent to write
// (PREFETCHW), in one call. A prefetch never faults: an address that is
// not mapped is ignored.
//
//go:noescape
func prefetchW(addrs []uintptr)

// prefetchR asks for the cache lines at addrs to read (PREFETCHT0), in one
// call.
//
//go:noescape
func prefetchR(addrs []uintptr)
