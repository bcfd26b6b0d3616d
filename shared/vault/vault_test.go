package vault

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/synthstack/byok/shared/apperr"
	"github.com/synthstack/byok/shared/awstest"
)

func TestMain(m *testing.M) { os.Exit(awstest.Main(m)) }

var (
	ecA     = Context{UserID: "user-1", Provider: "openai", KeyID: "key-1"}
	secretA = []byte("sk-proj-THIS-IS-A-TEST-KEY-0123456789abcdefghijklmnop")
)

func randHex(t testing.TB) string {
	t.Helper()
	b := make([]byte, 32)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func newLocal(t testing.TB) *LocalWrapper {
	t.Helper()
	w, err := NewLocalWrapper(randHex(t))
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func kmsClient(t testing.TB) *kms.Client {
	t.Helper()
	return kms.NewFromConfig(awstest.Config(t))
}

// newKMSKey creates a symmetric key in the emulator and returns its id.
func newKMSKey(t testing.TB, c *kms.Client) string {
	t.Helper()
	out, err := c.CreateKey(context.Background(), &kms.CreateKeyInput{Description: aws.String(t.Name())})
	if err != nil {
		t.Fatalf("CreateKey: %v", err)
	}
	return aws.ToString(out.KeyMetadata.KeyId)
}

// countingKMS counts the calls reaching the real client.
type countingKMS struct {
	inner         KMSAPI
	gen, enc, dec atomic.Int64
}

func (c *countingKMS) GenerateDataKey(ctx context.Context, in *kms.GenerateDataKeyInput, o ...func(*kms.Options)) (*kms.GenerateDataKeyOutput, error) {
	c.gen.Add(1)
	return c.inner.GenerateDataKey(ctx, in, o...)
}

func (c *countingKMS) Encrypt(ctx context.Context, in *kms.EncryptInput, o ...func(*kms.Options)) (*kms.EncryptOutput, error) {
	c.enc.Add(1)
	return c.inner.Encrypt(ctx, in, o...)
}

func (c *countingKMS) Decrypt(ctx context.Context, in *kms.DecryptInput, o ...func(*kms.Options)) (*kms.DecryptOutput, error) {
	c.dec.Add(1)
	return c.inner.Decrypt(ctx, in, o...)
}

func (c *countingKMS) total() int64 { return c.gen.Load() + c.enc.Load() + c.dec.Load() }

func mustSeal(t testing.TB, v *Vault, ec Context, pt []byte) []byte {
	t.Helper()
	blob, err := v.Seal(context.Background(), ec, pt)
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	return blob
}

func mustOpen(t testing.TB, v *Vault, ec Context, blob, want []byte) {
	t.Helper()
	got, err := v.Open(context.Background(), ec, blob)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("Open = %q, want %q", got, want)
	}
}

func assertDecryptErr(t testing.TB, pt []byte, err error, what string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: Open succeeded with %q, want ErrDecrypt", what, pt)
	}
	if pt != nil {
		t.Fatalf("%s: Open returned plaintext with an error", what)
	}
	if !errors.Is(err, ErrDecrypt) || apperr.CodeOf(err) != apperr.Internal {
		t.Fatalf("%s: err = %v (code %s), want ErrDecrypt with code internal", what, err, apperr.CodeOf(err))
	}
	if _, msg, _ := apperr.Public(err); msg != "internal error" {
		t.Fatalf("%s: public message %q", what, msg)
	}
}

func TestRoundTripLocal(t *testing.T) {
	w := newLocal(t)
	if !strings.HasPrefix(w.ID(), "local:") || len(w.ID()) != len("local:")+16 {
		t.Fatalf("ID = %q", w.ID())
	}
	v := New(w, nil)
	for _, pt := range [][]byte{secretA, {}, bytes.Repeat([]byte{'x'}, MaxPlaintext)} {
		blob := mustSeal(t, v, ecA, pt)
		if len(pt) > 8 && bytes.Contains(blob, pt) {
			t.Fatal("blob contains the plaintext")
		}
		mustOpen(t, v, ecA, blob, pt)
	}
	// Fresh data key and nonce per Seal.
	b1, b2 := mustSeal(t, v, ecA, secretA), mustSeal(t, v, ecA, secretA)
	p1, _ := parseBlob(b1)
	p2, _ := parseBlob(b2)
	if bytes.Equal(p1.wrapped, p2.wrapped) || bytes.Equal(p1.nonce, p2.nonce) || bytes.Equal(p1.ct, p2.ct) {
		t.Fatal("two Seals share a data key, nonce or ciphertext")
	}
	// Same key material gives the same ID.
	k := randHex(t)
	w1, _ := NewLocalWrapper(k)
	w2, _ := NewLocalWrapper(strings.ToUpper(k) + "\n")
	if w1.ID() != w2.ID() {
		t.Fatalf("IDs differ: %s %s", w1.ID(), w2.ID())
	}
}

