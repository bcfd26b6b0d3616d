package usage

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/lambdacontext"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/synthstack/byok/shared/apperr"
	"github.com/synthstack/byok/shared/auth"
	"github.com/synthstack/byok/shared/httpx"
	"github.com/synthstack/byok/shared/store"
)

// QueryAPI is the subset of *dynamodb.Client the usage reports use.
type QueryAPI interface {
	Query(context.Context, *dynamodb.QueryInput, ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error)
}

// Limits of the usage routes.
const (
	DefaultDays = 30
	MaxDays     = 400
	// DefaultPageSize is the Query page size: what one export holds in
	// memory per table at a time.
	DefaultPageSize = 1000
)

// Service serves GET /v1/usage and GET /v1/usage/export (docs/api.md §10): the
// caller's own usage metadata, BYOK rows from api_key_usage and credit rows
// (settle and release ledger rows, which carry the usage fields) from
// credit_transactions. Never prompt or response content: the rows hold none.
type Service struct {
	DB          QueryAPI
	TablePrefix string
	// Now defaults to time.Now.
	Now func() time.Time
	// PageSize is the Query Limit per page (default DefaultPageSize).
	PageSize int32
}

// Register adds the routes to mux.
func (s *Service) Register(mux httpx.Router) {
	mux.HandleFunc("GET /v1/usage", s.summary)
	mux.HandleFunc("GET /v1/usage/export", s.export)
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now().UTC()
	}
	return time.Now().UTC()
}

// Row is one request's usage as exported: a BYOK row or a credit ledger row.
type Row struct {
	RequestID      string    `json:"request_id"`
	At             time.Time `json:"at"`
	Route          string    `json:"route"`
	Endpoint       string    `json:"endpoint"`
	Provider       string    `json:"provider"`
	Model          string    `json:"model"`
	Stream         bool      `json:"stream"`
	InputTokens    int64     `json:"input_tokens"`
	OutputTokens   int64     `json:"output_tokens"`
	CostUSD        float64   `json:"cost_usd"`
	Credits        int64     `json:"credits"`
	Status         int       `json:"status"`
	ErrorClass     string    `json:"error_class"`
	LatencyMS      float64   `json:"latency_ms"`
	TTFTMS         float64   `json:"ttft_ms"`
	FallbackReason string    `json:"fallback_reason"`
	Cut            bool      `json:"cut"`
	// The member and the key of a row that used an org's or project's key
	// (docs/teams.md); empty on other rows.
	UserID     string `json:"user_id,omitempty"`
	Org        string `json:"org,omitempty"`
	Project    string `json:"project,omitempty"`
	ForProject string `json:"for_project,omitempty"`
	KeyScope   string `json:"key_scope,omitempty"`
	KeyID      string `json:"key_id,omitempty"`
}

// IsError reports whether the request failed (an error status or class).
func (r *Row) IsError() bool { return r.Status >= 400 || r.ErrorClass != "" }

// CSVHeader is the export's CSV header row.
var CSVHeader = []string{"request_id", "at", "route", "endpoint", "provider", "model", "stream",
	"input_tokens", "output_tokens", "cost_usd", "credits", "status", "error_class", "latency_ms",
	"ttft_ms", "fallback_reason", "cut"}

