package app_test

import (
	"encoding/base64"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/synthstack/byok/shared/auth"
)

func mintExpired(secret []byte) (string, error) {
	return jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": "alice", "exp": time.Now().Add(-time.Hour).Unix(), "iat": time.Now().Add(-2 * time.Hour).Unix(),
	}).SignedString(secret)
}

func mintWith(t *testing.T, secret []byte, sub string) string {
	t.Helper()
	tok, err := auth.Mint(secret, sub, "admin", time.Hour, "", "")
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func algNone(sub string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"none","typ":"JWT"}`)) + "." +
		enc([]byte(`{"sub":"`+sub+`","role":"admin","exp":`+time.Now().Add(time.Hour).Format("20060102")+`}`)) + "."
}
