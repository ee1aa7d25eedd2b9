package awstest

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// TokenVerifier decides whether a web identity token may be exchanged for
// credentials of roleARN, as the role's trust policy and its OIDC provider
// do. It returns the token's subject. An error wrapping ErrUntrusted is
// answered AccessDenied (a valid token the role does not trust); any other
// error InvalidIdentityToken (a token that does not verify).
type TokenVerifier func(ctx context.Context, token, roleARN string) (subject string, err error)

// ErrUntrusted is what a TokenVerifier wraps when the token is valid but the
// role does not trust its subject or audience.
var ErrUntrusted = errors.New("not trusted by the role")

// ExpectToken returns a TokenVerifier that accepts exactly want and names
// its subject subject.
func ExpectToken(want, subject string) TokenVerifier {
	return func(_ context.Context, token, _ string) (string, error) {
		if token != want {
			return "", errors.New("the token does not verify")
		}
		return subject, nil
	}
}

var sessionNameRE = regexp.MustCompile(`^[\w+=,.@-]{2,64}$`)

const stsNamespace = "https://sts.amazonaws.com/doc/2011-06-15/"

func (s *Server) serveQuery(w http.ResponseWriter, r *http.Request, body []byte) {
	form, err := url.ParseQuery(string(body))
	action := form.Get("Action")
	idx, throttled := s.begin("sts." + action)
	var principal, akid string
	result, aerr := func() (any, *apiError) {
		if err != nil || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
			return nil, errorf(http.StatusBadRequest, "MalformedInput", "The request body is not form-encoded.")
		}
		if throttled {
			return nil, errorf(http.StatusBadRequest, "Throttling", "Rate exceeded")
		}
		if v := form.Get("Version"); v != "2011-06-15" {
			return nil, errorf(http.StatusBadRequest, "InvalidAction", "Could not find operation %s for version %s", action, v)
		}
		switch action {
		case "AssumeRoleWithWebIdentity":
			// Unsigned, as the service expects: the token is the credential.
			return s.assumeRoleWithWebIdentity(r.Context(), form)
		case "AssumeRole":
			key, id, authErr := s.authenticate(r, body, "sts")
			akid = id
			if authErr != nil {
				return nil, authErr.render(true)
			}
			principal = key.principal
			return s.assumeRole(key, form)
		default:
			return nil, errorf(http.StatusBadRequest, "InvalidAction", "Could not find operation %s for version 2011-06-15", action)
		}
	}()
	s.finish(idx, principal, akid, aerr)

	w.Header().Set("Content-Type", "text/xml")
	reqID := newRequestID()
	w.Header().Set("X-Amzn-RequestId", reqID)
	if aerr != nil {
		w.WriteHeader(aerr.status)
		_ = xml.NewEncoder(w).Encode(stsError{
			Xmlns:     stsNamespace,
			Error:     stsErrorBody{Type: "Sender", Code: aerr.code, Message: aerr.message},
			RequestID: reqID,
		})
		return
	}
	_, _ = w.Write([]byte(xml.Header))
	_ = xml.NewEncoder(w).Encode(stsResponse{
		XMLName:  xml.Name{Local: action + "Response"},
		Xmlns:    stsNamespace,
		Result:   result,
		Metadata: responseMetadata{RequestID: reqID},
	})
}

type stsError struct {
	XMLName   xml.Name     `xml:"ErrorResponse"`
	Xmlns     string       `xml:"xmlns,attr"`
	Error     stsErrorBody `xml:"Error"`
	RequestID string       `xml:"RequestId"`
}

type stsErrorBody struct {
	Type    string
	Code    string
	Message string
}

type stsResponse struct {
	XMLName  xml.Name
	Xmlns    string `xml:"xmlns,attr"`
	Result   any
	Metadata responseMetadata `xml:"ResponseMetadata"`
}

type responseMetadata struct {
	RequestID string `xml:"RequestId"`
}

type assumedRoleUser struct {
	Arn           string
	AssumedRoleId string
}

type stsCredentials struct {
	AccessKeyId     string
	SecretAccessKey string
	SessionToken    string
	Expiration      string
}

type assumeRoleWithWebIdentityResult struct {
	XMLName                     xml.Name `xml:"AssumeRoleWithWebIdentityResult"`
	Credentials                 stsCredentials
	SubjectFromWebIdentityToken string
	AssumedRoleUser             assumedRoleUser
	Provider                    string
	Audience                    string
}

