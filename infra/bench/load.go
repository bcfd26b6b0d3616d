package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/synthstack/byok/shared/fakeprovider"
	vegeta "github.com/tsenart/vegeta/v12/lib"
)

var chatBody = []byte(`{"model":"gpt-4o-mini","max_tokens":64,"messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Say hello in five words."}]}`)

var streamBody = []byte(`{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"count"}]}`)

type loadRowDef struct{ id, what, target string }

var loadRowDefs = []loadRowDef{
	{"2", "added latency vs direct to a zero-delay mock upstream on loopback, concurrency 1", "p50 ≤ 100 µs, p99 ≤ 500 µs"},
	{"3", "streaming: added time to first token / added gap between chunks", "p99 ≤ 1 ms / p99 ≤ 50 µs; no buffering"},
	{"4", "throughput with a 20 ms mock upstream", "≥ 50% of direct-to-mock"},
}

// Load parameters.
const (
	streamChunks     = 20
	streamChunkDelay = 2 * time.Millisecond
	tpUpstreamDelay  = 20 * time.Millisecond
	tpConcurrency    = 64
)

func (b *Bench) latencyDuration() time.Duration {
	if b.quick {
		return 2 * time.Second
	}
	return 15 * time.Second
}

func (b *Bench) warmRequests() int {
	if b.quick {
		return 50
	}
	return 500
}

func (b *Bench) motoLatencyDuration() time.Duration {
	if b.quick {
		return 2 * time.Second
	}
	return 5 * time.Second
}

func (b *Bench) delayDuration() time.Duration {
	if b.quick {
		return 2 * time.Second
	}
	return 10 * time.Second
}

func (b *Bench) streamPairs() int {
	if b.quick {
		return 20
	}
	return 600 // a p99 of 600 TTFTs is their 6th slowest
}

func (b *Bench) tpRounds() (int, time.Duration) {
	if b.quick {
		return 1, time.Second
	}
	return 2, 3 * time.Second
}

// percentile is the nearest-rank percentile of d (p in 0..1).
func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(float64(len(s))*p+0.999999) - 1
	return s[max(0, min(len(s)-1, i))]
}

func us(d time.Duration) string { return fmt.Sprintf("%.0f µs", float64(d.Nanoseconds())/1000) }

func usSigned(d time.Duration) string {
	return fmt.Sprintf("%+.0f µs", float64(d.Nanoseconds())/1000)
}

func msStr(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Nanoseconds())/1e6) }

func chatTarget(url, bearer string, body []byte) vegeta.Target {
	return vegeta.Target{Method: "POST", URL: url, Body: body,
		Header: http.Header{"Authorization": {"Bearer " + bearer}, "Content-Type": {"application/json"}}}
}

// proxyRowDef and delayRowDef are docs/api.md §14's rows against a bare reverse
// proxy and with the storage latency model.
var (
	proxyRowDef = loadRowDef{"8", "against a bare Go reverse proxy (`httputil.ReverseProxy`) to the same mock, same run",
		"added p50 ≤ proxy's + 50 µs; TTFT p99 ≤ proxy's + 300 µs"}
	delayRowDef = loadRowDef{"9", "with a storage latency model (every storage call delayed 4 ms, in-memory store)",
		"added latency p50 ≤ one storage call + 150 µs"}
)

// Row 8's margins and row 9's.
const (
	proxyP50Margin  = 50 * time.Microsecond
	proxyTTFTMargin = 300 * time.Microsecond
	delayMargin     = 150 * time.Microsecond
)

// loadFigures are what rows 2 and 3 measured, for rows 8 and 9.
type loadFigures struct {
	direct, via, proxy []time.Duration // row 2 latencies
	dT, vT, pT         []time.Duration // row 3 TTFTs
	viaReqs            int             // row 2 via requests
}

