package lambdatest

import (
	"encoding/json"
	"fmt"
	"go/parser"
	"go/token"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/awslabs/goformation/v7"
	"github.com/awslabs/goformation/v7/cloudformation"
	"github.com/awslabs/goformation/v7/cloudformation/dynamodb"
	"github.com/awslabs/goformation/v7/cloudformation/global"
	"github.com/awslabs/goformation/v7/cloudformation/serverless"
	"github.com/awslabs/goformation/v7/intrinsics"
	"github.com/synthstack/byok/shared/app"
	"github.com/synthstack/byok/shared/routing"
	"github.com/synthstack/byok/shared/store"
)

// logicalID is the template's logical id of the function in
// ./functions/<name>: "chat" -> "ChatFunction".
func logicalID(name string) string { return strings.ToUpper(name[:1]) + name[1:] + "Function" }

// fnRevalidator is ./functions/revalidator: no HTTP route, so not in
// app.Functions() (docs/api.md §3).
const fnRevalidator = "revalidator"

// schedules maps each function without HTTP routes (not in app.Functions())
// to the EventBridge schedule expression that invokes it (docs/api.md §3).
var schedules = map[string]string{fnRevalidator: "rate(24 hours)"}

// eventFunctions are the functions without HTTP routes, sorted.
var eventFunctions = slices.Sorted(maps.Keys(schedules))

// fnWebhooks is ./functions/webhooks: fed by the events queue (SQS), no
// HTTP route, no schedule.
const fnWebhooks = "webhooks"

// functionDirs maps every AWS::Serverless::Function template.yaml must have
// to its package under ./functions: app.Functions() plus eventFunctions and
// the queue consumer.
func functionDirs() map[string]string {
	out := map[string]string{}
	for _, fn := range slices.Concat(app.Functions(), eventFunctions, []string{fnWebhooks}) {
		out[logicalID(fn)] = fn
	}
	return out
}

// Lambda adapters: an HTTP API function's main wraps its handler with
// aws-lambda-go-api-proxy (payload 2.0); a Function URL function's with
// aws-lambda-go's lambdaurl (InvokeMode RESPONSE_STREAM).
const (
	importHTTPAPI = "github.com/awslabs/aws-lambda-go-api-proxy/httpadapter"
	importURL     = "github.com/aws/aws-lambda-go/lambdaurl"
)

// trigger says how functions/<name>/main.go is invoked, from its imports:
// "HttpApi", "FunctionUrl" or "" (neither adapter, e.g. a scheduled function).
func trigger(t *testing.T, name string) string {
	t.Helper()
	path := filepath.Join(repoRoot(t), "functions", name, "main.go")
	f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
	if err != nil {
		t.Fatalf("functions/%s/main.go: %v", name, err)
	}
	var http, url bool
	for _, imp := range f.Imports {
		switch p, _ := strconv.Unquote(imp.Path.Value); p {
		case importHTTPAPI:
			http = true
		case importURL:
			url = true
		}
	}
	switch {
	case http && url:
		t.Fatalf("functions/%s/main.go imports both httpadapter and lambdaurl", name)
	case http:
		return "HttpApi"
	case url:
		return "FunctionUrl"
	}
	return ""
}

// The template is read with goformation. Its default intrinsic handlers
// resolve !Ref to parameter defaults, drop !GetAtt and evaluate conditions,
// which would hide what a property points at, so these are kept symbolically
// instead: "!Ref X", "!GetAtt X.Attr", "!Sub <string>", "!Not [<a>]",
// "!Equals [<a>, <b>]".
func symbolic(tag string) intrinsics.IntrinsicHandler {
	return func(_ string, in, _ any) any {
		switch v := in.(type) {
		case string:
			return tag + " " + v
		case []any:
			if tag == "!Sub" && len(v) > 0 { // [string, {vars}]
				return tag + " " + fmt.Sprint(v[0])
			}
			parts := make([]string, len(v))
			for i, p := range v {
				parts[i] = fmt.Sprint(p)
			}
			if tag == "!GetAtt" {
				return tag + " " + strings.Join(parts, ".")
			}
			return tag + " [" + strings.Join(parts, ", ") + "]"
		}
		return fmt.Sprint(tag, " ", in)
	}
}

// symbolicRef is symbolic("!Ref"), but a list parameter (CommaDelimitedList)
// stays a list, ["!Ref X"], where typed properties want one.
func symbolicRef(name string, in, tmpl any) any {
	if n, ok := in.(string); ok {
		doc, _ := tmpl.(map[string]any)
		params, _ := doc["Parameters"].(map[string]any)
		if p, _ := params[n].(map[string]any); p != nil && p["Type"] == "CommaDelimitedList" {
			return []any{"!Ref " + n}
		}
	}
	return symbolic("!Ref")(name, in, tmpl)
}

func processorOptions() *intrinsics.ProcessorOptions {
	return &intrinsics.ProcessorOptions{
		IntrinsicHandlerOverrides: map[string]intrinsics.IntrinsicHandler{
			"Ref":        symbolicRef,
			"Fn::If":     symbolic("!If"),
			"Fn::GetAtt": symbolic("!GetAtt"),
			"Fn::Sub":    symbolic("!Sub"),
			"Fn::Equals": symbolic("!Equals"),
			"Fn::Not":    symbolic("!Not"),
			"Fn::And":    symbolic("!And"),
			"Fn::Or":     symbolic("!Or"),
		},
	}
}

// untyped are properties goformation's types cannot hold (a symbolic !If in
// an integer field) or do not model (SAM's HttpApi AccessLogSettings): they
// are dropped from the typed view; tests read them with rawResource.
var untyped = map[string][]string{
	"AWS::Serverless::Function": {"ReservedConcurrentExecutions"},
	"AWS::Serverless::HttpApi":  {"AccessLogSettings", "DefaultRouteSettings"},
}

func loadTemplate(t *testing.T) *cloudformation.Template {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "template.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	js, err := intrinsics.ProcessYAML(data, processorOptions())
	if err != nil {
		t.Fatalf("process template.yaml: %v", err)
	}
	var doc map[string]any
	if err := json.Unmarshal(js, &doc); err != nil {
		t.Fatal(err)
	}
	resources, _ := doc["Resources"].(map[string]any)
	for _, r := range resources {
		res, _ := r.(map[string]any)
		props, _ := res["Properties"].(map[string]any)
		for _, k := range untyped[fmt.Sprint(res["Type"])] {
			delete(props, k)
		}
	}
	if js, err = json.Marshal(doc); err != nil {
		t.Fatal(err)
	}
	// Already processed: no intrinsics are left for goformation to resolve.
	tmpl, err := goformation.ParseJSONWithOptions(js, &intrinsics.ProcessorOptions{})
	if err != nil {
		t.Fatalf("parse template.yaml with goformation: %v", err)
	}
	return tmpl
}

