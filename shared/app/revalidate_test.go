package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/synthstack/byok/shared/fakeprovider"
	"github.com/synthstack/byok/shared/provider"
	"github.com/synthstack/byok/shared/revalidate"
	"github.com/synthstack/byok/shared/store"
	"github.com/synthstack/byok/shared/vault"
)

// fate is how one seeded key is stored and how the fake provider answers it.
type fate struct {
	name               string
	stored, storedWhy  string // status and reason before the pass
	answer             fakeprovider.Behavior
	after, afterReason string // status and reason after the pass ("" reason: any)
	event              string // the one event expected, or ""
	counted            string // the summary bucket
}

var fates = []fate{
	{"valid stays valid", "valid", "", fakeprovider.OK(), "valid", "", "", "valid"},
	{"valid turns invalid (401)", "valid", "", fakeprovider.Unauthorized(), "invalid", "unauthorized", "byok.key_invalid", "invalid"},
	{"invalid turns valid", "invalid", "unauthorized", fakeprovider.OK(), "valid", "", "byok.key_valid", "valid"},
	{"valid, provider down (500)", "valid", "", fakeprovider.ServerError(), "unchecked", "provider_unavailable", "", "unchecked"},
	{"unchecked, provider still down", "unchecked", "provider_unavailable", fakeprovider.ServerError(), "unchecked", "provider_unavailable", "", "unchecked"},
	{"invalid stays invalid", "invalid", "unauthorized", fakeprovider.Unauthorized(), "invalid", "unauthorized", "", "invalid"},
	{"unchecked turns valid", "unchecked", "timeout", fakeprovider.OK(), "valid", "", "", "valid"},
	{"valid turns invalid (403)", "valid", "", fakeprovider.Forbidden(), "invalid", "forbidden", "byok.key_invalid", "invalid"},
	{"invalid, provider down: stays invalid", "invalid", "no_billing", fakeprovider.ServerError(), "invalid", "no_billing", "", "unchecked"},
	{"valid, Anthropic-style quota/billing", "valid", "", fakeprovider.PaymentRequired(), "invalid", "no_billing", "byok.key_invalid", "invalid"},
}

type seeded struct {
	u                   int
	user, provider, key string
	f                   fate
}

// hasAccount: every fifth user has no account row (no email to report).
func hasAccount(u int) bool { return u%5 != 4 }

// seedKeys stores a sealed key per (user, provider) straight through the
// store and the vault (fast, no provider call), plus each user's account.
func (e *testEnv) seedKeys(users int, fateOf func(u, p int) fate) []seeded {
	t := e.t
	t.Helper()
	ctx := context.Background()
	var out []seeded
	for u := range users {
		for p, prov := range []string{"openai", "anthropic"} {
			key := openAIKey(t)
			if prov == "anthropic" {
				key = anthropicKey(t)
			}
			out = append(out, seeded{u: u, user: fmt.Sprintf("user%04d", u), provider: prov, key: key, f: fateOf(u, p)})
		}
	}
	work := make(chan int)
	var wg sync.WaitGroup
	var failed atomic.Value
	for range 32 {
		wg.Go(func() {
			for i := range work {
				s := out[i]
				if err := e.putKey(ctx, s.user, s.provider, s.key, s.f.stored, s.f.storedWhy, s.provider == "openai" && hasAccount(s.u)); err != nil {
					failed.Store(err)
				}
			}
		})
	}
	for i := range out {
		work <- i
	}
	close(work)
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		t.Fatal(err)
	}
	for _, s := range out {
		b := s.f.answer
		b.Delay = 10 * time.Millisecond // keeps several checks in flight at once
		e.fake.SetKey(s.key, b)
	}
	return out
}

