package fakeprovider

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// The providers with their own wire formats (Google Gemini, Mistral, Cohere,
// Azure OpenAI) are served by NativeHandler, sharing the Server's keys,
// behaviours, records and failure injection. Each is written from the
// provider's API reference, not from our translators:
//
//	Google   /google/v1beta/...           key in x-goog-api-key (or ?key=, recorded)
//	Mistral  /mistral/v1/...              Authorization: Bearer; unknown fields → 422
//	Cohere   /cohere/v1/..., /cohere/v2/... Authorization: Bearer
//	Azure    /openai/deployments/...?api-version=  api-key header
//
// Base URLs: GoogleBaseURL, MistralBaseURL, CohereBaseURL; Azure's endpoint
// is the server's URL (serve NativeHandler over TLS for the https rule).

// Protocol names of the native providers, as in RecordedRequest.Protocol.
const (
	ProtocolGoogle  = "google"
	ProtocolMistral = "mistral"
	ProtocolCohere  = "cohere"
	ProtocolAzure   = "azure_openai"
)

// GoogleBaseURL is base in GOOGLE_BASE_URL form, for a server whose
// NativeHandler is reachable at base.
func GoogleBaseURL(base string) string { return strings.TrimRight(base, "/") + "/google" }

// MistralBaseURL is base in MISTRAL_BASE_URL form (with /v1).
func MistralBaseURL(base string) string { return strings.TrimRight(base, "/") + "/mistral/v1" }

// CohereBaseURL is base in COHERE_BASE_URL form.
func CohereBaseURL(base string) string { return strings.TrimRight(base, "/") + "/cohere" }

// nativeRoute finds the provider, key and handler for r; ok false when the
// path belongs to none of them.
func nativeRoute(r *http.Request) (proto, key string, h handler, ok bool) {
	p := r.URL.Path
	bearer, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	switch {
	case strings.HasPrefix(p, "/google/"):
		key = r.Header.Get("x-goog-api-key")
		if key == "" {
			key = r.URL.Query().Get("key")
		}
		return ProtocolGoogle, key, googleRoute(r.Method, strings.TrimPrefix(p, "/google")), true
	case strings.HasPrefix(p, "/mistral/"):
		return ProtocolMistral, bearer, mistralRoute(r.Method, strings.TrimPrefix(p, "/mistral")), true
	case strings.HasPrefix(p, "/cohere/"):
		return ProtocolCohere, bearer, cohereRoute(r.Method, strings.TrimPrefix(p, "/cohere")), true
	case strings.HasPrefix(p, "/openai/"):
		key = r.Header.Get("api-key")
		if key == "" {
			key = bearer
		}
		return ProtocolAzure, key, azureRoute(r.Method, p), true
	}
	return "", "", nil, false
}

// IsNativePath reports whether NativeHandler serves path (the hook for
// routing one Server's listener to both handlers).
func IsNativePath(path string) bool {
	for _, p := range []string{"/google/", "/mistral/", "/cohere/", "/openai/"} {
		if strings.HasPrefix(path, p) {
			return true
		}
	}
	return false
}

// NativeHandler serves the native providers with s's state.
func (s *Server) NativeHandler() http.Handler { return http.HandlerFunc(s.serveNative) }

