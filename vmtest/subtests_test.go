package vmtest

import "testing"

// The nested host's console: the test's own result lines (indented, with
// the L1 test's name) are kept; a guest's (prefixed with its name) and
// other tests' are not.
func TestSubtestLines(t *testing.T) {
	w := &logWriter{t: t, prefix: "L1| ", test: "TestNet"}
	for _, l := range []string{
		"=== RUN   TestNet/a/echo/TestLocal",
		"near| --- PASS: TestLocal (0.11s)",
		"--- PASS: TestNet (104.69s)",
		"    --- PASS: TestNet/a/echo/TestLocal (0.00s)",
		"    --- FAIL: TestNet/a/echo/TestRemote (1.50s)",
		"    --- SKIP: TestNet/b (0.00s)",
		"    --- PASS: TestNetwork/x (0.00s)",
	} {
		if err := w.line(l); err != nil {
			t.Fatal(err)
		}
	}
	got := w.subtests()
	want := []subtest{{"a/echo/TestLocal", "PASS"}, {"a/echo/TestRemote", "FAIL"}, {"b", "SKIP"}}
	if len(got) != len(want) {
		t.Fatalf("subtests %+v; want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("subtest %d = %+v; want %+v", i, got[i], want[i])
		}
	}
}