func (e *testEnv) putKey(ctx context.Context, user, prov, key, status, reason string, withAccount bool) error {
	if withAccount {
		tier, email := "premium", user+"@example.com"
		if _, err := e.app.Store.UpsertAccount(ctx, user, store.AccountPatch{Tier: &tier, Email: &email}, time.Now()); err != nil {
			return err
		}
	}
	keyID := uuid.NewString()
	blob, err := e.app.Vault.Seal(ctx, vault.Context{UserID: user, Provider: prov, KeyID: keyID}, []byte(key))
	if err != nil {
		return err
	}
	wid, err := e.app.Vault.WrapperID(blob)
	if err != nil {
		return err
	}
	now := time.Now().UTC().Add(-25 * time.Hour)
	_, err = e.app.Store.PutKey(ctx, store.KeyRecord{UserID: user, Provider: prov, KeyID: keyID, Ciphertext: blob, WrapperID: wid,
		Hint: provider.Hint(key), Status: status, Reason: reason, ValidatedAt: now, CreatedAt: now, UpdatedAt: now})
	return err
}

// storedKeys reads every key row through the store.
func (e *testEnv) storedKeys() map[string]store.KeyRecord {
	e.t.Helper()
	out := map[string]store.KeyRecord{}
	var mu sync.Mutex
	for seg := range int32(4) {
		if err := e.app.Store.ScanKeys(context.Background(), seg, 4, func(k store.KeyRecord) error {
			mu.Lock()
			out[k.UserID+"/"+k.Provider] = k
			mu.Unlock()
			return nil
		}); err != nil {
			e.t.Fatal(err)
		}
	}
	return out
}

func (e *testEnv) runner(conc int, logs *lockedBuffer) *revalidate.Runner {
	return &revalidate.Runner{
		Store: e.app.Store, Opener: e.app.Vault, Validator: e.app.Keys.Validator, Recorder: e.app.Keys,
		Concurrency: conc, Log: slog.New(slog.NewJSONHandler(logs, nil)),
	}
}

