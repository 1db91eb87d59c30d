package evpn

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"syscall"

	"golang.org/x/sys/unix"
)

// TCP MD5 signatures (RFC 2385) of the internal hop between GoBGP and
// the relay.

// md5Key returns a random TCP MD5 key, or an error if the kernel does not
// take one.
func md5Key() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	key := hex.EncodeToString(b)
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return "", err
	}
	defer unix.Close(fd)
	if err := setMD5(fd, netip.AddrFrom4([4]byte{127, 0, 0, 1}), key); err != nil {
		return "", err
	}
	return key, nil
}

// setMD5 signs fd's segments to and from peer with key (TCP_MD5SIG).
func setMD5(fd int, peer netip.Addr, key string) error {
	sig := unix.TCPMD5Sig{Keylen: uint16(len(key))}
	sig.Addr.Family = unix.AF_INET
	a := peer.As4()
	copy(sig.Addr.Data[2:], a[:])
	copy(sig.Key[:], key)
	if err := unix.SetsockoptTCPMD5Sig(fd, unix.IPPROTO_TCP, unix.TCP_MD5SIG, &sig); err != nil {
		return fmt.Errorf("setsockopt TCP_MD5SIG: %w", err)
	}
	return nil
}

// md5Control signs a relay socket of the internal hop: its peer is GoBGP.
func (r *relay) md5Control(_, _ string, c syscall.RawConn) error {
	if r.key == "" {
		return nil
	}
	var serr error
	if err := c.Control(func(fd uintptr) { serr = setMD5(int(fd), r.inner, r.key) }); err != nil {
		return err
	}
	return serr
}