func TestRoundTripKMS(t *testing.T) {
	c := kmsClient(t)
	keyID := newKMSKey(t, c)
	alias := "alias/byok-" + strings.ReplaceAll(keyID[:8], "-", "")
	if _, err := c.CreateAlias(context.Background(), &kms.CreateAliasInput{AliasName: &alias, TargetKeyId: &keyID}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{keyID, alias} {
		w := NewKMSWrapper(c, id)
		if w.ID() != "kms:"+id {
			t.Fatalf("ID = %q", w.ID())
		}
		v := New(w, nil)
		blob := mustSeal(t, v, ecA, secretA)
		if bytes.Contains(blob, secretA) {
			t.Fatal("blob contains the plaintext")
		}
		mustOpen(t, v, ecA, blob, secretA)
		if got, _ := v.WrapperID(blob); got != "kms:"+id {
			t.Fatalf("WrapperID = %q", got)
		}
	}
}

func TestSealValidation(t *testing.T) {
	v := New(newLocal(t), nil)
	for _, ec := range []Context{{}, {UserID: "u", Provider: "p"}, {UserID: "u", KeyID: "k"}, {Provider: "p", KeyID: "k"},
		{Scope: ScopeOrg, Provider: "p", KeyID: "k"}, {Scope: ScopeOrg, UserID: "u", Org: "o", Provider: "p", KeyID: "k"},
		{Scope: ScopeProject, Org: "o", Provider: "p", KeyID: "k"}, {Scope: ScopeProject, Project: "x", Provider: "p", KeyID: "k"},
		{Scope: "team", UserID: "u", Provider: "p", KeyID: "k"}} {
		if _, err := v.Seal(context.Background(), ec, secretA); err == nil {
			t.Fatalf("Seal with incomplete context %+v succeeded", ec)
		}
	}
	if _, err := v.Seal(context.Background(), ecA, make([]byte, MaxPlaintext+1)); !apperr.Is(err, apperr.InvalidRequest) {
		t.Fatalf("oversized Seal: %v", err)
	}
}

// otherContexts are rows a blob sealed for ecA must not open in, including
// ones that would collide under a naive concatenation of the fields.
func otherContexts(ec Context) []Context {
	return []Context{
		{UserID: "user-2", Provider: ec.Provider, KeyID: ec.KeyID},
		{UserID: ec.UserID, Provider: "anthropic", KeyID: ec.KeyID},
		{UserID: ec.UserID, Provider: ec.Provider, KeyID: "key-2"},
		{UserID: ec.UserID + "o", Provider: "penai", KeyID: ec.KeyID},
		{UserID: ec.UserID, Provider: ec.Provider + "k", KeyID: "ey-1"},
		{},
	}
}

// Rows of every scope that share as many fields as possible: a blob sealed
// for any one of them must open in that row only.
var (
	ecOrg     = Context{Scope: ScopeOrg, Org: "acme", Provider: "openai", KeyID: "key-1"}
	ecProject = Context{Scope: ScopeProject, Org: "acme", Project: "web", Provider: "openai", KeyID: "key-1"}
	scoped    = []Context{
		ecA,
		{Scope: ScopeUser, UserID: "acme", Provider: "openai", KeyID: "key-1"},
		ecOrg,
		{Scope: ScopeOrg, Org: "acme2", Provider: "openai", KeyID: "key-1"},
		{Scope: ScopeOrg, Org: "acme", Provider: "anthropic", KeyID: "key-1"},
		{Scope: ScopeOrg, Org: "acme", Provider: "openai", KeyID: "key-2"},
		ecProject,
		{Scope: ScopeProject, Org: "acme", Project: "web2", Provider: "openai", KeyID: "key-1"},
		{Scope: ScopeProject, Org: "acme2", Project: "web", Provider: "openai", KeyID: "key-1"},
		{Scope: ScopeProject, Org: "acmew", Project: "eb", Provider: "openai", KeyID: "key-1"},
		{Scope: ScopeProject, Org: "acme", Project: "web", Provider: "anthropic", KeyID: "key-1"},
		{Scope: ScopeProject, Org: "acme", Project: "web", Provider: "openai", KeyID: "key-2"},
		{Scope: ScopeProject, Org: "web", Project: "acme", Provider: "openai", KeyID: "key-1"},
		// Azure rows bind their endpoint: the same row with another host
		// (or none) opens nothing.
		{UserID: "user-1", Provider: "azure_openai", KeyID: "key-1", Endpoint: "https://a.openai.azure.com"},
		{UserID: "user-1", Provider: "azure_openai", KeyID: "key-1", Endpoint: "https://evil.openai.azure.com"},
		{UserID: "user-1", Provider: "azure_openai", KeyID: "key-1"},
		{Scope: ScopeOrg, Org: "acme", Provider: "azure_openai", KeyID: "key-1", Endpoint: "https://a.openai.azure.com"},
		{Scope: ScopeOrg, Org: "acme", Provider: "azure_openai", KeyID: "key-1", Endpoint: "https://a.openai.azure.com:444"},
	}
)

func testWrongContext(t *testing.T, v *Vault) {
	blob := mustSeal(t, v, ecA, secretA)
	// Rewrap of a blob that is already current is a no-op copy, so check
	// Rewrap's context binding through a vault where v's key is previous.
	rv := New(newLocal(t), []Wrapper{v.current})
	for round := 0; round < 2; round++ { // cold, then with ecA's data key cached
		for _, ec := range otherContexts(ecA) {
			pt, err := v.Open(context.Background(), ec, blob)
			assertDecryptErr(t, pt, err, fmt.Sprintf("context %+v", ec))
			if _, err := rv.Rewrap(context.Background(), ec, blob); !errors.Is(err, ErrDecrypt) {
				t.Fatalf("Rewrap with context %+v: %v", ec, err)
			}
		}
		mustOpen(t, v, ecA, blob, secretA)
	}
	// The same between scopes: a ciphertext moved between user, org and
	// project rows (or to another org, project, provider or key id) fails.
	blobs := make([][]byte, len(scoped))
	for i, ec := range scoped {
		blobs[i] = mustSeal(t, v, ec, secretA)
	}
	for round := 0; round < 2; round++ {
		for i, from := range scoped {
			for j, to := range scoped {
				if i == j {
					mustOpen(t, v, to, blobs[i], secretA)
					continue
				}
				pt, err := v.Open(context.Background(), to, blobs[i])
				assertDecryptErr(t, pt, err, fmt.Sprintf("blob of %+v opened as %+v", from, to))
				if _, err := rv.Rewrap(context.Background(), to, blobs[i]); !errors.Is(err, ErrDecrypt) {
					t.Fatalf("Rewrap of %+v as %+v: %v", from, to, err)
				}
			}
		}
	}
}

// A user's row sealed with no scope (every row stored before scopes
// existed) opens with Scope "user" and vice versa: the AAD is unchanged.
func TestUserScopeKeepsOldAAD(t *testing.T) {
	v := New(newLocal(t), nil)
	old := mustSeal(t, v, ecA, secretA)
	explicit := ecA
	explicit.Scope = ScopeUser
	mustOpen(t, v, explicit, old, secretA)
	mustOpen(t, v, ecA, mustSeal(t, v, explicit, secretA), secretA)
	want := appendAADField(appendAADField(appendAADField(appendAADField(appendAADField(nil,
		payloadLabel), versionField), ecA.UserID), ecA.Provider), ecA.KeyID)
	if got, _ := payloadAAD(explicit, "", nil, false); !bytes.Equal(got, want) {
		t.Fatalf("user AAD changed: %x, want %x", got, want)
	}
	for _, ec := range scoped {
		if got := len(appendAAD(nil, payloadLabel, ec)); got != aadLen(payloadLabel, ec) {
			t.Fatalf("aadLen(%+v) = %d, encoding is %d bytes", ec, aadLen(payloadLabel, ec), got)
		}
	}
}

func TestWrongContextLocal(t *testing.T) {
	testWrongContext(t, New(newLocal(t), nil, WithCache(16, time.Minute)))
}

func TestWrongContextKMS(t *testing.T) {
	c := kmsClient(t)
	testWrongContext(t, New(NewKMSWrapper(c, newKMSKey(t, c)), nil, WithCache(16, time.Minute)))
}

// contextBlindWrapper wraps data keys without any binding to the row, to
// show that the payload AAD alone rejects a blob moved to another row.
type contextBlindWrapper struct{ *LocalWrapper }

func (w contextBlindWrapper) GenerateDataKey(ctx context.Context, _ Context) ([]byte, []byte, error) {
	return w.LocalWrapper.GenerateDataKey(ctx, Context{})
}

func (w contextBlindWrapper) Wrap(ctx context.Context, dk []byte, _ Context) ([]byte, error) {
	return w.LocalWrapper.Wrap(ctx, dk, Context{})
}

func (w contextBlindWrapper) Unwrap(ctx context.Context, wrapped []byte, _ Context) ([]byte, error) {
	return w.LocalWrapper.Unwrap(ctx, wrapped, Context{})
}

func TestPayloadAADBindsRow(t *testing.T) {
	testWrongContext(t, New(contextBlindWrapper{newLocal(t)}, nil))
}

func testBitFlips(t *testing.T, v *Vault, allBits bool, tolerate func(i int, err error) bool) {
	ctx := context.Background()
	blob := mustSeal(t, v, ecA, secretA)
	mustOpen(t, v, ecA, blob, secretA) // warm the cache, if any
	tolerated := 0
	for i := range blob {
		bits := []int{i % 8}
		if allBits {
			bits = []int{0, 1, 2, 3, 4, 5, 6, 7}
		}
		for _, bit := range bits {
			mut := bytes.Clone(blob)
			mut[i] ^= 1 << bit
			pt, err := v.Open(ctx, ecA, mut)
			if err != nil && !errors.Is(err, ErrDecrypt) && tolerate != nil && tolerate(i, err) {
				tolerated++
				continue
			}
			assertDecryptErr(t, pt, err, fmt.Sprintf("byte %d bit %d", i, bit))
		}
	}
	for n := 0; n < len(blob); n++ {
		pt, err := v.Open(ctx, ecA, blob[:n])
		assertDecryptErr(t, pt, err, fmt.Sprintf("truncated to %d", n))
	}
	pt, err := v.Open(ctx, ecA, append(bytes.Clone(blob), 0))
	assertDecryptErr(t, pt, err, "trailing byte")
	mustOpen(t, v, ecA, blob, secretA)
	if tolerated > 0 {
		t.Logf("%d flips gave ServiceUnavailable instead of ErrDecrypt (emulator behaviour, see comment)", tolerated)
	}
}

func TestBitFlipLocal(t *testing.T) {
	testBitFlips(t, New(newLocal(t), nil, WithCache(16, time.Minute)), true, nil)
}

func TestBitFlipKMS(t *testing.T) {
	c := kmsClient(t)
	w := NewKMSWrapper(c, newKMSKey(t, c))
	v := New(w, nil, WithCache(16, time.Minute))
	// moto's ciphertext blob starts with the 36-byte key UUID; a flip there
	// makes moto answer AccessDeniedException ("refers to a key that does not
	// exist") rather than InvalidCiphertextException, which we (rightly, for
	// real KMS) classify as ServiceUnavailable. Tolerate exactly that region.
	wrappedStart := 1 + 2 + len(w.ID()) + 2
	testBitFlips(t, v, false, func(i int, err error) bool {
		return apperr.CodeOf(err) == apperr.ServiceUnavailable && i >= wrappedStart && i < wrappedStart+36
	})
}

func TestUnknownWrapper(t *testing.T) {
	blob := mustSeal(t, New(newLocal(t), nil), ecA, secretA)
	pt, err := New(newLocal(t), []Wrapper{newLocal(t)}).Open(context.Background(), ecA, blob)
	assertDecryptErr(t, pt, err, "unknown wrapper")
	// Same id, different key material (not possible with local ids, but a
	// KMS alias could be re-pointed): still ErrDecrypt.
	c := kmsClient(t)
	k1, k2 := newKMSKey(t, c), newKMSKey(t, c)
	blob = mustSeal(t, New(NewKMSWrapper(c, k1), nil), ecA, secretA)
	p, _ := parseBlob(blob)
	forged := append([]byte{formatV1}, appendField(nil, "kms:"+k2)...)
	forged = appendField(forged, p.wrapped)
	forged = appendField(forged, p.nonce)
	forged = appendField(forged, p.ct)
	pt, err = New(NewKMSWrapper(c, k2), nil).Open(context.Background(), ecA, forged)
	if err == nil || pt != nil {
		t.Fatal("blob opened under the wrong KMS key")
	}
	t.Logf("wrong KMS key: %v", err)
}

// TestKMSEncryptionContextEnforced checks the emulator itself: Decrypt with
// a different EncryptionContext (or none) must be rejected.
func TestKMSEncryptionContextEnforced(t *testing.T) {
	ctx := context.Background()
	c := kmsClient(t)
	keyID := newKMSKey(t, c)
	out, err := c.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{
		KeyId: &keyID, KeySpec: types.DataKeySpecAes256, EncryptionContext: encryptionContext(ecA),
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Plaintext) != 32 {
		t.Fatalf("data key is %d bytes", len(out.Plaintext))
	}
	for _, ec := range append(otherContexts(ecA), Context{}) {
		for _, m := range []map[string]string{encryptionContext(ec), nil} {
			_, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: out.CiphertextBlob, KeyId: &keyID, EncryptionContext: m})
			var ic *types.InvalidCiphertextException
			if !errors.As(err, &ic) {
				t.Fatalf("Decrypt with EncryptionContext %v: err = %v, want InvalidCiphertextException", m, err)
			}
		}
	}
	dec, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: out.CiphertextBlob, KeyId: &keyID, EncryptionContext: encryptionContext(ecA)})
	if err != nil || !bytes.Equal(dec.Plaintext, out.Plaintext) {
		t.Fatalf("Decrypt with the right context: %v", err)
	}
	// Through the wrapper.
	w := NewKMSWrapper(c, keyID)
	_, err = w.Unwrap(ctx, out.CiphertextBlob, otherContexts(ecA)[0])
	assertDecryptErr(t, nil, err, "KMS Unwrap with another context")
}

