package webhooks_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/synthstack/byok/shared/events"
	"github.com/synthstack/byok/shared/store"
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

// TestReenableRestartsFailureClock: an endpoint switched off after failing
// for 3 days gets nothing while disabled; PATCH enabled=true turns it back
// on with a fresh failure clock, so its next failure does not switch it off
// again at once, and events reach it again.
func TestReenableRestartsFailureClock(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	var failing atomic.Bool
	failing.Store(true)
	rc := newReceiver(t, func(int) bool { return failing.Load() })
	cr := r.register(rc, "erin")
	own := webhooks.UserOwner("erin")
	if _, err := r.store.MarkFailing(r.ctx, own, cr.ID, r.clock.Now()); err != nil {
		t.Fatal(err)
	}
	r.clock.Advance(webhooks.DisableAfter + time.Hour)
	r.pub.Publish(r.ctx, keyInvalid("erin"))
	status := func() webhooks.Endpoint {
		ep, err := r.store.Get(r.ctx, own, cr.ID)
		if err != nil {
			t.Fatal(err)
		}
		return ep
	}
	r.run(0, 50, func() bool { return status().Status == webhooks.StatusDisabled })
	before, _, _ := rc.snapshot()
	r.pub.Publish(r.ctx, keyInvalid("erin"))
	r.pollRounds(5, 10*time.Second)
	if n, _, _ := rc.snapshot(); n != before {
		t.Fatalf("a disabled endpoint got %d more requests", n-before)
	}

	yes := true
	v, err := r.svc.Update(r.ctx, own, cr.ID, webhooks.Change{Enabled: &yes})
	if err != nil {
		t.Fatal(err)
	}
	if v.Status != webhooks.StatusActive || v.DisabledAt != nil {
		t.Fatalf("after re-enabling: %+v", v)
	}
	if ep := status(); ep.FailingSince != nil || ep.DisabledAt != nil {
		t.Fatalf("failure clock not reset: failing since %v, disabled at %v", ep.FailingSince, ep.DisabledAt)
	}
	// Still failing: a new failure starts a new 3 days, it is not disabled.
	e := keyInvalid("erin")
	e.Reason = "after re-enable"
	r.pub.Publish(r.ctx, e)
	r.run(0, 50, func() bool { n, _, _ := rc.snapshot(); return n > before })
	if ep := status(); ep.Status != webhooks.StatusActive || ep.FailingSince == nil || !ep.FailingSince.Equal(r.clock.Now()) {
		t.Fatalf("after a failure on a re-enabled endpoint: %+v (now %v)", ep, r.clock.Now())
	}
	// Back up: the retry of that event arrives.
	failing.Store(false)
	r.run(10*time.Second, 50, func() bool { _, ok, _ := rc.snapshot(); return len(ok) == 1 })
	if ep := status(); ep.FailingSince != nil {
		t.Fatalf("healthy again but failing since %v", ep.FailingSince)
	}
}

// TestOrgEndpointDisabledNoticeGoesToOrg: an org's endpoint switched off
// after 3 days of failures announces it naming the org, with the org's
// notification e-mail (its settings), not a person's.
func TestOrgEndpointDisabledNoticeGoesToOrg(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	st := store.New(r.db, r.prefix)
	mail := "ops@acme.example"
	if _, err := st.PutOrgSettings(r.ctx, "acme", store.OrgSettingsPatch{Email: &mail}, r.clock.Now()); err != nil {
		t.Fatal(err)
	}
	r.consumer.Orgs = st
	rc := newReceiver(t, func(int) bool { return true })
	cr, err := r.svc.Create(r.ctx, webhooks.OrgOwner("acme"), rc.srv.URL+"/org", []string{"*"})
	if err != nil {
		t.Fatal(err)
	}
	rc.secret.Store(cr.Secret)
	if _, err := r.store.MarkFailing(r.ctx, webhooks.OrgOwner("acme"), cr.ID, r.clock.Now()); err != nil {
		t.Fatal(err)
	}
	r.clock.Advance(webhooks.DisableAfter + time.Hour)
	e := keyInvalid("olga")
	e.Org, e.Scope = "acme", "org"
	r.pub.Publish(r.ctx, e)
	r.run(0, 50, func() bool { r.notices.mu.Lock(); defer r.notices.mu.Unlock(); return len(r.notices.evs) > 0 })
	r.notices.mu.Lock()
	defer r.notices.mu.Unlock()
	n := r.notices.evs[0]
	if n.Type != events.WebhookDisabled || n.Org != "acme" || n.UserID != "" || n.Email != mail || n.WebhookID != cr.ID {
		t.Fatalf("disabled notice %+v", n)
	}
}

// A re-enable (or a new URL) landing between the consumer's failure mark
// and its disable write wins: Disable is conditioned on the failure clock
// the consumer read, which the owner's change cleared.
func TestDisableLosesToAConcurrentReenable(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	rc := newReceiver(t, func(int) bool { return true })
	cr := r.register(rc, "fay")
	own := webhooks.UserOwner("fay")
	since, err := r.store.MarkFailing(r.ctx, own, cr.ID, r.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	yes := true
	if _, err := r.svc.Update(r.ctx, own, cr.ID, webhooks.Change{Enabled: &yes}); err != nil {
		t.Fatal(err)
	}
	ok, err := r.store.Disable(r.ctx, own, cr.ID, since, r.clock.Now().Add(webhooks.DisableAfter))
	if err != nil || ok {
		t.Fatalf("Disable after the owner reset the clock: disabled=%v err=%v", ok, err)
	}
	if ep, _ := r.store.Get(r.ctx, own, cr.ID); ep.Status != webhooks.StatusActive {
		t.Fatalf("status %q, want active", ep.Status)
	}
	// Without a change in between, the same call disables.
	since, _ = r.store.MarkFailing(r.ctx, own, cr.ID, r.clock.Now())
	if ok, err := r.store.Disable(r.ctx, own, cr.ID, since, r.clock.Now().Add(webhooks.DisableAfter)); err != nil || !ok {
		t.Fatalf("Disable with the clock read: disabled=%v err=%v", ok, err)
	}
}

// A retry queued before the owner unsubscribed from its event type is
// dropped when it comes due: the endpoint no longer wants that event.
func TestRetryDroppedAfterUnsubscribe(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	var failing atomic.Bool
	failing.Store(true)
	rc := newReceiver(t, func(int) bool { return failing.Load() })
	cr := r.register(rc, "gus")
	own := webhooks.UserOwner("gus")
	r.pub.Publish(r.ctx, keyInvalid("gus"))
	r.run(0, 50, func() bool { n, _, _ := rc.snapshot(); return n >= 1 }) // first attempt failed, retry queued
	if _, err := r.svc.Update(r.ctx, own, cr.ID, webhooks.Change{Events: []string{"byok.fallback"}}); err != nil {
		t.Fatal(err)
	}
	failing.Store(false)
	r.pollRounds(10, 10*time.Second)
	if _, ok, _ := rc.snapshot(); len(ok) != 0 {
		t.Fatalf("a byok.key_invalid retry was delivered after the endpoint unsubscribed from it: %v", ok)
	}
}
