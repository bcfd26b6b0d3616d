package revalidate_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/synthstack/byok/shared/events"
	"github.com/synthstack/byok/shared/fakeprovider"
	"github.com/synthstack/byok/shared/keys"
	"github.com/synthstack/byok/shared/provider"
	"github.com/synthstack/byok/shared/revalidate"
	"github.com/synthstack/byok/shared/routing"
	"github.com/synthstack/byok/shared/store"
	"github.com/synthstack/byok/shared/vault"
)

// memStore is in-memory storage for the benchmark only (docs/api.md §14 measures
// the revalidator against a 50 ms mock provider; moto would measure the
// emulator instead). It serves the runner's scan and account reads and the
// key service's conditional status update. Tests use the emulator.
type memStore struct {
	mu       sync.Mutex
	keys     []store.KeyRecord
	index    map[string]int // user/provider → position in keys
	accounts map[string]*store.Account
}

func (m *memStore) ScanKeys(ctx context.Context, segment, total int32, fn func(store.KeyRecord) error) error {
	if total < 1 {
		total = 1
	}
	m.mu.Lock()
	snapshot := append([]store.KeyRecord(nil), m.keys...)
	m.mu.Unlock()
	for i := int(segment); i < len(snapshot); i += int(total) {
		if err := fn(snapshot[i]); err != nil {
			return err
		}
	}
	return nil
}

func (m *memStore) GetAccount(_ context.Context, userID string) (*store.Account, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.accounts[userID], nil
}

func (m *memStore) UpdateKeyStatus(_ context.Context, u store.StatusUpdate) (string, string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	i, ok := m.index[u.UserID+"/"+u.Provider]
	if !ok || m.keys[i].KeyID != u.KeyID {
		return "", "", store.ErrConflict
	}
	k := &m.keys[i]
	prev, prevReason := k.Status, k.Reason
	k.Status, k.Reason, k.ValidatedAt = u.Status, u.Reason, u.ValidatedAt
	return prev, prevReason, nil
}

// The rest of keys.Store is unused by Record.
func (m *memStore) GetUser(context.Context, string) (store.User, error) { return store.User{}, nil }
func (m *memStore) PutKey(context.Context, store.KeyRecord) (*store.KeyRecord, error) {
	return nil, nil
}
func (m *memStore) DeleteKey(context.Context, string, string) (*store.KeyRecord, error) {
	return nil, nil
}
func (m *memStore) GetSettings(context.Context, routing.Mode) (routing.Settings, int64, error) {
	return routing.DefaultSettings(routing.BYOKFirst), 1, nil
}

type countingPublisher struct{ n atomic.Int64 }

func (c *countingPublisher) Publish(context.Context, events.Event) { c.n.Add(1) }

// BenchmarkRevalidate10k is docs/api.md §14's revalidator target: one pass over
// 10,000 keys (5,000 users, OpenAI and Anthropic) against the fake provider
// answering every check in 50 ms, with the real vault (local wrapping key),
// the real validator over HTTP and the real key service; storage in memory.
// Target: ≤ 60 s per pass. Run it with
//
//	go test -run '^$' -bench BenchmarkRevalidate10k -benchtime 1x ./shared/revalidate/
func BenchmarkRevalidate10k(b *testing.B) {
	const n = 10_000
	fake := fakeprovider.New()
	defer fake.Close()
	fake.SetDefault(fakeprovider.Behavior{Delay: 50 * time.Millisecond})

	hexKey := make([]byte, 32)
	if _, err := rand.Read(hexKey); err != nil {
		b.Fatal(err)
	}
	w, err := vault.NewLocalWrapper(hex.EncodeToString(hexKey))
	if err != nil {
		b.Fatal(err)
	}
	v := vault.New(w, nil, vault.WithCache(n, time.Hour))
	ms := &memStore{index: map[string]int{}, accounts: map[string]*store.Account{}}
	ctx := context.Background()
	for i := range n {
		user := fmt.Sprintf("user%05d", i/2)
		prov, key := "openai", "sk-proj-"+hex.EncodeToString(hexKey[:8])+fmt.Sprintf("%016d", i)
		if i%2 == 1 {
			prov, key = "anthropic", "sk-ant-api03-"+fmt.Sprintf("%024d", i)
		}
		keyID := fmt.Sprintf("k%d", i)
		blob, err := v.Seal(ctx, vault.Context{UserID: user, Provider: prov, KeyID: keyID}, []byte(key))
		if err != nil {
			b.Fatal(err)
		}
		ms.index[user+"/"+prov] = len(ms.keys)
		ms.keys = append(ms.keys, store.KeyRecord{UserID: user, Provider: prov, KeyID: keyID, Ciphertext: blob,
			Hint: provider.Hint(key), Status: "valid"})
		ms.accounts[user] = &store.Account{UserID: user, Tier: "premium", Email: user + "@example.com"}
	}

	conc := revalidate.DefaultConcurrency
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns, tr.MaxIdleConnsPerHost = 2*conc, conc
	validator := provider.NewValidator(&http.Client{Transport: tr},
		provider.Endpoints{OpenAI: fake.OpenAIBaseURL(), Anthropic: fake.AnthropicBaseURL()}, 0)
	pub := &countingPublisher{}
	svc := &keys.Service{Store: ms, Sealer: v, Validator: validator, Events: pub}
	r := &revalidate.Runner{Store: ms, Opener: v, Validator: validator, Recorder: svc, Concurrency: conc}

	var peak atomic.Int64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
				if x := int64(fake.InFlight()); x > peak.Load() {
					peak.Store(x)
				}
			}
		}
	}()

	var total time.Duration
	passes := 0
	b.ResetTimer()
	for b.Loop() {
		start := time.Now()
		sum, err := r.Run(ctx)
		total += time.Since(start)
		passes++
		if err != nil {
			b.Fatal(err)
		}
		if sum.Checked != n || sum.Valid != n || sum.Errors != 0 {
			b.Fatalf("summary %+v", sum)
		}
	}
	b.StopTimer()
	close(stop)
	<-sampled
	if pub.n.Load() != 0 {
		b.Fatalf("%d events for unchanged keys", pub.n.Load())
	}
	secs := total.Seconds() / float64(passes)
	b.ReportMetric(secs, "s/pass")
	b.ReportMetric(float64(n)/secs, "keys/s")
	b.ReportMetric(float64(conc), "concurrency")
	b.ReportMetric(float64(peak.Load()), "peak_inflight")
	if secs > 60 {
		b.Errorf("one pass over %d keys took %.1fs; docs/api.md §14 target is ≤ 60s", n, secs)
	}
}
