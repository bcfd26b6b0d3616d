package app_test

import (
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/synthstack/byok/shared/provider"
)

// keyLog collects, per test, every key the test's fake provider was given
// or presented; secretScanMain checks every recorded client exchange of
// that test against them.
type keyLog struct {
	mu     sync.Mutex
	byTest map[string][]string
}

var testKeys = keyLog{byTest: map[string][]string{}}

func (l *keyLog) add(test string, keys ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.byTest[test] = append(l.byTest[test], keys...)
}

func (l *keyLog) keys(test string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := []string{internalOpenAIKey, internalAnthropicKey}
	for t, ks := range l.byTest {
		if t == test || strings.HasPrefix(test, t+"/") {
			out = append(out, ks...)
		}
	}
	return out
}

// leakedPiece returns a 12-character piece of key found in text outside
// the key's hint, or "".
func leakedPiece(text, key string) string {
	if len(key) < 12 {
		if strings.Contains(text, key) {
			return key
		}
		return ""
	}
	text = strings.ReplaceAll(text, provider.Hint(key), "<hint>")
	// Pieces must reach at least 5 characters into the key's random part
	// (after its last '-'), so a bare format prefix is not a leak.
	r := strings.LastIndexByte(key, '-') + 1
	for i := max(0, r+5-12); i+12 <= len(key); i++ {
		if p := key[i : i+12]; strings.Contains(text, p) {
			return p
		}
	}
	return ""
}

// secretScanMain runs after the package's tests (from TestMain): no
// recorded response, in any header or anywhere in its body, holds a key
// used in its test or an internal key.
func secretScanMain(w io.Writer) int {
	bad := 0
	for _, x := range recorded.all() {
		var sb strings.Builder
		for k, vs := range x.Header {
			sb.WriteString(k + ": " + strings.Join(vs, ",") + "\n")
		}
		sb.Write(x.Body)
		text := sb.String()
		for _, k := range testKeys.keys(x.Test) {
			if p := leakedPiece(text, k); p != "" {
				fmt.Fprintf(w, "secret scan: %s %s %s (%d) carries part of a key used in the test (%q...)\n", x.Test, x.Method, x.Path, x.Status, p[:4])
				bad++
				break
			}
		}
	}
	if bad > 0 {
		return 1
	}
	return 0
}
