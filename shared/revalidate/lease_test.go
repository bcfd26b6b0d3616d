package revalidate

import (
	"context"
	"errors"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/synthstack/byok/shared/awstest"
	"github.com/synthstack/byok/shared/store"
)

func TestMain(m *testing.M) { os.Exit(awstest.Main(m)) }

func leaseTable(t *testing.T) (*dynamodb.Client, string) {
	t.Helper()
	db := dynamodb.NewFromConfig(awstest.Config(t))
	prefix := awstest.Prefix(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := store.EnsureTables(ctx, db, prefix); err != nil {
		t.Fatalf("create tables: %v", err)
	}
	return db, store.MainTable.Name(prefix)
}

// Two passes started at once: exactly one runs, the other exits at once with
// ErrHeld; after the first ends, the next pass runs.
func TestLeaseOnePassAtATime(t *testing.T) {
	db, table := leaseTable(t)
	ctx := context.Background()
	var runs atomic.Int32
	release := make(chan struct{})
	started := make(chan struct{}, 2)
	pass := func() error {
		l := &Lease{DB: db, Table: table, Name: "revalidator"}
		return l.Hold(ctx, func(context.Context) error {
			runs.Add(1)
			started <- struct{}{}
			<-release
			return nil
		})
	}
	results := make(chan error, 2)
	for range 2 {
		go func() { results <- pass() }()
	}
	<-started // one pass holds the lease and runs
	// The other returns without waiting for the first.
	select {
	case err := <-results:
		if !errors.Is(err, ErrHeld) {
			t.Fatalf("second pass: %v, want ErrHeld", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("second pass did not exit while the first ran")
	}
	close(release)
	if err := <-results; err != nil {
		t.Fatalf("first pass: %v", err)
	}
	if n := runs.Load(); n != 1 {
		t.Fatalf("%d passes ran, want 1", n)
	}
	if err := pass(); err != nil { // lease released: the next pass runs
		t.Fatalf("pass after release: %v", err)
	}
	if n := runs.Load(); n != 2 {
		t.Fatalf("%d passes ran, want 2", n)
	}
}

// A holder that died (never released) frees the lease at its expiry; it
// then can neither renew nor release the new holder's lease.
func TestLeaseExpires(t *testing.T) {
	db, table := leaseTable(t)
	ctx := context.Background()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	a := &Lease{DB: db, Table: table, Name: "revalidator", Owner: "a", TTL: time.Minute, Now: clock}
	b := &Lease{DB: db, Table: table, Name: "revalidator", Owner: "b", TTL: time.Minute, Now: clock}
	if err := a.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	now = now.Add(30 * time.Second)
	if err := b.Acquire(ctx); !errors.Is(err, ErrHeld) {
		t.Fatalf("b before expiry: %v, want ErrHeld", err)
	}
	if err := a.Renew(ctx); err != nil { // a extends to +90s
		t.Fatalf("a renew: %v", err)
	}
	now = now.Add(45 * time.Second)
	if err := b.Acquire(ctx); !errors.Is(err, ErrHeld) {
		t.Fatalf("b before the renewed expiry: %v, want ErrHeld", err)
	}
	now = now.Add(16 * time.Second) // past a's renewed expiry
	if err := b.Acquire(ctx); err != nil {
		t.Fatalf("b after expiry: %v", err)
	}
	if err := a.Renew(ctx); !errors.Is(err, ErrHeld) {
		t.Fatalf("a renew after losing it: %v, want ErrHeld", err)
	}
	if err := a.Release(ctx); err != nil {
		t.Fatalf("a release after losing it: %v", err)
	}
	c := &Lease{DB: db, Table: table, Name: "revalidator", Owner: "c", TTL: time.Minute, Now: clock}
	if err := c.Acquire(ctx); !errors.Is(err, ErrHeld) {
		t.Fatalf("a's release freed b's lease: c acquire %v, want ErrHeld", err)
	}
	if err := b.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Acquire(ctx); err != nil {
		t.Fatalf("c after b released: %v", err)
	}
}
