// Package hugepages reads and reserves the kernel's pool of default-size
// huge pages (/proc/meminfo, vm.nr_hugepages) for the benchmarks and tests
// that need shared memory on hugetlbfs: OVS-DPDK in `hvnet bench vhost`,
// the vhost-user backend's hugetlbfs tests.
package hugepages

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Pool is the default-size huge page pool.
type Pool struct {
	Total, Free, SizeKiB int
}

// nrPath is the pool's size setting.
const nrPath = "/proc/sys/vm/nr_hugepages"

// Read reads the pool from /proc/meminfo.
func Read() (Pool, error) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return Pool{}, fmt.Errorf("reading hugepages: %w", err)
	}
	defer f.Close()
	var p Pool
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
		switch k {
		case "HugePages_Total":
			p.Total = n
		case "HugePages_Free":
			p.Free = n
		case "Hugepagesize":
			p.SizeKiB = n
		}
	}
	if p.SizeKiB == 0 {
		return p, errors.New("reading hugepages: no Hugepagesize in /proc/meminfo")
	}
	return p, sc.Err()
}

// Reserve makes at least n pages free, raising vm.nr_hugepages by what is
// missing (which needs root), and returns how many it added and release,
// which lowers vm.nr_hugepages by as many again. release subtracts from
// the value it finds rather than writing back the old one: another
// process (a test of another package) may have changed the pool
// meanwhile, and writing an old value back would take its pages or leave
// its reservation behind. The error says when fewer than n pages could be
// made free (root, but memory too fragmented): nothing is left reserved.
func Reserve(n int) (added int, release func(), err error) {
	p, err := Read()
	if err != nil {
		return 0, nil, err
	}
	release = func() {}
	if p.Free >= n {
		return 0, release, nil
	}
	added = n - p.Free
	if err := addPages(added); err != nil {
		return 0, nil, fmt.Errorf("reserving %d hugepages: %w", added, err)
	}
	release = func() { _ = addPages(-added) }
	if p, err = Read(); err != nil || p.Free < n {
		release()
		return 0, nil, fmt.Errorf("reserving hugepages: %d free of the %d wanted (memory too fragmented?) %v", p.Free, n, err)
	}
	return added, release, nil
}

// addPages adds d (negative: removes) to vm.nr_hugepages, not below 0.
func addPages(d int) error {
	b, err := os.ReadFile(nrPath)
	if err != nil {
		return err
	}
	cur, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return fmt.Errorf("%s: %w", nrPath, err)
	}
	return os.WriteFile(nrPath, []byte(strconv.Itoa(max(cur+d, 0))), 0)
}

// Mounted says whether some hugetlbfs is mounted (DPDK's EAL finds it in
// /proc/mounts wherever it is).
func Mounted() bool {
	b, err := os.ReadFile("/proc/mounts")
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 2 && f[2] == "hugetlbfs" {
			return true
		}
	}
	return false
}