// rowsLoad measures rows 2–4 for kind; for in-memory storage also row 8
// (the bare proxy is measured in the same alternation as direct and via).
// Moto storage measures only row 2, for information (a Python emulator on
// this machine, not DynamoDB; row 9's latency model stands for DynamoDB).
func (b *Bench) rowsLoad(kind storageKind) *loadFigures {
	var g *Gateway
	var err error
	if kind == storageMoto {
		g, err = newMotoGateway(b.moto.URL, b.awsEnv)
	} else {
		g, err = newMemoryGateway(0)
	}
	if err != nil {
		defs := loadRowDefs
		if kind == storageMoto {
			defs = defs[:1]
		} else {
			defs = append(slices.Clone(defs), proxyRowDef)
		}
		for _, r := range defs {
			b.skip(r.id+" ("+kind.String()+")", r.what, r.target, "gateway set-up failed: "+err.Error())
		}
		b.logf("%s: set-up failed: %v", kind, err)
		return nil
	}
	defer g.Close()
	b.detail("### Rows 2–4 with %s\n\nGateway: %s. Upstream: shared/fakeprovider on loopback in the same process. "+
		"Direct = the same request straight to the fake with the user's key; via = through the gateway with the user's JWT.%s\n",
		kind, g.Wiring, proxyWiring(g))
	if g.ops != nil {
		b.warmIO = measureWarmIO(g, b.warmRequests())
	}
	f := &loadFigures{}
	b.rowAddedLatency(g, f)
	if kind == storageMoto {
		return f
	}
	b.rowStreaming(g, f)
	b.rowThroughput(g)
	return f
}

func proxyWiring(g *Gateway) string {
	if g.ProxyURL == "" {
		return ""
	}
	return " Proxy = the same direct request (the user's key) through a bare `httputil.ReverseProxy` " +
		"(`Rewrite: SetURL(fake)`, `FlushInterval: -1`, net/http's Transport with 512 idle connections per host) served by httptest on loopback, " +
		"measured in the same alternation: the floor of one more Go hop."
}

// ---------------------------------------------------------------- row 2

// alternate sends targets in turn, one request at a time (concurrency 1,
// unpaced, keep-alive), for d, and returns each target's latencies (request
// start to body read) and the failures.
func alternate(targets []vegeta.Target, d time.Duration, name string) ([][]time.Duration, map[string]int) {
	idx := map[string]int{}
	for i, t := range targets {
		idx[t.URL] = i
	}
	var n atomic.Uint64
	targeter := func(t *vegeta.Target) error {
		*t = targets[(n.Add(1)-1)%uint64(len(targets))]
		return nil
	}
	lat := make([][]time.Duration, len(targets))
	bad := map[string]int{}
	atk := vegeta.NewAttacker(vegeta.Workers(1), vegeta.MaxWorkers(1), vegeta.KeepAlive(true),
		vegeta.Connections(4), vegeta.Timeout(10*time.Second), vegeta.HTTP2(false))
	for res := range atk.Attack(targeter, vegeta.ConstantPacer{}, d, name) {
		if res.Code != 200 {
			bad[fmt.Sprintf("%s %d %s", res.URL, res.Code, res.Error)]++
			continue
		}
		i := idx[res.URL]
		lat[i] = append(lat[i], res.Latency)
	}
	return lat, bad
}

func latencyLine(name string, l []time.Duration) string {
	return fmt.Sprintf("| %s | %s | %s | %s | %s |\n", name, us(percentile(l, .5)), us(percentile(l, .9)), us(percentile(l, .99)), us(percentile(l, 1)))
}

func addedLine(name string, of, base []time.Duration) string {
	return fmt.Sprintf("| %s | %s | %s | %s | |\n", name, usSigned(percentile(of, .5)-percentile(base, .5)),
		usSigned(percentile(of, .9)-percentile(base, .9)), usSigned(percentile(of, .99)-percentile(base, .99)))
}

