package chat

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/synthstack/byok/shared/apperr"
	"github.com/synthstack/byok/shared/auth"
	"github.com/synthstack/byok/shared/httpx"
	"github.com/synthstack/byok/shared/jsondec"
	"github.com/synthstack/byok/shared/provider"
	"github.com/synthstack/byok/shared/routing"
	"github.com/synthstack/byok/shared/store"
)

// Register adds the chat function's routes to mux.
func (x *Executor) Register(mux httpx.Router) {
	mux.HandleFunc("POST /v1/chat/completions", x.handleChatCompletions)
	mux.HandleFunc("POST /v1/copilot/chat", x.handleCopilot)
	mux.HandleFunc("POST /v1/messages", x.handleMessages)
	mux.HandleFunc("POST /v1/embeddings", x.handleEmbeddings)
	mux.HandleFunc("POST /v1/audio/transcriptions", x.handleTranscription)
	mux.HandleFunc("GET /v1/models", x.handleModels)
}

// readBody reads at most limit bytes of the request body; beyond, a 413
// naming the limit (and, for audio, the upload route).
func readBody(w http.ResponseWriter, r *http.Request, limit int64, audio bool) ([]byte, error) {
	tooLarge := func() error {
		msg := "the request body is larger than the " + sizeText(limit) + " limit"
		if audio {
			msg += "; upload larger audio with POST /v1/audio/uploads and pass its upload_id"
		}
		return apperr.New(apperr.RequestTooLarge, "%s", msg)
	}
	if r.ContentLength > limit {
		return nil, tooLarge()
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, tooLarge()
		}
		return nil, apperr.Wrap(err, apperr.InvalidRequest, "could not read the request body")
	}
	return b, nil
}

// sizeText names a limit as people read it: "10 MiB", "5.8 MB".
func sizeText(n int64) string {
	if n%(1<<20) == 0 {
		return strconv.FormatInt(n>>20, 10) + " MiB"
	}
	return strconv.FormatFloat(float64(n)/1e6, 'f', -1, 64) + " MB"
}

// jsonContentType refuses bodies declared as something other than JSON.
func jsonContentType(r *http.Request) error {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return nil
	}
	if mt, _, _ := mimeType(ct); mt != "application/json" {
		return apperr.New(apperr.InvalidRequest, "Content-Type must be application/json")
	}
	return nil
}

func (x *Executor) handleJSON(w http.ResponseWriter, r *http.Request, op operation, parse func(*jsondec.Pool, []byte) (*apiRequest, error)) {
	if err := jsonContentType(r); err != nil {
		writeError(w, r, op, err)
		return
	}
	// The caller's rows are read while the body is read and parsed, so the
	// storage round trip overlaps them (docs/performance.md, row 9). A request
	// refused for its body answers at once; stop abandons that read.
	ld := x.startLoad(r.Context(), r.ContentLength)
	if ld != nil {
		defer ld.stop()
	}
	body, err := readBody(w, r, x.limits().JSON, false)
	if err != nil {
		writeError(w, r, op, err)
		return
	}
	req, err := parse(x.Decoders, body)
	if err != nil {
		writeError(w, r, op, err)
		return
	}
	x.serveLoaded(w, r, req, ld)
}

func (x *Executor) handleChatCompletions(w http.ResponseWriter, r *http.Request) {
	x.handleJSON(w, r, opChat, parseChatRequest)
}

func (x *Executor) handleMessages(w http.ResponseWriter, r *http.Request) {
	x.handleJSON(w, r, opMessages, func(p *jsondec.Pool, b []byte) (*apiRequest, error) { return parseMessagesRequest(p, b, r.Header) })
}

func (x *Executor) handleEmbeddings(w http.ResponseWriter, r *http.Request) {
	x.handleJSON(w, r, opEmbeddings, parseEmbeddingsRequest)
}

