package lambdatest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// Checks of the template against AWS as it is: limits, quotas and what the
// official SDKs send (see docs/api.md, "Deploying").

// sdkBrowserHeaders are the request headers the official OpenAI and
// Anthropic SDKs send from a browser. Function URL CORS matches whole header
// names only, so each is listed.
var sdkBrowserHeaders = []string{
	"authorization", "content-type", "x-api-key", "api-key",
	"anthropic-version", "anthropic-beta", "anthropic-dangerous-direct-browser-access",
	"openai-organization", "openai-project",
	"x-stainless-arch", "x-stainless-lang", "x-stainless-os", "x-stainless-package-version",
	"x-stainless-runtime", "x-stainless-runtime-version", "x-stainless-retry-count", "x-stainless-timeout",
}

func TestChatFunctionLimits(t *testing.T) {
	tmpl := loadTemplate(t)
	f, err := tmpl.GetServerlessFunctionWithName("ChatFunction")
	if err != nil {
		t.Fatal(err)
	}
	e := effectiveFunction(t, tmpl, f)
	// Streams may last up to Lambda's maximum; the handler ends one cleanly
	// before the invocation's deadline.
	if e.Timeout != 900 {
		t.Errorf("Timeout = %d, want 900 (Lambda's maximum)", e.Timeout)
	}
	wantOptionalReservation(t, tmpl, "ChatFunction", "ChatReservedConcurrency")
	if e.Env["AUDIO_BUCKET"] != "!Ref AudioBucket" {
		t.Errorf("AUDIO_BUCKET = %q, want !Ref AudioBucket", e.Env["AUDIO_BUCKET"])
	}
	if e.Env["INTERNAL_KEYS_TTL"] == "" {
		t.Error("INTERNAL_KEYS_TTL unset: put-secret-value must reach warm instances")
	}
	urlCfg, _ := rawResource(t, "ChatFunction")["FunctionUrlConfig"].(map[string]any)
	cors, _ := urlCfg["Cors"].(map[string]any)
	var allowed []string
	for _, h := range strList(cors["AllowHeaders"]) {
		if strings.Contains(h, "*") {
			t.Errorf("Cors.AllowHeaders has %q: Function URL CORS takes whole header names", h)
		}
		allowed = append(allowed, strings.ToLower(h))
	}
	for _, h := range sdkBrowserHeaders {
		if !slices.Contains(allowed, h) {
			t.Errorf("Cors.AllowHeaders lacks %s (sent by the official SDKs from browsers)", h)
		}
	}
	if got := strList(cors["AllowOrigins"]); !slices.Equal(got, []string{"!Ref CorsAllowedOrigins"}) {
		t.Errorf("Cors.AllowOrigins = %v, want !Ref CorsAllowedOrigins", got)
	}
}

func TestHTTPAPIEdge(t *testing.T) {
	tmpl := loadTemplate(t)
	props := rawResource(t, "HttpApi")
	cors, _ := props["CorsConfiguration"].(map[string]any)
	if cors == nil {
		t.Fatal("HttpApi.CorsConfiguration missing (browser clients)")
	}
	if got := strList(cors["AllowOrigins"]); !slices.Equal(got, []string{"!Ref CorsAllowedOrigins"}) {
		t.Errorf("CorsConfiguration.AllowOrigins = %v, want !Ref CorsAllowedOrigins", got)
	}
	if c, _ := cors["AllowCredentials"].(bool); c {
		t.Error("AllowCredentials must not be true: bearer tokens, no cookies")
	}
	if h := strList(cors["AllowHeaders"]); !slices.Contains(h, "authorization") || !slices.Contains(h, "content-type") {
		t.Errorf("CorsConfiguration.AllowHeaders = %v, want authorization and content-type", h)
	}
	methods := strList(cors["AllowMethods"])
	for _, routes := range []string{"GET", "PUT", "POST", "DELETE"} {
		if !slices.Contains(methods, routes) {
			t.Errorf("CorsConfiguration.AllowMethods %v lacks %s", methods, routes)
		}
	}
	rs, _ := props["DefaultRouteSettings"].(map[string]any)
	if fmt.Sprint(rs["ThrottlingRateLimit"]) != "!Ref HttpApiThrottleRate" || fmt.Sprint(rs["ThrottlingBurstLimit"]) != "!Ref HttpApiThrottleBurst" {
		t.Errorf("DefaultRouteSettings = %v, want throttling from HttpApiThrottleRate/Burst", rs)
	}
	logs, _ := props["AccessLogSettings"].(map[string]any)
	dest, _ := strings.CutPrefix(fmt.Sprint(logs["DestinationArn"]), "!GetAtt ")
	lgID, ok := strings.CutSuffix(dest, ".Arn")
	if !ok {
		t.Fatalf("AccessLogSettings.DestinationArn = %v, want !GetAtt <LogGroup>.Arn", logs["DestinationArn"])
	}
	lg, err := tmpl.GetLogsLogGroupWithName(lgID)
	if err != nil {
		t.Fatalf("access log group %s: %v", lgID, err)
	}
	if lg.RetentionInDays == nil || *lg.RetentionInDays != 30 {
		t.Errorf("%s: RetentionInDays missing or not 30", lgID)
	}
	format := fmt.Sprint(logs["Format"])
	for _, must := range []string{"$context.requestId", "$context.status", "$context.routeKey"} {
		if !strings.Contains(format, must) {
			t.Errorf("access log Format lacks %s", must)
		}
	}
	// Query strings and headers may carry tokens.
	for _, never := range []string{"$context.path", "querystring", "header"} {
		if strings.Contains(strings.ToLower(format), strings.ToLower(never)) {
			t.Errorf("access log Format logs %s (may carry credentials)", never)
		}
	}
}

