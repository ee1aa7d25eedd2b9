// Package awstest is an in-process fake of AWS Secrets Manager, SSM Parameter
// Store and STS for tests that drive the real AWS SDK clients.
//
// It speaks the wire protocols the SDK speaks (AWS JSON 1.1 for Secrets
// Manager and SSM, the query protocol with XML answers for STS) on one
// loopback TLS listener, verifies every SigV4 signature with the secret key
// it issued, and authorises each call against per-principal policies, so
// that credential, permission and throttling failures look as they do
// against AWS. It is not a complete implementation: only the operations and
// fields keyhook uses are served; everything else is answered with an
// UnknownOperationException.
//
// A typical test:
//
//	srv := awstest.New(awstest.Options{})
//	t.Cleanup(srv.Close)
//	alice := srv.AddUser("alice")
//	srv.Allow(alice.ARN, "app/", "secretsmanager:GetSecretValue")
//	srv.PutSecretString("app/db", `{"password":"s3cret"}`)
//	// point the client at srv.URL() with srv.Region(), trusting srv.CABundle(),
//	// signing with alice.AccessKeyID / alice.SecretAccessKey.
package awstest

import (
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"
)

// Operation names as counted by Calls: the X-Amz-Target of the JSON
// services, "sts.<Action>" for STS.
const (
	OpGetSecretValue            = "secretsmanager.GetSecretValue"
	OpDescribeSecret            = "secretsmanager.DescribeSecret"
	OpBatchGetSecretValue       = "secretsmanager.BatchGetSecretValue"
	OpListSecrets               = "secretsmanager.ListSecrets"
	OpGetParameter              = "AmazonSSM.GetParameter"
	OpGetParametersByPath       = "AmazonSSM.GetParametersByPath"
	OpDescribeParameters        = "AmazonSSM.DescribeParameters"
	OpAssumeRole                = "sts.AssumeRole"
	OpAssumeRoleWithWebIdentity = "sts.AssumeRoleWithWebIdentity"
)

// Options configure a Server. The zero value is usable.
type Options struct {
	// Region the server answers for; credential scopes naming another
	// region are rejected. Default "eu-west-1".
	Region string
	// AccountID owns every ARN the server makes. Default "123456789012".
	AccountID string
	// PageSize caps the items of one page of BatchGetSecretValue,
	// GetParametersByPath and DescribeParameters, so that tests exercise
	// NextToken. Default 2.
	PageSize int
	// SessionDuration of credentials issued by STS when the caller asks
	// for none. Default one hour.
	SessionDuration time.Duration
	// Now is the server's clock. Default time.Now.
	Now func() time.Time
}

// Keys are long-term access keys of a user.
type Keys struct {
	AccessKeyID     string
	SecretAccessKey string
	// ARN is the user's principal, as used by Allow and Trust.
	ARN string
}

// Call is one request as the server saw it.
type Call struct {
	// Op is the operation, e.g. OpGetSecretValue.
	Op string
	// Principal is the authenticated caller: a user ARN, or the role ARN
	// for credentials issued by STS. Empty when authentication failed or
	// was not required.
	Principal string
	// AccessKeyID signed the request; empty for unsigned requests.
	AccessKeyID string
	// ErrorCode is the error answered, empty on success.
	ErrorCode string
}

// Server is a fake of Secrets Manager, SSM Parameter Store and STS. All
// methods are safe for concurrent use.
type Server struct {
	opts Options
	srv  *httptest.Server

	mu       sync.Mutex
	keys     map[string]*accessKey // by access key id
	roles    map[string]*role      // by ARN
	policies []statement
	secrets  map[string]*secret    // by name
	params   map[string]*parameter // by name
	throttle int
	calls    []Call
}

type accessKey struct {
	secret       string
	sessionToken string    // empty for long-term keys
	principal    string    // whom policies name: the user or role ARN
	callerARN    string    // who AWS says called: the user or assumed-role session ARN
	expires      time.Time // zero for long-term keys
}

type role struct {
	arn         string
	webIdentity TokenVerifier
	principals  map[string]bool
}

type statement struct {
	principal string
	prefix    string
	actions   []string
}

// New starts a Server on a loopback TLS listener. Close it when done.
func New(opts Options) *Server {
	if opts.Region == "" {
		opts.Region = "eu-west-1"
	}
	if opts.AccountID == "" {
		opts.AccountID = "123456789012"
	}
	if opts.PageSize <= 0 {
		opts.PageSize = 2
	}
	if opts.SessionDuration <= 0 {
		opts.SessionDuration = time.Hour
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Server{
		opts:    opts,
		keys:    map[string]*accessKey{},
		roles:   map[string]*role{},
		secrets: map[string]*secret{},
		params:  map[string]*parameter{},
	}
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(s.serveHTTP))
	// Clients that go away mid-handshake (a test's cancelled context) make
	// the server log; that is noise in test output.
	s.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	s.srv.StartTLS()
	return s
}