// One pass over 1,000 keys of 500 users: every stored status ends as the
// provider decided, each transition publishes exactly one event (real SNS →
// SQS), unchanged statuses none; a second pass (from the command line)
// publishes nothing new.
func TestRevalidatorPass(t *testing.T) {
	e := newEnv(t, nil)
	q := e.subscribeEvents()
	seedStart := time.Now()
	keys := e.seedKeys(500, func(u, p int) fate {
		// Spreads every fate over both providers and many users.
		return fates[(u*7+p*3)%len(fates)]
	})
	t.Logf("seeded %d keys in %v", len(keys), time.Since(seedStart))
	want := revalidate.Summary{Checked: len(keys)}
	wantEvents := map[string]string{} // user/provider → event type
	for _, s := range keys {
		switch s.f.counted {
		case "valid":
			want.Valid++
		case "invalid":
			want.Invalid++
		case "unchecked":
			want.Unchecked++
		}
		if s.f.event != "" {
			wantEvents[s.user+"/"+s.provider] = s.f.event
		}
	}

	// Sample the provider's in-flight requests to see the bound hold.
	var peak atomic.Int64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
				if n := int64(e.fake.InFlight()); n > peak.Load() {
					peak.Store(n)
				}
			}
		}
	}()
	logs := &lockedBuffer{}
	const conc = 20
	start := time.Now()
	sum, err := e.runner(conc, logs).Run(context.Background())
	close(stop)
	<-sampled
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("pass 1: %+v in %v, peak provider concurrency %d", sum, time.Since(start), peak.Load())
	if got := (revalidate.Summary{Checked: sum.Checked, Valid: sum.Valid, Invalid: sum.Invalid, Unchecked: sum.Unchecked, Errors: sum.Errors, Skipped: sum.Skipped}); got != want {
		t.Fatalf("summary %+v, want %+v", got, want)
	}
	if p := peak.Load(); p > conc || p < 2 {
		t.Errorf("peak provider concurrency %d, want 2..%d", p, conc)
	}

	// DynamoDB holds exactly the expected statuses.
	stored := e.storedKeys()
	if len(stored) != len(keys) {
		t.Fatalf("%d key rows, want %d", len(stored), len(keys))
	}
	for _, s := range keys {
		k := stored[s.user+"/"+s.provider]
		if k.Status != s.f.after || (s.f.afterReason != "" && k.Reason != s.f.afterReason) || (s.f.after == "valid" && k.Reason != "") {
			t.Errorf("%s/%s (%s): stored %s/%q, want %s/%q", s.user, s.provider, s.f.name, k.Status, k.Reason, s.f.after, s.f.afterReason)
		}
		if s.f.name != "invalid, provider down: stays invalid" && time.Since(k.ValidatedAt) > time.Hour {
			t.Errorf("%s/%s (%s): validated_at %v not refreshed", s.user, s.provider, s.f.name, k.ValidatedAt)
		}
	}

	// Exactly one event per transition, none for anything else.
	byKey := map[string]seeded{}
	for _, s := range keys {
		byKey[s.user+"/"+s.provider] = s
	}
	got := q.drain()
	gotByType := map[string]int{}
	seen := map[string]int{}
	for _, m := range got {
		id := m.Ev.UserID + "/" + m.Ev.Provider
		gotByType[m.Type]++
		seen[id]++
		s, ok := byKey[id]
		if !ok {
			t.Errorf("event for an unknown key %s", id)
			continue
		}
		if wantEvents[id] != m.Type {
			t.Errorf("%s (%s): got %s, want %q", id, s.f.name, m.Type, wantEvents[id])
		}
		if m.Ev.DetectedBy != "schedule" || m.Ev.Hint != hintOf(s.key) {
			t.Errorf("%s: detected_by %q hint %q", id, m.Ev.DetectedBy, m.Ev.Hint)
		}
		wantEmail := s.user + "@example.com"
		if !hasAccount(s.u) {
			wantEmail = ""
		}
		if m.Ev.Email != wantEmail {
			t.Errorf("%s: email %q, want %q", id, m.Ev.Email, wantEmail)
		}
		if m.Type == "byok.key_invalid" && m.Ev.Reason != s.f.afterReason {
			t.Errorf("%s: reason %q, want %q", id, m.Ev.Reason, s.f.afterReason)
		}
		assertNoLeak(t, "event "+id, m.Body, s.key, len("sk-ant-api03-"))
	}
	wantByType := map[string]int{}
	for id, typ := range wantEvents {
		wantByType[typ]++
		if seen[id] != 1 {
			t.Errorf("%s (%s): %d events, want 1", id, byKey[id].f.name, seen[id])
		}
	}
	if fmt.Sprint(gotByType) != fmt.Sprint(wantByType) {
		t.Errorf("events by type %v, want %v", gotByType, wantByType)
	}
	t.Logf("events: %v", gotByType)

	// Logs name hints only.
	allLogs := logs.String() + e.logs.String()
	for _, secret := range []string{"sk-proj-", "sk-ant-api03-"} {
		if strings.Contains(allLogs, secret) {
			t.Fatalf("logs carry key material %q", secret)
		}
	}
	if !strings.Contains(logs.String(), "key status changed") {
		t.Errorf("no transition logged: %s", logs.String())
	}

	// Pass 2, from the command line: the same outcome, no new event.
	cliStart := time.Now()
	line, stderr := runRevalidatorCLI(t, e)
	t.Logf("CLI pass (build and run): %s in %v", line, time.Since(cliStart))
	var sum2 revalidate.Summary
	if err := json.Unmarshal(line, &sum2); err != nil {
		t.Fatalf("CLI summary %q: %v", line, err)
	}
	sum2.DurationMS = 0
	if sum2 != want {
		t.Fatalf("CLI summary %+v, want %+v", sum2, want)
	}
	var raw map[string]any
	_ = json.Unmarshal(line, &raw)
	for _, f := range []string{"checked", "valid", "invalid", "unchecked", "errors", "duration_ms"} {
		if _, ok := raw[f]; !ok {
			t.Errorf("CLI summary lacks %q: %s", f, line)
		}
	}
	if !strings.Contains(stderr, `"msg":"revalidation finished"`) {
		t.Errorf("CLI logs not on stderr: %q", stderr)
	}
	if extra := q.drain(); len(extra) != 0 {
		t.Fatalf("second pass published %d events: %+v", len(extra), extra[0])
	}
	after := e.storedKeys()
	for id, k := range stored {
		if a := after[id]; a.Status != k.Status || a.Reason != k.Reason {
			t.Errorf("%s changed on the second pass: %s/%s → %s/%s", id, k.Status, k.Reason, a.Status, a.Reason)
		}
	}
}