func (b *Bench) rowAddedLatency(g *Gateway, f *loadFigures) {
	def := loadRowDefs[0]
	id := def.id + " (" + g.Storage.String() + ")"
	g.Fake.SetKey(g.Key, fakeprovider.OK())
	targets := []vegeta.Target{chatTarget(g.DirectURL(), g.Key, chatBody), chatTarget(g.ViaURL(), g.Token, chatBody)}
	if g.ProxyURL != "" {
		targets = append(targets, chatTarget(g.ProxiedURL(), g.Key, chatBody))
	}
	alternate(targets, time.Second, "warm-up") // connections, settings cache, unwrap cache
	dur := b.latencyDuration()
	if g.Storage == storageMoto {
		dur = b.motoLatencyDuration()
	}
	lat, bad := alternate(targets, dur, "added-latency")
	for _, l := range lat {
		if len(l) < 100 {
			bad["too few successful requests"]++
		}
	}
	if len(bad) > 0 {
		b.skip(id, def.what, def.target, fmt.Sprintf("requests failed: %v (ok per target: %d)", bad, lens(lat)))
		return
	}
	dl, vl := lat[0], lat[1]
	f.direct, f.via, f.viaReqs = dl, vl, len(vl)
	a50, a99 := percentile(vl, .5)-percentile(dl, .5), percentile(vl, .99)-percentile(dl, .99)
	ok := a50 <= 100*time.Microsecond && a99 <= 500*time.Microsecond
	v := verdict(ok)
	if g.Storage == storageMoto {
		v = informational
	}
	b.add(Row{id, def.what, def.target, fmt.Sprintf("added p50 %s, p99 %s", usSigned(a50), usSigned(a99)), v})
	ways := "direct and via"
	rows := latencyLine("direct to fake", dl) + latencyLine("via gateway", vl)
	added := addedLine("added (via − direct)", vl, dl)
	if len(lat) > 2 {
		f.proxy = lat[2]
		ways = "direct, via and proxy"
		rows += latencyLine("via bare ReverseProxy", lat[2])
		added += addedLine("proxy's added (proxy − direct)", lat[2], dl) + addedLine("gateway over proxy (via − proxy)", vl, lat[2])
	}
	counts := fmt.Sprint(len(dl))
	for _, l := range lat[1:] {
		counts += fmt.Sprintf(" + %d", len(l))
	}
	note := ""
	if g.Storage == storageMoto {
		note = " Informational: every via request also waits for a Query and a PutItem to a Python emulator on this machine, " +
			"which is neither the gateway's cost nor DynamoDB's (row 9 models DynamoDB's latency instead)."
	}
	b.detail("**Row 2 — added latency (%s).** vegeta library attacker, 1 worker (concurrency 1), unpaced, keep-alive, "+
		"alternating %s for %s after a 1 s warm-up; %s requests, all 200. "+
		"Latency = request start to body fully read.%s\n\n"+
		"| | p50 | p90 | p99 | max |\n| --- | --- | --- | --- | --- |\n%s%s",
		g.Storage, ways, dur, counts, note, rows, added)
}

func lens(l [][]time.Duration) []int {
	var n []int
	for _, x := range l {
		n = append(n, len(x))
	}
	return n
}

// ---------------------------------------------------------------- row 3

// contentPiece matches an OpenAI chunk carrying text: the first chunk (role
// with "content":"") is not a token.
var contentPiece = regexp.MustCompile(`"content":"[^"]`)

// streamTimes reads an SSE stream and returns the time to the first
// non-empty content chunk and the gaps between content chunks.
func streamTimes(c *http.Client, url, bearer string) (time.Duration, []time.Duration, error) {
	start := time.Now()
	req, _ := http.NewRequest("POST", url, bytes.NewReader(streamBody))
	req.Header.Set("Authorization", "Bearer "+bearer)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return 0, nil, fmt.Errorf("%s: status %d", url, resp.StatusCode)
	}
	br := bufio.NewReader(resp.Body)
	var ttft time.Duration
	var gaps []time.Duration
	var last time.Time
	pieces := 0
	var readErr error
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			if err != io.EOF {
				readErr = err
			}
			break
		}
		if !contentPiece.MatchString(line) {
			continue
		}
		now := time.Now()
		if last.IsZero() {
			ttft = now.Sub(start)
		} else {
			gaps = append(gaps, now.Sub(last))
		}
		last = now
		pieces++
	}
	if pieces != streamChunks {
		return 0, nil, fmt.Errorf("%s: %d content chunks, want %d (read error: %v)", url, pieces, streamChunks, readErr)
	}
	return ttft, gaps, nil
}