func TestKMSServiceErrors(t *testing.T) {
	ctx := context.Background()
	// Unreachable endpoint.
	cfg := awstest.Config(t)
	dead := kms.NewFromConfig(cfg, func(o *kms.Options) {
		o.BaseEndpoint = aws.String("http://127.0.0.1:1")
		o.Retryer = aws.NopRetryer{}
	})
	// Unknown key.
	live := kmsClient(t)
	for name, v := range map[string]*Vault{
		"unreachable": New(NewKMSWrapper(dead, "alias/whatever"), nil),
		"unknown key": New(NewKMSWrapper(live, "00000000-0000-0000-0000-000000000000"), nil),
	} {
		_, err := v.Seal(ctx, ecA, secretA)
		if !apperr.Is(err, apperr.ServiceUnavailable) {
			t.Fatalf("%s: Seal err = %v, want ServiceUnavailable", name, err)
		}
		if _, msg, _ := apperr.Public(err); msg != "key encryption service unavailable" {
			t.Fatalf("%s: message %q", name, msg)
		}
	}
	// Open against an unreachable KMS is ServiceUnavailable, not ErrDecrypt.
	keyID := newKMSKey(t, live)
	blob := mustSeal(t, New(NewKMSWrapper(live, keyID), nil), ecA, secretA)
	_, err := New(NewKMSWrapper(dead, keyID), nil).Open(ctx, ecA, blob)
	if !apperr.Is(err, apperr.ServiceUnavailable) || errors.Is(err, ErrDecrypt) {
		t.Fatalf("Open with KMS down: %v", err)
	}
	// Cancelled context keeps its cause.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err = New(NewKMSWrapper(live, keyID), nil).Open(cctx, ecA, blob)
	if !apperr.Is(err, apperr.ServiceUnavailable) || !errors.Is(err, context.Canceled) {
		t.Fatalf("Open with cancelled context: %v", err)
	}
}

