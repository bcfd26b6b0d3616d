// Package revalidate is the scheduled re-validation of every stored provider
// key (docs/api.md §7, the revalidator function): scan every key, open it, check it
// live with its provider under a per-key timeout and record the outcome
// through the key service, which publishes byok.key_invalid / byok.key_valid
// on transitions (detected_by "schedule").
//
// A pass is idempotent: a re-run records the same outcomes and publishes
// nothing new. One key's failure (decrypt error, storage throttling) is
// counted and logged and never stops the pass.
package revalidate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/synthstack/byok/shared/apperr"
	"github.com/synthstack/byok/shared/events"
	"github.com/synthstack/byok/shared/keys"
	"github.com/synthstack/byok/shared/provider"
	"github.com/synthstack/byok/shared/provider/schema"
	"github.com/synthstack/byok/shared/store"
	"github.com/synthstack/byok/shared/vault"
)

// Defaults of a Runner's zero fields.
const (
	DefaultConcurrency   = 100
	DefaultPerKeyTimeout = 15 * time.Second
	DefaultSegments      = 4
	// scanTries is how often one scan segment is attempted before the pass
	// is declared failed (keys already dispatched are not checked twice).
	scanTries = 3
)

// Store is the storage the runner reads (store.Store).
type Store interface {
	ScanKeys(ctx context.Context, segment, total int32, fn func(store.KeyRecord) error) error
	GetAccount(ctx context.Context, userID string) (*store.Account, error)
}

// Opener decrypts a stored key bound to its row (vault.Vault).
type Opener interface {
	Open(ctx context.Context, ec vault.Context, blob []byte) ([]byte, error)
}

// Validator checks a key live with its provider (provider.Validator).
type Validator interface {
	ValidateCredential(ctx context.Context, p provider.Name, cred schema.Credential) provider.Result
}

// Recorder stores a validation outcome and publishes the transition event
// (keys.Service.Record).
type Recorder interface {
	Record(ctx context.Context, acc *store.Account, k store.KeyRecord, res provider.Result, detectedBy string) (store.KeyRecord, error)
}

// Runner performs revalidation passes. Its zero-valued tuning fields take
// the defaults above. A Runner may run several passes, one at a time or
// concurrently.
type Runner struct {
	Store     Store
	Opener    Opener
	Validator Validator
	Recorder  Recorder
	// Concurrency is the number of keys checked at once (default 100: with
	// checks of 50 ms, 100,000 keys in under a minute, docs/api.md §14).
	Concurrency int
	// PerKeyTimeout bounds opening and validating one key (default 15s).
	PerKeyTimeout time.Duration
	// Segments is the number of parallel scan segments (default 4).
	Segments int
	Log      *slog.Logger
	Now      func() time.Time
}

// Summary is the outcome of one pass. Checked = Valid + Invalid + Unchecked
// + Errors + Skipped.
type Summary struct {
	Checked   int `json:"checked"`
	Valid     int `json:"valid"`
	Invalid   int `json:"invalid"`
	Unchecked int `json:"unchecked"`
	Errors    int `json:"errors"`
	// Skipped keys were replaced or deleted while the pass ran.
	Skipped    int   `json:"skipped"`
	DurationMS int64 `json:"duration_ms"`
}

type counters struct {
	checked, valid, invalid, unchecked, errors, skipped atomic.Int64
}

func (c *counters) summary(d time.Duration) Summary {
	return Summary{
		Checked: int(c.checked.Load()), Valid: int(c.valid.Load()), Invalid: int(c.invalid.Load()),
		Unchecked: int(c.unchecked.Load()), Errors: int(c.errors.Load()), Skipped: int(c.skipped.Load()),
		DurationMS: d.Milliseconds(),
	}
}

func (r *Runner) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func (r *Runner) log() *slog.Logger {
	if r.Log != nil {
		return r.Log
	}
	return slog.New(slog.DiscardHandler)
}

// Run performs one full pass over every stored key. It returns an error
// only when the pass could not cover every key: a scan segment failed after
// retries, or ctx ended first. The summary is valid in every case.
func (r *Runner) Run(ctx context.Context) (Summary, error) {
	start := r.now()
	conc := r.Concurrency
	if conc <= 0 {
		conc = DefaultConcurrency
	}
	segs := r.Segments
	if segs <= 0 {
		segs = DefaultSegments
	}
	p := &pass{r: r, accounts: map[string]*accountEntry{}, timeout: r.PerKeyTimeout}
	if p.timeout <= 0 {
		p.timeout = DefaultPerKeyTimeout
	}
	log := r.log()
	log.Info("revalidation started", "concurrency", conc, "segments", segs)

	work := make(chan store.KeyRecord, conc)
	var workers sync.WaitGroup
	for range conc {
		workers.Go(func() {
			for k := range work {
				p.check(ctx, k)
			}
		})
	}

	// The scanners only feed the workers; a failed segment does not cancel
	// the others (their keys still get checked).
	var scan sync.WaitGroup
	segErrs := make([]error, segs)
	for s := range segs {
		scan.Go(func() { segErrs[s] = p.scanSegment(ctx, int32(s), int32(segs), work) })
	}
	scan.Wait()
	close(work)
	workers.Wait()

	sum := p.c.summary(r.now().Sub(start))
	err := errors.Join(segErrs...)
	if err == nil && ctx.Err() != nil {
		err = ctx.Err()
	}
	attrs := []any{"checked", sum.Checked, "valid", sum.Valid, "invalid", sum.Invalid, "unchecked", sum.Unchecked,
		"errors", sum.Errors, "skipped", sum.Skipped, "duration_ms", sum.DurationMS}
	if err != nil {
		log.Error("revalidation incomplete", append(attrs, "err", err.Error())...)
		return sum, fmt.Errorf("revalidation incomplete: %w", err)
	}
	log.Info("revalidation finished", attrs...)
	return sum, nil
}