// handleTranscription takes a multipart upload of up to Limits.Upload. The body is
// read once into memory and forwarded from that same buffer (also on a
// fallback), never copied a second time. An upload_id in place of the file
// is read from storage for the caller, and deleted once the upstream was
// asked (docs/api.md, "Large audio").
func (x *Executor) handleTranscription(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(w, r, x.limits().Upload, true)
	if err != nil {
		writeError(w, r, opTranscription, err)
		return
	}
	req, err := parseTranscriptionRequest(body, r.Header.Get("Content-Type"))
	if err != nil {
		writeError(w, r, opTranscription, err)
		return
	}
	if req.UploadID == "" {
		x.serve(w, r, req)
		return
	}
	p, ok := auth.FromContext(r.Context())
	if !ok || p.UserID == "" {
		writeError(w, r, opTranscription, apperr.New(apperr.Unauthorized, "missing credentials"))
		return
	}
	if x.Audio == nil {
		writeError(w, r, opTranscription, apperr.New(apperr.ServiceUnavailable, "large audio uploads are not configured here: send the file in the request instead"))
		return
	}
	audio, err := x.Audio.Read(r.Context(), p.UserID, req.UploadID)
	if err == nil {
		err = req.withUploadedFile(audio)
	}
	if err != nil {
		writeError(w, r, opTranscription, err)
		return
	}
	// Kept until the upstream was asked, so a refusal or a storage
	// failure before that leaves the client its upload to retry with.
	if x.serve(w, r, req) {
		x.Audio.Delete(r.Context(), p.UserID, req.UploadID)
	}
}

type copilotRequest struct {
	Message *string `json:"message"`
	Model   string  `json:"model"`
	Stream  bool    `json:"stream"`
}

// handleCopilot is the platform's simple endpoint: one user message, an
// optional model (default DefaultCopilotModel) and stream flag. It answers
// in the OpenAI chat completion format, through the same routing.
func (x *Executor) handleCopilot(w http.ResponseWriter, r *http.Request) {
	var req copilotRequest
	if err := httpx.DecodeJSON(w, r, x.limits().JSON, &req); err != nil {
		writeError(w, r, opChat, err)
		return
	}
	if req.Message == nil || *req.Message == "" {
		writeError(w, r, opChat, apperr.New(apperr.InvalidRequest, "field \"message\" is required"))
		return
	}
	model := req.Model
	if model == "" {
		model = x.DefaultCopilotModel
		if model == "" {
			model = "gpt-4o-mini"
		}
	}
	body, err := json.Marshal(map[string]any{
		"model": model, "stream": req.Stream,
		"messages": []map[string]string{{"role": "user", "content": *req.Message}},
	})
	if err != nil {
		writeError(w, r, opChat, err)
		return
	}
	cr, err := parseChatRequest(x.Decoders, body)
	if err != nil {
		writeError(w, r, opChat, err)
		return
	}
	x.serve(w, r, cr)
}

// opProviders are the providers each operation can reach today.
func opAllows(op operation, p provider.Name) bool {
	switch op {
	case opTranscription:
		return p == provider.OpenAI
	case opEmbeddings:
		return p != provider.Anthropic
	default:
		return true // every provider chats (docs/providers.md)
	}
}

// serve routes one parsed request. It reports whether the request was sent
// upstream (with any outcome).
func (x *Executor) serve(w http.ResponseWriter, r *http.Request, req *apiRequest) (sent bool) {
	return x.serveLoaded(w, r, req, nil)
}

