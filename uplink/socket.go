package uplink

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// htons converts a protocol number to network byte order, as sockaddr_ll wants.
func htons(v uint16) uint16 { return v<<8 | v>>8 }

func setInt(fd, opt, v int, what string) error {
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, opt, v); err != nil {
		return fmt.Errorf("setsockopt %s=%d: %w", what, v, err)
	}
	return nil
}

// newPacketSocket returns an AF_PACKET SOCK_RAW socket with protocol 0
// (packet(7): it receives nothing until bound with a protocol) and
// PACKET_VNET_HDR, which must be set before a ring is configured.
func newPacketSocket() (int, error) {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("socket(AF_PACKET): %w", err)
	}
	if err := setInt(fd, unix.PACKET_VNET_HDR, 1, "PACKET_VNET_HDR"); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// rxRing is one RX socket and its TPACKET_V3 ring (packet_mmap.rst,
// "TPACKET_V3"): Blocks blocks of BlockSize bytes, each owned by the kernel
// (TP_STATUS_KERNEL) until it is full or its timer retires it, then by user
// space (TP_STATUS_USER) until handed back.
type rxRing struct {
	fd        int
	ring      []byte
	blockSize int
	blocks    int
	next      int
}

// openRX opens an RX socket on ifindex. fanout, when not zero, is the
// PACKET_FANOUT argument (group id | type<<16).
func openRX(ifindex int, cfg *Config, fanout int) (r *rxRing, err error) {
	fd, err := newPacketSocket()
	if err != nil {
		return nil, err
	}
	r = &rxRing{fd: fd, blockSize: cfg.BlockSize, blocks: cfg.Blocks}
	defer func() {
		if err != nil {
			r.close()
		}
	}()
	if err := setInt(fd, unix.PACKET_VERSION, unix.TPACKET_V3, "PACKET_VERSION"); err != nil {
		return nil, err
	}
	// The ring carries the VLAN tag in tp_vlan_tci; AUXDATA asks for the
	// same for recvmsg readers and is harmless here.
	if err := setInt(fd, unix.PACKET_AUXDATA, 1, "PACKET_AUXDATA"); err != nil {
		return nil, err
	}
	if err := setInt(fd, unix.PACKET_IGNORE_OUTGOING, 1, "PACKET_IGNORE_OUTGOING"); err != nil {
		return nil, err
	}
	const frameSize = 2048 // only checked for consistency by TPACKET_V3
	req := unix.TpacketReq3{
		Block_size:     uint32(cfg.BlockSize),
		Block_nr:       uint32(cfg.Blocks),
		Frame_size:     frameSize,
		Frame_nr:       uint32(cfg.BlockSize / frameSize * cfg.Blocks),
		Retire_blk_tov: uint32(cfg.BlockTimeout.Milliseconds()),
	}
	if err := unix.SetsockoptTpacketReq3(fd, unix.SOL_PACKET, unix.PACKET_RX_RING, &req); err != nil {
		return nil, fmt.Errorf("setsockopt PACKET_RX_RING %d x %d: %w", cfg.Blocks, cfg.BlockSize, err)
	}
	r.ring, err = unix.Mmap(fd, 0, cfg.BlockSize*cfg.Blocks, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_LOCKED|unix.MAP_POPULATE)
	if err != nil {
		if r.ring, err = unix.Mmap(fd, 0, cfg.BlockSize*cfg.Blocks, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED); err != nil {
			return nil, fmt.Errorf("mmap RX ring: %w", err)
		}
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifindex}); err != nil {
		return nil, fmt.Errorf("bind RX socket to ifindex %d: %w", ifindex, err)
	}
	if !cfg.NoPromisc {
		mreq := unix.PacketMreq{Ifindex: int32(ifindex), Type: unix.PACKET_MR_PROMISC}
		if err := unix.SetsockoptPacketMreq(fd, unix.SOL_PACKET, unix.PACKET_ADD_MEMBERSHIP, &mreq); err != nil {
			return nil, fmt.Errorf("setsockopt PACKET_ADD_MEMBERSHIP promisc: %w", err)
		}
	}
	if fanout != 0 {
		if err := setInt(fd, unix.PACKET_FANOUT, fanout, "PACKET_FANOUT"); err != nil {
			return nil, err
		}
	}
	return r, nil
}

func (r *rxRing) close() error {
	var err error
	if r.ring != nil {
		err = unix.Munmap(r.ring)
		r.ring = nil
	}
	if r.fd >= 0 {
		if e := unix.Close(r.fd); err == nil {
			err = e
		}
		r.fd = -1
	}
	return err
}

// kernelDrops reads and resets the socket's PACKET_STATISTICS drop count.
func (r *rxRing) kernelDrops() uint64 {
	s, err := unix.GetsockoptTpacketStatsV3(r.fd, unix.SOL_PACKET, unix.PACKET_STATISTICS)
	if err != nil {
		return 0
	}
	return uint64(s.Drops)
}

// openTX opens the TX socket: protocol 0, so it never receives.
func openTX(ifindex int, cfg *Config) (txPath, error) {
	fd, err := newPacketSocket()
	if err != nil {
		return nil, err
	}
	if cfg.QdiscBypass {
		if err := setInt(fd, unix.PACKET_QDISC_BYPASS, 1, "PACKET_QDISC_BYPASS"); err != nil {
			unix.Close(fd)
			return nil, err
		}
	}
	// Bound waits for TX completions (a full TX ring) to one second.
	tv := unix.Timeval{Sec: 1}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("setsockopt SO_SNDTIMEO: %w", err)
	}
	var tx txPath
	switch cfg.TX {
	case TXRing:
		tx, err = newTXRing(fd, cfg.TXSlots) // owns fd from here, closes it on error
	default:
		tx, err = newTXMmsg(fd, cfg.Batch)
	}
	if err != nil {
		return nil, err
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Ifindex: ifindex}); err != nil {
		tx.close()
		return nil, fmt.Errorf("bind TX socket to ifindex %d: %w", ifindex, err)
	}
	return tx, nil
}
