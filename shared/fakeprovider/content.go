package fakeprovider

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
)

// DefaultChunks is the number of content pieces when Behavior.Chunks is 0.
const DefaultChunks = 3

// PromptTokens is the input token count the fake reports for a request body
// (chat, messages, embeddings): ceil(len(body)/4) bytes, at least 1. body is
// the body exactly as the fake received it (RecordedRequest.Body).
func PromptTokens(body []byte) int {
	return max(1, (len(body)+3)/4)
}

// Digest is the 8-hex-digit reference the fake puts in replies: the start of
// the SHA-256 of the request body.
func Digest(body []byte) string {
	sum := sha256.Sum256(body)
	return hex.EncodeToString(sum[:4])
}

// chatReq is the part of an OpenAI chat or Anthropic messages request the
// fake looks at.
type chatReq struct {
	Model               *string           `json:"model"`
	Messages            []json.RawMessage `json:"messages"`
	Stream              bool              `json:"stream"`
	StreamOptions       *streamOptions    `json:"stream_options"`
	MaxTokens           *int              `json:"max_tokens"`
	MaxCompletionTokens *int              `json:"max_completion_tokens"`
	Tools               []struct {
		Name     string `json:"name"` // Anthropic
		Function struct {
			Name string `json:"name"` // OpenAI
		} `json:"function"`
	} `json:"tools"`
}

type streamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

func (q *chatReq) model() string {
	if q.Model == nil {
		return ""
	}
	return *q.Model
}

func (q *chatReq) toolName() string {
	if len(q.Tools) == 0 {
		return ""
	}
	if n := q.Tools[0].Function.Name; n != "" {
		return n
	}
	return q.Tools[0].Name
}

// limit is the output-token cap from the request (0: none).
func (q *chatReq) limit() int {
	if q.MaxCompletionTokens != nil && *q.MaxCompletionTokens > 0 {
		return *q.MaxCompletionTokens
	}
	if q.MaxTokens != nil && *q.MaxTokens > 0 {
		return *q.MaxTokens
	}
	return 0
}

// plan is the answer to a chat/messages request, fixed before anything is sent.
type plan struct {
	tool      string   // tool name when answering with a tool call
	pieces    []string // content (or tool-argument) pieces, after max_tokens
	truncated bool     // max_tokens cut the answer short
	usage     Usage
}

func (p plan) text() string { return strings.Join(p.pieces, "") }

func makePlan(body []byte, q *chatReq, b Behavior) plan {
	n := b.Chunks
	if n <= 0 {
		n = DefaultChunks
	}
	var p plan
	if b.ToolCall {
		p.tool = q.toolName()
	}
	if p.tool != "" {
		args := fmt.Sprintf(`{"ref":%q,"messages":%d}`, Digest(body), len(q.Messages))
		p.pieces = splitPieces(args, n, " ") // trailing spaces keep it valid JSON
	} else {
		text := b.Reply
		if text == "" {
			text = fmt.Sprintf("Fake reply %s to %d messages.", Digest(body), len(q.Messages))
		}
		p.pieces = splitPieces(text, n, " "+text)
	}
	if l := q.limit(); l > 0 && l < len(p.pieces) {
		p.pieces = p.pieces[:l]
		p.truncated = true
	}
	p.usage = Usage{Input: PromptTokens(body), Output: len(p.pieces)}
	if b.Usage != nil {
		p.usage = *b.Usage
	}
	return p
}

// splitPieces splits text into n non-empty pieces of near-equal rune length,
// first extending text with pad (repeatedly) when it has fewer than n runes.
func splitPieces(text string, n int, pad string) []string {
	if text == "" {
		text = "."
	}
	if pad == "" {
		pad = "."
	}
	rs := []rune(text)
	for len(rs) < n {
		rs = append(rs, []rune(pad)...)
	}
	out := make([]string, n)
	for i := range n {
		out[i] = string(rs[i*len(rs)/n : (i+1)*len(rs)/n])
	}
	return out
}

// Pieces returns the content pieces (text, or tool-call arguments) the fake
// sends for a chat/messages request body under b, in order, after max_tokens
// truncation. Each piece is one SSE content delta and one output token.
func Pieces(body []byte, b Behavior) []string {
	var q chatReq
	_ = json.Unmarshal(body, &q)
	return makePlan(body, &q, b).pieces
}

// ExpectedReply is the full reply the fake sends for a chat/messages request
// body under b: the text content, or for a tool call the arguments JSON. By
// default it is "Fake reply <Digest(body)> to <len(messages)> messages."
// (repeated to reach Chunks runes), so it never contains prompt text; with
// Behavior.Reply it is that text. A max_tokens (or max_completion_tokens)
// below the piece count keeps only that many pieces.
func ExpectedReply(body []byte, b Behavior) string {
	return strings.Join(Pieces(body, b), "")
}

// ExpectedUsage is the usage the fake reports for a chat/messages request
// body under b: Input = PromptTokens(body), Output = len(Pieces(body, b));
// Behavior.Usage replaces both.
func ExpectedUsage(body []byte, b Behavior) Usage {
	var q chatReq
	_ = json.Unmarshal(body, &q)
	return makePlan(body, &q, b).usage
}
