package event

import (
	"context"
	"fmt"
	"sync"
)

// Waiter lets a test wait for guests' events while they run: pass its Add
// as lab.Config.Events, then Wait for a guest's readiness (TypeReady) or
// any event of its own. Events are kept (bounded by what guests send,
// which the test controls).
type Waiter struct {
	mu   sync.Mutex
	seen map[string][]Event // by guest
	wake chan struct{}      // closed and replaced on every event
}

// Add records an event of guest (lab.Config.Events's signature).
func (w *Waiter) Add(guest string, e Event) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.init()
	w.seen[guest] = append(w.seen[guest], e)
	close(w.wake)
	w.wake = make(chan struct{})
}

func (w *Waiter) init() {
	if w.seen == nil {
		w.seen = map[string][]Event{}
		w.wake = make(chan struct{})
	}
}

// Wait returns the first event of type typ from guest, waiting for it
// until ctx ends.
func (w *Waiter) Wait(ctx context.Context, guest, typ string) (Event, error) {
	for {
		w.mu.Lock()
		w.init()
		for _, e := range w.seen[guest] {
			if e.Type == typ {
				w.mu.Unlock()
				return e, nil
			}
		}
		wake := w.wake
		w.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return Event{}, fmt.Errorf("waiting for %s's %q event: %w", guest, typ, ctx.Err())
		}
	}
}