func (r *Row) csv(rec []string) []string {
	f := func(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
	t := cellText
	return append(rec[:0], t(r.RequestID), r.At.UTC().Format(time.RFC3339Nano), t(r.Route), t(r.Endpoint),
		t(r.Provider), t(r.Model), strconv.FormatBool(r.Stream), strconv.FormatInt(r.InputTokens, 10),
		strconv.FormatInt(r.OutputTokens, 10), f(r.CostUSD), strconv.FormatInt(r.Credits, 10),
		strconv.Itoa(r.Status), t(r.ErrorClass), f(r.LatencyMS), f(r.TTFTMS), t(r.FallbackReason),
		strconv.FormatBool(r.Cut))
}

// OrgCSVHeader is an org export's CSV header row: CSVHeader plus the member
// and the key of each row.
var OrgCSVHeader = append(slices.Clip(CSVHeader), "user_id", "org", "project", "for_project", "key_scope", "key_id")

func (r *Row) orgCSV(rec []string) []string {
	t := cellText
	return append(r.csv(rec), t(r.UserID), t(r.Org), t(r.Project), t(r.ForProject), t(r.KeyScope), t(r.KeyID))
}

// cellText neutralises a text cell a spreadsheet would run as a formula
// (CSV injection): one starting with =, +, -, @, tab or CR gets a leading
// apostrophe, which spreadsheets show as text. Model names and request ids
// come from clients, so every text cell goes through it; numbers do not.
func cellText(s string) string {
	if s != "" {
		switch s[0] {
		case '=', '+', '-', '@', '\t', '\r':
			return "'" + s
		}
	}
	return s
}

// ---------------------------------------------------------------- reading

// ledgerRow is the stored form of a settle/release ledger row.
type ledgerRow struct {
	SK        string     `dynamodbav:"sk"`
	RequestID string     `dynamodbav:"request_id"`
	Kind      string     `dynamodbav:"kind"`
	Charged   int64      `dynamodbav:"charged"`
	At        string     `dynamodbav:"at"`
	Meta      ledgerMeta `dynamodbav:"meta"`
}

// ledgerMeta is Record.Meta() as stored.
type ledgerMeta struct {
	Endpoint       string  `dynamodbav:"endpoint"`
	Provider       string  `dynamodbav:"provider"`
	Model          string  `dynamodbav:"model"`
	Stream         bool    `dynamodbav:"stream"`
	InputTokens    int64   `dynamodbav:"input_tokens"`
	OutputTokens   int64   `dynamodbav:"output_tokens"`
	CostUSD        float64 `dynamodbav:"cost_usd"`
	Status         int     `dynamodbav:"status"`
	ErrorClass     string  `dynamodbav:"error_class"`
	LatencyMS      float64 `dynamodbav:"latency_ms"`
	TTFTMS         float64 `dynamodbav:"ttft_ms"`
	FallbackReason string  `dynamodbav:"fallback_reason"`
	Cut            bool    `dynamodbav:"cut"`
}

// Row.Route values.
const (
	RouteBYOK    = "byok"
	RouteCredits = "credits"
)

const (
	txPrefix   = "TX#"
	timeLayout = "2006-01-02T15:04:05.000000000Z" // both tables' fixed-width sort key time
)

func decodeBYOK(it map[string]types.AttributeValue, dst *Row) error {
	var r Record
	if err := attributevalue.UnmarshalMap(it, &r); err != nil {
		return fmt.Errorf("usage: decode usage row: %w", err)
	}
	*dst = Row{ // the table is the route: api_key_usage holds BYOK rows only
		RequestID: r.RequestID, At: r.At.UTC(), Route: RouteBYOK, Endpoint: r.Endpoint, Provider: r.Provider,
		Model: r.Model, Stream: r.Stream, InputTokens: r.InputTokens, OutputTokens: r.OutputTokens,
		CostUSD: r.CostUSD, Credits: r.Credits, Status: r.Status, ErrorClass: r.ErrorClass,
		LatencyMS: r.LatencyMS, TTFTMS: r.TTFTMS, FallbackReason: r.FallbackReason, Cut: r.Cut,
	}
	if r.KeyScope == store.ScopeOrg || r.KeyScope == store.ScopeProject {
		dst.UserID, dst.Org, dst.Project, dst.ForProject, dst.KeyScope, dst.KeyID = r.UserID, r.Org, r.Project, r.ForProject, r.KeyScope, r.KeyID
	}
	return nil
}

func decodeLedger(it map[string]types.AttributeValue, dst *Row) error {
	var l ledgerRow
	if err := attributevalue.UnmarshalMap(it, &l); err != nil {
		return fmt.Errorf("usage: decode ledger row: %w", err)
	}
	at, err := time.Parse(time.RFC3339Nano, l.At)
	if err != nil && len(l.SK) >= len(txPrefix)+len(timeLayout) {
		at, err = time.Parse(timeLayout, l.SK[len(txPrefix):len(txPrefix)+len(timeLayout)])
	}
	if err != nil {
		return fmt.Errorf("usage: ledger row %q has no valid time", l.SK)
	}
	m := l.Meta
	*dst = Row{ // the ledger's usage rows are the credits route's
		RequestID: l.RequestID, At: at.UTC(), Route: RouteCredits, Endpoint: m.Endpoint, Provider: m.Provider,
		Model: m.Model, Stream: m.Stream, InputTokens: m.InputTokens, OutputTokens: m.OutputTokens,
		CostUSD: m.CostUSD, Credits: l.Charged, Status: m.Status, ErrorClass: m.ErrorClass,
		LatencyMS: m.LatencyMS, TTFTMS: m.TTFTMS, FallbackReason: m.FallbackReason, Cut: m.Cut,
	}
	return nil
}

// pager reads one table's rows of a user and range a page at a time,
// holding only the current page.
type pager struct {
	db     QueryAPI
	in     dynamodb.QueryInput
	decode func(map[string]types.AttributeValue, *Row) error
	// beforeFetch runs before every page read after the first one (the
	// export flushes what it wrote).
	beforeFetch func()
	buf         []Row
	i           int
	done        bool
	fetched     bool
}

// peek returns the next row without consuming it (nil at the end).
func (p *pager) peek(ctx context.Context) (*Row, error) {
	for p.i >= len(p.buf) {
		if p.done {
			return nil, nil
		}
		if p.fetched && p.beforeFetch != nil {
			p.beforeFetch()
		}
		out, err := p.db.Query(ctx, &p.in)
		if err != nil {
			if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
				return nil, err
			}
			return nil, apperr.Wrap(fmt.Errorf("usage query: %w", err), apperr.ServiceUnavailable, "usage storage is unavailable; try again shortly")
		}
		p.fetched = true
		clear(p.buf)
		p.buf, p.i = p.buf[:0], 0
		for _, it := range out.Items {
			p.buf = append(p.buf, Row{})
			if err := p.decode(it, &p.buf[len(p.buf)-1]); err != nil {
				return nil, err
			}
		}
		if len(out.LastEvaluatedKey) == 0 {
			p.done = true
		} else {
			p.in.ExclusiveStartKey = out.LastEvaluatedKey
		}
	}
	return &p.buf[p.i], nil
}