func (b *Bench) rowStreaming(g *Gateway, f *loadFigures) {
	def := loadRowDefs[1]
	id := def.id + " (" + g.Storage.String() + ")"
	g.Fake.SetKey(g.Key, fakeprovider.Behavior{Chunks: streamChunks, ChunkDelay: streamChunkDelay})
	client := &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone(), Timeout: 30 * time.Second}
	var dT, vT, pT, dG, vG, pG []time.Duration
	pairs := b.streamPairs()
	// A round in which any of its streams fails is dropped whole (so the
	// three ways keep the same moments). A gateway stream failing in more
	// than 1% of rounds, or any way in more than 5%, leaves the row
	// unmeasured.
	var failures []string
	viaFailures := 0
	for i := range pairs + 5 { // the first 5 rounds warm up
		var t1, t2, t3 time.Duration
		var g1, g2, g3 []time.Duration
		var err1, err2, err3 error
		ways := []func(){
			func() { t1, g1, err1 = streamTimes(client, g.DirectURL(), g.Key) },
			func() { t2, g2, err2 = streamTimes(client, g.ViaURL(), g.Token) },
		}
		if g.ProxyURL != "" {
			ways = append(ways, func() { t3, g3, err3 = streamTimes(client, g.ProxiedURL(), g.Key) })
		}
		// Each round starts with a different way, so none is always the
		// first after the previous round's streams.
		for j := range ways {
			ways[(i+j)%len(ways)]()
		}
		if err := errors.Join(way("direct", err1), way("via", err2), way("proxy", err3)); err != nil {
			failures = append(failures, err.Error())
			if err2 != nil {
				viaFailures++
			}
			if viaFailures > max(1, pairs/100) || len(failures) > max(1, pairs/20) {
				b.skip(id, def.what, def.target, fmt.Sprintf("%d stream rounds failed, the last: %v", len(failures), err))
				return
			}
			continue
		}
		if i >= 5 {
			dT, dG, vT, vG = append(dT, t1), append(dG, g1...), append(vT, t2), append(vG, g2...)
			if g.ProxyURL != "" {
				pT, pG = append(pT, t3), append(pG, g3...)
			}
		}
	}
	if len(failures) > 0 {
		b.note("Row 3 (%s): %d of %d stream rounds failed and were dropped; the first: %s", g.Storage, len(failures), pairs+5, failures[0])
		b.logf("row 3 (%s): %d of %d stream rounds dropped: %s", g.Storage, len(failures), pairs+5, strings.Join(failures, " | "))
	}
	f.dT, f.vT, f.pT = dT, vT, pT
	addT99 := percentile(vT, .99) - percentile(dT, .99)
	addG99 := percentile(vG, .99) - percentile(dG, .99)
	// Buffering would show as chunks arriving together: via gaps near zero
	// and a first token only near the end of the stream.
	streamTotal := streamChunkDelay * streamChunks
	noBuffering := percentile(vG, .5) >= streamChunkDelay/2 && percentile(vT, .5) < streamTotal/2
	ok := addT99 <= time.Millisecond && addG99 <= 50*time.Microsecond && noBuffering
	buf := "no buffering seen"
	if !noBuffering {
		buf = "BUFFERING seen"
	}
	b.add(Row{id, def.what, def.target, fmt.Sprintf("added TTFT p99 %s / added gap p99 %s; %s", usSigned(addT99), usSigned(addG99), buf), verdict(ok)})
	line := func(name string, t, gaps []time.Duration) string {
		return fmt.Sprintf("| %s | %s | %s | %s | %s | %s |\n", name, us(percentile(t, .5)), us(percentile(t, .99)),
			us(percentile(gaps, .5)), us(percentile(gaps, .99)), us(percentile(gaps, 1)))
	}
	added := func(name string, t, gaps, bt, bgaps []time.Duration) string {
		return fmt.Sprintf("| %s | %s | %s | %s | %s | |\n", name, usSigned(percentile(t, .5)-percentile(bt, .5)),
			usSigned(percentile(t, .99)-percentile(bt, .99)), usSigned(percentile(gaps, .5)-percentile(bgaps, .5)),
			usSigned(percentile(gaps, .99)-percentile(bgaps, .99)))
	}
	rows := line("direct to fake", dT, dG) + line("via gateway", vT, vG)
	adds := added("added (via − direct)", vT, vG, dT, dG)
	ways := "pairs (direct and via, each round starting with the other)"
	if g.ProxyURL != "" {
		ways = "rounds (direct, via and the bare proxy, each round starting with the next)"
		rows += line("via bare ReverseProxy", pT, pG)
		adds += added("proxy's added (proxy − direct)", pT, pG, dT, dG) + added("gateway over proxy (via − proxy)", vT, vG, pT, pG)
	}
	b.detail("**Row 3 — streaming (%s).** Fake streams %d content chunks %s apart (`ChunkDelay`); %d sequential stream %s "+
		"after 5 warm-up rounds, read with net/http line by line (vegeta reports whole-response latency only, "+
		"so it cannot time chunks). TTFT = request start to the first chunk with non-empty content (the fake sends the "+
		"role chunk at once and the first text piece one ChunkDelay later); gap = between consecutive text chunks "+
		"(%d gaps each way). (shared/chat's BenchmarkStreaming, in the cross-check below, counts the empty role chunk as "+
		"the first token, so its TTFT and gaps differ by definition.)\n\n"+
		"| | TTFT p50 | TTFT p99 | gap p50 | gap p99 | gap max |\n| --- | --- | --- | --- | --- | --- |\n%s%s\n"+
		"No buffering: via gap p50 %s against a %s pacing, via TTFT p50 %s against a %s stream — %s.\n",
		g.Storage, streamChunks, streamChunkDelay, len(dT), ways, len(dG), rows, adds,
		us(percentile(vG, .5)), streamChunkDelay, msStr(percentile(vT, .5)), streamTotal, buf)
}

