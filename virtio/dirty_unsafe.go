package virtio

import (
	"fmt"
	"unsafe"
)

// NewDirtyLogShared returns a log kept in b, typically the mmap'd
// VHOST_USER_SET_LOG_BASE shared memory, so that the frontend sees the bits.
// b must be 8-byte aligned; a trailing partial word is not used.
func NewDirtyLogShared(b []byte) (*DirtyLog, error) {
	if len(b) < 8 {
		return nil, fmt.Errorf("virtio: dirty log of %d bytes is too small", len(b))
	}
	p := unsafe.Pointer(unsafe.SliceData(b))
	if uintptr(p)%8 != 0 {
		return nil, fmt.Errorf("virtio: dirty log at %p is not 8-byte aligned", p)
	}
	return &DirtyLog{words: unsafe.Slice((*uint64)(p), len(b)/8)}, nil
}