func (p *pager) pop() { p.i++ }

// rowIter yields usage rows oldest first.
type rowIter interface {
	// prime reads the first page (so a storage failure can still be
	// answered with an error status).
	prime(ctx context.Context) error
	// next returns the next row (nil at the end), valid until the next call.
	next(ctx context.Context) (*Row, error)
	// beforeFetch sets what runs before each later page read.
	beforeFetch(func())
}

// merged yields the BYOK and credit rows of a user in [from, to), oldest
// first, merging the two time-ordered tables.
type merged struct {
	byok, credits *pager
}

func (m *merged) beforeFetch(f func()) { m.byok.beforeFetch, m.credits.beforeFetch = f, f }

// single yields one pager's rows: an org's rows from the org_usage index.
type single struct{ p *pager }

func (o single) prime(ctx context.Context) error { _, err := o.p.peek(ctx); return err }
func (o single) beforeFetch(f func())            { o.p.beforeFetch = f }
func (o single) next(ctx context.Context) (*Row, error) {
	r, err := o.p.peek(ctx)
	if r != nil {
		o.p.pop()
	}
	return r, err
}

func (s *Service) pageSize() int32 {
	if s.PageSize <= 0 {
		return DefaultPageSize
	}
	return s.PageSize
}

// orgRows yields the rows in [from, to) of tries that used org's or its
// projects' keys, whoever made them: the sparse org_usage index holds only
// those rows (docs/teams.md), so nothing else of the members is read.
func (s *Service) orgRows(org string, from, to time.Time) single {
	s2 := func(v string) types.AttributeValue { return &types.AttributeValueMemberS{Value: v} }
	return single{&pager{db: s.DB, decode: decodeBYOK, in: dynamodb.QueryInput{
		TableName:                 aws.String(store.UsageTable.Name(s.TablePrefix)),
		IndexName:                 aws.String(store.OrgUsageIndex.Name),
		KeyConditionExpression:    aws.String("#pk = :pk AND #sk BETWEEN :lo AND :hi"),
		ExpressionAttributeNames:  map[string]string{"#pk": store.AttrOrgPK, "#sk": store.AttrOrgSK},
		ExpressionAttributeValues: map[string]types.AttributeValue{":pk": s2(OrgPK(org)), ":lo": s2(from.UTC().Format(timeLayout)), ":hi": s2(to.UTC().Format(timeLayout))},
		Limit:                     aws.Int32(s.pageSize()),
	}}}
}