// way names which of direct, via and proxy an error came from.
func way(name string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", name, err)
}

// ---------------------------------------------------------------- row 8

// rowProxy compares the gateway with the bare reverse proxy measured in the
// same alternation as rows 2 and 3.
func (b *Bench) rowProxy(f *loadFigures) {
	def := proxyRowDef
	if f == nil || len(f.proxy) == 0 || len(f.pT) == 0 {
		b.skip(def.id, def.what, def.target, "rows 2 or 3 (in-memory storage) did not run")
		return
	}
	pAdd := percentile(f.proxy, .5) - percentile(f.direct, .5)
	vAdd := percentile(f.via, .5) - percentile(f.direct, .5)
	pT99, vT99 := percentile(f.pT, .99), percentile(f.vT, .99)
	ok := vAdd <= pAdd+proxyP50Margin && vT99 <= pT99+proxyTTFTMargin
	b.add(Row{def.id, def.what, def.target, fmt.Sprintf("added p50 %s vs proxy's %s (%s over it); TTFT p99 %s vs proxy's %s (%s over it)",
		usSigned(vAdd), usSigned(pAdd), usSigned(vAdd-pAdd), us(vT99), us(pT99), usSigned(vT99-pT99)), verdict(ok)})
	b.detail("### Row 8 — against a bare reverse proxy\n\nFrom the in-memory rows 2 and 3 above, where the proxy was "+
		"measured in the same alternation as direct and via (same process, same fake, same moment): added p50 "+
		"(via − direct) %s against the proxy's (proxy − direct) %s: the gateway costs %s more than the bare hop "+
		"(target ≤ +%s). TTFT p99 via %s against the proxy's %s: %s (target ≤ +%s). For reference, TTFT p50 via %s "+
		"against the proxy's %s (%s): on a busy machine the p50 is the steadier figure.\n",
		usSigned(vAdd), usSigned(pAdd), usSigned(vAdd-pAdd), us(proxyP50Margin), us(vT99), us(pT99), usSigned(vT99-pT99), us(proxyTTFTMargin),
		us(percentile(f.vT, .5)), us(percentile(f.pT, .5)), usSigned(percentile(f.vT, .5)-percentile(f.pT, .5)))
}

// ---------------------------------------------------------------- row 9

// benchSlowKey is a key the fake answers storageDelay late: a direct
// request with it costs one storage-call-long wait end to end, wake-ups
// included (row 9's control).
const benchSlowKey = "sk-proj-benchmarkslowkey0123456789ab"

// alternateIdle sends a direct, a via and a slow direct request (benchSlowKey)
// in turn, one at a time over keep-alive connections, for d; each starts
// only once the gateway has finished every handler (idleGate), so a storage
// call after the answer never delays the next request. Latency = request
// start to the whole body read (Content-Length bytes).
func alternateIdle(c *http.Client, g *Gateway, d time.Duration) ([][]time.Duration, map[string]int) {
	lat := make([][]time.Duration, 3)
	bad := map[string]int{}
	one := func(url, bearer string) (time.Duration, error) {
		req, _ := http.NewRequest("POST", url, bytes.NewReader(chatBody))
		req.Header.Set("Authorization", "Bearer "+bearer)
		req.Header.Set("Content-Type", "application/json")
		start := time.Now()
		resp, err := c.Do(req)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			return 0, err
		}
		took := time.Since(start)
		if resp.StatusCode != 200 {
			return 0, fmt.Errorf("status %d", resp.StatusCode)
		}
		return took, nil
	}
	for end := time.Now().Add(d); time.Now().Before(end); {
		for i, t := range []struct{ url, bearer string }{{g.DirectURL(), g.Key}, {g.ViaURL(), g.Token}, {g.DirectURL(), benchSlowKey}} {
			g.idle.wait()
			took, err := one(t.url, t.bearer)
			if err != nil {
				bad[fmt.Sprintf("%s: %v", t.url, err)]++
				continue
			}
			lat[i] = append(lat[i], took)
		}
	}
	g.idle.wait()
	return lat, bad
}