func TestRotationLocal(t *testing.T) {
	ctx := context.Background()
	a, b := newLocal(t), newLocal(t)
	blob := mustSeal(t, New(a, nil), ecA, secretA)

	vb := New(b, []Wrapper{a})
	mustOpen(t, vb, ecA, blob, secretA)
	if id, _ := vb.WrapperID(blob); id != a.ID() {
		t.Fatalf("WrapperID = %q, want %q", id, a.ID())
	}
	if !vb.NeedsRewrap(blob) {
		t.Fatal("NeedsRewrap = false for a blob wrapped by the previous key")
	}
	pt, err := New(b, nil).Open(ctx, ecA, blob)
	assertDecryptErr(t, pt, err, "old blob without previous key")

	re, err := vb.Rewrap(ctx, ecA, blob)
	if err != nil {
		t.Fatal(err)
	}
	if vb.NeedsRewrap(re) {
		t.Fatal("NeedsRewrap = true after Rewrap")
	}
	p0, _ := parseBlob(blob)
	p1, _ := parseBlob(re)
	if !bytes.Equal(p0.nonce, p1.nonce) || !bytes.Equal(p0.ct, p1.ct) || string(p1.id) != b.ID() {
		t.Fatal("Rewrap changed the ciphertext or did not use the current key")
	}
	mustOpen(t, New(b, nil), ecA, re, secretA)
	pt, err = New(a, nil).Open(ctx, ecA, re)
	assertDecryptErr(t, pt, err, "rewrapped blob under the old key")

	// Rewrap of a current blob is a no-op copy.
	again, err := vb.Rewrap(ctx, ecA, re)
	if err != nil || !bytes.Equal(again, re) {
		t.Fatalf("Rewrap of current blob: %v", err)
	}
	// Malformed blobs report NeedsRewrap and fail Rewrap.
	if !vb.NeedsRewrap([]byte{1, 2, 3}) {
		t.Fatal("NeedsRewrap(malformed) = false")
	}
	if _, err := vb.Rewrap(ctx, ecA, []byte{1, 2, 3}); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("Rewrap(malformed): %v", err)
	}
}

