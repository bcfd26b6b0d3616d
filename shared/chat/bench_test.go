package chat

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/synthstack/byok/shared/auth"
	"github.com/synthstack/byok/shared/chat/memfakes"
	"github.com/synthstack/byok/shared/credits"
	"github.com/synthstack/byok/shared/events"
	"github.com/synthstack/byok/shared/fakeprovider"
	"github.com/synthstack/byok/shared/h1"
	"github.com/synthstack/byok/shared/httpx"
	"github.com/synthstack/byok/shared/jsondec"
	"github.com/synthstack/byok/shared/keys"
	"github.com/synthstack/byok/shared/provider"
	"github.com/synthstack/byok/shared/routing"
	"github.com/synthstack/byok/shared/store"
	"github.com/synthstack/byok/shared/vault"
)

type benchRig struct {
	x       *Executor
	handler http.Handler
	ver     *auth.Verifier
	token   string
	key     string
	fake    *fakeprovider.Server
	ms      *memfakes.Store
	mu      *memfakes.Usage
}

func newRig(b *testing.B, behavior fakeprovider.Behavior) *benchRig {
	b.Helper()
	fake := fakeprovider.New()
	b.Cleanup(fake.Close)
	const userKey = "sk-proj-benchmarkkey0123456789abcdef"
	fake.SetKey(userKey, behavior)
	w, err := vault.NewLocalWrapper(strings.Repeat("ab", 32))
	if err != nil {
		b.Fatal(err)
	}
	v := vault.New(w, nil, vault.WithCache(100, time.Hour))
	ec := vault.Context{UserID: "alice", Provider: "openai", KeyID: "k1"}
	blob, err := v.Seal(context.Background(), ec, []byte(userKey))
	if err != nil {
		b.Fatal(err)
	}
	key := store.KeyRecord{UserID: "alice", Provider: "openai", KeyID: "k1", Ciphertext: blob, Status: "valid", Hint: "sk-...bcdef"}
	ms := &memfakes.Store{
		// Keys and Set as store.GetUser fills them: the BYOK route walks Set.
		User: store.User{Account: &store.Account{UserID: "alice", Tier: "premium", CreditBalance: 0},
			Keys: map[string]store.KeyRecord{"openai": key}, Set: store.NewKeySet(key)},
		Settings: routing.DefaultSettings(routing.BYOKFirst),
	}
	mu := &memfakes.Usage{}
	secret := []byte("0123456789abcdef0123456789abcdef")
	ver, err := auth.NewVerifier(context.Background(), auth.Config{HS256Secret: secret})
	if err != nil {
		b.Fatal(err)
	}
	tok, _ := auth.Mint(secret, "alice", "", time.Hour, "", "")
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 512
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	x := &Executor{
		Users: ms, Settings: &SettingsCache{Store: ms, TTL: time.Hour}, Keys: v, KeyRecorder: memfakes.Recorder{},
		Ledger: memfakes.Ledger{}, Limiter: memfakes.Limiter{}, Usage: mu, Prices: credits.DefaultPrices(),
		Circuit: NewCircuit(time.Minute, nil), Events: events.Nop{}, HTTP: &http.Client{Transport: &h1.Transport{MaxIdleConnsPerHost: 512, Fallback: tr}},
		Decoders:  &jsondec.Pool{},
		Endpoints: provider.Endpoints{OpenAI: fake.OpenAIBaseURL(), Anthropic: fake.AnthropicBaseURL()},
		Log:       log,
	}
	mux := http.NewServeMux()
	x.Register(mux)
	return &benchRig{x: x, handler: httpx.Middleware(log, ver.Middleware(mux)), ver: ver, token: tok, key: userKey, fake: fake, ms: ms, mu: mu}
}

var benchBody = []byte(`{"model":"gpt-4o-mini","max_tokens":64,"messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Say hello in five words."}]}`)

