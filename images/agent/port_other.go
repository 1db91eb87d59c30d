//go:build !amd64

package main

import "errors"

func writePort(port uint16, val byte) error {
	return errors.New("I/O ports exist on amd64 only")
}
