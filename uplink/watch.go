package uplink

import (
	"time"

	"github.com/vishvananda/netlink"
)

// watcher follows link updates (rtnetlink RTM_NEWLINK / RTM_DELLINK via
// netlink.LinkSubscribe) and, as a fallback for lost messages, checks the
// interface every Config.WatchInterval; either way Port.reconcile decides.
type watcher struct {
	quit chan struct{}
	done chan struct{}
}

func startWatcher(p *Port) (*watcher, error) {
	w := &watcher{quit: make(chan struct{}), done: make(chan struct{})}
	updates := make(chan netlink.LinkUpdate, 64)
	nlDone := make(chan struct{})
	err := netlink.LinkSubscribeWithOptions(updates, nlDone, netlink.LinkSubscribeOptions{
		ErrorCallback: func(err error) { p.log.Debug("netlink link updates", "error", err) },
	})
	if err != nil {
		updates = nil
	}
	go func() {
		defer close(w.done)
		defer close(nlDone)
		t := time.NewTicker(p.cfg.WatchInterval)
		defer t.Stop()
		for {
			select {
			case <-w.quit:
				return
			case u, ok := <-updates:
				if !ok {
					updates = nil // subscription ended: polling only
					continue
				}
				if a := u.Attrs(); a != nil && a.Name != p.name {
					if st := p.Stats(); st.Ifindex == 0 || st.Ifindex != a.Index {
						continue
					}
				}
				p.reconcile()
			case <-t.C:
				p.reconcile()
			}
		}
	}()
	return w, err
}

func (w *watcher) stop() {
	close(w.quit)
	<-w.done
}
