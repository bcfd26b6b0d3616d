package keys

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/synthstack/byok/shared/apperr"
	"github.com/synthstack/byok/shared/events"
	"github.com/synthstack/byok/shared/httpx"
	"github.com/synthstack/byok/shared/provider"
	"github.com/synthstack/byok/shared/routing"
	"github.com/synthstack/byok/shared/store"
)

// StaleAfter is how long a key may go unused before it is shown as stale.
const StaleAfter = 90 * 24 * time.Hour

// Limits of the editable key fields.
const (
	MaxLabelLen    = 64
	MaxPriority    = 1000
	MaxModels      = 32
	MaxModelLen    = 128
	maxWriteTries  = 3
	validateFanout = 4
)

// View is a provider's keys as clients see them: never more than hints. The
// top-level fields describe the first usable entry (the first that is not
// invalid, else the first); Entries lists every key in the order they are
// tried. KeyID names the key an add, patch or single-key test concerned.
type View struct {
	Provider    string     `json:"provider"`
	Configured  bool       `json:"configured"`
	Status      *string    `json:"status"`
	Reason      *string    `json:"reason"`
	Detail      *string    `json:"detail"`
	Hint        *string    `json:"hint"`
	ValidatedAt *time.Time `json:"validated_at"`
	UpdatedAt   *time.Time `json:"updated_at"`
	KeyID       *string    `json:"key_id,omitempty"`
	Entries     []Entry    `json:"entries"`
}

