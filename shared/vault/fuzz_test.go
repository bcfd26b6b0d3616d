package vault

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"testing"
	"time"

	"github.com/synthstack/byok/shared/apperr"
)

// FuzzOpen feeds arbitrary blobs and row contexts to Open, WrapperID,
// NeedsRewrap and Rewrap: none may panic, every failure must be ErrDecrypt,
// and the only input that may open is the genuine blob in its own row.
func FuzzOpen(f *testing.F) {
	w, err := NewLocalWrapper(hex.EncodeToString(bytes.Repeat([]byte{7}, 32)))
	if err != nil {
		f.Fatal(err)
	}
	prev, _ := NewLocalWrapper(hex.EncodeToString(bytes.Repeat([]byte{9}, 32)))
	ctx := context.Background()
	sealer := New(prev, nil)
	v := New(w, []Wrapper{prev}, WithCache(8, time.Minute))
	valid := mustSeal(f, v, ecA, secretA)
	old := mustSeal(f, sealer, ecA, secretA)
	f.Add(valid, ecA.UserID, ecA.Provider, ecA.KeyID)
	f.Add(old, ecA.UserID, ecA.Provider, ecA.KeyID)
	f.Add(valid, "user-2", ecA.Provider, ecA.KeyID)
	f.Add(valid[:len(valid)-1], ecA.UserID, ecA.Provider, ecA.KeyID)
	f.Add([]byte{1, 0xff, 0xff}, "", "", "")
	f.Add([]byte{}, "", "", "")

	f.Fuzz(func(t *testing.T, blob []byte, user, provider, keyID string) {
		ec := Context{UserID: user, Provider: provider, KeyID: keyID}
		genuine := ec == ecA && (bytes.Equal(blob, valid) || bytes.Equal(blob, old))
		pt, err := v.Open(ctx, ec, blob)
		if err != nil {
			if pt != nil || !errors.Is(err, ErrDecrypt) || apperr.CodeOf(err) != apperr.Internal {
				t.Fatalf("Open: pt=%v err=%v", pt != nil, err)
			}
		} else if !bytes.Equal(pt, secretA) || ec != ecA {
			t.Fatalf("Open returned %q for context %+v", pt, ec)
		}
		if genuine && err != nil {
			t.Fatalf("genuine blob failed: %v", err)
		}
		if _, err := v.WrapperID(blob); err != nil && !errors.Is(err, ErrDecrypt) {
			t.Fatal(err)
		}
		if !v.NeedsRewrap(blob) {
			return // already current: Rewrap is a no-op copy
		}
		re, rerr := v.Rewrap(ctx, ec, blob)
		if (rerr == nil) != (err == nil) {
			t.Fatalf("Open err %v but Rewrap err %v", err, rerr)
		}
		if rerr == nil {
			if got, err := New(w, nil).Open(ctx, ec, re); err != nil || !bytes.Equal(got, secretA) {
				t.Fatalf("rewrapped blob: %v", err)
			}
		}
	})
}