// BenchmarkHotPath: docs/api.md §14 row 1 — auth, key row read, cached unwrap and
// the routing decision, in process, storage in memory (no upstream call).
func BenchmarkHotPath(b *testing.B) {
	rig := newRig(b, fakeprovider.OK())
	ctx := context.Background()
	// The *http.Request is net/http's work, not the gateway's: built once.
	hr := httptest.NewRequest("POST", "/v1/chat/completions", nil)
	b.ReportAllocs()
	for b.Loop() {
		p, err := rig.ver.Verify(ctx, rig.token)
		if err != nil {
			b.Fatal(err)
		}
		// As handleJSON: the user row is read alongside the parse, or (this
		// small body) after it.
		lctx := auth.WithPrincipal(ctx, p)
		ld := rig.x.startLoad(lctx, int64(len(benchBody)))
		req, err := parseChatRequest(rig.x.Decoders, benchBody)
		if err != nil {
			b.Fatal(err)
		}
		prov, up, err := ProviderForModel(req.Model)
		if err != nil {
			b.Fatal(err)
		}
		req.UpstreamModel = up
		c, err := rig.x.newCall(lctx, nil, hr, p, req, prov, ld)
		if ld != nil {
			ld.stop()
		}
		if err != nil {
			b.Fatal(err)
		}
		if plan := routing.Decide(c.in); plan.First != routing.RouteBYOK || len(c.cands) == 0 {
			b.Fatal(plan)
		}
		k := &c.cands[0] // the key viaBYOK opens first
		plain, err := rig.x.Keys.Open(ctx, keys.VaultContext(*k), k.Ciphertext)
		if err != nil || len(plain) == 0 {
			b.Fatal(err)
		}
		clear(plain)
	}
}

func percentile(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

func post(b *testing.B, c *http.Client, url, auth string, body []byte) {
	req, _ := http.NewRequest("POST", url, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+auth)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		b.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		b.Fatalf("status %d", resp.StatusCode)
	}
}

// BenchmarkAddedLatency: docs/api.md §14 row 2 — the gateway on loopback against
// a direct call to the same zero-delay fake upstream, concurrency 1,
// alternating the two. Reports p50/p99 of each and the difference.
func BenchmarkAddedLatency(b *testing.B) {
	rig := newRig(b, fakeprovider.OK())
	gw := httptest.NewServer(rig.handler)
	defer gw.Close()
	client := &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	lat := alternate(b, client, target{rig.fake.OpenAIBaseURL() + "/chat/completions", rig.key},
		target{gw.URL + "/v1/chat/completions", rig.token})
	dl, vl := lat[0], lat[1]
	b.ReportMetric(usOf(percentile(dl, 0.5)), "direct-p50-µs")
	b.ReportMetric(usOf(percentile(vl, 0.5)), "via-p50-µs")
	b.ReportMetric(usOf(percentile(vl, 0.5)-percentile(dl, 0.5)), "added-p50-µs")
	b.ReportMetric(usOf(percentile(vl, 0.99)-percentile(dl, 0.99)), "added-p99-µs")
}

// BenchmarkUpstreamTransport compares the gateway's provider transport
// (shared/h1, as app.New wires it) with net/http's own Transport: two
// gateways on one fake, concurrency 1, alternating direct, via h1 and via
// net/http, so both see the same moment of the machine
// (docs/performance.md).
func BenchmarkUpstreamTransport(b *testing.B) {
	rig := newRig(b, fakeprovider.OK())
	std := newRig(b, fakeprovider.OK())
	std.x.Endpoints = rig.x.Endpoints // the same fake, which knows the same key
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 512
	std.x.HTTP = &http.Client{Transport: tr}
	gw, gwStd := httptest.NewServer(rig.handler), httptest.NewServer(std.handler)
	defer gw.Close()
	defer gwStd.Close()
	client := &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	lat := alternate(b, client, target{rig.fake.OpenAIBaseURL() + "/chat/completions", rig.key},
		target{gw.URL + "/v1/chat/completions", rig.token}, target{gwStd.URL + "/v1/chat/completions", std.token})
	for _, p := range []struct {
		name string
		q    float64
	}{{"p50", 0.5}, {"p99", 0.99}} {
		b.ReportMetric(usOf(percentile(lat[1], p.q)-percentile(lat[0], p.q)), "h1-added-"+p.name+"-µs")
		b.ReportMetric(usOf(percentile(lat[2], p.q)-percentile(lat[0], p.q)), "nethttp-added-"+p.name+"-µs")
	}
}

// target is one way to send the benchmark request: its URL and credential.
type target struct{ url, auth string }

