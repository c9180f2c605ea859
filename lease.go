package hub

import (
	"context"
	"errors"
	"time"

	"github.com/harvesthub/hub/idempotency"
)

// holdLease registers d's claim for renewal while it is handled.
func (hd *handler) holdLease(d *delivery, scoped, token string) {
	hd.mu.Lock()
	d.scoped, d.token, d.renewedAt = scoped, token, time.Now()
	hd.leases[d] = struct{}{}
	hd.mu.Unlock()
}

func (hd *handler) dropLease(d *delivery) {
	hd.mu.Lock()
	delete(hd.leases, d)
	hd.mu.Unlock()
}

func (hd *handler) leaseLost(d *delivery) bool {
	hd.mu.Lock()
	defer hd.mu.Unlock()
	return d.leaseLost
}

// renewLeases extends, every third of Config.Lease, the lease of every
// claim held longer than that, so a lease only needs to outlive a crashed
// worker's silence, not the longest handler attempt. Run starts it; it
// returns when the hub is closed, after every handler returned.
func (h *Hub) renewLeases() {
	defer h.bg.Done()
	period := h.cfg.Lease / 3
	t := time.NewTicker(period)
	defer t.Stop()
	type claim struct {
		hd *handler
		d  *delivery
	}
	var due []claim
	for {
		select {
		case <-h.bgCtx.Done():
			return
		case <-t.C:
		}
		due = due[:0]
		h.mu.Lock()
		hds := make([]*handler, 0, len(h.handlers))
		for _, hd := range h.handlers {
			hds = append(hds, hd)
		}
		h.mu.Unlock()
		now := time.Now()
		for _, hd := range hds {
			hd.mu.Lock()
			for d := range hd.leases {
				if !d.leaseLost && now.Sub(d.renewedAt) >= period {
					due = append(due, claim{hd, d})
				}
			}
			hd.mu.Unlock()
		}
		for _, c := range due {
			hd, d := c.hd, c.d
			hd.mu.Lock()
			scoped, token := d.scoped, d.token
			hd.mu.Unlock()
			ctx, cancel := context.WithTimeout(h.bgCtx, min(period, h.cfg.OpTimeout))
			err := h.store.Extend(ctx, scoped, token, h.cfg.Lease)
			cancel()
			hd.mu.Lock()
			switch {
			case err == nil:
				d.renewedAt = now
			case errors.Is(err, idempotency.ErrLeaseLost):
				if _, held := hd.leases[d]; held {
					d.leaseLost = true
					h.log.Warn("hub: lease lost while handling; another worker may handle the message too", "handler", hd.name, "key", scoped)
				}
			default:
				h.log.Warn("hub: extending lease failed; trying again", "handler", hd.name, "key", scoped, "error", err)
			}
			hd.mu.Unlock()
		}
	}
}

func (hd *handler) oldestAttempt() time.Time {
	hd.mu.Lock()
	defer hd.mu.Unlock()
	var oldest time.Time
	for d := range hd.leases {
		if t := d.attemptStart; !t.IsZero() && (oldest.IsZero() || t.Before(oldest)) {
			oldest = t
		}
	}
	return oldest
}