// Close shuts the server down.
func (s *Server) Close() { s.srv.Close() }

// URL is the https:// base URL of every service (Secrets Manager, SSM and
// STS share it).
func (s *Server) URL() string { return s.srv.URL }

// CABundle is the PEM of the server's self-signed certificate.
func (s *Server) CABundle() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.srv.Certificate().Raw})
}

// Region the server answers for.
func (s *Server) Region() string { return s.opts.Region }

// AccountID that owns every ARN the server makes.
func (s *Server) AccountID() string { return s.opts.AccountID }

// AddUser creates an IAM user with a fresh pair of long-term access keys.
// The user may do nothing until Allow grants it actions.
func (s *Server) AddUser(name string) Keys {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := Keys{
		AccessKeyID:     "AKIA" + randomString(16, upperAlnum),
		SecretAccessKey: randomString(40, base64Chars),
		ARN:             fmt.Sprintf("arn:aws:iam::%s:user/%s", s.opts.AccountID, name),
	}
	s.keys[k.AccessKeyID] = &accessKey{secret: k.SecretAccessKey, principal: k.ARN, callerARN: k.ARN}
	return k
}

// Trust says who may assume a role.
type Trust struct {
	// WebIdentity, when set, lets AssumeRoleWithWebIdentity exchange a
	// token it accepts for the role's credentials.
	WebIdentity TokenVerifier
	// Principals (user or role ARNs) may call AssumeRole for the role.
	Principals []string
}

// AddRole creates an IAM role and returns its ARN. Credentials issued for it
// act as the role ARN: grant the role actions with Allow(arn, ...).
func (s *Server) AddRole(name string, trust Trust) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	arn := fmt.Sprintf("arn:aws:iam::%s:role/%s", s.opts.AccountID, name)
	r := &role{arn: arn, webIdentity: trust.WebIdentity, principals: map[string]bool{}}
	for _, p := range trust.Principals {
		r.principals[p] = true
	}
	s.roles[arn] = r
	return arn
}

// Allow lets principal perform actions (e.g. "secretsmanager:GetSecretValue",
// "ssm:*", "*") on every secret or parameter whose name starts with prefix.
// Actions that AWS does not scope to a resource (secretsmanager:ListSecrets
// and BatchGetSecretValue, ssm:DescribeParameters) need prefix "", as they
// need Resource "*" in IAM.
func (s *Server) Allow(principal, prefix string, actions ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.policies = append(s.policies, statement{principal: principal, prefix: prefix, actions: actions})
}

// Throttle makes the next n calls, to any service, fail with a throttling
// error (ThrottlingException; Throttling for STS).
func (s *Server) Throttle(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.throttle = n
}

// Calls counts the requests received for op (e.g. OpGetSecretValue),
// whatever their outcome.
func (s *Server) Calls(op string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.calls {
		if c.Op == op {
			n++
		}
	}
	return n
}

// CallLog returns every request received so far, in order.
func (s *Server) CallLog() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Call(nil), s.calls...)
}

// allowed reports whether principal may perform action on name. The caller
// holds s.mu.
func (s *Server) allowed(principal, action, name string) bool {
	for _, st := range s.policies {
		if st.principal != principal || !strings.HasPrefix(name, st.prefix) {
			continue
		}
		for _, a := range st.actions {
			if a == action || a == "*" || (strings.HasSuffix(a, "*") && strings.HasPrefix(action, strings.TrimSuffix(a, "*"))) {
				return true
			}
		}
	}
	return false
}

// apiError is an error answer, rendered by the protocol of the service.
type apiError struct {
	status  int
	code    string
	message string
}

func (e *apiError) Error() string { return e.code + ": " + e.message }

func errorf(status int, code, format string, args ...any) *apiError {
	return &apiError{status: status, code: code, message: fmt.Sprintf(format, args...)}
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, "reading body", http.StatusBadRequest)
		return
	}
	if r.Method != http.MethodPost {
		http.Error(w, "only POST is served", http.StatusMethodNotAllowed)
		return
	}
	if target := r.Header.Get("X-Amz-Target"); target != "" {
		s.serveJSON(w, r, target, body)
		return
	}
	s.serveQuery(w, r, body)
}

// begin records a call and consumes one throttled call if any are left.
func (s *Server) begin(op string) (idx int, throttled bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, Call{Op: op})
	if s.throttle > 0 {
		s.throttle--
		throttled = true
	}
	return len(s.calls) - 1, throttled
}

// finish completes the record of call idx.
func (s *Server) finish(idx int, principal, accessKeyID string, aerr *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := &s.calls[idx]
	c.Principal, c.AccessKeyID = principal, accessKeyID
	if aerr != nil {
		c.ErrorCode = aerr.code
	}
}

const (
	upperAlnum  = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	lowerHex    = "0123456789abcdef"
	base64Chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	alnum       = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
)

func randomString(n int, alphabet string) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

func newUUID() string {
	h := randomString(32, lowerHex)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

func newRequestID() string { return newUUID() }
