package chat

import "net/http"

// aiPaths are the paths Register serves: the AI routes whose every response
// says which route served it (docs/api.md §8).
var aiPaths = [...]string{
	"/v1/chat/completions", "/v1/copilot/chat", "/v1/messages", "/v1/embeddings", "/v1/audio/transcriptions", "/v1/models",
}

// Unrouted marks a response to an AI route "X-Byok-Route: none" before next
// runs, so a request refused ahead of the chat handler (by the token check)
// still says that no route was chosen; the handler overwrites the header
// once it chooses one.
func Unrouted(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, p := range aiPaths {
			if r.URL.Path == p {
				w.Header().Set(HeaderRoute, "none")
				break
			}
		}
		next.ServeHTTP(w, r)
	})
}