// rowStorageModel measures row 2's added latency with every storage call
// delayed by storageDelay, and compares it with one storage call: a warm
// BYOK request must wait for the user row read, but the usage write must
// happen after the client has the whole answer.
func (b *Bench) rowStorageModel(zero *loadFigures) {
	def := delayRowDef
	g, err := newMemoryGateway(storageDelay)
	if err != nil {
		b.skip(def.id, def.what, def.target, "gateway set-up failed: "+err.Error())
		return
	}
	defer g.Close()
	g.Fake.SetKey(g.Key, fakeprovider.OK())
	g.Fake.SetKey(benchSlowKey, fakeprovider.Behavior{Delay: storageDelay})
	client := &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone(), Timeout: 30 * time.Second}
	alternateIdle(client, g, time.Second)
	g.Latency.Waits() // forget the warm-up's
	calls0 := g.Latency.Calls()
	dur := b.delayDuration()
	lat, bad := alternateIdle(client, g, dur)
	waits := g.Latency.Waits()
	calls := g.Latency.Calls() - calls0
	if len(bad) > 0 || len(lat[0]) < 50 || len(lat[1]) < 50 || len(waits) == 0 {
		b.skip(def.id, def.what, def.target, fmt.Sprintf("requests failed: %v (ok per target: %v)", bad, lens(lat)))
		return
	}
	dl, vl, sl := lat[0], lat[1], lat[2]
	timer := percentile(waits, .5)
	// One storage call, as a request pays for it: a direct request answered
	// storageDelay late costs that much more than a direct one, wake-ups of
	// an idle process after the wait included. The timer's own figure
	// (what the model's waits took inside the gateway) is shown next to it.
	one := percentile(sl, .5) - percentile(dl, .5)
	add50 := percentile(vl, .5) - percentile(dl, .5)
	ok := add50 <= one+delayMargin
	zeroNote := ""
	if zero != nil && len(zero.via) > 0 {
		z := percentile(zero.via, .5) - percentile(zero.direct, .5)
		zeroNote = fmt.Sprintf("; zero-delay added p50 %s", usSigned(z))
	}
	perReq := float64(calls) / float64(len(vl))
	b.add(Row{def.id, def.what, def.target, fmt.Sprintf("added p50 %s vs one storage call %s (+%s allowed = %s; the model's timer alone %s)%s; %.2f storage calls per request",
		usSigned(add50), us(one), us(delayMargin), us(one+delayMargin), us(timer), zeroNote, perReq), verdict(ok)})
	b.detail("### Row 9 — with a storage latency model\n\nGateway: %s. Row 2's measurement with every storage call delayed %s: "+
		"net/http client, concurrency 1, keep-alive, in turn direct, via and a direct request the fake answers %s late, "+
		"for %s after a 1 s warm-up (%s requests, all 200), each request sent only once the gateway has finished every "+
		"handler, its work after the answer included (as a Lambda instance takes its next invocation only then; over one "+
		"keep-alive connection net/http would otherwise make each request wait for the previous handler's tail). "+
		"Latency = request start to the whole body read.\n\n"+
		"**One storage call** = what one %s wait costs a request end to end on this machine: the slow direct request's p50 "+
		"minus the direct one's, %s (a process idle for 4 ms pays for waking up afterwards, which the model's own timer "+
		"does not see: the p50 of the %d waits the model made inside the gateway was %s, p99 %s). Storage calls: %d during "+
		"%d via requests (%.2f per request: the user row read and the usage write; settings are cached). "+
		"The client waits for the read either way; the target holds only if it does not also wait for the write.\n\n"+
		"| | p50 | p90 | p99 | max |\n| --- | --- | --- | --- | --- |\n%s%s%s%s%s\n"+
		"Added p50 %s against one storage call + %s = %s%s.\n",
		g.Wiring, storageDelay, storageDelay, dur, fmt.Sprintf("%d + %d + %d", len(dl), len(vl), len(sl)),
		storageDelay, us(one), len(waits), us(timer), us(percentile(waits, .99)), calls, len(vl), perReq,
		latencyLine("direct to fake", dl), latencyLine("via gateway", vl), latencyLine("direct, answered "+storageDelay.String()+" late", sl),
		addedLine("added (via − direct)", vl, dl), addedLine("one storage call (slow direct − direct)", sl, dl),
		usSigned(add50), us(delayMargin), us(one+delayMargin), zeroNote)
}

