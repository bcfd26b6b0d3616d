// Command bench runs the docs/api.md §14 performance suite: for every row of the
// §14 table the measured value, the target and whether it is met, with the
// machine it ran on. It prints the table, exits 1 when a row is not met
// (naming which), and writes docs/performance.md only when asked.
//
//	make bench                 # = go run ./infra/bench: measure, print, exit 1 if a row is not met
//	make bench WRITE=1         # also write docs/performance.md (= -write, or BENCH_WRITE=1)
//	go run ./infra/bench -quick   # shorter runs, for trying changes
//
// What it measures, in order (everything sequential, nothing overlapping):
//
//  1. hot path: `go test -bench BenchmarkHotPath -count 5 ./shared/chat/`
//     (subprocess), median ns/op;
//  2. added latency, 3. streaming, 4. throughput: in this process, the fake
//     upstream (shared/fakeprovider) and the gateway handler on loopback,
//     with in-memory storage (the executor wired like shared/chat's
//     benchmark rig); load from vegeta's library. A bare
//     httputil.ReverseProxy to the same fake is measured in the same
//     alternation (row 8). Row 2 again with the real app wiring against
//     moto_server, for information. The existing Go benchmarks of rows 2–4
//     run as a cross-check;
//  9. row 2 again with every in-memory storage call delayed 4 ms (the
//     storage latency model, shared/chat/memfakes.Latency);
//  5. warm BYOK I/O: counted in process against the moto_server this
//     program starts (and `go test -run TestWarmBYOKRequestIO ./shared/app/`
//     with BENCH_CROSSCHECK=1);
//  6. Lambda init: every functions/* built with the Makefile's Lambda flags
//     for this machine's architecture, exec'd against a fake Runtime API,
//     timed to its first `GET /runtime/invocation/next`; arm64 sizes;
//  7. revalidator: BenchmarkRevalidate100k (or, until it exists, the 10k
//     pass) in ./shared/revalidate/;
//  10. webhooks: the benchmarks of shared/webhook*, when there are any.
//
// A missing tool or a failed measurement is reported as "not measured" with
// the reason; it does not fail the run by itself (a target not met does).
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Row is one line of the §14 table in the report.
type Row struct {
	ID       string // "1", "2 (in-memory storage)", ...
	What     string
	Target   string
	Measured string
	Verdict  string // met, NOT MET, not measured
}

const (
	met           = "met"
	notMet        = "**NOT MET**"
	notMeasured   = "not measured"
	informational = "informational"
)

func verdict(ok bool) string {
	if ok {
		return met
	}
	return notMet
}

// Bench accumulates the rows and the details sections.
type Bench struct {
	root    string
	goBin   string
	start   time.Time
	rows    []Row
	details []string // markdown sections, in row order
	notes   []string
	awsEnv  []string // AWS_* for subprocesses that need the emulator ("" when none)
	moto    *Moto
	warmIO  *WarmIO // row 5, counted in process (moto storage)
	quick   bool
}

func (b *Bench) add(r Row) { b.rows = append(b.rows, r) }
func (b *Bench) detail(format string, a ...any) {
	b.details = append(b.details, fmt.Sprintf(format, a...))
}
func (b *Bench) logf(format string, a ...any) { fmt.Fprintf(os.Stderr, "bench: "+format+"\n", a...) }
func (b *Bench) note(format string, a ...any) { b.notes = append(b.notes, fmt.Sprintf(format, a...)) }
func (b *Bench) skip(id, what, target, reason string) {
	b.add(Row{id, what, target, reason, notMeasured})
}
func (b *Bench) elapsed() string          { return time.Since(b.start).Round(time.Second).String() }
func (b *Bench) stage(n int, name string) { b.logf("[%s] row %d: %s", b.elapsed(), n, name) }
func (b *Bench) goCmd(args ...string) *exec.Cmd {
	c := exec.Command(b.goBin, args...)
	c.Dir = b.root
	return c
}
func (b *Bench) rel(p string) string {
	r, err := filepath.Rel(b.root, p)
	if err != nil {
		return p
	}
	return r
}
func (b *Bench) warn(err error, format string, a ...any) {
	b.logf("%s: %v", fmt.Sprintf(format, a...), err)
}

