package lambdatest

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

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

// functionDirs maps every AWS::Serverless::Function of template.yaml to its
// package under ./functions (the name app.Handler serves).
var functionDirs = map[string]string{
	"KeysFunction":     app.FnKeys,
	"ValidateFunction": app.FnValidate,
	"AdminFunction":    app.FnAdmin,
}

// expectedRoutes is every HTTP API route ("METHOD /path") and the function
// serving it. TODO(lead): derive it from the code's own route list.
var expectedRoutes = map[string]string{
	"GET /v1/keys":                  "KeysFunction",
	"PUT /v1/keys/{provider}":       "KeysFunction",
	"DELETE /v1/keys/{provider}":    "KeysFunction",
	"POST /v1/keys/{provider}/test": "ValidateFunction",
	"GET /v1/admin/settings":        "AdminFunction",
	"PUT /v1/admin/settings":        "AdminFunction",
	"GET /v1/admin/users/{id}":      "AdminFunction",
	"PUT /v1/admin/users/{id}":      "AdminFunction",
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

func loadTemplate(t *testing.T) *cloudformation.Template {
	t.Helper()
	tmpl, err := goformation.OpenWithOptions(filepath.Join(repoRoot(t), "template.yaml"), &intrinsics.ProcessorOptions{
		IntrinsicHandlerOverrides: map[string]intrinsics.IntrinsicHandler{
			"Ref":        symbolic("!Ref"),
			"Fn::GetAtt": symbolic("!GetAtt"),
			"Fn::Sub":    symbolic("!Sub"),
			"Fn::Equals": symbolic("!Equals"),
			"Fn::Not":    symbolic("!Not"),
			"Fn::And":    symbolic("!And"),
			"Fn::Or":     symbolic("!Or"),
		},
	})
	if err != nil {
		t.Fatalf("parse template.yaml with goformation: %v", err)
	}
	return tmpl
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
	want := make([]string, 0, len(functionDirs))
	for id := range functionDirs {
		want = append(want, id)
	}
	sort.Strings(want)
	if !slices.Equal(ids, want) {
		t.Errorf("template functions = %v, want %v (update functionDirs when adding a function)", ids, want)
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
			if e.Timeout <= 0 || e.Timeout > 30 {
				t.Errorf("Timeout = %d, want 1..30 (HTTP API integrations time out at 30 s)", e.Timeout)
			}

			dir, ok := functionDirs[id]
			if !ok {
				t.Fatalf("no functions/<name> known for %s", id)
			}
			if _, err := os.Stat(filepath.Join(root, "functions", dir, "main.go")); err != nil {
				t.Errorf("functions/%s/main.go: %v", dir, err)
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
			if len(attrs) != 2 || attrs[d.PartitionKey] != "S" || attrs[d.SortKey] != "S" {
				t.Errorf("AttributeDefinitions = %v, want %s and %s of type S", attrs, d.PartitionKey, d.SortKey)
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
	got := map[string]string{}
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
			if prev, dup := got[route]; dup {
				t.Errorf("route %s declared twice (%s and %s)", route, prev, id)
			}
			got[route] = id
			if str(h.ApiId) != "!Ref "+apiID {
				t.Errorf("%s.%s: ApiId = %q, want !Ref %s", id, name, str(h.ApiId), apiID)
			}
			if str(h.PayloadFormatVersion) != "2.0" {
				t.Errorf("%s.%s: PayloadFormatVersion = %q, want 2.0 (httpadapter.NewV2)", id, name, str(h.PayloadFormatVersion))
			}
		}
	}
	for route, fn := range expectedRoutes {
		if got[route] != fn {
			t.Errorf("route %s -> %q, want %s", route, got[route], fn)
		}
	}
	for route, fn := range got {
		if _, ok := expectedRoutes[route]; !ok {
			t.Errorf("unexpected route %s -> %s", route, fn)
		}
	}
	if _, ok := tmpl.Outputs["ApiUrl"]; !ok {
		t.Error("Outputs.ApiUrl missing")
	}
}

func TestParametersAndEnvironment(t *testing.T) {
	tmpl := loadTemplate(t)
	p := tmpl.Parameters
	for _, name := range []string{"TablePrefix", "NotificationEmail", "DefaultRoutingMode", "AuthIssuer", "AuthAudience",
		"AuthJwksUrl", "AuthJwtSecret"} {
		if _, ok := p[name]; !ok {
			t.Errorf("parameter %s missing", name)
		}
	}
	if s := p["AuthJwtSecret"]; s.NoEcho == nil || !*s.NoEcho {
		t.Error("AuthJwtSecret must be NoEcho")
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
		"AUTH_JWT_SECRET":      "!Ref AuthJwtSecret",
		"AUTH_JWKS_URL":        "!Ref AuthJwksUrl",
		"AUTH_ISSUER":          "!Ref AuthIssuer",
		"AUTH_AUDIENCE":        "!Ref AuthAudience",
	}
	keyUsers := map[string]bool{"KeysFunction": true, "ValidateFunction": true}
	for id, f := range tmpl.GetAllServerlessFunctionResources() {
		env := effectiveFunction(t, tmpl, f).Env
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
		if _, has := env["ENCRYPTION_KEY"]; has {
			t.Errorf("%s: ENCRYPTION_KEY must not be in the template (KMS wraps keys in AWS)", id)
		}
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

func TestLeastPrivilege(t *testing.T) {
	tmpl := loadTemplate(t)
	const table, key, topic = "!GetAtt MainTable.Arn", "!GetAtt EncryptionKey.Arn", "!Ref EventsTopic"
	on := func(res string, actions ...string) []string {
		out := make([]string, len(actions))
		for i, a := range actions {
			out[i] = a + " on " + res
		}
		return out
	}
	want := map[string][]string{
		"KeysFunction": slices.Concat(
			on(table, "dynamodb:GetItem", "dynamodb:Query", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"),
			on(key, "kms:GenerateDataKey", "kms:Decrypt"),
			on(topic, "sns:Publish")),
		"ValidateFunction": slices.Concat(
			on(table, "dynamodb:Query", "dynamodb:UpdateItem", "dynamodb:GetItem"),
			on(key, "kms:Decrypt"),
			on(topic, "sns:Publish")),
		"AdminFunction": on(table, "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"),
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

	// The key: rotation on; the account administers it; only the keys and
	// validate roles may use it, each for what its code does.
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
			users[p] = append(users[p], cryptoActions...)
		}
	}
	if !rootAdmin {
		t.Error("key policy must let the account root administer the key")
	}
	wantUsers := map[string][]string{
		"!GetAtt " + roleOf["KeysFunction"] + ".Arn":     {"kms:Decrypt", "kms:GenerateDataKey"},
		"!GetAtt " + roleOf["ValidateFunction"] + ".Arn": {"kms:Decrypt"},
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
	for id, s := range subs {
		if s.TopicArn != "!Ref EventsTopic" {
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
}