// alternate warms every target up, then times one request to each in turn
// per iteration, so that all see the same moments of the machine.
func alternate(b *testing.B, c *http.Client, ts ...target) [][]time.Duration {
	for range 50 {
		for _, t := range ts {
			post(b, c, t.url, t.auth, benchBody)
		}
	}
	lat := make([][]time.Duration, len(ts))
	b.ResetTimer()
	for b.Loop() {
		for i, t := range ts {
			t0 := time.Now()
			post(b, c, t.url, t.auth, benchBody)
			lat[i] = append(lat[i], time.Since(t0))
		}
	}
	b.StopTimer()
	return lat
}

func usOf(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1000 }

// streamTimes reads an SSE stream and returns time to first content chunk
// and the gaps between content chunks.
func streamTimes(b *testing.B, c *http.Client, url, auth string, body []byte) (time.Duration, []time.Duration) {
	start := time.Now()
	req, _ := http.NewRequest("POST", url, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+auth)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	var ttft time.Duration
	var gaps []time.Duration
	last := time.Time{}
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			break
		}
		if !strings.Contains(line, `"content":"`) {
			continue
		}
		now := time.Now()
		if last.IsZero() {
			ttft = now.Sub(start)
		} else {
			gaps = append(gaps, now.Sub(last))
		}
		last = now
	}
	return ttft, gaps
}

// BenchmarkStreaming: docs/api.md §14 row 3 — added time to first token and added
// gap between chunks, gateway vs direct, with a fake that paces 20 chunks
// 2 ms apart.
func BenchmarkStreaming(b *testing.B) {
	rig := newRig(b, fakeprovider.Behavior{Chunks: 20, ChunkDelay: 2 * time.Millisecond})
	gw := httptest.NewServer(rig.handler)
	defer gw.Close()
	client := &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	body := []byte(`{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"count"}]}`)
	direct := rig.fake.OpenAIBaseURL() + "/chat/completions"
	via := gw.URL + "/v1/chat/completions"
	var dT, vT, dG, vG []time.Duration
	for b.Loop() {
		t, g := streamTimes(b, client, direct, rig.key, body)
		dT, dG = append(dT, t), append(dG, g...)
		t, g = streamTimes(b, client, via, rig.token, body)
		vT, vG = append(vT, t), append(vG, g...)
	}
	b.ReportMetric(usOf(percentile(vT, 0.99)-percentile(dT, 0.99)), "added-ttft-p99-µs")
	b.ReportMetric(usOf(percentile(vT, 0.5)-percentile(dT, 0.5)), "added-ttft-p50-µs")
	b.ReportMetric(usOf(percentile(vG, 0.99)-percentile(dG, 0.99)), "added-gap-p99-µs")
	b.ReportMetric(usOf(percentile(vG, 0.5)-percentile(dG, 0.5)), "added-gap-p50-µs")
}

// BenchmarkThroughput: docs/api.md §14 row 4 — requests per second with a 20 ms
// upstream, 64 concurrent clients for one second each way; reports the
// gateway's throughput as a percentage of direct.
func BenchmarkThroughput(b *testing.B) {
	rig := newRig(b, fakeprovider.Behavior{Delay: 20 * time.Millisecond})
	gw := httptest.NewServer(rig.handler)
	defer gw.Close()
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 256
	client := &http.Client{Transport: tr}
	run := func(url, auth string) float64 {
		var n atomic.Int64
		deadline := time.Now().Add(time.Second)
		var wg sync.WaitGroup
		for range 64 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(deadline) {
					post(b, client, url, auth, benchBody)
					n.Add(1)
				}
			}()
		}
		wg.Wait()
		return float64(n.Load())
	}
	var ratio float64
	for b.Loop() {
		d := run(rig.fake.OpenAIBaseURL()+"/chat/completions", rig.key)
		v := run(gw.URL+"/v1/chat/completions", rig.token)
		ratio = v / d * 100
		b.ReportMetric(d, "direct-req/s")
		b.ReportMetric(v, "via-req/s")
	}
	b.ReportMetric(ratio, "%-of-direct")
	b.ReportMetric(float64(rig.ms.Reads.Load()), "storage-reads")
}
