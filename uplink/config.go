package uplink

import (
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/go-hclog"
)

// TXMode picks the transmit implementation.
type TXMode uint8

const (
	// TXRing sends through a TPACKET_V2 memory-mapped TX ring.
	TXRing TXMode = iota
	// TXSendmmsg sends with sendmmsg(2), one iovec pair per frame.
	TXSendmmsg
)

func (m TXMode) String() string {
	switch m {
	case TXRing:
		return "ring"
	case TXSendmmsg:
		return "sendmmsg"
	}
	return fmt.Sprintf("TXMode(%d)", m)
}

// ParseTXMode parses "ring" or "sendmmsg".
func ParseTXMode(s string) (TXMode, error) {
	switch s {
	case "ring":
		return TXRing, nil
	case "sendmmsg":
		return TXSendmmsg, nil
	}
	return 0, fmt.Errorf("uplink: unknown TX mode %q (want ring or sendmmsg)", s)
}

// Config configures a Port. The zero value is usable.
type Config struct {
	Logger hclog.Logger // default: null logger

	// RXWorkers is the number of RX sockets (and goroutines), joined in a
	// PACKET_FANOUT hash group when more than one. Default 1.
	RXWorkers int
	// FanoutID is the fanout group id; 0 picks one from the pid and ifindex.
	FanoutID uint16

	// BlockSize and Blocks size each RX ring (TPACKET_V3). BlockSize is a
	// multiple of the page size and at least 128 KiB so a 64 KiB GSO frame
	// fits. Defaults 256 KiB and 32.
	BlockSize int
	Blocks    int
	// BlockTimeout is how long the kernel fills a block before handing it
	// over anyway (retire_blk_tov, millisecond resolution). Default 1 ms.
	BlockTimeout time.Duration
	// PollTimeout bounds each poll(2) of an RX worker. Default 100 ms.
	PollTimeout time.Duration
	// Batch is the most frames handed to the switch per Input. Default 64.
	Batch int

	// TX picks the transmit path. Default TXRing.
	TX TXMode
	// TXSlots is the number of TX ring slots; each holds one frame of up to
	// 64 KiB plus headers. Default 128.
	TXSlots int
	// QdiscBypass sets PACKET_QDISC_BYPASS on the TX socket.
	QdiscBypass bool
	// NoPromisc leaves the interface out of promiscuous mode.
	NoPromisc bool

	// WatchInterval is the fallback period of the link watcher (netlink
	// updates are the primary source). Default 2 s.
	WatchInterval time.Duration
}

// ErrNoInterface is returned (wrapped) by Open for an interface that does not exist.
var ErrNoInterface = errors.New("no such network interface")

const (
	pageSize        = 4096
	minBlockSize    = 128 << 10
	maxFrame        = 65536 + 256 // a 64 KiB GSO frame plus headers (vswitch's limit)
	txSlotSize      = 69632       // 17 pages: tpacket2_hdr + vnet header + maxFrame
	defaultBatch    = 64
	maxBatch        = 1024
	defaultBlock    = 256 << 10
	defaultBlocks   = 32
	defaultTXSlots  = 128
	defaultPoll     = 100 * time.Millisecond
	defaultWatch    = 2 * time.Second
	maxRXWorkers    = 64
	defaultBlockTOV = time.Millisecond
)

func (c Config) withDefaults() (Config, error) {
	if c.Logger == nil {
		c.Logger = hclog.NewNullLogger()
	}
	if c.RXWorkers == 0 {
		c.RXWorkers = 1
	}
	if c.BlockSize == 0 {
		c.BlockSize = defaultBlock
	}
	if c.Blocks == 0 {
		c.Blocks = defaultBlocks
	}
	if c.BlockTimeout == 0 {
		c.BlockTimeout = defaultBlockTOV
	}
	if c.PollTimeout == 0 {
		c.PollTimeout = defaultPoll
	}
	if c.Batch == 0 {
		c.Batch = defaultBatch
	}
	if c.TXSlots == 0 {
		c.TXSlots = defaultTXSlots
	}
	if c.WatchInterval == 0 {
		c.WatchInterval = defaultWatch
	}
	switch {
	case c.RXWorkers < 1 || c.RXWorkers > maxRXWorkers:
		return c, fmt.Errorf("uplink: RXWorkers %d out of range 1..%d", c.RXWorkers, maxRXWorkers)
	case c.BlockSize < minBlockSize || c.BlockSize%pageSize != 0:
		return c, fmt.Errorf("uplink: BlockSize %d: want a multiple of %d, at least %d", c.BlockSize, pageSize, minBlockSize)
	case c.Blocks < 2 || c.Blocks > 4096:
		return c, fmt.Errorf("uplink: Blocks %d out of range 2..4096", c.Blocks)
	case c.Batch < 1 || c.Batch > maxBatch:
		return c, fmt.Errorf("uplink: Batch %d out of range 1..%d", c.Batch, maxBatch)
	case c.TXSlots < 1 || c.TXSlots > 4096:
		return c, fmt.Errorf("uplink: TXSlots %d out of range 1..4096", c.TXSlots)
	case c.TX != TXRing && c.TX != TXSendmmsg:
		return c, fmt.Errorf("uplink: unknown TX mode %d", c.TX)
	case c.BlockTimeout < time.Millisecond || c.PollTimeout < time.Millisecond:
		return c, errors.New("uplink: BlockTimeout and PollTimeout must be at least 1 ms")
	}
	return c, nil
}