// runRevalidatorCLI builds functions/revalidator and runs one pass with the
// env's configuration; it returns the only stdout line and stderr.
func runRevalidatorCLI(t *testing.T, e *testEnv) ([]byte, string) {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool not on PATH")
	}
	bin := filepath.Join(t.TempDir(), "revalidator")
	build := exec.Command(goBin, "build", "-o", bin, "github.com/synthstack/byok/functions/revalidator")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "AWS_LAMBDA_RUNTIME_API=")
	for k, v := range e.vars {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("revalidator: %v\nstderr: %s", err, stderr.String())
	}
	lines := strings.Split(strings.TrimRight(stdout.String(), "\n"), "\n")
	if len(lines) != 1 {
		t.Fatalf("stdout has %d lines, want exactly one summary line: %q", len(lines), stdout.String())
	}
	return []byte(lines[0]), stderr.String()
}

// recorderHook runs before a key's outcome is recorded.
type recorderHook struct {
	revalidate.Recorder
	before func(k store.KeyRecord)
}

func (h recorderHook) Record(ctx context.Context, acc *store.Account, k store.KeyRecord, res provider.Result, by string) (store.KeyRecord, error) {
	h.before(k)
	return h.Recorder.Record(ctx, acc, k, res, by)
}

// accountFailer stands in for storage throttling on one user's account read.
type accountFailer struct {
	revalidate.Store
	user string
}

func (a accountFailer) GetAccount(ctx context.Context, userID string) (*store.Account, error) {
	if userID == a.user {
		return nil, errors.New("ProvisionedThroughputExceededException (injected)")
	}
	return a.Store.GetAccount(ctx, userID)
}