func (s *Service) rows(userID string, from, to time.Time) *merged {
	limit := s.pageSize()
	pk := &types.AttributeValueMemberS{Value: "USER#" + userID}
	lo, hi := from.UTC().Format(timeLayout), to.UTC().Format(timeLayout)
	s2 := func(v string) types.AttributeValue { return &types.AttributeValueMemberS{Value: v} }
	return &merged{
		// sk = <time>#<request id>: BETWEEN <from> AND <to> is [from, to).
		byok: &pager{db: s.DB, decode: decodeBYOK, in: dynamodb.QueryInput{
			TableName:                 aws.String(store.UsageTable.Name(s.TablePrefix)),
			KeyConditionExpression:    aws.String("#pk = :pk AND #sk BETWEEN :lo AND :hi"),
			ExpressionAttributeNames:  map[string]string{"#pk": store.AttrPK, "#sk": store.AttrSK},
			ExpressionAttributeValues: map[string]types.AttributeValue{":pk": pk, ":lo": s2(lo), ":hi": s2(hi)},
			Limit:                     aws.Int32(limit),
		}},
		// Ledger rows TX#<time>#...: only settle and release rows carry
		// usage; reservations and grants are not usage.
		credits: &pager{db: s.DB, decode: decodeLedger, in: dynamodb.QueryInput{
			TableName:              aws.String(store.CreditTransactionsTable.Name(s.TablePrefix)),
			KeyConditionExpression: aws.String("#pk = :pk AND #sk BETWEEN :lo AND :hi"),
			FilterExpression:       aws.String("#kind IN (:settle, :release) AND attribute_exists(#meta)"),
			ExpressionAttributeNames: map[string]string{
				"#pk": store.AttrPK, "#sk": store.AttrSK, "#kind": "kind", "#meta": "meta",
			},
			ExpressionAttributeValues: map[string]types.AttributeValue{
				":pk": pk, ":lo": s2(txPrefix + lo), ":hi": s2(txPrefix + hi),
				":settle": s2("settle"), ":release": s2("release"),
			},
			Limit: aws.Int32(limit),
		}},
	}
}

// prime reads the first page of both tables (so a storage failure can still
// be answered with an error status).
func (m *merged) prime(ctx context.Context) error {
	if _, err := m.byok.peek(ctx); err != nil {
		return err
	}
	_, err := m.credits.peek(ctx)
	return err
}