// rawResource returns a resource's Properties as plain JSON values (same
// symbolic intrinsics), for what goformation's types do not model (its
// FunctionUrlConfig.Cors has the API Gateway shape, not the Function URL one).
func rawResource(t *testing.T, id string) map[string]any {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "template.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	js, err := intrinsics.ProcessYAML(data, processorOptions())
	if err != nil {
		t.Fatalf("process template.yaml: %v", err)
	}
	var doc struct {
		Resources map[string]struct {
			Properties map[string]any
			DependsOn  any
		}
	}
	if err := json.Unmarshal(js, &doc); err != nil {
		t.Fatal(err)
	}
	r, ok := doc.Resources[id]
	if !ok {
		t.Fatalf("no resource %s", id)
	}
	return r.Properties
}

func str(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// globalFunction returns Globals.Function, or an empty one.
func globalFunction(t *testing.T, tmpl *cloudformation.Template) *global.Function {
	t.Helper()
	res, ok := tmpl.Globals["Function"]
	if !ok {
		return &global.Function{}
	}
	g, ok := res.(*global.Function)
	if !ok {
		t.Fatalf("Globals.Function parsed as %T", res)
	}
	return g
}

// effective is a function's configuration after Globals are applied.
type effective struct {
	Runtime, Handler string
	Architectures    []string
	MemorySize       int
	Timeout          int
	Env              map[string]string
}

func effectiveFunction(t *testing.T, tmpl *cloudformation.Template, f *serverless.Function) effective {
	t.Helper()
	g := globalFunction(t, tmpl)
	e := effective{Runtime: str(g.Runtime), Handler: str(g.Handler), Env: map[string]string{}}
	if g.Architectures != nil {
		e.Architectures = *g.Architectures
	}
	if g.MemorySize != nil {
		e.MemorySize = *g.MemorySize
	}
	if g.Timeout != nil {
		e.Timeout = *g.Timeout
	}
	if g.Environment != nil {
		for k, v := range g.Environment.Variables {
			e.Env[k] = v
		}
	}
	if f.Runtime != nil {
		e.Runtime = *f.Runtime
	}
	if f.Handler != nil {
		e.Handler = *f.Handler
	}
	if len(f.Architectures) > 0 {
		e.Architectures = f.Architectures
	}
	if f.MemorySize != nil {
		e.MemorySize = *f.MemorySize
	}
	if f.Timeout != nil {
		e.Timeout = *f.Timeout
	}
	if f.Environment != nil {
		for k, v := range f.Environment.Variables {
			e.Env[k] = v
		}
	}
	return e
}

// ---------------------------------------------------------------- Makefile

type makefile struct {
	vars  map[string]string
	rules map[string][]string // target -> recipe lines
}

var (
	makeVarRe  = regexp.MustCompile(`^([A-Za-z_][A-Za-z0-9_]*)\s*(?::=|\?=|=)\s*(.*)$`)
	makeRuleRe = regexp.MustCompile(`^([^\s:=#][^:=]*?):(?:[^=]|$)`)
	makeRefRe  = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)
)

func parseMakefile(t *testing.T) makefile {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	mk := makefile{vars: map[string]string{}, rules: map[string][]string{}}
	cur := ""
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "\t") {
			if cur != "" {
				mk.rules[cur] = append(mk.rules[cur], strings.TrimSpace(line))
			}
			continue
		}
		cur = ""
		if m := makeVarRe.FindStringSubmatch(line); m != nil {
			mk.vars[m[1]] = strings.TrimSpace(m[2])
			continue
		}
		if m := makeRuleRe.FindStringSubmatch(line); m != nil {
			for _, target := range strings.Fields(m[1]) {
				cur = target
				if _, ok := mk.rules[target]; !ok {
					mk.rules[target] = nil
				}
			}
		}
	}
	return mk
}

// expand substitutes the Makefile's own variables; others ($(ARTIFACTS_DIR),
// set by SAM) stay as they are.
func (mk makefile) expand(s string) string {
	for range 8 {
		next := makeRefRe.ReplaceAllStringFunc(s, func(ref string) string {
			name := makeRefRe.FindStringSubmatch(ref)[1]
			if v, ok := mk.vars[name]; ok && name != "ARTIFACTS_DIR" {
				return v
			}
			return ref
		})
		if next == s {
			break
		}
		s = next
	}
	return s
}

var goArch = map[string]string{"arm64": "arm64", "x86_64": "amd64"}

// ---------------------------------------------------------------- tests