// pass is the state of one Run.
type pass struct {
	r       *Runner
	timeout time.Duration
	c       counters

	mu       sync.Mutex
	accounts map[string]*accountEntry
}

type accountEntry struct {
	done chan struct{}
	acc  *store.Account
	err  error
}

type rowID struct{ user, provider, keyID string }

// scanSegment feeds one segment's keys to the workers, retrying a failed
// scan without dispatching a key twice.
func (p *pass) scanSegment(ctx context.Context, seg, total int32, work chan<- store.KeyRecord) error {
	seen := map[rowID]bool{}
	var err error
	for try := 1; try <= scanTries; try++ {
		err = p.r.Store.ScanKeys(ctx, seg, total, func(k store.KeyRecord) error {
			id := rowID{k.UserID, k.Provider, k.KeyID}
			if seen[id] {
				return nil
			}
			seen[id] = true
			select {
			case work <- k:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
		if err == nil || ctx.Err() != nil {
			return err
		}
		p.r.log().Warn("key scan failed; retrying", "segment", seg, "try", try, "err", err.Error())
		select {
		case <-time.After(time.Duration(try) * time.Second):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return fmt.Errorf("scan segment %d: %w", seg, err)
}

// account returns userID's account, read once per pass (concurrent callers
// for the same user wait for one read). A failed read is not cached.
func (p *pass) account(ctx context.Context, userID string) (*store.Account, error) {
	p.mu.Lock()
	e, ok := p.accounts[userID]
	if !ok {
		e = &accountEntry{done: make(chan struct{})}
		p.accounts[userID] = e
		p.mu.Unlock()
		e.acc, e.err = p.r.Store.GetAccount(ctx, userID)
		if e.err != nil {
			p.mu.Lock()
			delete(p.accounts, userID)
			p.mu.Unlock()
		}
		close(e.done)
		return e.acc, e.err
	}
	p.mu.Unlock()
	select {
	case <-e.done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if e.err != nil {
		return p.account(ctx, userID) // the first reader failed: try ourselves
	}
	return e.acc, nil
}

// check validates one key and records the outcome. It never returns an
// error: failures are counted and logged with the key's hint only.
func (p *pass) check(ctx context.Context, k store.KeyRecord) {
	p.c.checked.Add(1)
	if ctx.Err() != nil {
		p.fail(k, "revalidation stopped", ctx.Err())
		return
	}
	var acc *store.Account // org and project keys have none: their events go to the org
	if k.Scope() == store.ScopeUser {
		var err error
		if acc, err = p.account(ctx, k.UserID); err != nil {
			p.fail(k, "account read failed", err)
			return
		}
	}
	res, err := p.validate(ctx, k)
	if err != nil {
		p.fail(k, "key could not be opened", err)
		return
	}
	if ctx.Err() != nil {
		// The outcome is the pass being stopped, not the provider's answer.
		p.fail(k, "revalidation stopped", ctx.Err())
		return
	}
	// An inconclusive check (provider unreachable) says nothing new about a
	// key known to be invalid: keep it invalid rather than making it usable
	// again (and notifying its owner a second time when it fails on use).
	if res.Status == provider.StatusUnchecked && k.Status == string(provider.StatusInvalid) {
		p.count(res.Status)
		return
	}
	rec, err := p.r.Recorder.Record(ctx, acc, k, res, events.BySchedule)
	switch {
	case apperr.Is(err, apperr.NotFound) || errors.Is(err, store.ErrConflict):
		// Replaced or deleted meanwhile: the new key was validated on save.
		p.c.skipped.Add(1)
		return
	case err != nil:
		p.fail(k, "recording the outcome failed", err)
		return
	}
	p.count(res.Status)
	if rec.Status != k.Status {
		p.r.log().Info("key status changed", "user_id", k.UserID, "provider", k.Provider, "hint", k.Hint,
			"from", k.Status, "to", rec.Status, "reason", rec.Reason)
	}
}

// validate opens k and checks it with its provider within the per-key
// timeout. The plaintext is wiped after use and never logged.
func (p *pass) validate(ctx context.Context, k store.KeyRecord) (provider.Result, error) {
	kctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	plain, err := p.r.Opener.Open(kctx, keys.VaultContext(k), k.Ciphertext)
	if err != nil {
		return provider.Result{}, err
	}
	defer clear(plain)
	// The same credential as save and test: Azure's endpoint and options
	// come from the row (keys.Credential).
	return p.r.Validator.ValidateCredential(kctx, provider.Name(k.Provider), keys.Credential(k, string(plain))), nil
}

func (p *pass) count(st provider.Status) {
	switch st {
	case provider.StatusValid:
		p.c.valid.Add(1)
	case provider.StatusInvalid:
		p.c.invalid.Add(1)
	default:
		p.c.unchecked.Add(1)
	}
}

func (p *pass) fail(k store.KeyRecord, msg string, err error) {
	p.c.errors.Add(1)
	p.r.log().Error("revalidation of a key failed: "+msg, "user_id", k.UserID, "provider", k.Provider,
		"hint", k.Hint, "err", err.Error())
}