// next returns the next row, oldest first (nil at the end). The row is valid
// until the following call.
func (m *merged) next(ctx context.Context) (*Row, error) {
	a, err := m.byok.peek(ctx)
	if err != nil {
		return nil, err
	}
	b, err := m.credits.peek(ctx)
	if err != nil {
		return nil, err
	}
	switch {
	case a == nil && b == nil:
		return nil, nil
	case b == nil || (a != nil && !b.At.Before(a.At)):
		m.byok.pop()
		return a, nil
	default:
		m.credits.pop()
		return b, nil
	}
}

// ---------------------------------------------------------------- summary

// Totals sums a set of rows.
type Totals struct {
	Requests     int64   `json:"requests"`
	InputTokens  int64   `json:"input_tokens"`
	OutputTokens int64   `json:"output_tokens"`
	CostUSD      float64 `json:"cost_usd"`
	Errors       int64   `json:"errors"`
}

func (t *Totals) add(r *Row) {
	t.Requests++
	t.InputTokens += r.InputTokens
	t.OutputTokens += r.OutputTokens
	t.CostUSD += r.CostUSD
	if r.IsError() {
		t.Errors++
	}
}

// CreditTotals are the Totals of credit rows plus the credits charged.
type CreditTotals struct {
	Totals
	CreditsCharged int64 `json:"credits_charged"`
}

// Split holds BYOK and credit totals apart.
type Split struct {
	BYOK    Totals       `json:"byok"`
	Credits CreditTotals `json:"credits"`
}

func (s *Split) add(r *Row) {
	if r.Route == RouteCredits {
		s.Credits.add(r)
		s.Credits.CreditsCharged += r.Credits
		return
	}
	s.BYOK.add(r)
}

func (s *Split) round() {
	s.BYOK.CostUSD = roundUSD(s.BYOK.CostUSD)
	s.Credits.CostUSD = roundUSD(s.Credits.CostUSD)
}

// roundUSD drops float summation noise (below a billionth of a cent).
func roundUSD(v float64) float64 { return math.Round(v*1e11) / 1e11 }

// DayUsage is one UTC day of usage.
type DayUsage struct {
	Date string `json:"date"` // YYYY-MM-DD (UTC)
	Split
}

// Summary is the body of GET /v1/usage.
type Summary struct {
	Days int       `json:"days"`
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
	Split
	ByProvider map[string]*Split `json:"by_provider"`
	ByModel    map[string]*Split `json:"by_model"`
	// ByDay lists every UTC day of the range, oldest first, zero when idle.
	ByDay []DayUsage `json:"by_day"`
}

// OrgSummary is the body of GET /v1/usage?org=: the Summary of the rows of
// tries with the org's or its projects' keys (all BYOK), plus per project
// the member's token named ("" for none) and per member (user id).
type OrgSummary struct {
	Org string `json:"org"`
	Summary
	ByProject map[string]*OrgProject `json:"by_project"`
	ByMember  map[string]*Split      `json:"by_member"`
}

// OrgProject is one project's share of an org's usage (chargeback).
type OrgProject struct {
	Split
	ByProvider map[string]*Split `json:"by_provider"`
	ByModel    map[string]*Split `json:"by_model"`
}

// projectOf is the project a row is charged to: the one the token named,
// else the key's own (rows written before for_project existed).
func projectOf(r *Row) string {
	if r.ForProject != "" {
		return r.ForProject
	}
	return r.Project
}