func TestFunctionsBuildWithMakefile(t *testing.T) {
	root := repoRoot(t)
	tmpl := loadTemplate(t)
	mk := parseMakefile(t)
	fns := tmpl.GetAllServerlessFunctionResources()
	if len(fns) == 0 {
		t.Fatal("template.yaml declares no AWS::Serverless::Function")
	}
	var ids []string
	for id := range fns {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	dirs := functionDirs()
	want := make([]string, 0, len(dirs))
	for id := range dirs {
		want = append(want, id)
	}
	sort.Strings(want)
	if !slices.Equal(ids, want) {
		t.Errorf("template functions = %v, want %v (app.Functions() and eventFunctions)", ids, want)
	}

	for _, id := range ids {
		f := fns[id]
		t.Run(id, func(t *testing.T) {
			if bm := fmt.Sprint(f.AWSCloudFormationMetadata["BuildMethod"]); bm != "makefile" {
				t.Errorf("Metadata.BuildMethod = %q, want makefile", bm)
			}
			if f.CodeUri == nil || f.CodeUri.String == nil {
				t.Fatal("CodeUri must be a local path")
			}
			codeDir := filepath.Join(root, *f.CodeUri.String)
			for _, must := range []string{"Makefile", "go.mod"} {
				if _, err := os.Stat(filepath.Join(codeDir, must)); err != nil {
					t.Errorf("CodeUri %q has no %s (sam build runs make there): %v", *f.CodeUri.String, must, err)
				}
			}
			e := effectiveFunction(t, tmpl, f)
			if e.Runtime != "provided.al2023" || e.Handler != "bootstrap" {
				t.Errorf("Runtime/Handler = %q/%q, want provided.al2023/bootstrap", e.Runtime, e.Handler)
			}
			if len(e.Architectures) != 1 || goArch[e.Architectures[0]] == "" {
				t.Fatalf("Architectures = %v, want exactly one of arm64/x86_64", e.Architectures)
			}
			dir, ok := dirs[id]
			if !ok {
				t.Fatalf("no functions/<name> known for %s", id)
			}
			if _, err := os.Stat(filepath.Join(root, "functions", dir, "main.go")); err != nil {
				t.Fatalf("functions/%s/main.go: %v", dir, err)
			}
			switch trigger(t, dir) {
			case "FunctionUrl":
				// A streamed answer may run for minutes, but must outlive the wait for
				// the provider's first byte.
				header := 60 * time.Second
				if d, err := time.ParseDuration(e.Env["UPSTREAM_HEADER_TIMEOUT"]); err == nil {
					header = d
				}
				if e.Timeout > 900 || time.Duration(e.Timeout)*time.Second <= header {
					t.Errorf("Timeout = %d, want more than UPSTREAM_HEADER_TIMEOUT (%s) and at most 900", e.Timeout, header)
				}
			case "HttpApi":
				if e.Timeout <= 0 || e.Timeout > 30 {
					t.Errorf("Timeout = %d, want 1..30 (HTTP API integrations time out at 30 s)", e.Timeout)
				}
			default: // invoked by an event (schedule): a whole pass in one invocation
				if e.Timeout <= 0 || e.Timeout > 900 {
					t.Errorf("Timeout = %d, want 1..900 (Lambda's maximum)", e.Timeout)
				}
			}
			target := "build-" + id
			recipe, ok := mk.rules[target]
			if !ok || len(recipe) == 0 {
				t.Fatalf("Makefile has no %q target with a recipe (sam build calls it)", target+":")
			}
			cmd := mk.expand(strings.Join(recipe, " "))
			fields := strings.Fields(cmd)
			var pkgs []string
			for _, f := range fields {
				if strings.HasPrefix(f, "./functions/") {
					pkgs = append(pkgs, f)
				}
			}
			if want := "./functions/" + dir; !slices.Equal(pkgs, []string{want}) {
				t.Errorf("%s builds %v, want exactly %s", target, pkgs, want)
			}
			for _, must := range []string{"GOOS=linux", "CGO_ENABLED=0", "GOARCH=" + goArch[e.Architectures[0]], "lambda.norpc"} {
				if !strings.Contains(cmd, must) {
					t.Errorf("%s recipe lacks %s: %s", target, must, cmd)
				}
			}
			if i := slices.Index(fields, "-o"); i < 0 || i+1 >= len(fields) || fields[i+1] != "$(ARTIFACTS_DIR)/bootstrap" {
				t.Errorf("%s must write $(ARTIFACTS_DIR)/bootstrap: %s", target, cmd)
			}
		})
	}

	// No stale build target for a function the template no longer has.
	for target := range mk.rules {
		if id, ok := strings.CutPrefix(target, "build-"); ok && strings.HasSuffix(id, "Function") {
			if _, ok := fns[id]; !ok {
				t.Errorf("Makefile target %s has no function %s in template.yaml", target, id)
			}
		}
	}
}

func TestTablesMatchStore(t *testing.T) {
	tmpl := loadTemplate(t)
	tables := tmpl.GetAllDynamoDBTableResources()
	defs := store.Tables()
	if len(tables) != len(defs) {
		t.Errorf("template has %d DynamoDB tables, store.Tables() %d", len(tables), len(defs))
	}
	for _, d := range defs {
		t.Run(d.Logical, func(t *testing.T) {
			tb, ok := tables[d.Logical]
			if !ok {
				t.Fatalf("no AWS::DynamoDB::Table with logical id %s (store.TableDef.Logical)", d.Logical)
			}
			if got, want := str(tb.TableName), "!Sub ${TablePrefix}"+d.Suffix; got != want {
				t.Errorf("TableName = %q, want %q (TABLE_PREFIX + Suffix)", got, want)
			}
			if str(tb.BillingMode) != "PAY_PER_REQUEST" {
				t.Errorf("BillingMode = %q, want PAY_PER_REQUEST", str(tb.BillingMode))
			}
			keys := map[string]string{}
			for _, k := range tb.KeySchema {
				keys[k.KeyType] = k.AttributeName
			}
			if len(keys) != 2 || keys["HASH"] != d.PartitionKey || keys["RANGE"] != d.SortKey {
				t.Errorf("KeySchema = %v, want HASH %s, RANGE %s", keys, d.PartitionKey, d.SortKey)
			}
			attrs := map[string]string{}
			for _, a := range tb.AttributeDefinitions {
				attrs[a.AttributeName] = a.AttributeType
			}
			wantAttrs := map[string]string{}
			for _, a := range d.KeyAttributes() {
				wantAttrs[a] = "S"
			}
			if !maps.Equal(attrs, wantAttrs) {
				t.Errorf("AttributeDefinitions = %v, want %v", attrs, wantAttrs)
			}
			// Global secondary indexes: the same names and keys as store.Tables(),
			// projecting every attribute (the usage reports read whole rows).
			gsis := map[string]string{}
			for _, g := range tb.GlobalSecondaryIndexes {
				ks := map[string]string{}
				for _, k := range g.KeySchema {
					ks[k.KeyType] = k.AttributeName
				}
				proj := ""
				if g.Projection != nil {
					proj = str(g.Projection.ProjectionType)
				}
				gsis[g.IndexName] = ks["HASH"] + "/" + ks["RANGE"] + "/" + proj
			}
			wantGSIs := map[string]string{}
			for _, ix := range d.Indexes {
				wantGSIs[ix.Name] = ix.PartitionKey + "/" + ix.SortKey + "/ALL"
			}
			if !maps.Equal(gsis, wantGSIs) {
				t.Errorf("GlobalSecondaryIndexes = %v, want %v (name: HASH/RANGE/projection)", gsis, wantGSIs)
			}
			ttl := tb.TimeToLiveSpecification
			switch {
			case d.TTLAttribute == "" && ttl != nil && ttl.Enabled:
				t.Errorf("TTL enabled on %s, store.Tables() has none", d.Logical)
			case d.TTLAttribute != "" && (ttl == nil || !ttl.Enabled || str(ttl.AttributeName) != d.TTLAttribute):
				t.Errorf("TimeToLiveSpecification = %s, want enabled on %q", describeTTL(ttl), d.TTLAttribute)
			}
			if p := tb.PointInTimeRecoverySpecification; p == nil || p.PointInTimeRecoveryEnabled == nil || !*p.PointInTimeRecoveryEnabled {
				t.Error("point-in-time recovery must be enabled")
			}
			if s := tb.SSESpecification; s == nil || !s.SSEEnabled {
				t.Error("SSESpecification.SSEEnabled must be true")
			}
			if tb.AWSCloudFormationDeletionPolicy != "Retain" {
				t.Errorf("DeletionPolicy = %q, want Retain", tb.AWSCloudFormationDeletionPolicy)
			}
		})
	}
	for id := range tables {
		if !slices.ContainsFunc(defs, func(d store.TableDef) bool { return d.Logical == id }) {
			t.Errorf("table %s is not in store.Tables()", id)
		}
	}
}

func describeTTL(ttl *dynamodb.Table_TimeToLiveSpecification) string {
	if ttl == nil {
		return "none"
	}
	return fmt.Sprintf("{AttributeName: %q, Enabled: %v}", str(ttl.AttributeName), ttl.Enabled)
}

// TestHTTPRoutes checks that the HTTP API routes of each function are
// exactly the routes its code serves (app.Routes()), and that a Function URL
// function (chat) has none: it is reached through its URL only.
func TestHTTPRoutes(t *testing.T) {
	tmpl := loadTemplate(t)
	apis := tmpl.GetAllServerlessHttpApiResources()
	if len(apis) != 1 {
		t.Fatalf("want exactly one AWS::Serverless::HttpApi, got %d", len(apis))
	}
	var apiID string
	for id := range apis {
		apiID = id
	}
	got := map[string][]string{} // logical id -> routes
	owner := map[string]string{} // route -> logical id
	for id, f := range tmpl.GetAllServerlessFunctionResources() {
		for name, ev := range f.Events {
			if ev.Type != "HttpApi" {
				continue
			}
			if ev.Properties == nil || ev.Properties.HttpApiEvent == nil {
				t.Errorf("%s.%s: HttpApi event properties did not parse", id, name)
				continue
			}
			h := ev.Properties.HttpApiEvent
			route := str(h.Method) + " " + str(h.Path)
			if prev, dup := owner[route]; dup {
				t.Errorf("route %s declared twice (%s and %s)", route, prev, id)
			}
			owner[route] = id
			got[id] = append(got[id], route)
			if str(h.ApiId) != "!Ref "+apiID {
				t.Errorf("%s.%s: ApiId = %q, want !Ref %s", id, name, str(h.ApiId), apiID)
			}
			if str(h.PayloadFormatVersion) != "2.0" {
				t.Errorf("%s.%s: PayloadFormatVersion = %q, want 2.0 (httpadapter.NewV2)", id, name, str(h.PayloadFormatVersion))
			}
		}
	}

	routes := app.Routes()
	for _, fn := range slices.Concat(app.Functions(), eventFunctions) {
		id := logicalID(fn)
		have := slices.Sorted(slices.Values(got[id]))
		delete(got, id)
		var want []string
		if trigger(t, fn) == "HttpApi" {
			// A Go pattern's {$} (exact match) is the plain path in the API.
			want = slices.Sorted(slices.Values(slices.Collect(func(yield func(string) bool) {
				for _, r := range routes[fn] {
					if !yield(strings.TrimSuffix(r, "{$}")) {
						return
					}
				}
			})))
			if len(want) == 0 {
				t.Errorf("%s: app.Routes() lists no route for %q", id, fn)
			}
		}
		if !slices.Equal(have, want) {
			t.Errorf("%s HTTP API routes =\n  %s\nwant (app.Routes()[%q], none for a Function URL function)\n  %s",
				id, strings.Join(have, "\n  "), fn, strings.Join(want, "\n  "))
		}
	}
	for id, rs := range got {
		t.Errorf("%s has HTTP API routes %v but serves none in app.Routes()", id, rs)
	}
	if _, ok := tmpl.Outputs["ApiUrl"]; !ok {
		t.Error("Outputs.ApiUrl missing")
	}
}

// corsHeaders are the request headers a browser client of the chat URL
// sends: the bearer token, JSON, the SDKs' own key headers (which carry our
// token, docs/api.md §4) and the idempotency key of a credits request.
var corsHeaders = []string{"Authorization", "Content-Type", "x-api-key", "api-key", "Idempotency-Key"}

// TestFunctionURLs checks the Function URL of every function whose main uses
// lambdaurl: public (auth is verified in code, docs/api.md §4), streaming, CORS for
// its routes' methods and the client headers, and an output with its URL.
// No other function may have a URL that would bypass the HTTP API.
func TestFunctionURLs(t *testing.T) {
	tmpl := loadTemplate(t)
	fns := tmpl.GetAllServerlessFunctionResources()
	routes := app.Routes()
	urls := 0
	for _, fn := range slices.Concat(app.Functions(), eventFunctions) {
		id := logicalID(fn)
		f, ok := fns[id]
		if !ok {
			continue // TestFunctionsBuildWithMakefile reports it
		}
		t.Run(id, func(t *testing.T) {
			if trigger(t, fn) != "FunctionUrl" {
				if f.FunctionUrlConfig != nil {
					t.Errorf("has a FunctionUrlConfig, but functions/%s is not a lambdaurl handler", fn)
				}
				return
			}
			urls++
			u := f.FunctionUrlConfig
			if u == nil {
				t.Fatal("no FunctionUrlConfig (functions/" + fn + " serves through lambdaurl)")
			}
			if u.AuthType != "NONE" {
				t.Errorf("AuthType = %q, want NONE (the bearer token is verified in code)", u.AuthType)
			}
			if str(u.InvokeMode) != "RESPONSE_STREAM" {
				t.Errorf("InvokeMode = %q, want RESPONSE_STREAM (lambdaurl only streams)", str(u.InvokeMode))
			}

			urlCfg, _ := rawResource(t, id)["FunctionUrlConfig"].(map[string]any)
			cors, _ := urlCfg["Cors"].(map[string]any)
			if cors == nil {
				t.Fatal("FunctionUrlConfig.Cors missing (browser clients)")
			}
			if cors["AllowOrigins"] == nil {
				t.Error("Cors.AllowOrigins missing")
			}
			if c, _ := cors["AllowCredentials"].(bool); c {
				t.Error("Cors.AllowCredentials must not be true: requests carry a bearer token, not cookies")
			}
			lower := func(xs []string) []string {
				out := make([]string, len(xs))
				for i, x := range xs {
					out[i] = strings.ToLower(x)
				}
				return out
			}
			allowed := lower(strList(cors["AllowHeaders"]))
			for _, h := range corsHeaders {
				if !slices.Contains(allowed, strings.ToLower(h)) && !slices.Contains(allowed, "*") {
					t.Errorf("Cors.AllowHeaders %v lacks %s", strList(cors["AllowHeaders"]), h)
				}
			}
			var methods []string
			for _, r := range routes[fn] {
				m, _, _ := strings.Cut(r, " ")
				if !slices.Contains(methods, m) {
					methods = append(methods, m)
				}
			}
			sort.Strings(methods)
			if got := slices.Sorted(slices.Values(strList(cors["AllowMethods"]))); !slices.Equal(got, methods) {
				t.Errorf("Cors.AllowMethods = %v, want the methods of app.Routes()[%q]: %v", got, fn, methods)
			}
			if !slices.Contains(lower(strList(cors["ExposeHeaders"])), "x-byok-route") {
				t.Error("Cors.ExposeHeaders must expose X-Byok-Route to browser clients")
			}

			name := strings.TrimSuffix(id, "Function") + "Url"
			out, ok := tmpl.Outputs[name]
			if want := "!GetAtt " + id + "Url.FunctionUrl"; !ok || fmt.Sprint(out.Value) != want {
				t.Errorf("Outputs.%s = %v, want %s (the URL SAM creates)", name, out.Value, want)
			}
		})
	}
	if urls == 0 {
		t.Error("no function serves through a Function URL; chat must (docs/api.md §3)")
	}
}

func TestParametersAndEnvironment(t *testing.T) {
	tmpl := loadTemplate(t)
	p := tmpl.Parameters
	for _, name := range []string{"TablePrefix", "NotificationEmail", "DefaultRoutingMode", "AuthIssuer", "AuthAudience",
		"AuthJwksUrl", "AuthJwtSecretArn", "CorsAllowedOrigins", "CopilotDefaultModel", "HttpApiThrottleRate",
		"HttpApiThrottleBurst", "ChatReservedConcurrency", "RevalidatorReservedConcurrency"} {
		if _, ok := p[name]; !ok {
			t.Errorf("parameter %s missing", name)
		}
	}
	// The HS256 secret is never a parameter (nor an environment variable).
	for name, param := range p {
		if param.NoEcho != nil && *param.NoEcho {
			t.Errorf("parameter %s is NoEcho: secrets go in Secrets Manager, by ARN", name)
		}
	}
	var modes []string
	for _, m := range p["DefaultRoutingMode"].AllowedValues {
		modes = append(modes, fmt.Sprint(m))
	}
	var want []string
	for _, m := range routing.Modes() {
		want = append(want, string(m))
	}
	if !slices.Equal(modes, want) {
		t.Errorf("DefaultRoutingMode AllowedValues = %v, want routing.Modes() %v", modes, want)
	}

	wantEnv := map[string]string{
		"TABLE_PREFIX":         "!Ref TablePrefix",
		"SNS_TOPIC_ARN":        "!Ref EventsTopic",
		"DEFAULT_ROUTING_MODE": "!Ref DefaultRoutingMode",
		"AUTH_JWT_SECRET_ARN":  "!If [UseJwks, !Ref AWS::NoValue, " + jwtSecretArn + "]",
		"AUTH_JWKS_URL":        "!Ref AuthJwksUrl",
		"AUTH_ISSUER":          "!Ref AuthIssuer",
		"AUTH_AUDIENCE":        "!Ref AuthAudience",
	}
	keyUsers := map[string]bool{"KeysFunction": true, "ValidateFunction": true, "ChatFunction": true,
		logicalID(fnRevalidator): true, logicalID(fnWebhooks): true}

	// Everything app.ConfigFromEnv reads must be set on chat (the function
	// using all of it), except the internal provider keys: they are never
	// plain environment variables in AWS but come from the secret.
	var read []string
	app.ConfigFromEnv(func(k string) string {
		if !slices.Contains(read, k) {
			read = append(read, k)
		}
		return ""
	})
	internalKeyEnv := []string{"INTERNAL_OPENAI_API_KEY", "INTERNAL_ANTHROPIC_API_KEY",
		"INTERNAL_GOOGLE_API_KEY", "INTERNAL_MISTRAL_API_KEY", "INTERNAL_COHERE_API_KEY"}
	// Set by the Lambda runtime itself (reserved: a template may not set it).
	lambdaProvided := []string{"AWS_LAMBDA_FUNCTION_NAME"}
	for _, k := range internalKeyEnv {
		if !slices.Contains(read, k) {
			t.Errorf("app.ConfigFromEnv no longer reads %s; update this test", k)
		}
	}
	secretEnv := map[string]string{"INTERNAL_KEYS_SECRET_ARN": "!Ref InternalProviderKeysSecret"}

	for id, f := range tmpl.GetAllServerlessFunctionResources() {
		env := effectiveFunction(t, tmpl, f).Env
		if id == "ChatFunction" {
			for _, k := range read {
				if _, ok := env[k]; !ok && !slices.Contains(internalKeyEnv, k) && !slices.Contains(lambdaProvided, k) && k != "AUTH_JWT_SECRET" {
					t.Errorf("%s: %s (read by app.ConfigFromEnv) is not set", id, k)
				}
			}
			for k, v := range secretEnv {
				if env[k] != v {
					t.Errorf("%s: %s = %q, want %q", id, k, env[k], v)
				}
			}
			for _, k := range []string{"SETTINGS_CACHE_TTL", "UPSTREAM_HEADER_TIMEOUT"} {
				if d, err := time.ParseDuration(env[k]); err != nil || d <= 0 {
					t.Errorf("%s: %s = %q, want a positive Go duration", id, k, env[k])
				}
			}
		} else {
			for k := range secretEnv {
				if _, has := env[k]; has {
					t.Errorf("%s: %s set; only chat may read the internal keys", id, k)
				}
			}
		}
		for _, k := range internalKeyEnv {
			if _, has := env[k]; has {
				t.Errorf("%s: %s must not be in the template (the keys live in InternalProviderKeysSecret)", id, k)
			}
		}
		// Anyone with lambda:GetFunctionConfiguration reads the environment.
		if _, has := env["AUTH_JWT_SECRET"]; has {
			t.Errorf("%s: AUTH_JWT_SECRET must not be in the template (AUTH_JWT_SECRET_ARN names the secret)", id)
		}
		for k, v := range wantEnv {
			if env[k] != v {
				t.Errorf("%s: %s = %q, want %q", id, k, env[k], v)
			}
		}
		for _, k := range []string{"OPENAI_BASE_URL", "ANTHROPIC_BASE_URL"} {
			if !strings.HasPrefix(env[k], "https://") {
				t.Errorf("%s: %s = %q, want an https URL", id, k, env[k])
			}
		}
		if _, has := env["KMS_KEY_ID"]; has != keyUsers[id] {
			t.Errorf("%s: KMS_KEY_ID set = %v, want %v (only functions the key policy admits)", id, has, keyUsers[id])
		}
		if has := env["KMS_KEY_ID"]; keyUsers[id] && has != "!GetAtt EncryptionKey.Arn" {
			t.Errorf("%s: KMS_KEY_ID = %q, want !GetAtt EncryptionKey.Arn", id, has)
		}
		for _, k := range []string{"ENCRYPTION_KEY", "ENCRYPTION_KEY_PREVIOUS"} {
			if _, has := env[k]; has {
				t.Errorf("%s: %s must not be in the template (KMS wraps keys in AWS)", id, k)
			}
		}
	}
}

// TestInternalKeysSecret checks the secret holding the platform's provider
// keys: created with an empty value for each provider app.ConfigFromEnv has
// an internal key for, and retained on delete.
func TestInternalKeysSecret(t *testing.T) {
	tmpl := loadTemplate(t)
	s, err := tmpl.GetSecretsManagerSecretWithName("InternalProviderKeysSecret")
	if err != nil {
		t.Fatal(err)
	}
	if s.GenerateSecretString != nil {
		t.Error("GenerateSecretString would put a random value where operators put provider keys")
	}
	var v map[string]string
	if err := json.Unmarshal([]byte(str(s.SecretString)), &v); err != nil {
		t.Fatalf("SecretString %q is not a JSON object of strings: %v", str(s.SecretString), err)
	}
	var want []string
	for p := range app.ConfigFromEnv(func(string) string { return "" }).InternalKeys {
		want = append(want, string(p))
	}
	sort.Strings(want)
	var got []string
	for k, val := range v {
		got = append(got, k)
		if val != "" {
			t.Errorf("SecretString carries a value for %s: keys are never in the template", k)
		}
	}
	sort.Strings(got)
	// The SecretString is written on creation and whenever it changes (which
	// would wipe the operators' keys), so it keeps its original providers; the
	// documented shape names every provider chat reads.
	for _, k := range got {
		if !slices.Contains(want, k) {
			t.Errorf("SecretString key %s is not a provider of Config.InternalKeys %v", k, want)
		}
	}
	meta, _ := tmpl.Metadata["InternalProviderKeysSecret"].(map[string]any)
	shape, _ := meta["SecretStringShape"].(map[string]any)
	for _, p := range want {
		if _, ok := shape[p]; !ok {
			t.Errorf("Metadata.InternalProviderKeysSecret.SecretStringShape does not document %s", p)
		}
	}
	if s.AWSCloudFormationDeletionPolicy != "Retain" {
		t.Errorf("DeletionPolicy = %q, want Retain (operators' keys)", s.AWSCloudFormationDeletionPolicy)
	}
	if _, ok := tmpl.Metadata["InternalProviderKeysSecret"]; !ok {
		t.Error("Metadata.InternalProviderKeysSecret must document the secret's JSON shape")
	}
}

// statements returns the statements of a policy document.
func statements(t *testing.T, doc any) []map[string]any {
	t.Helper()
	m, ok := doc.(map[string]any)
	if !ok {
		t.Fatalf("policy document is %T", doc)
	}
	var out []map[string]any
	switch s := m["Statement"].(type) {
	case []any:
		for _, x := range s {
			out = append(out, x.(map[string]any))
		}
	case map[string]any:
		out = append(out, s)
	}
	return out
}

func strList(v any) []string {
	switch x := v.(type) {
	case string:
		return []string{x}
	case []any:
		out := make([]string, 0, len(x))
		for _, e := range x {
			out = append(out, fmt.Sprint(e))
		}
		return out
	}
	return nil
}

// grants lists "action on resource" for every Allow statement applying to role.
func grants(t *testing.T, tmpl *cloudformation.Template, role string) []string {
	t.Helper()
	r, err := tmpl.GetIAMRoleWithName(role)
	if err != nil {
		t.Fatalf("role %s: %v", role, err)
	}
	var stmts []map[string]any
	for _, p := range r.Policies {
		stmts = append(stmts, statements(t, p.PolicyDocument)...)
	}
	for _, p := range tmpl.GetAllIAMPolicyResources() {
		if slices.Contains(p.Roles, "!Ref "+role) {
			stmts = append(stmts, statements(t, p.PolicyDocument)...)
		}
	}
	if len(r.ManagedPolicyArns) > 0 {
		t.Errorf("role %s has managed policies %v; grant only what the function needs", role, r.ManagedPolicyArns)
	}
	var out []string
	for _, s := range stmts {
		if s["Effect"] != "Allow" {
			continue
		}
		for _, a := range strList(s["Action"]) {
			for _, res := range strList(s["Resource"]) {
				out = append(out, a+" on "+res)
			}
		}
	}
	sort.Strings(out)
	return out
}

// jwtSecretArn is the HS256 token secret: the operator's, or the generated one.
const jwtSecretArn = "!If [HasJwtSecretArn, !Ref AuthJwtSecretArn, !Ref AuthJwtSecret]"

func TestLeastPrivilege(t *testing.T) {
	tmpl := loadTemplate(t)
	const table, key, topic = "!GetAtt MainTable.Arn", "!GetAtt EncryptionKey.Arn", "!Ref EventsTopic"
	const ledger, usage, secret = "!GetAtt CreditTransactionsTable.Arn", "!GetAtt UsageTable.Arn", "!Ref InternalProviderKeysSecret"
	const audio = "!Sub ${AudioBucket.Arn}/*"
	orgUsage := "!Sub ${UsageTable.Arn}/index/" + store.OrgUsageIndex.Name
	jwt := []string{"secretsmanager:GetSecretValue on " + jwtSecretArn}
	on := func(res string, actions ...string) []string {
		out := make([]string, len(actions))
		for i, a := range actions {
			out[i] = a + " on " + res
		}
		return out
	}
	// What each function's code calls, no more. TransactWriteItems is not an
	// IAM action: each item is authorized as PutItem/UpdateItem/DeleteItem/
	// ConditionCheckItem on its table (credits.Ledger: reserve, settle and
	// release from chat, Grant from admin).
	// Every function that verifies tokens reads the HS256 secret (jwt).
	want := map[string][]string{
		// keys.Service: GetSettings (GetItem), GetUser (Query), PutKey (PutItem),
		// DeleteKey (DeleteItem); Seal (GenerateDataKey). No route opens a
		// provider key. shared/webhooks: the owner's counter in the create and
		// delete transactions and PATCH (UpdateItem); the test route opens the
		// endpoint's signing secret (Decrypt, webhook secrets only: below).
		"KeysFunction": slices.Concat(
			on(table, "dynamodb:GetItem", "dynamodb:Query", "dynamodb:PutItem", "dynamodb:DeleteItem", "dynamodb:UpdateItem"),
			on(key, "kms:GenerateDataKey", "kms:Decrypt"),
			on(topic, "sns:Publish"), jwt),
		// keys.Service.Test: GetUser (Query), Open (Decrypt), Record ->
		// UpdateKeyStatus (UpdateItem).
		"ValidateFunction": slices.Concat(
			on(table, "dynamodb:Query", "dynamodb:UpdateItem"),
			on(key, "kms:Decrypt"),
			on(topic, "sns:Publish"), jwt),
		"AdminFunction": slices.Concat(
			on(table, "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"),
			on(ledger, "dynamodb:PutItem"), jwt),
		"ChatFunction": slices.Concat(
			on(table, "dynamodb:GetItem", "dynamodb:Query", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem",
				"dynamodb:ConditionCheckItem"),
			on(ledger, "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"),
			on(usage, "dynamodb:PutItem"),
			on(key, "kms:Decrypt"),
			on(topic, "sns:Publish"),
			on(secret, "secretsmanager:GetSecretValue"),
			// shared/audio: presigned PUT, read and delete of <user>/<upload>.
			on(audio, "s3:PutObject", "s3:GetObject", "s3:DeleteObject"), jwt),
		// GET /v1/credits: credits.Ledger Balance (GetItem of the account) and
		// List (Query of the ledger); GET /v1/usage: usage.Service Query of
		// api_key_usage and of credit_transactions.
		// ?org= (an org admin's view) queries the org_usage index.
		"UsageFunction": slices.Concat(
			on(table, "dynamodb:GetItem"),
			on(ledger, "dynamodb:Query"),
			on(usage, "dynamodb:Query"),
			on(orgUsage, "dynamodb:Query"), jwt),
		// GET /v1/usage/export: the same Queries, streamed.
		"ExportFunction": slices.Concat(
			on(ledger, "dynamodb:Query"),
			on(usage, "dynamodb:Query"),
			on(orgUsage, "dynamodb:Query"), jwt),
		// shared/revalidate: store.ScanKeys (parallel Scan), store.GetAccount
		// (GetItem), keys.Service.Record -> store.UpdateKeyStatus (conditional
		// UpdateItem) and the transition event (sns:Publish); vault.Open
		// (kms:Decrypt). Then credits.Ledger.ReleaseStale: Scan of the ledger,
		// Release transactions (account UpdateItem, REQ# UpdateItem, ledger row
		// PutItem) and GetItem of the request state on a conflict.
		// The single-pass lease row (revalidate.Lease): conditional PutItem,
		// UpdateItem to renew, DeleteItem to release. No token verifier.
		logicalID(fnRevalidator): slices.Concat(
			on(table, "dynamodb:Scan", "dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:PutItem", "dynamodb:DeleteItem"),
			on(ledger, "dynamodb:Scan", "dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:PutItem"),
			on(key, "kms:Decrypt"),
			on(topic, "sns:Publish")),
		// shared/webhooks Consumer: Store.List (Query), Get / Delivered /
		// GetAccount (GetItem), RecordAttempt (PutItem), RecordDelivered
		// (BatchWriteItem: the marker and the attempt),
		// MarkFailing / MarkHealthy / Disable (UpdateItem); vault.Open of the
		// secret; the disabled notice; the event source mapping's reads and
		// deletes plus re-queued retries, and exhausted jobs to the DLQ.
		logicalID(fnWebhooks): slices.Concat(
			on(table, "dynamodb:Query", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem",
				"dynamodb:BatchWriteItem"),
			on(key, "kms:Decrypt"),
			on(topic, "sns:Publish"),
			on("!GetAtt WebhooksQueue.Arn", "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes",
				"sqs:ChangeMessageVisibility", "sqs:SendMessage"),
			on("!GetAtt WebhooksDeadLetterQueue.Arn", "sqs:SendMessage")),
	}
	for id := range functionDirs() {
		if _, ok := want[id]; !ok {
			t.Errorf("%s: no expected grants in this test; add them", id)
		}
	}
	fns := tmpl.GetAllServerlessFunctionResources()
	roleOf := map[string]string{}
	for id, f := range fns {
		role, ok := strings.CutPrefix(str(f.Role), "!GetAtt ")
		role, ok2 := strings.CutSuffix(role, ".Arn")
		if !ok || !ok2 {
			t.Errorf("%s: Role = %q, want !GetAtt <Role>.Arn (an explicit role)", id, str(f.Role))
			continue
		}
		roleOf[id] = role
		if f.Policies != nil {
			t.Errorf("%s: SAM Policies are ignored with an explicit Role; put them on %s", id, role)
		}

		// Logging: /aws/lambda/<FunctionName> exists with 30-day retention and
		// the role may write only there.
		name, ok := strings.CutPrefix(str(f.FunctionName), "!Sub ")
		if !ok {
			t.Errorf("%s: FunctionName = %q, want an explicit !Sub name", id, str(f.FunctionName))
		}
		logGroup := ""
		for lid, lg := range tmpl.GetAllLogsLogGroupResources() {
			if str(lg.LogGroupName) == "!Sub /aws/lambda/"+name {
				logGroup = lid
				if lg.RetentionInDays == nil || *lg.RetentionInDays != 30 {
					t.Errorf("%s: RetentionInDays missing or not 30", lid)
				}
			}
		}
		if logGroup == "" {
			t.Errorf("%s: no log group /aws/lambda/%s", id, name)
			continue
		}
		exp := slices.Concat(want[id], on("!GetAtt "+logGroup+".Arn", "logs:CreateLogStream", "logs:PutLogEvents"))
		sort.Strings(exp)
		if got := grants(t, tmpl, role); !slices.Equal(got, exp) {
			t.Errorf("%s (%s) grants\n  %s\nwant\n  %s", id, role, strings.Join(got, "\n  "), strings.Join(exp, "\n  "))
		}
	}

	// The key: rotation on; the account administers it; only the keys,
	// validate, chat and revalidator roles may use it, each for what its code
	// does.
	k, err := tmpl.GetKMSKeyWithName("EncryptionKey")
	if err != nil {
		t.Fatal(err)
	}
	if k.EnableKeyRotation == nil || !*k.EnableKeyRotation {
		t.Error("EncryptionKey: EnableKeyRotation must be true")
	}
	crypto := func(a string) bool {
		a = strings.ToLower(a)
		return a == "kms:*" || a == "*" || strings.HasPrefix(a, "kms:encrypt") || strings.HasPrefix(a, "kms:decrypt") ||
			strings.HasPrefix(a, "kms:generatedatakey") || strings.HasPrefix(a, "kms:reencrypt")
	}
	users := map[string][]string{}
	rootAdmin := false
	for _, s := range statements(t, k.KeyPolicy) {
		if s["Effect"] != "Allow" {
			continue
		}
		principal, _ := s["Principal"].(map[string]any)
		for _, p := range strList(principal["AWS"]) {
			var cryptoActions []string
			for _, a := range strList(s["Action"]) {
				if crypto(a) {
					cryptoActions = append(cryptoActions, a)
				}
			}
			if strings.HasSuffix(p, ":root") {
				rootAdmin = true
				if len(cryptoActions) > 0 {
					t.Errorf("key policy gives the account root %v; only the function roles may use the key", cryptoActions)
				}
				continue
			}
			// Data keys are always bound to a row (docs/api.md §6): no use without the
			// encryption context. Its provider and key_id are in every context
			// (user, org and project keys, webhook secrets); user_id is not (an
			// org's or project's key names its org instead), so requiring it would
			// refuse every org key on AWS (moto does not enforce key policies).
			cond, _ := s["Condition"].(map[string]any)
			null, _ := cond["Null"].(map[string]any)
			if _, ok := null["kms:EncryptionContext:user_id"]; ok && len(cryptoActions) > 0 {
				t.Errorf("key policy statement %v for %s requires kms:EncryptionContext:user_id, which org and project keys do not carry", s["Sid"], p)
			}
			for _, ck := range []string{"kms:EncryptionContext:provider", "kms:EncryptionContext:key_id"} {
				if len(cryptoActions) > 0 && fmt.Sprint(null[ck]) != "false" {
					t.Errorf("key policy statement %v for %s lacks Condition Null %s: \"false\"", s["Sid"], p, ck)
				}
			}
			// The keys function opens webhook signing secrets (the test
			// route), never a provider key: its Decrypt is bound to
			// provider "webhook" in the encryption context.
			// So does the webhooks function, which signs deliveries and reaches
			// user-chosen URLs: it never needs a provider key.
			if (p == "!GetAtt "+roleOf["KeysFunction"]+".Arn" || p == "!GetAtt "+roleOf[logicalID(fnWebhooks)]+".Arn") && slices.Contains(cryptoActions, "kms:Decrypt") {
				eq, _ := cond["StringEquals"].(map[string]any)
				if fmt.Sprint(eq["kms:EncryptionContext:provider"]) != "webhook" {
					t.Errorf("key policy statement %v lets %s decrypt beyond webhook secrets (Condition StringEquals kms:EncryptionContext:provider must be \"webhook\")", s["Sid"], p)
				}
			}
			// The roles that open provider keys never open a webhook signing secret.
			for _, fn := range []string{"ValidateFunction", "ChatFunction", logicalID(fnRevalidator)} {
				if p == "!GetAtt "+roleOf[fn]+".Arn" && slices.Contains(cryptoActions, "kms:Decrypt") {
					ne, _ := cond["StringNotEquals"].(map[string]any)
					if fmt.Sprint(ne["kms:EncryptionContext:provider"]) != "webhook" {
						t.Errorf("key policy statement %v lets %s open webhook signing secrets (want Condition StringNotEquals kms:EncryptionContext:provider \"webhook\")", s["Sid"], p)
					}
				}
			}
			users[p] = append(users[p], cryptoActions...)
		}
	}
	if !rootAdmin {
		t.Error("key policy must let the account root administer the key")
	}
	wantUsers := map[string][]string{
		"!GetAtt " + roleOf["KeysFunction"] + ".Arn":           {"kms:Decrypt", "kms:GenerateDataKey"},
		"!GetAtt " + roleOf["ValidateFunction"] + ".Arn":       {"kms:Decrypt"},
		"!GetAtt " + roleOf["ChatFunction"] + ".Arn":           {"kms:Decrypt"},
		"!GetAtt " + roleOf[logicalID(fnRevalidator)] + ".Arn": {"kms:Decrypt"},
		"!GetAtt " + roleOf[logicalID(fnWebhooks)] + ".Arn":    {"kms:Decrypt"},
	}
	for p := range users {
		sort.Strings(users[p])
	}
	if fmt.Sprint(users) != fmt.Sprint(wantUsers) {
		t.Errorf("key users = %v, want %v", users, wantUsers)
	}
	aliasOK := false
	for _, a := range tmpl.GetAllKMSAliasResources() {
		aliasOK = aliasOK || a.TargetKeyId == "!Ref EncryptionKey"
	}
	if !aliasOK {
		t.Error("no AWS::KMS::Alias targets EncryptionKey")
	}
}

func TestEventsTopic(t *testing.T) {
	tmpl := loadTemplate(t)
	if _, err := tmpl.GetSNSTopicWithName("EventsTopic"); err != nil {
		t.Fatal(err)
	}
	subs := tmpl.GetAllSNSSubscriptionResources()
	found := false
	queueSub := false
	for id, s := range subs {
		if s.TopicArn != "!Ref EventsTopic" {
			continue
		}
		if s.Protocol == "sqs" { // the webhooks queue: raw delivery, the event JSON as the body
			queueSub = str(s.Endpoint) == "!GetAtt WebhooksQueue.Arn" && s.RawMessageDelivery != nil && *s.RawMessageDelivery
			if !queueSub {
				t.Errorf("%s: sqs subscription must be WebhooksQueue with RawMessageDelivery", id)
			}
			continue
		}
		found = true
		if s.Protocol != "email" || str(s.Endpoint) != "!Ref NotificationEmail" {
			t.Errorf("%s: %s -> %s, want email -> !Ref NotificationEmail", id, s.Protocol, str(s.Endpoint))
		}
		cond := s.AWSCloudFormationCondition
		if cond == "" {
			t.Errorf("%s must be conditional on a non-empty NotificationEmail", id)
			continue
		}
		if c, want := fmt.Sprint(tmpl.Conditions[cond]), "!Not [!Equals [!Ref NotificationEmail, ]]"; c != want {
			t.Errorf("condition %s = %s, want %s", cond, c, want)
		}
	}
	if !found {
		t.Error("no subscription of NotificationEmail to EventsTopic")
	}
	if !queueSub {
		t.Error("no subscription of WebhooksQueue to EventsTopic")
	}
}

// TestScheduledFunctions checks every function without HTTP routes (the
// revalidator): its main uses neither HTTP adapter, it has no HTTP API route
// and no Function URL, exactly one enabled EventBridge schedule with the
// expression of schedules, and at most one invocation at a time.
func TestScheduledFunctions(t *testing.T) {
	tmpl := loadTemplate(t)
	fns := tmpl.GetAllServerlessFunctionResources()
	for _, fn := range eventFunctions {
		id := logicalID(fn)
		t.Run(id, func(t *testing.T) {
			if slices.Contains(app.Functions(), fn) {
				t.Errorf("%s is in app.Functions() (the HTTP functions)", fn)
			}
			if _, ok := app.Routes()[fn]; ok {
				t.Errorf("app.Routes() lists routes for %s", fn)
			}
			if tr := trigger(t, fn); tr != "" {
				t.Errorf("functions/%s/main.go is a %s handler, want a plain event handler", fn, tr)
			}
			f, ok := fns[id]
			if !ok {
				t.Fatalf("template.yaml has no %s", id)
			}
			if f.FunctionUrlConfig != nil {
				t.Error("has a FunctionUrlConfig; a scheduled function must not be reachable over HTTP")
			}
			evs, _ := rawResource(t, id)["Events"].(map[string]any)
			var scheduled []string
			for name, raw := range evs {
				ev, _ := raw.(map[string]any)
				props, _ := ev["Properties"].(map[string]any)
				var expr string
				switch typ := fmt.Sprint(ev["Type"]); typ {
				case "Schedule": // EventBridge rule
					expr = fmt.Sprint(props["Schedule"])
					if e, ok := props["Enabled"].(bool); ok && !e {
						t.Errorf("event %s: Enabled false", name)
					}
				case "ScheduleV2": // EventBridge Scheduler
					expr = fmt.Sprint(props["ScheduleExpression"])
				default:
					t.Errorf("event %s has type %s; want only Schedule or ScheduleV2", name, typ)
					continue
				}
				if st, ok := props["State"]; ok && st != "ENABLED" {
					t.Errorf("event %s: State = %v, want ENABLED", name, st)
				}
				scheduled = append(scheduled, expr)
			}
			if want := []string{schedules[fn]}; !slices.Equal(scheduled, want) {
				t.Errorf("schedules = %q, want exactly %q", scheduled, want)
			}
			// One pass at a time is the lease's job (revalidate.Lease); a reserved
			// concurrency is optional, off by default, since Lambda refuses one
			// that leaves under 10 unreserved (new accounts' quota is often 10).
			wantOptionalReservation(t, tmpl, id, "RevalidatorReservedConcurrency")
			e := effectiveFunction(t, tmpl, f)
			if n, err := strconv.Atoi(e.Env["REVALIDATE_CONCURRENCY"]); fn == fnRevalidator && (err != nil || n <= 0) {
				t.Errorf("REVALIDATE_CONCURRENCY = %q, want a positive integer", e.Env["REVALIDATE_CONCURRENCY"])
			}
			if fn == fnRevalidator && e.Timeout < 300 {
				t.Errorf("Timeout = %d, want at least 300 (one invocation is a whole pass, docs/api.md §7)", e.Timeout)
			}
		})
	}
}

// wantOptionalReservation checks that function id reserves concurrency only
// when parameter param (default 0) is non-zero.
func wantOptionalReservation(t *testing.T, tmpl *cloudformation.Template, id, param string) {
	t.Helper()
	p, ok := tmpl.Parameters[param]
	if !ok {
		t.Fatalf("parameter %s missing", param)
	}
	if p.Type != "Number" || fmt.Sprint(p.Default) != "0" {
		t.Errorf("%s: Type %s Default %v, want Number 0 (off)", param, p.Type, p.Default)
	}
	got := fmt.Sprint(rawResource(t, id)["ReservedConcurrentExecutions"])
	prefix, ok := strings.CutPrefix(got, "!If [")
	cond, rest, _ := strings.Cut(prefix, ", ")
	if want := "!Ref " + param + ", !Ref AWS::NoValue]"; !ok || rest != want {
		t.Fatalf("%s ReservedConcurrentExecutions = %s, want !If [<cond>, %s", id, got, want)
	}
	if c, want := fmt.Sprint(tmpl.Conditions[cond]), "!Not [!Equals [!Ref "+param+", 0]]"; c != want {
		t.Errorf("condition %s = %s, want %s", cond, c, want)
	}
}
