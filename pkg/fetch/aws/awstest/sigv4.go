package awstest

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// How far the signing time may be from the server's clock, as AWS allows.
const maxSkew = 5 * time.Minute

// authFailure is why a request failed authentication; each protocol names
// it with its own error code.
type authFailure int

const (
	authMissing authFailure = iota + 1
	authIncomplete
	authScope
	authUnknownKey
	authExpired
	authBadSignature
	authStale
)

// jsonAuthCodes are the codes of the JSON 1.1 services.
var jsonAuthCodes = map[authFailure]struct {
	status int
	code   string
}{
	authMissing:      {http.StatusForbidden, "MissingAuthenticationTokenException"},
	authIncomplete:   {http.StatusBadRequest, "IncompleteSignatureException"},
	authScope:        {http.StatusForbidden, "InvalidSignatureException"},
	authUnknownKey:   {http.StatusForbidden, "UnrecognizedClientException"},
	authExpired:      {http.StatusForbidden, "ExpiredTokenException"},
	authBadSignature: {http.StatusForbidden, "InvalidSignatureException"},
	authStale:        {http.StatusForbidden, "InvalidSignatureException"},
}

// queryAuthCodes are STS's.
var queryAuthCodes = map[authFailure]struct {
	status int
	code   string
}{
	authMissing:      {http.StatusForbidden, "MissingAuthenticationToken"},
	authIncomplete:   {http.StatusBadRequest, "IncompleteSignature"},
	authScope:        {http.StatusForbidden, "SignatureDoesNotMatch"},
	authUnknownKey:   {http.StatusForbidden, "InvalidClientTokenId"},
	authExpired:      {http.StatusBadRequest, "ExpiredToken"},
	authBadSignature: {http.StatusForbidden, "SignatureDoesNotMatch"},
	authStale:        {http.StatusForbidden, "SignatureDoesNotMatch"},
}

type authError struct {
	why     authFailure
	message string
}

func (e *authError) render(query bool) *apiError {
	c := jsonAuthCodes[e.why]
	if query {
		c = queryAuthCodes[e.why]
	}
	return &apiError{status: c.status, code: c.code, message: e.message}
}

// authenticate verifies the SigV4 signature of r for service and returns the
// key that signed it. The signature is recomputed with the SDK's own signer
// over exactly the headers the client says it signed, so any change to the
// method, path, query, a signed header or the body is detected.
func (s *Server) authenticate(r *http.Request, body []byte, service string) (*accessKey, string, *authError) {
	authz := r.Header.Get("Authorization")
	if authz == "" {
		return nil, "", &authError{authMissing, "Missing Authentication Token"}
	}
	const algo = "AWS4-HMAC-SHA256 "
	if !strings.HasPrefix(authz, algo) {
		return nil, "", &authError{authIncomplete, "Unsupported authorization type; only AWS4-HMAC-SHA256 is accepted"}
	}
	fields := parseAuthorization(strings.TrimPrefix(authz, algo))
	cred, signedHeaders, signature := fields["Credential"], fields["SignedHeaders"], fields["Signature"]
	if cred == "" || signedHeaders == "" || signature == "" {
		return nil, "", &authError{authIncomplete, "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' parameters. Authorization=" + algo + "..."}
	}
	scope := strings.Split(cred, "/")
	if len(scope) != 5 || scope[4] != "aws4_request" {
		return nil, "", &authError{authIncomplete, "Credential is not of the form <key>/<date>/<region>/<service>/aws4_request"}
	}
	akid, date, region, svc := scope[0], scope[1], scope[2], scope[3]
	if region != s.opts.Region {
		return nil, akid, &authError{authScope, fmt.Sprintf("Credential should be scoped to a valid region, not '%s'.", region)}
	}
	if svc != service {
		return nil, akid, &authError{authScope, fmt.Sprintf("Credential should be scoped to correct service: '%s'.", service)}
	}
	headers := strings.Split(signedHeaders, ";")
	if !slices.Contains(headers, "host") || !slices.Contains(headers, "x-amz-date") {
		return nil, akid, &authError{authIncomplete, "'Host' and 'X-Amz-Date' must be signed."}
	}
	signingTime, err := time.Parse("20060102T150405Z", r.Header.Get("X-Amz-Date"))
	if err != nil || signingTime.Format("20060102") != date {
		return nil, akid, &authError{authIncomplete, "X-Amz-Date is missing, malformed or does not match the credential scope date."}
	}
	now := s.opts.Now()
	if d := now.Sub(signingTime); d > maxSkew || d < -maxSkew {
		return nil, akid, &authError{authStale, fmt.Sprintf("Signature expired: %s is now earlier than %s (%s - 5 min.)",
			signingTime.Format("20060102T150405Z"), now.Add(-maxSkew).UTC().Format("20060102T150405Z"), now.UTC().Format("20060102T150405Z"))}
	}

	s.mu.Lock()
	key, ok := s.keys[akid]
	s.mu.Unlock()
	if !ok || key.sessionToken != r.Header.Get("X-Amz-Security-Token") {
		return nil, akid, &authError{authUnknownKey, "The security token included in the request is invalid."}
	}
	if !key.expires.IsZero() && now.After(key.expires) {
		return nil, akid, &authError{authExpired, "The security token included in the request is expired"}
	}

	want, err := resign(r, body, headers, awssdk.Credentials{AccessKeyID: akid, SecretAccessKey: key.secret, SessionToken: key.sessionToken}, service, region, signingTime)
	if err != nil || !hmac.Equal([]byte(want), []byte(signature)) {
		return nil, akid, &authError{authBadSignature, "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details."}
	}
	return key, akid, nil
}

// resign signs a copy of r that carries only the signed headers and returns
// the signature.
func resign(r *http.Request, body []byte, signed []string, creds awssdk.Credentials, service, region string, t time.Time) (string, error) {
	cp, err := http.NewRequest(r.Method, "https://"+r.Host+r.URL.RequestURI(), nil)
	if err != nil {
		return "", err
	}
	cp.Host = r.Host
	for _, h := range signed {
		switch h {
		case "host":
		case "content-length":
			cp.ContentLength = r.ContentLength
		default:
			if vs := r.Header.Values(h); len(vs) > 0 {
				cp.Header[http.CanonicalHeaderKey(h)] = vs
			}
		}
	}
	sum := sha256.Sum256(body)
	if err := v4.NewSigner().SignHTTP(r.Context(), creds, cp, hex.EncodeToString(sum[:]), service, region, t); err != nil {
		return "", err
	}
	got := parseAuthorization(strings.TrimPrefix(cp.Header.Get("Authorization"), "AWS4-HMAC-SHA256 "))
	// The signer signs what it finds on the copy; if that is not exactly the
	// list the client sent, the client signed something the copy lacks.
	if got["SignedHeaders"] != strings.Join(signed, ";") {
		return "", fmt.Errorf("signed headers differ")
	}
	return got["Signature"], nil
}

func parseAuthorization(s string) map[string]string {
	out := map[string]string{}
	for _, part := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if ok {
			out[k] = v
		}
	}
	return out
}