// ---------------------------------------------------------------- row 4

type tpResult struct {
	ok, failed int
	rate       float64 // successful requests per second
	p50, p99   time.Duration
	errs       []string
}

func throughputAttack(t vegeta.Target, conc int, dur time.Duration, name string) tpResult {
	atk := vegeta.NewAttacker(vegeta.Workers(uint64(conc)), vegeta.MaxWorkers(uint64(conc)), vegeta.KeepAlive(true),
		vegeta.Connections(conc*2), vegeta.Timeout(30*time.Second), vegeta.HTTP2(false))
	var r tpResult
	var lat []time.Duration
	errs := map[string]bool{}
	var first, end time.Time
	for res := range atk.Attack(vegeta.NewStaticTargeter(t), vegeta.ConstantPacer{}, dur, name) {
		if first.IsZero() || res.Timestamp.Before(first) {
			first = res.Timestamp
		}
		if e := res.End(); e.After(end) {
			end = e
		}
		if res.Code == 200 {
			r.ok++
			lat = append(lat, res.Latency)
		} else {
			r.failed++
			errs[fmt.Sprintf("%d %s", res.Code, res.Error)] = true
		}
	}
	if s := end.Sub(first).Seconds(); s > 0 {
		r.rate = float64(r.ok) / s
	}
	r.p50, r.p99 = percentile(lat, .5), percentile(lat, .99)
	for e := range errs {
		r.errs = append(r.errs, e)
	}
	sort.Strings(r.errs)
	return r
}

func (b *Bench) rowThroughput(g *Gateway) {
	def := loadRowDefs[2]
	id := def.id + " (" + g.Storage.String() + ")"
	g.Fake.SetKey(g.Key, fakeprovider.Behavior{Delay: tpUpstreamDelay})
	direct, via := chatTarget(g.DirectURL(), g.Key, chatBody), chatTarget(g.ViaURL(), g.Token, chatBody)
	rounds, dur := b.tpRounds()
	throughputAttack(direct, tpConcurrency, 500*time.Millisecond, "warm-up")
	throughputAttack(via, tpConcurrency, 500*time.Millisecond, "warm-up")
	var rows []string
	var dOK, vOK int
	var dSecs, vSecs float64
	var failed []string
	var reads0, writes0 int64
	if g.reads != nil {
		reads0, writes0 = g.reads(), g.writes()
	}
	for i := range rounds {
		d := throughputAttack(direct, tpConcurrency, dur, "direct")
		v := throughputAttack(via, tpConcurrency, dur, "via")
		for _, x := range []struct {
			name string
			r    tpResult
		}{{"direct", d}, {"via", v}} {
			rows = append(rows, fmt.Sprintf("| %d | %s | %d | %d | %.0f | %s | %s |", i+1, x.name, x.r.ok, x.r.failed, x.r.rate, msStr(x.r.p50), msStr(x.r.p99)))
			if x.r.failed > 0 {
				failed = append(failed, fmt.Sprintf("%s: %d failed (%s)", x.name, x.r.failed, strings.Join(x.r.errs, "; ")))
			}
		}
		dOK, vOK = dOK+d.ok, vOK+v.ok
		if d.rate > 0 {
			dSecs += float64(d.ok) / d.rate
		}
		if v.rate > 0 {
			vSecs += float64(v.ok) / v.rate
		}
	}
	var dRate, vRate float64
	if dSecs > 0 {
		dRate = float64(dOK) / dSecs
	}
	if vSecs > 0 {
		vRate = float64(vOK) / vSecs
	}
	if dRate == 0 {
		b.skip(id, def.what, def.target, "no successful direct request: "+strings.Join(failed, "; "))
		return
	}
	pct := vRate / dRate * 100
	m := fmt.Sprintf("%.0f%% of direct (%.0f vs %.0f req/s, %d concurrent)", pct, vRate, dRate, tpConcurrency)
	if len(failed) > 0 {
		m += "; some requests failed"
	}
	b.add(Row{id, def.what, def.target, m, verdict(pct >= 50 && len(failed) == 0)})
	ioNote := ""
	if g.reads != nil {
		calls := int64(vOK)
		ioNote = fmt.Sprintf(" In-memory storage calls during the measured via requests: %d reads, %d usage writes for %d requests.",
			g.reads()-reads0, g.writes()-writes0, calls)
	}
	fb := ""
	if len(failed) > 0 {
		fb = "\n\nFailures: " + strings.Join(failed, "; ") + "\n"
	}
	b.detail("**Row 4 — throughput (%s).** Fake answers after %s; vegeta library attacker with %d workers (fixed concurrency %d), "+
		"unpaced, keep-alive, %d round(s) of %s direct then %s via, after a 0.5 s warm-up each way. Rate = successful "+
		"requests / (first request start to last response end). Load generator, gateway and fake share this machine's %d CPUs.%s\n\n"+
		"| round | way | ok | failed | req/s | p50 | p99 |\n| --- | --- | --- | --- | --- | --- | --- |\n%s\n\n"+
		"Overall: via %.0f req/s, direct %.0f req/s → **%.0f%%**.%s\n",
		g.Storage, tpUpstreamDelay, tpConcurrency, tpConcurrency, rounds, dur, dur, numCPU(), ioNote, strings.Join(rows, "\n"), vRate, dRate, pct, fb)
}