func (s *Service) summary(w http.ResponseWriter, r *http.Request) {
	p, ok := auth.FromContext(r.Context())
	if !ok || p.UserID == "" {
		httpx.WriteError(w, r, apperr.New(apperr.Unauthorized, "missing credentials"))
		return
	}
	q := r.URL.Query()
	if err := noUserParam(q.Has); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	org, err := orgParam(p, q)
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	days := DefaultDays
	if q.Has("days") {
		n, err := strconv.Atoi(q.Get("days"))
		if err != nil || n < 1 || n > MaxDays {
			httpx.WriteError(w, r, apperr.New(apperr.InvalidRequest, "days must be an integer from 1 to %d", MaxDays))
			return
		}
		days = n
	}
	now := s.now()
	today := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	from := today.AddDate(0, 0, -(days - 1))
	// to is just past now, so a row written this instant is included.
	to := now.Add(time.Nanosecond)
	if org != "" {
		sum, err := s.SummarizeOrg(r.Context(), org, from, to)
		if err != nil {
			httpx.WriteError(w, r, err)
			return
		}
		sum.Days, sum.To = days, now
		httpx.WriteJSON(w, http.StatusOK, sum)
		return
	}
	sum, err := s.Summarize(r.Context(), p.UserID, from, to)
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	sum.Days, sum.To = days, now
	httpx.WriteJSON(w, http.StatusOK, sum)
}

// Summarize totals userID's usage in [from, to): all of it, per provider,
// per model and per UTC day. It reads page by page; memory grows only with
// the number of distinct providers, models and days.
func (s *Service) Summarize(ctx context.Context, userID string, from, to time.Time) (*Summary, error) {
	return s.summarize(ctx, s.rows(userID, from, to), from, to, nil)
}

// SummarizeOrg totals the usage in [from, to) of every member's tries with
// org's or its projects' keys: as Summarize, plus per project and per
// member. It reads nothing of the members' other usage.
func (s *Service) SummarizeOrg(ctx context.Context, org string, from, to time.Time) (*OrgSummary, error) {
	out := &OrgSummary{Org: org, ByProject: map[string]*OrgProject{}, ByMember: map[string]*Split{}}
	sum, err := s.summarize(ctx, s.orgRows(org, from, to), from, to, func(row *Row) {
		pr := out.ByProject[projectOf(row)]
		if pr == nil {
			pr = &OrgProject{ByProvider: map[string]*Split{}, ByModel: map[string]*Split{}}
			out.ByProject[projectOf(row)] = pr
		}
		pr.add(row)
		bucket(pr.ByProvider, row.Provider).add(row)
		bucket(pr.ByModel, row.Model).add(row)
		bucket(out.ByMember, row.UserID).add(row)
	})
	if err != nil {
		return nil, err
	}
	out.Summary = *sum
	for _, pr := range out.ByProject {
		pr.round()
		roundAll(pr.ByProvider, pr.ByModel)
	}
	roundAll(out.ByMember)
	return out, nil
}

// bucket returns m's Split for k ("unknown" when empty), adding it.
func bucket(m map[string]*Split, k string) *Split {
	if k == "" {
		k = "unknown"
	}
	if m[k] == nil {
		m[k] = &Split{}
	}
	return m[k]
}

func roundAll(ms ...map[string]*Split) {
	for _, m := range ms {
		for _, v := range m {
			v.round()
		}
	}
}

// summarize totals its rows; each row also goes to extra when set.
func (s *Service) summarize(ctx context.Context, it rowIter, from, to time.Time, extra func(*Row)) (*Summary, error) {
	from, to = from.UTC(), to.UTC()
	sum := &Summary{From: from, To: to, ByProvider: map[string]*Split{}, ByModel: map[string]*Split{}}
	dayIndex := map[string]int{}
	for d := time.Date(from.Year(), from.Month(), from.Day(), 0, 0, 0, 0, time.UTC); d.Before(to); d = d.AddDate(0, 0, 1) {
		dayIndex[d.Format(time.DateOnly)] = len(sum.ByDay)
		sum.ByDay = append(sum.ByDay, DayUsage{Date: d.Format(time.DateOnly)})
	}
	for {
		row, err := it.next(ctx)
		if err != nil {
			return nil, err
		}
		if row == nil {
			break
		}
		sum.add(row)
		bucket(sum.ByProvider, row.Provider).add(row)
		bucket(sum.ByModel, row.Model).add(row)
		if i, ok := dayIndex[row.At.Format(time.DateOnly)]; ok {
			sum.ByDay[i].add(row)
		}
		if extra != nil {
			extra(row)
		}
	}
	sum.round()
	roundAll(sum.ByProvider, sum.ByModel)
	for i := range sum.ByDay {
		sum.ByDay[i].round()
	}
	return sum, nil
}

