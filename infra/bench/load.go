package main

import (
	"bufio"
	"bytes"
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

func (b *Bench) streamPairs() int {
	if b.quick {
		return 20
	}
	return 300
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

func (b *Bench) rowsLoad(kind storageKind) {
	var g *Gateway
	var err error
	if kind == storageMoto {
		g, err = newMotoGateway(b.moto.URL, b.awsEnv)
	} else {
		g, err = newMemoryGateway()
	}
	if err != nil {
		for _, r := range loadRowDefs {
			b.skip(r.id+" ("+kind.String()+")", r.what, r.target, "gateway set-up failed: "+err.Error())
		}
		b.logf("%s: set-up failed: %v", kind, err)
		return
	}
	defer g.Close()
	b.detail("### Rows 2–4 with %s\n\nGateway: %s. Upstream: shared/fakeprovider on loopback in the same process. "+
		"Direct = the same request straight to the fake with the user's key; via = through the gateway with the user's JWT.\n",
		kind, g.Wiring)
	if g.ops != nil {
		b.warmIO = measureWarmIO(g, b.warmRequests())
	}
	b.rowAddedLatency(g)
	b.rowStreaming(g)
	b.rowThroughput(g)
}

// ---------------------------------------------------------------- row 2

func (b *Bench) rowAddedLatency(g *Gateway) {
	def := loadRowDefs[0]
	id := def.id + " (" + g.Storage.String() + ")"
	g.Fake.SetKey(g.Key, fakeprovider.OK())
	direct, via := chatTarget(g.DirectURL(), g.Key, chatBody), chatTarget(g.ViaURL(), g.Token, chatBody)
	var n atomic.Uint64
	targeter := func(t *vegeta.Target) error {
		if n.Add(1)%2 == 1 {
			*t = direct
		} else {
			*t = via
		}
		return nil
	}
	attack := func(d time.Duration, name string) (dl, vl []time.Duration, bad map[string]int) {
		bad = map[string]int{}
		atk := vegeta.NewAttacker(vegeta.Workers(1), vegeta.MaxWorkers(1), vegeta.KeepAlive(true),
			vegeta.Connections(4), vegeta.Timeout(10*time.Second), vegeta.HTTP2(false))
		for res := range atk.Attack(targeter, vegeta.ConstantPacer{}, d, name) {
			if res.Code != 200 {
				bad[fmt.Sprintf("%s %d %s", res.URL, res.Code, res.Error)]++
				continue
			}
			if res.URL == direct.URL {
				dl = append(dl, res.Latency)
			} else {
				vl = append(vl, res.Latency)
			}
		}
		return dl, vl, bad
	}
	attack(time.Second, "warm-up") // connections, settings cache, unwrap cache
	dur := b.latencyDuration()
	dl, vl, bad := attack(dur, "added-latency")
	if len(bad) > 0 || len(dl) < 100 || len(vl) < 100 {
		b.skip(id, def.what, def.target, fmt.Sprintf("requests failed: %v (ok: %d direct, %d via)", bad, len(dl), len(vl)))
		return
	}
	d50, d99, v50, v99 := percentile(dl, .5), percentile(dl, .99), percentile(vl, .5), percentile(vl, .99)
	a50, a99 := v50-d50, v99-d99
	ok := a50 <= 100*time.Microsecond && a99 <= 500*time.Microsecond
	b.add(Row{id, def.what, def.target, fmt.Sprintf("added p50 %s, p99 %s", usSigned(a50), usSigned(a99)), verdict(ok)})
	b.detail("**Row 2 — added latency (%s).** vegeta library attacker, 1 worker (concurrency 1), unpaced, keep-alive, "+
		"alternating direct and via for %s after a 1 s warm-up; %d direct + %d via requests, all 200. "+
		"Latency = request start to body fully read.\n\n"+
		"| | p50 | p90 | p99 | max |\n| --- | --- | --- | --- | --- |\n"+
		"| direct to fake | %s | %s | %s | %s |\n| via gateway | %s | %s | %s | %s |\n| added (via − direct) | %s | %s | %s | |\n",
		g.Storage, dur, len(dl), len(vl),
		us(d50), us(percentile(dl, .9)), us(d99), us(percentile(dl, 1)),
		us(v50), us(percentile(vl, .9)), us(v99), us(percentile(vl, 1)),
		usSigned(a50), usSigned(percentile(vl, .9)-percentile(dl, .9)), usSigned(a99))
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
	for {
		line, err := br.ReadString('\n')
		if err != nil {
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
		return 0, nil, fmt.Errorf("%s: %d content chunks, want %d", url, pieces, streamChunks)
	}
	return ttft, gaps, nil
}

func (b *Bench) rowStreaming(g *Gateway) {
	def := loadRowDefs[1]
	id := def.id + " (" + g.Storage.String() + ")"
	g.Fake.SetKey(g.Key, fakeprovider.Behavior{Chunks: streamChunks, ChunkDelay: streamChunkDelay})
	client := &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone(), Timeout: 30 * time.Second}
	var dT, vT, dG, vG []time.Duration
	pairs := b.streamPairs()
	for i := range pairs + 5 { // the first 5 pairs warm up
		t1, g1, err := streamTimes(client, g.DirectURL(), g.Key)
		if err != nil {
			b.skip(id, def.what, def.target, "stream failed: "+err.Error())
			return
		}
		t2, g2, err := streamTimes(client, g.ViaURL(), g.Token)
		if err != nil {
			b.skip(id, def.what, def.target, "stream failed: "+err.Error())
			return
		}
		if i >= 5 {
			dT, dG, vT, vG = append(dT, t1), append(dG, g1...), append(vT, t2), append(vG, g2...)
		}
	}
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
	b.detail("**Row 3 — streaming (%s).** Fake streams %d content chunks %s apart (`ChunkDelay`); %d sequential stream pairs "+
		"(direct then via) after 5 warm-up pairs, read with net/http line by line (vegeta reports whole-response latency only, "+
		"so it cannot time chunks). TTFT = request start to the first chunk with non-empty content (the fake sends the "+
		"role chunk at once and the first text piece one ChunkDelay later); gap = between consecutive text chunks "+
		"(%d gaps each way). (shared/chat's BenchmarkStreaming, in the cross-check below, counts the empty role chunk as "+
		"the first token, so its TTFT and gaps differ by definition.)\n\n"+
		"| | TTFT p50 | TTFT p99 | gap p50 | gap p99 | gap max |\n| --- | --- | --- | --- | --- | --- |\n"+
		"| direct to fake | %s | %s | %s | %s | %s |\n| via gateway | %s | %s | %s | %s | %s |\n"+
		"| added (via − direct) | %s | %s | %s | %s | |\n\n"+
		"No buffering: via gap p50 %s against a %s pacing, via TTFT p50 %s against a %s stream — %s.\n",
		g.Storage, streamChunks, streamChunkDelay, pairs, len(dG),
		us(percentile(dT, .5)), us(percentile(dT, .99)), us(percentile(dG, .5)), us(percentile(dG, .99)), us(percentile(dG, 1)),
		us(percentile(vT, .5)), us(percentile(vT, .99)), us(percentile(vG, .5)), us(percentile(vG, .99)), us(percentile(vG, 1)),
		usSigned(percentile(vT, .5)-percentile(dT, .5)), usSigned(addT99), usSigned(percentile(vG, .5)-percentile(dG, .5)), usSigned(addG99),
		us(percentile(vG, .5)), streamChunkDelay, msStr(percentile(vT, .5)), streamTotal, buf)
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