// ---------------------------------------------------------------- row 5, in process

// WarmIO is what the moto-storage gateway sent to AWS for one cold and many
// warm BYOK requests, counted at the SDK's HTTP client.
type WarmIO struct {
	Cold                   map[string]int
	Warm                   map[string]int // summed over Requests
	Requests               int
	Reads, Writes, KMS     int // warm totals by class
	Other                  int // warm calls that are none of the above (SNS, ...)
	MaxReads, MaxWritesReq int // the most any one warm request made
	MaxKMS                 int
	Err                    error
}

func classify(ops map[string]int) (reads, writes, kmsCalls, other int) {
	for op, n := range ops {
		switch {
		case strings.HasPrefix(op, "TrentService."):
			kmsCalls += n
		case strings.HasSuffix(op, ".Query"), strings.HasSuffix(op, ".GetItem"), strings.HasSuffix(op, ".Scan"),
			strings.HasSuffix(op, ".BatchGetItem"), strings.HasSuffix(op, ".TransactGetItems"):
			reads += n
		case strings.HasPrefix(op, "DynamoDB_"):
			writes += n
		default:
			other += n
		}
	}
	return
}

// measureWarmIO sends one cold and n warm BYOK requests through the
// moto-storage gateway, one at a time, and counts each one's AWS calls.
func measureWarmIO(g *Gateway, n int) *WarmIO {
	w := &WarmIO{Warm: map[string]int{}}
	g.Fake.SetKey(g.Key, fakeprovider.OK())
	client := &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone(), Timeout: 30 * time.Second}
	one := func() (map[string]int, error) {
		g.ops.take()
		req, _ := http.NewRequest("POST", g.ViaURL(), bytes.NewReader(chatBody))
		req.Header.Set("Authorization", "Bearer "+g.Token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			return nil, err
		}
		if resp.StatusCode != 200 || resp.Header.Get("X-Byok-Route") != "byok" {
			return nil, fmt.Errorf("status %d, route %q", resp.StatusCode, resp.Header.Get("X-Byok-Route"))
		}
		// The usage write follows the answer: count it with its request.
		g.idle.wait()
		return g.ops.take(), nil
	}
	var err error
	if w.Cold, err = one(); err != nil {
		w.Err = fmt.Errorf("cold request: %w", err)
		return w
	}
	for range n {
		ops, err := one()
		if err != nil {
			w.Err = fmt.Errorf("warm request %d: %w", w.Requests+1, err)
			return w
		}
		w.Requests++
		r, wr, k, o := classify(ops)
		w.Reads, w.Writes, w.KMS, w.Other = w.Reads+r, w.Writes+wr, w.KMS+k, w.Other+o
		w.MaxReads, w.MaxWritesReq, w.MaxKMS = max(w.MaxReads, r), max(w.MaxWritesReq, wr), max(w.MaxKMS, k)
		for op, c := range ops {
			w.Warm[op] += c
		}
	}
	return w
}

func opsString(ops map[string]int) string {
	keys := make([]string, 0, len(ops))
	for k := range ops {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s × %d", k, ops[k]))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}