func TestRotationLocalToKMS(t *testing.T) {
	ctx := context.Background()
	live := kmsClient(t)
	keyID := newKMSKey(t, live)
	oldHex := randHex(t)
	old, _ := NewLocalWrapper(oldHex)
	blob := mustSeal(t, New(old, nil), ecA, secretA)

	for name, env := range map[string]map[string]string{
		"previous":       {"KMS_KEY_ID": keyID, "ENCRYPTION_KEY_PREVIOUS": randHex(t) + "," + oldHex},
		"encryption_key": {"KMS_KEY_ID": keyID, "ENCRYPTION_KEY": oldHex},
	} {
		counter := &countingKMS{inner: live}
		v, err := FromEnv(func(k string) string { return env[k] }, counter)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if v.CurrentID() != "kms:"+keyID {
			t.Fatalf("%s: CurrentID = %q", name, v.CurrentID())
		}
		mustOpen(t, v, ecA, blob, secretA)
		if counter.total() != 0 {
			t.Fatalf("%s: opening a locally wrapped blob made %d KMS calls", name, counter.total())
		}
		if !v.NeedsRewrap(blob) {
			t.Fatalf("%s: NeedsRewrap = false", name)
		}
		re, err := v.Rewrap(ctx, ecA, blob)
		if err != nil {
			t.Fatalf("%s: Rewrap: %v", name, err)
		}
		if counter.enc.Load() != 1 {
			t.Fatalf("%s: Rewrap made %d Encrypt calls", name, counter.enc.Load())
		}
		if v.NeedsRewrap(re) {
			t.Fatalf("%s: NeedsRewrap after Rewrap", name)
		}
		mustOpen(t, New(NewKMSWrapper(live, keyID), nil), ecA, re, secretA)
		if _, err := v.Rewrap(ctx, otherContexts(ecA)[1], blob); !errors.Is(err, ErrDecrypt) {
			t.Fatalf("%s: Rewrap with another row's context: %v", name, err)
		}
	}
}

