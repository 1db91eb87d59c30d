package echo

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"testing"
	"time"
)

// In a guest, the test binary is told where the server is and what to
// expect (vm_test.go's guest scripts); on the host these flags are unset
// and TestRemote is skipped.
var (
	server = flag.String("server", "", "a remote echo server to test (host:port)")
	expect = flag.String("expect", "reply", `what the server does: "reply", or "silence" (it must be unreachable)`)
)

func TestLocal(t *testing.T) {
	s, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	for i := 0; i < 3; i++ {
		if err := Ping(s.Addr().String(), []byte(fmt.Sprint("hello ", i)), time.Second); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := s.Served()["127.0.0.1"]; n != 3 {
		t.Errorf("served %d from 127.0.0.1, want 3", n)
	}
}

func TestRemote(t *testing.T) {
	if *server == "" {
		t.Skip("no -server: this test runs in a guest (vm_test.go)")
	}
	switch *expect {
	case "reply":
		// The server's guest boots beside this one and may not listen
		// yet (connection refused), and the first datagram waits for
		// ARP: try for up to a minute.
		var err error
		for end := time.Now().Add(time.Minute); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
			if err = Ping(*server, []byte("hello from a guest"), time.Second); err == nil {
				break
			}
		}
		if err != nil {
			t.Fatalf("%s: %v", *server, err)
		}
		for i := 0; i < 20; i++ {
			if err := Ping(*server, []byte(fmt.Sprint("round ", i)), 2*time.Second); err != nil {
				t.Fatalf("round %d: %v", i, err)
			}
		}
	case "silence":
		for i := 0; i < 5; i++ {
			err := Ping(*server, []byte("anyone there?"), time.Second)
			if !errors.Is(err, ErrNoReply) {
				t.Fatalf("try %d: %v; want no reply (the server must be unreachable from here)", i, err)
			}
		}
	default:
		t.Fatalf("-expect %q: want reply or silence", *expect)
	}
}