// noUserParam refuses a query that tries to pick a user: usage is always
// the caller's own.
func noUserParam(has func(string) bool) error {
	for _, k := range []string{"user", "user_id", "userId"} {
		if has(k) {
			return apperr.New(apperr.InvalidRequest, "usage is always the caller's own; the %q parameter is not accepted", k)
		}
	}
	return nil
}

// orgParam reads ?org=: "" for the caller's own usage, else the org whose
// usage an owner or admin of it asks for (docs/teams.md). A member, or a
// token for another org, is refused with 403 before anything is read.
func orgParam(p auth.Principal, q url.Values) (string, error) {
	if !q.Has("org") {
		return "", nil
	}
	org := q.Get("org")
	if !auth.ValidOrgID(org) {
		return "", apperr.New(apperr.InvalidRequest, "org must be an organisation id: 1..%d printable characters without space, '#' or '/'", auth.MaxOrgIDLen)
	}
	if p.Org != org {
		return "", apperr.New(apperr.Forbidden, "your token is not for organisation %q; an organisation's usage is read with a token whose org claim names it and whose org_role is owner or admin", org)
	}
	if !p.OrgAdmin(org) {
		role := p.OrgRole
		if role == "" {
			role = auth.OrgMember
		}
		return "", apperr.New(apperr.Forbidden, "organisation %q's usage is shown to its owners and admins only; your org_role is %s (your own usage is GET /v1/usage without org)", org, role)
	}
	return org, nil
}

// ---------------------------------------------------------------- export

// parseBound reads an RFC 3339 time or a YYYY-MM-DD date (UTC midnight; as
// an upper bound, the end of that day).
func parseBound(name, v string, upper bool) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t.UTC(), nil
	}
	if t, err := time.Parse(time.DateOnly, v); err == nil {
		if upper {
			t = t.AddDate(0, 0, 1)
		}
		return t, nil
	}
	return time.Time{}, apperr.New(apperr.InvalidRequest,
		"%s must be an RFC 3339 time (2026-11-29T10:00:00Z) or a date (2026-11-29)", name)
}

// exportRange reads from and to: default the last 30 days; to > from; at
// most MaxDays apart.
func (s *Service) exportRange(from, to string) (time.Time, time.Time, error) {
	end := s.now().Add(time.Nanosecond)
	if to != "" {
		t, err := parseBound("to", to, true)
		if err != nil {
			return time.Time{}, time.Time{}, err
		}
		end = t
	}
	start := end.AddDate(0, 0, -DefaultDays)
	if from != "" {
		t, err := parseBound("from", from, false)
		if err != nil {
			return time.Time{}, time.Time{}, err
		}
		start = t
	}
	if !end.After(start) {
		return time.Time{}, time.Time{}, apperr.New(apperr.InvalidRequest, "to must be after from")
	}
	if end.Sub(start) > MaxDays*24*time.Hour {
		return time.Time{}, time.Time{}, apperr.New(apperr.InvalidRequest, "the range from..to must be at most %d days", MaxDays)
	}
	return start, end, nil
}

