package virtio

// canPrefetchW: the CPU has PREFETCHW (CPUID 0x80000001 ECX bit 8,
// PRFCHW/3DNowPrefetch: AMD since K8, Intel since Broadwell); Linux
// patches it in on the same bit.
var canPrefetchW = extFeatures()&(1<<8) != 0

// prefetchW asks for the cache lines at addrs with intent to write
// (PREFETCHW), in one call. A prefetch never faults: an address that is
// not mapped is ignored. Only where canPrefetchW.
//
//go:noescape
func prefetchW(addrs []uintptr)

func extFeatures() uint32
