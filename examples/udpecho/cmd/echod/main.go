// Command echod runs the echo service for a while, telling the host test
// (through hvnet's event channel) when it listens and whom it served.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"example.com/udpecho/echo"

	"github.com/hvnet/hvnet/vmtest/event"
)

func main() {
	addr := flag.String("addr", ":7", "UDP address to listen on")
	d := flag.Duration("for", 30*time.Second, "how long to serve")
	flag.Parse()
	s, err := echo.Listen(*addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := event.Emit("listening", map[string]string{"addr": s.Addr().String()}); err != nil {
		fmt.Fprintln(os.Stderr, "echod:", err) // not in a test guest: serve anyway
	}
	ctx, cancel := context.WithTimeout(context.Background(), *d)
	defer cancel()
	if err := s.Serve(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := event.Emit("served", s.Served()); err == nil {
		event.Drain()
	}
}