func assertNoSecret(t *testing.T, err error, bad string) {
	t.Helper()
	msg := err.Error()
	if _, pub, _ := apperr.Public(err); pub != "" {
		msg += " " + pub
	}
	bad = strings.TrimSpace(bad)
	for i := 0; i+6 <= len(bad); i++ {
		if strings.Contains(msg, bad[i:i+6]) {
			t.Fatalf("error %q contains part of the key (%q)", msg, bad[i:i+6])
		}
	}
}

func TestFromEnv(t *testing.T) {
	good := randHex(t)
	hint := "openssl rand -hex 32"
	cases := []struct {
		name     string
		env      map[string]string
		kms      KMSAPI
		bad      string
		wantVars []string
	}{
		{"missing", map[string]string{}, nil, "", []string{"KMS_KEY_ID", "ENCRYPTION_KEY", "64 hex", hint}},
		{"blank", map[string]string{"ENCRYPTION_KEY": "   "}, nil, "", []string{"ENCRYPTION_KEY", "64 hex", hint}},
		{"63 chars", map[string]string{"ENCRYPTION_KEY": good[:63]}, nil, good[:63], []string{"ENCRYPTION_KEY", "63 characters", "64 hex", hint}},
		{"65 chars", map[string]string{"ENCRYPTION_KEY": good + "a"}, nil, good + "a", []string{"ENCRYPTION_KEY", "64 hex", hint}},
		{"non-hex", map[string]string{"ENCRYPTION_KEY": good[:60] + "zzzz"}, nil, good[:60] + "zzzz", []string{"ENCRYPTION_KEY", "not hexadecimal", hint}},
		{"base64", map[string]string{"ENCRYPTION_KEY": "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJCrze8SNFZ4kKvN7xI0VniQ"}, nil, "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQ", []string{"ENCRYPTION_KEY", "not hexadecimal"}},
		{"bad previous", map[string]string{"ENCRYPTION_KEY": good, "ENCRYPTION_KEY_PREVIOUS": randHex(t) + ",xyz" + good[3:]}, nil, "xyz" + good[3:], []string{"ENCRYPTION_KEY_PREVIOUS", "entry 2", "not hexadecimal"}},
		{"bad key with kms", map[string]string{"KMS_KEY_ID": "alias/x", "ENCRYPTION_KEY": good[:10]}, &countingKMS{}, good[:10], []string{"ENCRYPTION_KEY", "64 hex"}},
		{"kms without client", map[string]string{"KMS_KEY_ID": "alias/x"}, nil, "", []string{"KMS_KEY_ID", "KMS client"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v, err := FromEnv(func(k string) string { return c.env[k] }, c.kms)
			if err == nil || v != nil {
				t.Fatalf("FromEnv succeeded")
			}
			for _, want := range c.wantVars {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %q", err, want)
				}
			}
			if c.bad != "" {
				assertNoSecret(t, err, c.bad)
			}
			// The lead serves Disabled(err): its errors carry no key material either.
			_, serr := Disabled(err).Seal(context.Background(), ecA, secretA)
			if c.bad != "" {
				assertNoSecret(t, serr, c.bad)
			}
		})
	}
	if _, err := NewLocalWrapper(good[:62] + "zz"); err == nil {
		t.Fatal("NewLocalWrapper accepted a non-hex key")
	} else {
		assertNoSecret(t, err, good[:62]+"zz")
	}

	v, err := FromEnv(func(k string) string {
		return map[string]string{"ENCRYPTION_KEY": " " + good + "\n", "ENCRYPTION_KEY_PREVIOUS": " , "}[k]
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	w, _ := NewLocalWrapper(good)
	if v.CurrentID() != w.ID() || v.cache == nil {
		t.Fatalf("CurrentID = %q, cache %v", v.CurrentID(), v.cache != nil)
	}
	mustOpen(t, v, ecA, mustSeal(t, v, ecA, secretA), secretA)
	if v2, _ := FromEnv(func(k string) string { return map[string]string{"ENCRYPTION_KEY": good}[k] }, nil, WithCache(0, 0)); v2.cache != nil {
		t.Fatal("WithCache(0, 0) did not disable the default cache")
	}
}

func TestDisabled(t *testing.T) {
	ctx := context.Background()
	_, reason := FromEnv(func(string) string { return "" }, nil)
	for _, v := range []*Vault{Disabled(reason), Disabled(nil), New(nil, nil)} {
		_, e1 := v.Seal(ctx, ecA, secretA)
		_, e2 := v.Open(ctx, ecA, []byte{1})
		_, e3 := v.Rewrap(ctx, ecA, []byte{1})
		for _, err := range []error{e1, e2, e3} {
			if !apperr.Is(err, apperr.ServiceUnavailable) {
				t.Fatalf("err = %v, want ServiceUnavailable", err)
			}
			if _, msg, _ := apperr.Public(err); msg != DisabledMessage || !strings.Contains(msg, "key storage is not configured") {
				t.Fatalf("message %q", msg)
			}
		}
		if v.Err() == nil || v.CurrentID() != "" || v.NeedsRewrap([]byte{1}) {
			t.Fatal("disabled vault reports itself configured")
		}
	}
	if !errors.Is(func() error { _, err := Disabled(reason).Seal(ctx, ecA, nil); return err }(), reason) {
		t.Fatal("Disabled error does not keep its reason")
	}
}

func TestCacheKMS(t *testing.T) {
	ctx := context.Background()
	live := kmsClient(t)
	keyID := newKMSKey(t, live)
	counter := &countingKMS{inner: live}
	v := New(NewKMSWrapper(counter, keyID), nil, WithCache(2, time.Minute))

	blobs := make([][]byte, 3)
	for i := range blobs {
		blobs[i] = mustSeal(t, v, ecA, fmt.Appendf(nil, "sk-%d", i))
	}
	if counter.gen.Load() != 3 || counter.total() != 3 {
		t.Fatalf("3 Seals made %d GenerateDataKey / %d calls", counter.gen.Load(), counter.total())
	}
	calls := func(f func()) int64 {
		before := counter.total()
		f()
		return counter.total() - before
	}
	open := func(i int) func() {
		return func() { mustOpen(t, v, ecA, blobs[i], fmt.Appendf(nil, "sk-%d", i)) }
	}
	if n := calls(open(0)); n != 1 {
		t.Fatalf("cold Open made %d KMS calls", n)
	}
	if n := calls(open(0)); n != 0 {
		t.Fatalf("warm Open made %d KMS calls", n)
	}
	// A cached data key never opens the blob for another row, and costs a call.
	pt, err := v.Open(ctx, otherContexts(ecA)[0], blobs[0])
	assertDecryptErr(t, pt, err, "other row with warm cache")
	// Bounded: size 2, three keys → the least recently used is evicted.
	calls(open(1))
	calls(open(2))
	if v.cache.Len() > 2 {
		t.Fatalf("cache holds %d entries, max 2", v.cache.Len())
	}
	if n := calls(open(2)); n != 0 {
		t.Fatalf("warm Open made %d KMS calls", n)
	}
	if n := calls(open(0)); n != 1 {
		t.Fatalf("Open of an evicted key made %d KMS calls, want 1", n)
	}

	// Max age.
	short := New(NewKMSWrapper(counter, keyID), nil, WithCache(8, 50*time.Millisecond))
	mustOpen(t, short, ecA, blobs[0], []byte("sk-0"))
	before := counter.total()
	mustOpen(t, short, ecA, blobs[0], []byte("sk-0"))
	if counter.total() != before {
		t.Fatal("warm Open within max age called KMS")
	}
	time.Sleep(80 * time.Millisecond)
	mustOpen(t, short, ecA, blobs[0], []byte("sk-0"))
	if counter.total() != before+1 {
		t.Fatal("Open after max age did not call KMS")
	}

	// Without a cache every Open calls KMS.
	nocache := New(NewKMSWrapper(counter, keyID), nil)
	before = counter.total()
	for range 3 {
		mustOpen(t, nocache, ecA, blobs[1], []byte("sk-1"))
	}
	if counter.total() != before+3 {
		t.Fatal("uncached Opens did not each call KMS")
	}
}

func TestConcurrent(t *testing.T) {
	a, b := newLocal(t), newLocal(t)
	old := mustSeal(t, New(a, nil), ecA, secretA)
	v := New(b, []Wrapper{a}, WithCache(4, time.Minute))
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ec := Context{UserID: fmt.Sprint("u", g%6), Provider: "openai", KeyID: "k"}
			for i := range 50 {
				pt := fmt.Appendf(nil, "sk-%d-%d", g, i)
				blob, err := v.Seal(context.Background(), ec, pt)
				if err == nil {
					var got []byte
					got, err = v.Open(context.Background(), ec, blob)
					if err == nil && !bytes.Equal(got, pt) {
						err = errors.New("wrong plaintext")
					}
				}
				if err == nil {
					var got []byte
					got, err = v.Open(context.Background(), ecA, old)
					if err == nil && !bytes.Equal(got, secretA) {
						err = errors.New("wrong plaintext")
					}
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func BenchmarkSeal(b *testing.B) {
	v := New(newLocal(b), nil)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Seal(ctx, ecA, secretA); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpen(b *testing.B) {
	ctx := context.Background()
	for _, bc := range []struct {
		name string
		opts []Option
	}{{"local", nil}, {"local-warm-cache", []Option{WithCache(128, time.Hour)}}} {
		b.Run(bc.name, func(b *testing.B) {
			v := New(newLocal(b), nil, bc.opts...)
			blob := mustSeal(b, v, ecA, secretA)
			mustOpen(b, v, ecA, blob, secretA)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.Open(ctx, ecA, blob); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
