package hugepages

import (
	"os"
	"testing"
)

// Reserve raises the pool by what is missing and release lowers it by as
// much, from whatever the pool is then (another reservation made in
// between stays).
func TestReserveRelease(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("changing vm.nr_hugepages needs root")
	}
	before, err := Read()
	if err != nil {
		t.Skip(err)
	}
	added, release, err := Reserve(before.Free + 2)
	if err != nil {
		t.Skipf("the kernel cannot give 2 more huge pages: %v", err)
	}
	if added != 2 {
		t.Errorf("added %d pages, want 2", added)
	}
	if p, _ := Read(); p.Total != before.Total+2 || p.Free < before.Free+2 {
		t.Errorf("pool %+v after reserving 2 more than %+v", p, before)
	}
	if err := addPages(1); err != nil { // someone else's, meanwhile
		t.Fatal(err)
	}
	release()
	if p, _ := Read(); p.Total != before.Total+1 {
		t.Errorf("pool total %d after release, want %d (the other page kept)", p.Total, before.Total+1)
	}
	if err := addPages(-1); err != nil {
		t.Fatal(err)
	}
	if n, release, err := Reserve(0); err != nil || n != 0 {
		t.Errorf("Reserve(0) = %d, %v", n, err)
	} else {
		release()
	}
}