func TestAudioBucket(t *testing.T) {
	tmpl := loadTemplate(t)
	if _, err := tmpl.GetS3BucketWithName("AudioBucket"); err != nil {
		t.Fatal(err)
	}
	props := rawResource(t, "AudioBucket")
	pab, _ := props["PublicAccessBlockConfiguration"].(map[string]any)
	for _, k := range []string{"BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"} {
		if v, _ := pab[k].(bool); !v {
			t.Errorf("PublicAccessBlockConfiguration.%s must be true", k)
		}
	}
	lc, _ := props["LifecycleConfiguration"].(map[string]any)
	rules, _ := lc["Rules"].([]any)
	expires := false
	for _, r := range rules {
		rule, _ := r.(map[string]any)
		if rule["Status"] == "Enabled" && fmt.Sprint(rule["ExpirationInDays"]) == "1" && rule["Prefix"] == nil && rule["Filter"] == nil {
			expires = true
		}
	}
	if !expires {
		t.Errorf("LifecycleConfiguration = %v, want an enabled rule expiring every object after 1 day", lc)
	}
}

func TestAuthSecret(t *testing.T) {
	tmpl := loadTemplate(t)
	if _, ok := tmpl.Parameters["AuthJwtSecret"]; ok {
		t.Error("parameter AuthJwtSecret: the HS256 secret is never a parameter; use AuthJwtSecretArn or the generated one")
	}
	s, err := tmpl.GetSecretsManagerSecretWithName("AuthJwtSecret")
	if err != nil {
		t.Fatal(err)
	}
	if s.GenerateSecretString == nil || s.GenerateSecretString.PasswordLength == nil || *s.GenerateSecretString.PasswordLength < 32 {
		t.Error("AuthJwtSecret must be generated, 32+ characters (HS256 minimum)")
	}
	if s.AWSCloudFormationDeletionPolicy != "Retain" {
		t.Errorf("DeletionPolicy = %q, want Retain (issued tokens are signed with it)", s.AWSCloudFormationDeletionPolicy)
	}
	if c := s.AWSCloudFormationCondition; c == "" || fmt.Sprint(tmpl.Conditions[c]) != "!Equals [!Ref AuthJwtSecretArn, ]" {
		t.Errorf("AuthJwtSecret condition %q = %v, want created when AuthJwtSecretArn is empty", c, tmpl.Conditions[c])
	}
	if out, ok := tmpl.Outputs["AuthJwtSecretArn"]; !ok || fmt.Sprint(out.Value) != jwtSecretArn {
		t.Errorf("Outputs.AuthJwtSecretArn = %v, want %s", out.Value, jwtSecretArn)
	}
}

// TestCfnLint runs cfn-lint (AWS's template linter, with the SAM transform)
// when it is installed.
func TestCfnLint(t *testing.T) {
	bin, err := exec.LookPath("cfn-lint")
	if err != nil {
		t.Skip("cfn-lint not installed (pip install cfn-lint); template.yaml not linted")
	}
	out, err := exec.Command(bin, filepath.Join(repoRoot(t), "template.yaml")).CombinedOutput()
	if err != nil {
		t.Errorf("cfn-lint template.yaml: %v\n%s", err, out)
	}
}

// TestSamconfigStartsUp: no committed deploy value may break start-up, such
// as a placeholder JWKS URL every function would fetch, or a parameter the
// template does not declare.
func TestSamconfigStartsUp(t *testing.T) {
	tmpl := loadTemplate(t)
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "samconfig.toml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		v, ok := strings.CutPrefix(strings.TrimSpace(line), "parameter_overrides = ")
		if !ok {
			continue
		}
		for _, kv := range strings.Fields(strings.Trim(v, `"`)) {
			name, val, _ := strings.Cut(kv, "=")
			if _, ok := tmpl.Parameters[name]; !ok {
				t.Errorf("samconfig.toml overrides %s, which template.yaml does not declare", name)
			}
			if strings.Contains(val, "example.") {
				t.Errorf("samconfig.toml: %s=%s is a placeholder that breaks a deploy", name, val)
			}
		}
	}
}
