package virtio

import (
	"sync"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"
)

// A ring index written while the other side reads it is never seen half
// written: a reader on another goroutine (another CPU) only ever sees one
// of the values written. The memory is mmap'd, as guest memory is, so the race
// detector does not look at it; run with -race, where binary.LittleEndian
// is two byte stores with calls between them. The bytewise row is that
// code: it logs the tears it saw (thousands in 4 M stores here, under
// -race), which shows the reader can see one.
func TestStore16Untorn(t *testing.T) {
	for _, tc := range []struct {
		name  string
		store func([]byte, uint16)
		load  func([]byte) uint16
		torn  bool // tears may be seen (logged, not failed)
	}{
		{"Store16/Load16", Store16, Load16, false},
		{"bytewise", func(b []byte, v uint16) { b[0], b[1] = byte(v), byte(v>>8) }, func(b []byte) uint16 { return uint16(b[0]) | uint16(b[1])<<8 }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mem, err := unix.Mmap(-1, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Munmap(mem)
			b := mem[2:4]
			var done atomic.Bool
			var wg sync.WaitGroup
			var tears, reads int
			// The writer flips the index between 0x00ff and 0x0100, which
			// differ in both bytes: any other value read is half of each.
			wg.Add(1)
			go func() {
				defer wg.Done()
				for !done.Load() {
					switch tc.load(b) {
					case 0, 0x00ff, 0x0100:
					default:
						tears++
					}
					reads++
				}
			}()
			for i := range 1 << 22 {
				tc.store(b, 0x00ff+uint16(i&1))
			}
			done.Store(true)
			wg.Wait()
			t.Logf("%d reads, %d torn", reads, tears)
			if !tc.torn && tears != 0 {
				t.Errorf("%d of %d reads saw a half-written index", tears, reads)
			}
		})
	}
}