func (s *Server) serveNative(w http.ResponseWriter, r *http.Request) {
	proto, key, h, ok := nativeRoute(r)
	if !ok {
		http.NotFound(w, r)
		return
	}
	body, _ := io.ReadAll(io.LimitReader(r.Body, MaxBody))
	rec := RecordedRequest{
		Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery,
		Header: r.Header.Clone(), Body: body, Key: key, Protocol: proto,
	}
	s.mu.Lock()
	s.calls[key]++
	s.total++
	rec.Seq = s.total
	stored := rec
	s.reqs = append(s.reqs, &stored)
	if len(s.reqs) > MaxRecorded {
		s.reqs[0] = nil
		s.reqs = s.reqs[1:]
	}
	s.inFlight++
	b, known := s.keys[key]
	if !known {
		b = s.def
	}
	s.mu.Unlock()

	c := &call{r: r, rec: rec, b: b}
	defer s.finish(&stored, c)
	reqID := "req_fake" + strconv.Itoa(rec.Seq)
	switch proto {
	case ProtocolCohere:
		w.Header().Set("x-request-id", reqID)
	case ProtocolAzure:
		w.Header().Set("apim-request-id", reqID)
	case ProtocolMistral:
		w.Header().Set("x-kong-request-id", reqID)
	}
	if h == nil {
		nativeError(w, proto, http.StatusNotFound, c)
		return
	}
	if key == "" {
		nativeError(w, proto, http.StatusUnauthorized, c)
		return
	}
	if !s.wait(c) {
		return
	}
	if b.DropConn {
		dropConn(w)
		return
	}
	status := b.Status
	if status == 0 {
		status = http.StatusOK
	}
	if b.RetryAfter != "" && proto != ProtocolGoogle { // Google puts it in RetryInfo
		w.Header().Set("Retry-After", b.RetryAfter)
		if proto == ProtocolAzure {
			w.Header().Set("retry-after-ms", b.RetryAfter+"000")
		}
	}
	rateLimitHeaders(w, proto, status)
	if b.Body != "" {
		writeRaw(w, status, b.Body)
		return
	}
	if status < 200 || status > 299 {
		nativeError(w, proto, status, c)
		return
	}
	c.status = status
	h(s, w, c)
}

// rateLimitHeaders are the providers' own rate-limit headers.
func rateLimitHeaders(w http.ResponseWriter, proto string, status int) {
	remaining := "99"
	if status == http.StatusTooManyRequests {
		remaining = "0"
	}
	h := w.Header()
	switch proto {
	case ProtocolMistral:
		h.Set("x-ratelimitbysize-limit-minute", "500000")
		h.Set("x-ratelimitbysize-remaining-minute", remaining)
		h.Set("x-ratelimitbysize-limit-month", "1000000000")
		h.Set("x-ratelimitbysize-remaining-month", remaining)
	case ProtocolAzure:
		h.Set("x-ratelimit-limit-requests", "100")
		h.Set("x-ratelimit-remaining-requests", remaining)
		h.Set("x-ratelimit-remaining-tokens", remaining+"000")
	case ProtocolCohere:
		h.Set("x-endpoint-monthly-call-limit", "1000")
		h.Set("x-trial-endpoint-call-limit", "20")
		h.Set("x-trial-endpoint-call-remaining", remaining)
	}
}

// nativeError writes the provider's usual error for status.
func nativeError(w http.ResponseWriter, proto string, status int, c *call) {
	switch proto {
	case ProtocolGoogle:
		writeRaw(w, status, googleDefaultError(status, c))
	case ProtocolMistral:
		writeRaw(w, status, mistralDefaultError(status, c.r))
	case ProtocolCohere:
		writeRaw(w, status, cohereDefaultError(status, c.rec.Seq))
	case ProtocolAzure:
		writeRaw(w, status, azureDefaultError(status))
	}
}

// toolRef is one entry of chatReq.Tools.
type toolRef = struct {
	Name     string `json:"name"`
	Function struct {
		Name string `json:"name"`
	} `json:"function"`
}

// nativePlan is the answer plan the fake used for a recorded native request.
func nativePlan(rec RecordedRequest, b Behavior) plan {
	var cq chatReq
	switch rec.Protocol {
	case ProtocolGoogle:
		var q gGenerateRequest
		_ = json.Unmarshal(rec.Body, &q)
		cq = googlePlanReq(&q)
	case ProtocolMistral:
		var q mChatRequest
		_ = json.Unmarshal(rec.Body, &q)
		cq = mistralPlanReq(&q)
	case ProtocolCohere:
		var q coChatRequest
		_ = json.Unmarshal(rec.Body, &q)
		cq = coherePlanReq(&q)
	default:
		_ = json.Unmarshal(rec.Body, &cq)
	}
	return makePlan(rec.Body, &cq, b)
}

// ExpectedNativeReply is ExpectedReply for a request recorded on the native
// providers' routes, read in that provider's own request format.
func ExpectedNativeReply(rec RecordedRequest, b Behavior) string { return nativePlan(rec, b).text() }

// ExpectedNativeUsage is ExpectedUsage for a recorded native request.
func ExpectedNativeUsage(rec RecordedRequest, b Behavior) Usage { return nativePlan(rec, b).usage }
