package lines

import (
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"
)

func TestSplitter(t *testing.T) {
	var got []string
	s := &Splitter{Line: func(l string) error { got = append(got, l); return nil }, Max: 8}
	for _, w := range []string{"ab", "c\r\nde", "f\n\n", "0123456789abc", "\nlast"} {
		if n, err := s.Write([]byte(w)); n != len(w) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", w, n, err)
		}
	}
	s.Flush()
	want := []string{"abc", "def", "", "01234567", "89abc", "last"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("lines %q, want %q", got, want)
	}
	if err := s.Flush(); err != nil || len(got) != len(want) {
		t.Errorf("a second Flush handed over more: %q, %v", got, err)
	}
}

func TestSplitterError(t *testing.T) {
	boom := errors.New("boom")
	s := &Splitter{Line: func(l string) error {
		if l == "bad" {
			return boom
		}
		return nil
	}}
	if _, err := s.Write([]byte("ok\nbad\nok\n")); !errors.Is(err, boom) {
		t.Errorf("Write = %v, want the line's error", err)
	}
}

// Concurrent writers of whole lines: every line arrives whole.
func TestSplitterConcurrent(t *testing.T) {
	var mu sync.Mutex
	count := map[string]int{}
	s := &Splitter{Line: func(l string) error { mu.Lock(); count[l]++; mu.Unlock(); return nil }}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			line := strings.Repeat(string(rune('a'+w)), 100) + "\n"
			for range 500 {
				s.Write([]byte(line))
			}
		}()
	}
	wg.Wait()
	if len(count) != 4 {
		t.Fatalf("%d distinct lines, want 4 (lines were torn): %v", len(count), len(count))
	}
	for l, n := range count {
		if n != 500 {
			t.Errorf("line %.5s... seen %d times, want 500", l, n)
		}
	}
}