func main() { os.Exit(run()) }

// run is the suite; its result is the exit code (deferred clean-ups, such
// as stopping moto_server, run before the exit).
func run() int {
	out := flag.String("out", "docs/performance.md", "report path (relative to the repository root), written with -write")
	write := flag.Bool("write", os.Getenv("BENCH_WRITE") == "1", "write the report to -out (default from BENCH_WRITE=1)")
	quick := flag.Bool("quick", false, "shorter runs (for trying the program; the committed report uses the default)")
	only := flag.String("rows", "", "comma-separated rows to run (e.g. 2,8,9; rows 2, 3, 4 and 8 run together), for trying changes; default all")
	flag.Parse()
	want := func(ids ...string) bool {
		if *only == "" {
			return true
		}
		for _, f := range strings.Split(*only, ",") {
			if slices.Contains(ids, strings.TrimSpace(f)) {
				return true
			}
		}
		return false
	}

	root, err := repoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	b := &Bench{root: root, goBin: goBinary(), start: time.Now(), quick: *quick}
	if _, err := exec.LookPath(b.goBin); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %q not found on PATH; install Go 1.26 from https://go.dev/dl/\n", b.goBin)
		return 1
	}
	machine := describeMachine(b)
	b.logf("%s", machine.oneLine())
	if l, err := strconv.ParseFloat(machine.LoadStart, 64); err == nil && l > float64(machine.CPUs) {
		// Other work holds the CPUs: tails and wake-ups stretch, and a
		// verdict may say more about the neighbours than about the gateway.
		b.logf("WARNING: load average %s on %d CPUs before the run: figures will be inflated; re-run when the machine is quieter", machine.LoadStart, machine.CPUs)
		b.note("The machine was busy: load average %s on %d CPUs when the run started. Latency tails, wake-ups and "+
			"throughput suffer first; treat a miss as a reason to re-run on a quieter machine before believing it.", machine.LoadStart, machine.CPUs)
	}

	if cal, err := calibrate(); err != nil {
		machine.Floor = "not measured: " + err.Error()
	} else {
		machine.Floor = cal.String()
	}
	b.logf("floor: %s", machine.Floor)

	// The emulator for row 5 and the moto-storage row 2.
	if want("5", "2", "10") {
		if m, err := startMoto(); err != nil {
			b.logf("no AWS emulator: %v", err)
			b.note("No AWS emulator: %v. The rows that need one are reported as not measured.", err)
		} else {
			b.moto = m
			defer m.Stop()
			b.awsEnv = m.Env()
			b.logf("AWS emulator: %s (%s)", m.URL, m.Kind)
		}
	}

	if want("1") {
		b.stage(1, "hot path (go test -bench BenchmarkHotPath -count 5)")
		b.rowHotPath()
	}
	var zero *loadFigures
	if want("2", "3", "4", "8") {
		b.stage(2, "added latency / streaming / throughput and the bare proxy, in-memory storage")
		zero = b.rowsLoad(storageMemory)
		b.rowProxy(zero)
	}
	if want("9") {
		b.stage(9, "added latency with the storage latency model ("+storageDelay.String()+" per call)")
		b.rowStorageModel(zero)
	}
	if want("2") {
		if b.moto != nil {
			b.stage(2, "added latency, moto storage (informational)")
			b.rowsLoad(storageMoto)
		} else {
			r := loadRowDefs[0]
			b.skip(r.id+" (moto storage)", r.what, r.target, "no AWS emulator (moto_server not on PATH and AWS_ENDPOINT_URL unset)")
		}
		b.stage(2, "cross-check: the Go benchmarks of rows 2–4 (in-memory storage)")
		b.crossCheckGoBenchmarks()
	}
	if want("5") {
		b.stage(5, "warm BYOK request I/O (go test -run TestWarmBYOKRequestIO)")
		b.rowWarmIO()
	}
	if want("6") {
		b.stage(6, "Lambda init and binary sizes")
		b.rowLambdaInit()
	}
	if want("7") {
		b.stage(7, "revalidator")
		b.rowRevalidator()
	}
	if want("10") {
		b.stage(10, "webhooks")
		b.rowWebhooks()
	}
	if *only != "" && *write {
		fmt.Fprintln(os.Stderr, "bench: -rows measures part of the suite; not writing the report")
		*write = false
	}

	total := time.Since(b.start)
	b.sortRows()
	fmt.Println(b.table())
	fmt.Printf("machine: %s; load average %s at the start, %s now\n", machine.oneLine(), machine.LoadStart, loadAvg())
	if *write {
		path := *out
		if !filepath.IsAbs(path) {
			path = filepath.Join(root, path)
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			return 1
		}
		if err := os.WriteFile(path, []byte(b.render(machine, total)), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			return 1
		}
		fmt.Printf("wrote %s in %s\n", b.rel(path), total.Round(time.Second))
	} else {
		fmt.Printf("done in %s (docs/performance.md not written: make bench WRITE=1 writes it)\n", total.Round(time.Second))
	}
	for _, r := range b.rows {
		if r.Verdict == notMeasured {
			fmt.Fprintf(os.Stderr, "bench: not measured: row %s (%s): %s\n", r.ID, r.What, r.Measured)
		}
	}
	if missed := b.missed(); len(missed) > 0 {
		for _, r := range missed {
			fmt.Fprintf(os.Stderr, "bench: NOT MET: row %s (%s): target %s; measured %s\n", r.ID, r.What, r.Target, r.Measured)
		}
		return 1
	}
	fmt.Fprintln(os.Stderr, "bench: every measured target is met")
	return 0
}

