package webhooks_test

import (
	"testing"
	"time"

	"github.com/synthstack/byok/shared/events"
	"github.com/synthstack/byok/shared/webhooks"
)

// pollRounds polls n times, advancing the consumer clock by step each time.
func (r *rig) pollRounds(n int, step time.Duration) {
	r.t.Helper()
	for range n {
		if _, err := r.poller.PollOnce(r.ctx); err != nil {
			r.t.Fatal(err)
		}
		r.clock.Advance(step)
	}
}

// TestDeleteStopsDeliveriesAtOnce: once DELETE has returned, no event
// reaches the endpoint: neither a new event handled right after (even by a
// consumer that has just read the owner's endpoints) nor a retry already
// queued for it.
func TestDeleteStopsDeliveriesAtOnce(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	rc := newReceiver(t, nil)
	cr := r.register(rc, "dora")
	r.pub.Publish(r.ctx, keyInvalid("dora"))
	r.run(0, 50, func() bool { _, ok, _ := rc.snapshot(); return len(ok) == 1 })

	// A second endpoint that fails: its first attempt queues a retry. It is
	// served from the first event's next poll on (no stale list).
	down := newReceiver(t, func(int) bool { return true })
	dcr := r.register(down, "dora")
	r.pub.Publish(r.ctx, keyInvalid("dora"))
	r.run(0, 50, func() bool { n, _, _ := down.snapshot(); return n == 1 })

	for _, id := range []string{cr.ID, dcr.ID} {
		if err := r.store.Delete(r.ctx, webhooks.UserOwner("dora"), id); err != nil {
			t.Fatal(err)
		}
	}
	r.pub.Publish(r.ctx, keyInvalid("dora"))
	r.pub.Publish(r.ctx, events.Event{Type: events.KeyValid, UserID: "dora", Provider: "openai"})
	r.pollRounds(12, 10*time.Second) // past the 5 s retry, several times over
	if calls, _, _ := rc.snapshot(); calls != 2 {
		t.Fatalf("the deleted endpoint got %d requests, want the 2 made before the delete", calls)
	}
	if calls, _, _ := down.snapshot(); calls != 1 {
		t.Fatalf("the deleted failing endpoint got %d requests, want its 1 attempt before the delete (no retry after)", calls)
	}
	if dlq := r.drainDLQ(); len(dlq) != 0 {
		t.Fatalf("dead-letter queue holds %d messages for a deleted endpoint", len(dlq))
	}
}