// Entry is one stored key of a provider.
type Entry struct {
	KeyID       string     `json:"key_id"`
	Label       string     `json:"label"`
	Priority    int        `json:"priority"`
	Models      []string   `json:"models"`
	Status      string     `json:"status"`
	Reason      *string    `json:"reason"`
	Detail      *string    `json:"detail"`
	Hint        string     `json:"hint"`
	ValidatedAt *time.Time `json:"validated_at"`
	LastUsedAt  *time.Time `json:"last_used_at"`
	Stale       bool       `json:"stale"`
	Scope       string     `json:"scope"`
	// Azure OpenAI only: where the key is sent and what it serves.
	Endpoint    string            `json:"endpoint,omitempty"`
	APIVersion  string            `json:"api_version,omitempty"`
	Deployments map[string]string `json:"deployments,omitempty"`
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

func strPtr(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// Stale reports whether k has gone unused (since its last use, or since it
// was stored when never used) for StaleAfter at now.
func Stale(k store.KeyRecord, now time.Time) bool {
	last := k.LastUsedAt
	if last.IsZero() {
		last = k.CreatedAt
	}
	return !last.IsZero() && now.Sub(last) >= StaleAfter
}

func (s *Service) viewOf(p provider.Name, ks []store.KeyRecord) View {
	v := View{Provider: string(p), Entries: make([]Entry, 0, len(ks))}
	now := s.now()
	for _, k := range ks {
		models := k.Models
		if models == nil {
			models = []string{}
		}
		v.Entries = append(v.Entries, Entry{
			KeyID: k.KeyID, Label: k.Label, Priority: k.Priority, Models: models, Status: k.Status,
			Reason: strPtr(k.Reason), Detail: strPtr(k.Detail), Hint: k.Hint, ValidatedAt: timePtr(k.ValidatedAt),
			LastUsedAt: timePtr(k.LastUsedAt), Stale: Stale(k, now), Scope: k.Scope(),
			Endpoint: k.Endpoint, APIVersion: k.APIVersion, Deployments: k.Deployments,
		})
	}
	first, ok := store.FirstUsable(ks)
	if !ok {
		return v
	}
	v.Configured = true
	st, hint := first.Status, first.Hint
	v.Status, v.Hint, v.Reason, v.Detail = &st, &hint, strPtr(first.Reason), strPtr(first.Detail)
	v.ValidatedAt, v.UpdatedAt = timePtr(first.ValidatedAt), timePtr(first.UpdatedAt)
	return v
}

func (s *Service) withKeyID(v View, keyID string) View {
	v.KeyID = &keyID
	return v
}

func (s *Service) sets() (SetStore, error) {
	if s.Sets != nil {
		return s.Sets, nil
	}
	if ss, ok := s.Store.(SetStore); ok {
		return ss, nil
	}
	return nil, apperr.New(apperr.Internal, "keys: no key-set storage configured")
}

// NewKey is a key to store with its optional fields.
type NewKey struct {
	APIKey   string
	Label    string
	Priority int
	Models   []string
	// Azure is an azure_openai key's endpoint, api_version and deployments.
	Azure AzureConfig
}

// CheckLabel, CheckPriority and CheckModels validate the editable fields.
func CheckLabel(l string) error {
	if len(l) > MaxLabelLen || !utf8.ValidString(l) || strings.IndexFunc(l, unicode.IsControl) >= 0 {
		return apperr.New(apperr.InvalidRequest, "field \"label\" must be at most %d printable characters", MaxLabelLen)
	}
	return nil
}

// CheckPriority validates a key's priority (lower is tried first).
func CheckPriority(p int) error {
	if p < 0 || p > MaxPriority {
		return apperr.New(apperr.InvalidRequest, "field \"priority\" must be an integer from 0 to %d (lower is tried first)", MaxPriority)
	}
	return nil
}

// CheckModels validates a model filter: exact names or "prefix*" patterns.
func CheckModels(ms []string) error {
	if len(ms) > MaxModels {
		return apperr.New(apperr.InvalidRequest, "field \"models\" may list at most %d models or patterns", MaxModels)
	}
	seen := map[string]bool{}
	for _, m := range ms {
		star := strings.IndexByte(m, '*')
		ok := m != "" && m != "*" && len(m) <= MaxModelLen && (star < 0 || star == len(m)-1)
		for i := 0; ok && i < len(m); i++ {
			ok = m[i] > ' ' && m[i] <= '~'
		}
		if !ok {
			return apperr.New(apperr.InvalidRequest, "field \"models\": each entry must be a model name or a \"prefix*\" pattern (1..%d printable characters, '*' only at the end)", MaxModelLen)
		}
		if seen[m] {
			return apperr.New(apperr.InvalidRequest, "field \"models\" lists %q twice", m)
		}
		seen[m] = true
	}
	return nil
}

// ModelAllowed reports whether a key's model filter admits model (an empty
// filter admits every model).
func ModelAllowed(filter []string, model string) bool {
	if len(filter) == 0 {
		return true
	}
	for _, f := range filter {
		if p, ok := strings.CutSuffix(f, "*"); ok {
			if strings.HasPrefix(model, p) {
				return true
			}
		} else if f == model {
			return true
		}
	}
	return false
}

// check validates n for p without any network call; an Azure key's
// configuration comes back normalised.
func (s *Service) check(p provider.Name, n *NewKey) error {
	if p == provider.AzureOpenAI {
		c, err := s.checkAzure(n.Azure)
		if err != nil {
			return err
		}
		n.Azure = c
	} else if f, ok := n.Azure.set(); ok {
		return apperr.New(apperr.InvalidRequest, "field %q is only for azure_openai keys", f)
	}
	if err := provider.CheckFormat(p, n.APIKey); err != nil {
		return err
	}
	if err := CheckLabel(n.Label); err != nil {
		return err
	}
	if err := CheckPriority(n.Priority); err != nil {
		return err
	}
	return CheckModels(n.Models)
}

// mayStore checks BYOK is enabled, and for a user's own key that the user's
// tier may use BYOK. Org and project keys are the org's: they need no tier
// of the admin storing them (each member's own tier governs their use).
func (s *Service) mayStore(ctx context.Context, caller string, owner store.Owner) (*store.Account, error) {
	set, _, err := s.Store.GetSettings(ctx, s.DefaultMode)
	if err != nil {
		return nil, err
	}
	if !set.BYOKEnabled {
		return nil, apperr.New(apperr.BYOKDisabled, "bring-your-own-key is disabled by the administrator")
	}
	if owner.Scope != store.ScopeUser {
		return nil, nil
	}
	u, err := s.Store.GetUser(ctx, caller)
	if err != nil {
		return nil, err
	}
	if !tierOf(u.Account).BYOKTier() {
		return nil, apperr.New(apperr.BYOKNotAvailable, "bring-your-own-key needs a premium or lifetime plan; your plan is %s", tierOf(u.Account))
	}
	return u.Account, nil
}

// seal seals and validates n for owner and returns the record to store.
func (s *Service) seal(ctx context.Context, owner store.Owner, p provider.Name, n NewKey) (store.KeyRecord, error) {
	rec := store.KeyRecord{Provider: string(p), KeyID: uuid.NewString(), Label: n.Label, Priority: n.Priority, Models: n.Models,
		Endpoint: n.Azure.Endpoint, APIVersion: n.Azure.APIVersion, Deployments: n.Azure.Deployments}
	rec.SetOwner(owner)
	// Seal before calling the provider: a vault that is not configured or
	// unreachable refuses the save without any upstream call.
	blob, err := s.Sealer.Seal(ctx, VaultContext(rec), []byte(n.APIKey))
	if err != nil {
		return store.KeyRecord{}, err
	}
	wrapperID, err := s.Sealer.WrapperID(blob)
	if err != nil {
		return store.KeyRecord{}, err
	}
	res := s.Validator.ValidateCredential(ctx, p, Credential(rec, n.APIKey))
	if res.Reason == provider.ReasonEndpointRefused {
		// Refused when dialling (an inward address): nothing was sent and
		// nothing is stored.
		return store.KeyRecord{}, apperr.New(apperr.InvalidRequest, "field \"endpoint\" was refused: %s", strings.TrimPrefix(res.Detail, "azure endpoint refused: "))
	}
	now := s.now()
	rec.Ciphertext, rec.WrapperID, rec.Hint = blob, wrapperID, provider.Hint(n.APIKey)
	rec.Status, rec.Reason, rec.Detail = string(res.Status), string(res.Reason), res.Detail
	rec.ValidatedAt, rec.CreatedAt, rec.UpdatedAt = now, now, now
	return rec, nil
}

func conflictErr(p provider.Name) error {
	return apperr.New(apperr.Conflict, "the %s keys were changed by another request at the same time; try again", p)
}

// Put validates apiKey's format, the user's right to BYOK, then the key
// itself with the provider, and stores it sealed, replacing every key the
// user has for p.
func (s *Service) Put(ctx context.Context, userID string, p provider.Name, apiKey string) (View, error) {
	return s.Replace(ctx, userID, store.UserOwner(userID), p, NewKey{APIKey: apiKey})
}

// Replace stores n as owner's only key for p (PUT): every other key of that
// provider is deleted in the same write.
func (s *Service) Replace(ctx context.Context, caller string, owner store.Owner, p provider.Name, n NewKey) (View, error) {
	if err := s.check(p, &n); err != nil {
		return View{}, err
	}
	acc, err := s.mayStore(ctx, caller, owner)
	if err != nil {
		return View{}, err
	}
	sets, err := s.sets()
	if err != nil {
		return View{}, err
	}
	rec, err := s.seal(ctx, owner, p, n)
	if err != nil {
		return View{}, err
	}
	ks, err := sets.GetKeySet(ctx, owner)
	if err != nil {
		return View{}, err
	}
	old := ks.Keys[string(p)]
	if err := sets.ReplaceKeys(ctx, rec, old); err != nil {
		return View{}, err
	}
	rec.Primary = true
	prev := ""
	if f, ok := store.FirstUsable(old); ok {
		prev = f.Status
	}
	s.transition(WithActor(ctx, caller), acc, rec, prev, events.BySave)
	httpx.Logger(ctx, s.Log).Info("key saved", ownerAttrs(rec, "provider", string(p), "key_id", rec.KeyID, "hint", rec.Hint,
		"status", rec.Status, "reason", rec.Reason, "replaced", len(old))...)
	return s.viewOf(p, []store.KeyRecord{rec}), nil
}

// Add stores n as one more key of owner for p (POST), at most
// store.MaxKeysPerProvider per provider and owner.
func (s *Service) Add(ctx context.Context, caller string, owner store.Owner, p provider.Name, n NewKey) (View, error) {
	if err := s.check(p, &n); err != nil {
		return View{}, err
	}
	acc, err := s.mayStore(ctx, caller, owner)
	if err != nil {
		return View{}, err
	}
	sets, err := s.sets()
	if err != nil {
		return View{}, err
	}
	full := func(ks store.KeySet) error {
		if len(ks.Keys[string(p)]) >= store.MaxKeysPerProvider {
			return apperr.New(apperr.Conflict, "there are already %d %s keys here (the most allowed); delete one before adding another",
				store.MaxKeysPerProvider, p)
		}
		return nil
	}
	ks, err := sets.GetKeySet(ctx, owner)
	if err != nil {
		return View{}, err
	}
	if err := full(ks); err != nil { // before any provider call
		return View{}, err
	}
	rec, err := s.seal(ctx, owner, p, n)
	if err != nil {
		return View{}, err
	}
	for try := 1; ; try++ {
		err = sets.AddKey(ctx, rec, ks.Version(string(p)))
		if !errors.Is(err, store.ErrConflict) {
			break
		}
		if try >= maxWriteTries {
			return View{}, conflictErr(p)
		}
		if ks, err = sets.GetKeySet(ctx, owner); err != nil {
			return View{}, err
		}
		if err := full(ks); err != nil {
			return View{}, err
		}
	}
	if err != nil {
		return View{}, err
	}
	s.transition(WithActor(ctx, caller), acc, rec, "", events.BySave)
	httpx.Logger(ctx, s.Log).Info("key added", ownerAttrs(rec, "provider", string(p), "key_id", rec.KeyID, "hint", rec.Hint,
		"status", rec.Status, "reason", rec.Reason)...)
	all := append(ks.Keys[string(p)], rec)
	store.SortKeys(all)
	return s.withKeyID(s.viewOf(p, all), rec.KeyID), nil
}

// Patch changes the label, priority or model filter of one key.
func (s *Service) Patch(ctx context.Context, owner store.Owner, p provider.Name, keyID string, patch store.KeyPatch) (View, error) {
	if patch.Label == nil && patch.Priority == nil && patch.Models == nil && patch.APIVersion == nil && patch.Deployments == nil {
		return View{}, apperr.New(apperr.InvalidRequest, "nothing to change: send \"label\", \"priority\" or \"models\" (and for azure_openai \"api_version\" or \"deployments\")")
	}
	if err := checkAzurePatch(p, patch); err != nil {
		return View{}, err
	}
	if patch.Label != nil {
		if err := CheckLabel(*patch.Label); err != nil {
			return View{}, err
		}
	}
	if patch.Priority != nil {
		if err := CheckPriority(*patch.Priority); err != nil {
			return View{}, err
		}
	}
	if patch.Models != nil {
		if err := CheckModels(*patch.Models); err != nil {
			return View{}, err
		}
	}
	sets, err := s.sets()
	if err != nil {
		return View{}, err
	}
	ks, err := sets.GetKeySet(ctx, owner)
	if err != nil {
		return View{}, err
	}
	k, ok := ks.Find(string(p), keyID)
	if !ok {
		return View{}, noKey(p, keyID)
	}
	nk, err := sets.PatchKey(ctx, k, patch, s.now())
	if errors.Is(err, store.ErrConflict) {
		return View{}, noKey(p, keyID)
	}
	if err != nil {
		return View{}, err
	}
	all := ks.Keys[string(p)]
	for i := range all {
		if all[i].KeyID == keyID {
			all[i] = nk
		}
	}
	store.SortKeys(all)
	return s.withKeyID(s.viewOf(p, all), keyID), nil
}

func noKey(p provider.Name, keyID string) error {
	if keyID == "" {
		return apperr.New(apperr.NotFound, "no %s key is configured", p)
	}
	return apperr.New(apperr.NotFound, "no %s key with key_id %q is configured", p, keyID)
}

// Delete removes every key of the user for p for good.
func (s *Service) Delete(ctx context.Context, userID string, p provider.Name) error {
	return s.DeleteKeys(ctx, store.UserOwner(userID), p, "")
}

// DeleteKeys removes owner's key keyID of p, or every key of p when keyID is
// empty, for good (unusable from that moment: every request reads the rows).
func (s *Service) DeleteKeys(ctx context.Context, owner store.Owner, p provider.Name, keyID string) error {
	sets, err := s.sets()
	if err != nil {
		return err
	}
	ks, err := sets.GetKeySet(ctx, owner)
	if err != nil {
		return err
	}
	del := ks.Keys[string(p)]
	if keyID != "" {
		k, ok := ks.Find(string(p), keyID)
		if !ok {
			return noKey(p, keyID)
		}
		del = []store.KeyRecord{k}
	}
	if len(del) == 0 {
		return noKey(p, "")
	}
	if err := sets.DeleteKeys(ctx, del); err != nil {
		return err
	}
	for _, k := range del {
		httpx.Logger(ctx, s.Log).Info("key deleted", ownerAttrs(k, "provider", string(p), "key_id", k.KeyID, "hint", k.Hint)...)
	}
	return nil
}

// Test re-validates every stored key of the user for p now.
func (s *Service) Test(ctx context.Context, userID string, p provider.Name) (View, error) {
	return s.TestKeys(ctx, store.UserOwner(userID), p, "")
}

// TestKeys re-validates owner's key keyID of p (every key of p when keyID
// is empty) now, records the outcomes and returns the provider's keys.
func (s *Service) TestKeys(ctx context.Context, owner store.Owner, p provider.Name, keyID string) (View, error) {
	sets, err := s.sets()
	if err != nil {
		return View{}, err
	}
	var acc *store.Account
	var ks store.KeySet
	if owner.Scope == store.ScopeUser {
		u, err := s.Store.GetUser(ctx, owner.UserID)
		if err != nil {
			return View{}, err
		}
		acc, ks = u.Account, u.Set
	} else if ks, err = sets.GetKeySet(ctx, owner); err != nil {
		return View{}, err
	}
	all := ks.Keys[string(p)]
	idx := make([]int, 0, len(all))
	for i, k := range all {
		if keyID == "" || k.KeyID == keyID {
			idx = append(idx, i)
		}
	}
	if len(idx) == 0 {
		return View{}, noKey(p, keyID)
	}
	errs := make([]error, len(all))
	var wg sync.WaitGroup
	sem := make(chan struct{}, validateFanout)
	for _, i := range idx {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			k := all[i]
			plain, err := s.Sealer.Open(ctx, VaultContext(k), k.Ciphertext)
			if err != nil {
				errs[i] = err
				return
			}
			res := s.Validator.ValidateCredential(ctx, p, Credential(k, string(plain)))
			clear(plain)
			all[i], errs[i] = s.Record(ctx, acc, k, res, events.ByTest)
		}()
	}
	wg.Wait()
	for _, i := range idx {
		if errs[i] != nil {
			return View{}, errs[i]
		}
	}
	v := s.viewOf(p, all)
	if keyID != "" {
		v = s.withKeyID(v, keyID)
	}
	return v, nil
}

// Record stores a validation outcome for k and publishes an event when the
// status changed to or from invalid. The same path serves test, use and the
// scheduled revalidation.
func (s *Service) Record(ctx context.Context, acc *store.Account, k store.KeyRecord, res provider.Result, detectedBy string) (store.KeyRecord, error) {
	now := s.now()
	prev, _, err := s.Store.UpdateKeyStatus(ctx, store.StatusUpdate{
		UserID: k.UserID, Provider: k.Provider, KeyID: k.KeyID, Key: k,
		Status: string(res.Status), Reason: string(res.Reason), Detail: res.Detail, ValidatedAt: now,
	})
	if errors.Is(err, store.ErrConflict) {
		return store.KeyRecord{}, apperr.New(apperr.NotFound, "the %s key was replaced or deleted meanwhile", k.Provider)
	}
	if err != nil {
		return store.KeyRecord{}, err
	}
	k.Status, k.Reason, k.Detail, k.ValidatedAt = string(res.Status), string(res.Reason), res.Detail, now
	s.transition(ctx, acc, k, prev, detectedBy)
	return k, nil
}

// transition publishes byok.key_invalid when a key becomes invalid and
// byok.key_valid when an invalid key becomes valid; nothing otherwise. An
// org or project key's event goes to the org's e-mail.
func (s *Service) transition(ctx context.Context, acc *store.Account, k store.KeyRecord, prev, detectedBy string) {
	invalid := string(provider.StatusInvalid)
	var typ string
	switch {
	case k.Status == invalid && prev != invalid:
		typ = events.KeyInvalid
	case k.Status == string(provider.StatusValid) && prev == invalid:
		typ = events.KeyValid
	default:
		return
	}
	if s.Events == nil {
		return
	}
	user := k.UserID
	if k.Scope() != store.ScopeUser {
		user = Actor(ctx) // no person owns an org key: name who acted, when known
	}
	e := events.Event{Type: typ, UserID: user, Provider: k.Provider, Scope: k.Scope(), Org: k.Org, Project: k.Project,
		Hint: k.Hint, Reason: k.Reason, DetectedBy: detectedBy, At: s.now()}
	switch {
	case k.Scope() != store.ScopeUser:
		if sets, err := s.sets(); err == nil {
			if o, err := sets.GetOrg(ctx, k.Org, ""); err == nil {
				e.Email = o.Settings.Email
			} else {
				httpx.Logger(ctx, s.Log).Warn("org e-mail unavailable for a key event", "org", k.Org, "err", err.Error())
			}
		}
	case acc != nil:
		e.Email = acc.Email
	}
	e.Subject, e.Text = events.Describe(e)
	s.Events.Publish(ctx, e)
}

// List returns every supported provider's key state and the routing banner.
func (s *Service) List(ctx context.Context, userID string) (List, error) {
	return s.ListKeys(ctx, userID, store.UserOwner(userID))
}

// ListKeys returns owner's keys of every supported provider and the
// caller's routing banner (credits and tier are always the caller's).
func (s *Service) ListKeys(ctx context.Context, caller string, owner store.Owner) (List, error) {
	set, _, err := s.Store.GetSettings(ctx, s.DefaultMode)
	if err != nil {
		return List{}, err
	}
	u, err := s.Store.GetUser(ctx, caller)
	if err != nil {
		return List{}, err
	}
	ks := u.Set
	if owner.Scope != store.ScopeUser {
		sets, err := s.sets()
		if err != nil {
			return List{}, err
		}
		if ks, err = sets.GetKeySet(ctx, owner); err != nil {
			return List{}, err
		}
	}
	out := List{Keys: make([]View, 0, len(provider.Supported()))}
	usable := false
	for _, p := range provider.Supported() {
		v := s.viewOf(p, ks.Keys[string(p)])
		if v.Status != nil && *v.Status != string(provider.StatusInvalid) {
			usable = true
		}
		out.Keys = append(out.Keys, v)
	}
	tier := tierOf(u.Account)
	var balance int64
	if u.Account != nil {
		balance = u.Account.CreditBalance
	}
	banner := routing.Banner(set, tier, usable, balance)
	out.Routing = RoutingView{
		Mode: set.RoutingMode, BYOKEnabled: set.BYOKEnabled, BYOKEligible: routing.BYOKEligible(set, tier),
		Banner: banner, BannerText: routing.BannerText(banner), Tier: tier,
	}
	return out, nil
}

// OrgSettingsView is the body of GET/PUT /v1/orgs/{org}/settings.
type OrgSettingsView struct {
	Org          string     `json:"org"`
	PersonalKeys bool       `json:"personal_keys"`
	Email        string     `json:"email"`
	UpdatedAt    *time.Time `json:"updated_at"`
}

func orgSettingsView(o store.OrgSettings) OrgSettingsView {
	return OrgSettingsView{Org: o.Org, PersonalKeys: o.PersonalKeys, Email: o.Email, UpdatedAt: timePtr(o.UpdatedAt)}
}

// OrgSettings returns org's settings (defaults when never set).
func (s *Service) OrgSettings(ctx context.Context, org string) (OrgSettingsView, error) {
	sets, err := s.sets()
	if err != nil {
		return OrgSettingsView{}, err
	}
	o, err := sets.GetOrg(ctx, org, "")
	if err != nil {
		return OrgSettingsView{}, err
	}
	return orgSettingsView(o.Settings), nil
}

// MaxEmailLen bounds an org's notification address.
const MaxEmailLen = 254

// PutOrgSettings changes org's settings.
func (s *Service) PutOrgSettings(ctx context.Context, org string, patch store.OrgSettingsPatch) (OrgSettingsView, error) {
	if patch.PersonalKeys == nil && patch.Email == nil {
		return OrgSettingsView{}, apperr.New(apperr.InvalidRequest, "nothing to change: send \"personal_keys\" or \"email\"")
	}
	if e := patch.Email; e != nil && *e != "" {
		local, domain, ok := strings.Cut(*e, "@")
		if !ok || local == "" || domain == "" || len(*e) > MaxEmailLen || strings.ContainsAny(*e, " \t\r\n<>,;") {
			return OrgSettingsView{}, apperr.New(apperr.InvalidRequest, "field \"email\" must be an e-mail address (at most %d characters), or \"\" for none", MaxEmailLen)
		}
	}
	sets, err := s.sets()
	if err != nil {
		return OrgSettingsView{}, err
	}
	o, err := sets.PutOrgSettings(ctx, org, patch, s.now())
	if err != nil {
		return OrgSettingsView{}, err
	}
	o.Org = org
	return orgSettingsView(o), nil
}

type actorKey struct{}

// WithActor returns ctx naming userID as the person acting on keys, so an
// org or project key's event can name who saved, tested or used it.
func WithActor(ctx context.Context, userID string) context.Context {
	return context.WithValue(ctx, actorKey{}, userID)
}

// Actor returns the user WithActor stored ("" when none).
func Actor(ctx context.Context) string {
	s, _ := ctx.Value(actorKey{}).(string)
	return s
}
