package main

import (
	"net"
	"os"

	"github.com/hashicorp/go-hclog"
)

// sdNotifier returns a function that sends states to the service
// manager (sd_notify(3)) when $NOTIFY_SOCKET names one, nil otherwise:
// systemd's Type=notify units learn when the daemon is ready.
func sdNotifier(log hclog.Logger) func(state string) {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return nil
	}
	if path[0] == '@' { // an abstract socket
		path = "\x00" + path[1:]
	}
	return func(state string) {
		conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
		if err != nil {
			log.Warn("sd_notify: cannot reach the service manager", "socket", os.Getenv("NOTIFY_SOCKET"), "error", err)
			return
		}
		defer conn.Close()
		if _, err := conn.Write([]byte(state)); err != nil {
			log.Warn("sd_notify failed", "state", state, "error", err)
		}
	}
}