// missed returns the rows whose target was not met.
func (b *Bench) missed() []Row {
	var m []Row
	for _, r := range b.rows {
		if r.Verdict == notMet {
			m = append(m, r)
		}
	}
	return m
}

// sortRows puts the rows in docs/api.md §14's order (by row number; measurement
// order within a number).
func (b *Bench) sortRows() {
	num := func(id string) int {
		n := 0
		for _, c := range id {
			if c < '0' || c > '9' {
				break
			}
			n = n*10 + int(c-'0')
		}
		return n
	}
	slices.SortStableFunc(b.rows, func(x, y Row) int { return num(x.ID) - num(y.ID) })
}

// repoRoot walks up from the working directory to the directory holding go.mod.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("go.mod not found above the working directory; run from the repository")
		}
		dir = parent
	}
}

// goBinary is $GO (the Makefile passes its GO) or "go".
func goBinary() string {
	if g := strings.TrimSpace(os.Getenv("GO")); g != "" {
		return g
	}
	return "go"
}

// Machine describes where the suite ran.
type Machine struct {
	CPUs      int
	CPUModel  string
	GoVersion string
	OSArch    string
	Kernel    string
	Date      time.Time
	LoadStart string // /proc/loadavg 1-minute figure at start
	Floor     string // the calibration (calibrate.go), or why it failed
}

func loadAvg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	if f := strings.Fields(string(data)); len(f) > 0 {
		return f[0]
	}
	return "unknown"
}

func (m Machine) oneLine() string {
	return fmt.Sprintf("%d CPUs (%s), %s, %s, kernel %s", m.CPUs, m.CPUModel, m.GoVersion, m.OSArch, m.Kernel)
}

func describeMachine(b *Bench) Machine {
	m := Machine{CPUs: runtime.NumCPU(), CPUModel: "unknown", GoVersion: runtime.Version(),
		OSArch: runtime.GOOS + "/" + runtime.GOARCH, Kernel: "unknown", Date: time.Now().UTC(), LoadStart: loadAvg()}
	if out, err := exec.Command("nproc").Output(); err == nil {
		var n int
		if _, err := fmt.Sscan(strings.TrimSpace(string(out)), &n); err == nil && n > 0 {
			m.CPUs = n
		}
	}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		data, _ := io.ReadAll(f)
		f.Close()
		for _, line := range strings.Split(string(data), "\n") {
			k, v, ok := strings.Cut(line, ":")
			if ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if out, err := b.goCmd("env", "GOVERSION").Output(); err == nil {
		m.GoVersion = strings.TrimSpace(string(out))
	}
	if out, err := exec.Command("uname", "-r").Output(); err == nil {
		m.Kernel = strings.TrimSpace(string(out))
	}
	return m
}