func (s *Service) export(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	p, ok := auth.FromContext(ctx)
	if !ok || p.UserID == "" {
		httpx.WriteError(w, r, apperr.New(apperr.Unauthorized, "missing credentials"))
		return
	}
	q := r.URL.Query()
	if err := noUserParam(q.Has); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	format := q.Get("format")
	if !q.Has("format") {
		format = "csv"
	}
	if format != "csv" && format != "json" {
		httpx.WriteError(w, r, apperr.New(apperr.InvalidRequest, "format must be csv or json"))
		return
	}
	org, err := orgParam(p, q)
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	from, to, err := s.exportRange(q.Get("from"), q.Get("to"))
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	var it rowIter = s.rows(p.UserID, from, to)
	header, toCSV := CSVHeader, (*Row).csv
	name := fmt.Sprintf("usage-%s-%s.%s", from.Format("20060102T150405Z"), to.Format("20060102T150405Z"), format)
	if org != "" {
		it, header, toCSV = s.orgRows(org, from, to), OrgCSVHeader, (*Row).orgCSV
		name = fmt.Sprintf("usage-org-%s-%s-%s.%s", fileSafe(org), from.Format("20060102T150405Z"), to.Format("20060102T150405Z"), format)
	}
	if err := it.prime(ctx); err != nil { // nothing written yet: a proper error status
		if ctx.Err() == nil {
			httpx.WriteError(w, r, err)
		}
		return
	}

	rc := http.NewResponseController(w)
	h := w.Header()
	if format == "csv" {
		h.Set("Content-Type", "text/csv; charset=utf-8")
	} else {
		h.Set("Content-Type", "application/json")
	}
	h.Set("Content-Disposition", `attachment; filename="`+name+`"`)
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)

	var rowsOut int64
	var werr error
	var flush func()
	var writeRow func(*Row)
	var finish func()
	switch format {
	case "csv":
		cw := csv.NewWriter(w)
		_ = cw.Write(header)
		rec := make([]string, 0, len(header))
		flush = func() {
			cw.Flush()
			if werr == nil {
				werr = cw.Error()
			}
			_ = rc.Flush()
		}
		writeRow = func(row *Row) { rec = toCSV(row, rec); _ = cw.Write(rec) }
		finish = flush
	default:
		bw := bufio.NewWriterSize(w, 32<<10)
		enc := json.NewEncoder(bw)
		_, _ = bw.WriteString("[")
		flush = func() {
			if err := bw.Flush(); err != nil && werr == nil {
				werr = err
			}
			_ = rc.Flush()
		}
		writeRow = func(row *Row) {
			if rowsOut > 0 {
				_ = bw.WriteByte(',')
			}
			if err := enc.Encode(row); err != nil && werr == nil {
				werr = err
			}
		}
		finish = func() { _, _ = bw.WriteString("]\n"); flush() }
	}
	it.beforeFetch(flush)
	flush() // the header row / "[" goes out at once

	for werr == nil {
		row, err := it.next(ctx)
		if err != nil {
			s.abort(w, r, rowsOut, err)
			return
		}
		if row == nil {
			break
		}
		writeRow(row)
		rowsOut++
	}
	if werr == nil {
		finish()
	}
	if werr != nil {
		// The client went away (or the connection broke): nothing to tell.
		httpx.Logger(ctx, slog.Default()).Info("usage export stopped: write failed", "rows", rowsOut, "err", werr.Error())
	}
}

// fileSafe keeps the characters of an org id that are safe in a quoted
// Content-Disposition file name (ids are printable ASCII; quotes, slashes
// and the like become '_').
func fileSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' {
			return r
		}
		return '_'
	}, s)
}

// abort ends an export that failed after its first byte: the status cannot
// change any more. It logs the failure and, on a real connection, aborts the
// response so the client sees a broken transfer rather than a complete-
// looking file (a JSON export also lacks its closing bracket). Inside Lambda
// (buffered by the API adapter, where a panic would end the process) it only
// stops writing.
func (s *Service) abort(_ http.ResponseWriter, r *http.Request, rows int64, err error) {
	log := httpx.Logger(r.Context(), slog.Default())
	if r.Context().Err() != nil {
		log.Info("usage export stopped: client went away", "rows", rows)
		return
	}
	log.Error("usage export failed after the response began; the export is incomplete", "rows", rows, "err", err.Error())
	if _, inLambda := lambdacontext.FromContext(r.Context()); !inLambda {
		panic(http.ErrAbortHandler)
	}
}