type assumeRoleResult struct {
	XMLName         xml.Name `xml:"AssumeRoleResult"`
	Credentials     stsCredentials
	AssumedRoleUser assumedRoleUser
}

// sessionParams validates what both Assume calls share.
func (s *Server) sessionParams(form url.Values) (r *role, session string, d time.Duration, aerr *apiError) {
	session = form.Get("RoleSessionName")
	if !sessionNameRE.MatchString(session) {
		return nil, "", 0, errorf(http.StatusBadRequest, "ValidationError",
			"1 validation error detected: Value '%s' at 'roleSessionName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]*", session)
	}
	d = s.opts.SessionDuration
	if v := form.Get("DurationSeconds"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 900 || n > 43200 {
			return nil, "", 0, errorf(http.StatusBadRequest, "ValidationError",
				"1 validation error detected: Value '%s' at 'durationSeconds' failed to satisfy constraint: Member must have value between 900 and 43200", v)
		}
		d = time.Duration(n) * time.Second
	}
	s.mu.Lock()
	r = s.roles[form.Get("RoleArn")]
	s.mu.Unlock()
	return r, session, d, nil
}

// issue mints temporary credentials that act as roleARN.
func (s *Server) issue(r *role, session string, d time.Duration) (stsCredentials, assumedRoleUser) {
	s.mu.Lock()
	defer s.mu.Unlock()
	roleName := r.arn[strings.LastIndex(r.arn, "/")+1:]
	user := assumedRoleUser{
		Arn:           fmt.Sprintf("arn:aws:sts::%s:assumed-role/%s/%s", s.opts.AccountID, roleName, session),
		AssumedRoleId: "AROA" + randomString(17, upperAlnum) + ":" + session,
	}
	expires := s.opts.Now().Add(d).UTC().Truncate(time.Second)
	c := stsCredentials{
		AccessKeyId:     "ASIA" + randomString(16, upperAlnum),
		SecretAccessKey: randomString(40, base64Chars),
		SessionToken:    randomString(356, base64Chars),
		Expiration:      expires.Format(time.RFC3339),
	}
	s.keys[c.AccessKeyId] = &accessKey{
		secret: c.SecretAccessKey, sessionToken: c.SessionToken,
		principal: r.arn, callerARN: user.Arn, expires: expires,
	}
	return c, user
}

func (s *Server) assumeRoleWithWebIdentity(ctx context.Context, form url.Values) (any, *apiError) {
	token := form.Get("WebIdentityToken")
	if len(token) < 4 {
		return nil, errorf(http.StatusBadRequest, "ValidationError", "1 validation error detected: Value at 'webIdentityToken' failed to satisfy constraint: Member must have length greater than or equal to 4")
	}
	r, session, d, aerr := s.sessionParams(form)
	if aerr != nil {
		return nil, aerr
	}
	if r == nil || r.webIdentity == nil {
		return nil, errorf(http.StatusForbidden, "AccessDenied", "Not authorized to perform sts:AssumeRoleWithWebIdentity")
	}
	subject, err := r.webIdentity(ctx, token, r.arn)
	switch {
	case errors.Is(err, ErrUntrusted):
		return nil, errorf(http.StatusForbidden, "AccessDenied", "Not authorized to perform sts:AssumeRoleWithWebIdentity")
	case err != nil:
		return nil, errorf(http.StatusBadRequest, "InvalidIdentityToken", "%v", err)
	}
	creds, user := s.issue(r, session, d)
	return assumeRoleWithWebIdentityResult{
		Credentials: creds, SubjectFromWebIdentityToken: subject, AssumedRoleUser: user,
		Provider: "awstest", Audience: "sts.amazonaws.com",
	}, nil
}

func (s *Server) assumeRole(caller *accessKey, form url.Values) (any, *apiError) {
	r, session, d, aerr := s.sessionParams(form)
	if aerr != nil {
		return nil, aerr
	}
	if r == nil || !r.principals[caller.principal] {
		return nil, errorf(http.StatusForbidden, "AccessDenied",
			"User: %s is not authorized to perform: sts:AssumeRole on resource: %s", caller.callerARN, form.Get("RoleArn"))
	}
	creds, user := s.issue(r, session, d)
	return assumeRoleResult{Credentials: creds, AssumedRoleUser: user}, nil
}
