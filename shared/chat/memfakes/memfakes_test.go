package memfakes

import (
	"context"
	"testing"
	"time"

	"github.com/synthstack/byok/shared/usage"
)

// A nil model or a zero delay adds nothing and records nothing.
func TestNoLatency(t *testing.T) {
	var nilModel *Latency
	if err := nilModel.wait(context.Background()); err != nil || nilModel.Calls() != 0 || nilModel.Waits() != nil {
		t.Fatalf("nil model: %v", err)
	}
	u := &Usage{Latency: NewLatency(0)}
	if err := u.Put(context.Background(), usage.Record{}); err != nil || u.Latency.Calls() != 0 || u.Writes.Load() != 1 {
		t.Fatalf("zero delay: %v, %d calls", err, u.Latency.Calls())
	}
}

// A call whose context ends stops waiting and fails like a storage client.
func TestLatencyHonoursContext(t *testing.T) {
	s := &Store{Latency: NewLatency(time.Hour)}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.GetUser(ctx, "alice"); err != context.Canceled {
		t.Fatalf("GetUser on a cancelled context: %v, want context.Canceled", err)
	}
	if got := s.Latency.Calls(); got != 1 {
		t.Fatalf("calls %d, want 1", got)
	}
}

// Every finished wait is recorded once and at least the delay long; Waits
// hands them over and forgets them.
func TestLatencyRecordsWaits(t *testing.T) {
	l := NewLatency(time.Microsecond)
	s, u := &Store{Latency: l}, &Usage{Latency: l}
	for range 3 {
		if _, err := s.GetUser(context.Background(), "alice"); err != nil {
			t.Fatal(err)
		}
	}
	if err := u.Put(context.Background(), usage.Record{}); err != nil {
		t.Fatal(err)
	}
	w := l.Waits()
	if len(w) != 4 || l.Calls() != 4 {
		t.Fatalf("%d waits, %d calls; want 4 and 4", len(w), l.Calls())
	}
	for _, d := range w {
		if d < l.Delay {
			t.Fatalf("wait %s shorter than the delay %s", d, l.Delay)
		}
	}
	if again := l.Waits(); len(again) != 0 {
		t.Fatalf("Waits kept %d waits after handing them over", len(again))
	}
}