// Keys replaced or deleted during the pass are skipped; a key that cannot be
// decrypted and an account read that fails are counted as errors and logged
// by hint; neither stops the pass; no event for any of them.
func TestRevalidatorSkipsAndErrors(t *testing.T) {
	e := newEnv(t, nil)
	q := e.subscribeEvents()
	ctx := context.Background()
	keys := e.seedKeys(5, func(u, p int) fate { return fates[1] }) // all valid, provider says 401
	byUser := func(u, p int) seeded { return keys[u*2+p] }

	// user0000/openai: its ciphertext copied onto user0001/openai's row (moved
	// between rows → must not decrypt).
	stored := e.storedKeys()
	moved := stored["user0000/openai"]
	victim := stored["user0001/openai"]
	moved.UserID, moved.KeyID, moved.Hint = victim.UserID, victim.KeyID, victim.Hint
	if _, err := e.app.Store.PutKey(ctx, moved); err != nil {
		t.Fatal(err)
	}
	replaced, deleted := byUser(2, 0), byUser(3, 1)
	var replacement string
	var once sync.Once
	r := e.runner(4, &lockedBuffer{})
	logs := &lockedBuffer{}
	r.Log = slog.New(slog.NewJSONHandler(logs, nil))
	r.Store = accountFailer{Store: e.app.Store, user: "user0004"}
	r.Recorder = recorderHook{Recorder: e.app.Keys, before: func(k store.KeyRecord) {
		switch k.UserID + "/" + k.Provider {
		case replaced.user + "/" + replaced.provider:
			once.Do(func() {
				replacement = openAIKey(t)
				e.fake.SetKey(replacement, fakeprovider.OK())
				if err := e.putKey(ctx, k.UserID, k.Provider, replacement, "valid", "", false); err != nil {
					t.Error(err)
				}
			})
		case deleted.user + "/" + deleted.provider:
			if _, err := e.app.Store.DeleteKey(ctx, k.UserID, k.Provider); err != nil {
				t.Error(err)
			}
		}
	}}
	sum, err := r.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// 10 keys: 1 undecryptable, 2 of user0004 (account read fails), 2 skipped, 5 invalid.
	want := revalidate.Summary{Checked: 10, Invalid: 5, Errors: 3, Skipped: 2}
	sum.DurationMS = 0
	if sum != want {
		t.Fatalf("summary %+v, want %+v", sum, want)
	}
	after := e.storedKeys()
	if k := after["user0001/openai"]; k.Status != "valid" {
		t.Errorf("undecryptable key was changed: %s", k.Status)
	}
	if k := after[replaced.user+"/"+replaced.provider]; k.Status != "valid" || k.Hint != hintOf(replacement) {
		t.Errorf("the replacement key was touched: %+v", k.Status)
	}
	if _, ok := after[deleted.user+"/"+deleted.provider]; ok {
		t.Errorf("a deleted key came back")
	}
	for p := range 2 {
		if k := after[byUser(4, p).user+"/"+byUser(4, p).provider]; k.Status != "valid" {
			t.Errorf("key of the failed account read changed: %s", k.Status)
		}
	}
	got := q.drain()
	if len(got) != 5 {
		t.Fatalf("%d events, want 5 (the keys checked and found invalid): %+v", len(got), got)
	}
	l := logs.String()
	if n := strings.Count(l, "revalidation of a key failed"); n != 3 {
		t.Errorf("%d key failures logged, want 3:\n%s", n, l)
	}
	if !strings.Contains(l, `"user_id":"user0001"`) || !strings.Contains(l, victim.Hint) || !strings.Contains(l, "could not be opened") {
		t.Errorf("decrypt failure not logged with user and hint:\n%s", l)
	}
	for _, s := range keys {
		assertNoLeak(t, "logs", l, s.key, len("sk-ant-api03-"))
	}

	// A re-run is safe: the failures are retried, nothing is published twice.
	r.Store, r.Recorder = e.app.Store, e.app.Keys
	sum, err = r.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sum.DurationMS = 0
	// 9 keys left: 1 undecryptable, user0004's two now invalid, the replacement valid, 5 still invalid.
	if want := (revalidate.Summary{Checked: 9, Valid: 1, Invalid: 7, Errors: 1}); sum != want {
		t.Fatalf("re-run summary %+v, want %+v", sum, want)
	}
	if got := q.drain(); len(got) != 2 || got[0].Ev.UserID != "user0004" || got[1].Ev.UserID != "user0004" {
		t.Fatalf("re-run events %+v, want user0004's two key_invalid only", got)
	}
}

// A cancelled pass stops early, reports an error, and records nothing it
// did not really check.
func TestRevalidatorCancelled(t *testing.T) {
	e := newEnv(t, nil)
	keys := e.seedKeys(10, func(u, p int) fate { return fates[0] })
	for _, s := range keys {
		e.fake.SetKey(s.key, fakeprovider.Behavior{Stall: true})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	sum, err := e.runner(5, &lockedBuffer{}).Run(ctx)
	if err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the deadline", err)
	}
	if sum.Valid+sum.Invalid+sum.Unchecked != 0 || sum.Errors != sum.Checked {
		t.Fatalf("summary %+v: a stopped pass recorded outcomes", sum)
	}
	for id, k := range e.storedKeys() {
		if k.Status != "valid" {
			t.Errorf("%s: %s after a cancelled pass", id, k.Status)
		}
	}
}
