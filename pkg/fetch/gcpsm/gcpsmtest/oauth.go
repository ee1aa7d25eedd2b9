package gcpsmtest

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
)

// ScopeCloudPlatform is the scope the token endpoint requires in every
// assertion.
const ScopeCloudPlatform = "https://www.googleapis.com/auth/cloud-platform"

const jwtBearerGrant = "urn:ietf:params:oauth:grant-type:jwt-bearer"

// keyBits is the size of the RSA keys ServiceAccountKey makes. Google's are
// 2048 bits; 1024 (the least Go accepts) keeps tests fast, and the client
// code does not depend on the size.
const keyBits = 1024

// ServiceAccountKey makes a new key for the service account email and
// returns it as the JSON file Google hands out, with token_uri pointing at
// TokenURL. The token endpoint accepts assertions signed with it until
// RevokeKeys(email). Grant the account access with Allow(email, ...).
func (s *Server) ServiceAccountKey(email string) []byte {
	key, err := rsa.GenerateKey(rand.Reader, keyBits)
	if err != nil {
		panic(fmt.Sprintf("gcpsmtest: generating a key: %v", err))
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		panic(fmt.Sprintf("gcpsmtest: encoding a key: %v", err))
	}
	id := randomHex(20)
	s.mu.Lock()
	s.keys[id] = &serviceAccountKey{email: email, public: &key.PublicKey}
	s.mu.Unlock()
	b, err := json.MarshalIndent(map[string]string{
		"type":                        "service_account",
		"project_id":                  s.opts.ProjectID,
		"private_key_id":              id,
		"private_key":                 string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email":                email,
		"client_id":                   "1" + randomDigits(20),
		"auth_uri":                    "https://accounts.google.com/o/oauth2/auth",
		"token_uri":                   s.TokenURL(),
		"auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
		"universe_domain":             "googleapis.com",
	}, "", "  ")
	if err != nil {
		panic(err)
	}
	return b
}

// RevokeKeys makes every key of the service account email unusable, as
// deleting them in IAM does. Tokens already issued stay valid until they
// expire.
func (s *Server) RevokeKeys(email string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range s.keys {
		if k.email == email {
			k.revoked = true
		}
	}
}

// AddToken issues an access token for principal without any key, for
// clients given a token source directly. It is valid for TokenLifetime.
func (s *Server) AddToken(principal string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.issue(principal)
}

// issue makes an access token. The caller holds s.mu.
func (s *Server) issue(principal string) string {
	tok := "ya29.fake-" + randomHex(24)
	s.tokens[tok] = &accessToken{principal: principal, expires: s.opts.Now().Add(s.opts.TokenLifetime)}
	return tok
}

// serveToken implements the JWT-bearer grant (RFC 7523) as Google's token
// endpoint does for service-account keys: the assertion must be an RS256
// JWT signed by a key this server issued and has not revoked, whose iss is
// the key's account, aud is this endpoint and scope holds cloud-platform.
func (s *Server) serveToken(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		tokenError(w, "invalid_request", "Could not parse the request body.")
		return
	}
	if g := r.PostForm.Get("grant_type"); g != jwtBearerGrant {
		tokenError(w, "unsupported_grant_type", "Invalid grant_type: "+g)
		return
	}
	email, failure := s.verifyAssertion(r.PostForm.Get("assertion"))

	s.mu.Lock()
	defer s.mu.Unlock()
	call := Call{Method: MethodToken, Principal: email, Code: codes.OK}
	if failure != "" {
		call.Principal, call.Code = "", codes.Unauthenticated
		s.record(call)
		tokenError(w, "invalid_grant", failure)
		return
	}
	s.record(call)
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"access_token": s.issue(email),
		"expires_in":   int(s.opts.TokenLifetime / time.Second),
		"token_type":   "Bearer",
	})
}

// verifyAssertion checks a JWT-bearer assertion and returns the service
// account it authenticates, or why it does not (in Google's words).
func (s *Server) verifyAssertion(assertion string) (email, failure string) {
	const badSignature = "Invalid JWT Signature."
	parts := strings.Split(assertion, ".")
	if len(parts) != 3 {
		return "", "Invalid JWT: could not decode the assertion."
	}
	var header struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
	}
	var claims struct {
		Iss   string `json:"iss"`
		Scope string `json:"scope"`
		Aud   string `json:"aud"`
		Iat   int64  `json:"iat"`
		Exp   int64  `json:"exp"`
	}
	if decodeSegment(parts[0], &header) != nil || decodeSegment(parts[1], &claims) != nil {
		return "", "Invalid JWT: could not decode the assertion."
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || header.Alg != "RS256" {
		return "", badSignature
	}
	s.mu.Lock()
	key, ok := s.keys[header.Kid]
	s.mu.Unlock()
	if !ok || key.revoked || key.email != claims.Iss {
		return "", badSignature
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if rsa.VerifyPKCS1v15(key.public, crypto.SHA256, digest[:], sig) != nil {
		return "", badSignature
	}
	now := s.opts.Now().Unix()
	const skew = 5 * 60
	if claims.Iat > now+skew || claims.Exp < now || claims.Exp-claims.Iat > 3600+60 {
		return "", "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim."
	}
	if claims.Aud != s.TokenURL() {
		return "", "Invalid JWT: Failed audience check. The right audience is " + s.TokenURL()
	}
	if !slices.Contains(strings.Fields(claims.Scope), ScopeCloudPlatform) {
		return "", "Invalid OAuth scope or ID token audience provided."
	}
	return key.email, ""
}

func decodeSegment(seg string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

func tokenError(w http.ResponseWriter, code, description string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(http.StatusBadRequest)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": description})
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return hex.EncodeToString(b)
}

func randomDigits(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	for i := range b {
		b[i] = '0' + b[i]%10
	}
	return string(b)
}