// serveLoaded is serve with the caller's rows already being read (ld, from
// startLoad; nil: read them now).
func (x *Executor) serveLoaded(w http.ResponseWriter, r *http.Request, req *apiRequest, ld *userLoad) (sent bool) {
	ctx := r.Context()
	p, ok := auth.FromContext(ctx)
	if !ok {
		writeError(w, r, req.Op, apperr.New(apperr.Unauthorized, "missing credentials"))
		return
	}
	prov, upstreamModel, err := ProviderForModel(req.Model)
	if err == nil {
		err = servedProvider(prov)
	}
	if err == nil && !opAllows(req.Op, prov) {
		err = apperr.New(apperr.InvalidRequest, "model %q (%s) does not support %s", clip(req.Model), prov, req.Op.endpoint())
	}
	if err == nil && req.Op == opTranscription && upstreamModel != req.Model {
		err = apperr.New(apperr.InvalidRequest, "use the bare model name (e.g. whisper-1) for transcription")
	}
	if err != nil {
		writeError(w, r, req.Op, err)
		return
	}
	req.UpstreamModel = upstreamModel
	c, err := x.newCall(ctx, w, r, p, req, prov, ld)
	if err != nil {
		writeError(w, r, req.Op, err)
		return
	}
	if err := c.serve(ctx); err != nil {
		writeError(w, r, req.Op, err)
	}
	return len(c.usedKeys) > 0 // each attempt upstream records its key
}

// userLoad is what routing reads from storage for one caller: settings
// (cached), the account and keys with one query, and the org's (and
// project's) keys with one more when the token names an org.
type userLoad struct {
	done chan struct{}      // closed once the fields below are set (startLoad's)
	stop context.CancelFunc // abandons startLoad's read
	set  routing.Settings
	user store.User
	org  *store.Org
	err  error
}

func (x *Executor) load(ctx context.Context, p auth.Principal, l *userLoad) {
	if l.set, l.err = x.Settings.Get(ctx); l.err != nil {
		return
	}
	if l.user, l.err = x.Users.GetUser(ctx, p.UserID); l.err != nil {
		return
	}
	l.org, l.err = x.loadOrg(ctx, p)
}

// overlapMinBody is the smallest body (Content-Length) whose read and parse
// the caller's rows are read alongside: a smaller one is parsed (about 2 µs
// per KB) in less time than handing the read to a goroutine costs.
const overlapMinBody = 4 << 10

// startLoad starts reading the rows of ctx's caller and returns at once,
// for a body of size bytes (-1: unknown). It returns nil when the rows are
// better read after the parse (a small body, or no caller: serve refuses
// that request). The read ends with ctx or with stop, which the handler
// calls when it answers.
func (x *Executor) startLoad(ctx context.Context, size int64) *userLoad {
	p, ok := auth.FromContext(ctx)
	if !ok || (size >= 0 && size < overlapMinBody) {
		return nil
	}
	ctx, stop := context.WithCancel(ctx)
	l := &userLoad{done: make(chan struct{}), stop: stop}
	go func() {
		defer close(l.done)
		defer func() {
			// Off the handler's goroutine the middleware's recover does not
			// reach: a panic here becomes this request's 500.
			if v := recover(); v != nil {
				httpx.Logger(ctx, x.Log).Error("panic", "panic", fmt.Sprint(v))
				l.err = apperr.New(apperr.Internal, "internal error")
			}
		}()
		x.load(ctx, p, l)
	}()
	return l
}

// newCall builds the call from the caller's rows: ld's (waiting for them),
// or read now when ld is nil.
func (x *Executor) newCall(ctx context.Context, w http.ResponseWriter, r *http.Request, p auth.Principal, req *apiRequest, prov provider.Name, ld *userLoad) (*call, error) {
	userID := p.UserID
	if ld == nil {
		ld = &userLoad{}
		x.load(ctx, p, ld)
	} else {
		<-ld.done
	}
	if ld.err != nil {
		return nil, ld.err
	}
	set, u, org := ld.set, ld.user, ld.org
	c := &call{x: x, w: w, r: r, start: time.Now(), userID: userID, endpoint: req.Op.endpoint(), req: req, prov: prov, set: set, user: u}
	c.in = x.routingInput(set, u, userID, prov)
	c.pickKeys(org)
	c.ledgerID = r.Header.Get("Idempotency-Key")
	if c.ledgerID == "" || len(c.ledgerID) > 200 {
		c.ledgerID = httpx.RequestID(ctx)
	}
	return c, nil
}
