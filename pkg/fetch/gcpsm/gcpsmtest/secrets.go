package gcpsmtest

import (
	"context"
	"fmt"
	"hash/crc32"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"cloud.google.com/go/secretmanager/apiv1/secretmanagerpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
)

type secretEntry struct {
	id       string
	labels   map[string]string
	versions []*version       // versions[i] is version i+1
	aliases  map[string]int64 // alias → version number
}

type version struct {
	n       int64
	data    []byte // nil once destroyed
	state   secretmanagerpb.SecretVersion_State
	created time.Time
}

// Put stores value as a new version of the secret ID secret, creating the
// secret if need be, and returns the new version's number (1, 2, ...). The
// new version is what "latest" names from now on.
func (s *Server) Put(secret string, value []byte) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	sec, ok := s.secrets[secret]
	if !ok {
		sec = &secretEntry{id: secret, aliases: map[string]int64{}}
		s.secrets[secret] = sec
	}
	v := &version{
		n:       int64(len(sec.versions) + 1),
		data:    append([]byte{}, value...),
		state:   secretmanagerpb.SecretVersion_ENABLED,
		created: s.opts.Now(),
	}
	sec.versions = append(sec.versions, v)
	return v.n
}

// Disable disables version n of secret: it can no longer be accessed
// (FailedPrecondition) until Enable. It panics if there is no such
// version: that is a bug in the test.
func (s *Server) Disable(secret string, n int64) {
	s.setState(secret, n, secretmanagerpb.SecretVersion_DISABLED)
}

// Enable enables version n of secret again.
func (s *Server) Enable(secret string, n int64) {
	s.setState(secret, n, secretmanagerpb.SecretVersion_ENABLED)
}

// Destroy destroys version n of secret: its value is gone for good.
func (s *Server) Destroy(secret string, n int64) {
	s.setState(secret, n, secretmanagerpb.SecretVersion_DESTROYED)
}

func (s *Server) setState(secret string, n int64, st secretmanagerpb.SecretVersion_State) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.mustVersion(secret, n)
	if v.state == secretmanagerpb.SecretVersion_DESTROYED && st != v.state {
		panic(fmt.Sprintf("gcpsmtest: version %d of %q is destroyed", n, secret))
	}
	v.state = st
	if st == secretmanagerpb.SecretVersion_DESTROYED {
		v.data = nil
	}
}

// SetAlias points the version alias (e.g. "prod") of secret at version n.
func (s *Server) SetAlias(secret, alias string, n int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mustVersion(secret, n)
	s.secrets[secret].aliases[alias] = n
}

// mustVersion returns version n of secret. The caller holds s.mu.
func (s *Server) mustVersion(secret string, n int64) *version {
	sec, ok := s.secrets[secret]
	if !ok || n < 1 || n > int64(len(sec.versions)) {
		panic(fmt.Sprintf("gcpsmtest: secret %q has no version %d", secret, n))
	}
	return sec.versions[n-1]
}

// SecretName is the full name of the secret ID secret, with the project
// ID: projects/<id>/secrets/<secret>.
func (s *Server) SecretName(secret string) string {
	return "projects/" + s.opts.ProjectID + "/secrets/" + secret
}

// VersionName is the name the server answers for version n of secret,
// with the project number, as Google does:
// projects/<number>/secrets/<secret>/versions/<n>.
func (s *Server) VersionName(secret string, n int64) string {
	return fmt.Sprintf("projects/%s/secrets/%s/versions/%d", s.opts.ProjectNumber, secret, n)
}

var versionNameRE = regexp.MustCompile(`^projects/([^/]+)/secrets/([A-Za-z0-9_-]{1,255})/versions/([A-Za-z0-9_-]{1,63})$`)

// AccessSecretVersion implements SecretManagerServiceServer.
func (s *Server) AccessSecretVersion(ctx context.Context, req *secretmanagerpb.AccessSecretVersionRequest) (_ *secretmanagerpb.AccessSecretVersionResponse, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sec, v, call, err := s.begin(ctx, MethodAccessSecretVersion, PermAccess, req.GetName())
	defer func() { call.Code = status.Code(err); s.record(call) }()
	if err != nil {
		return nil, err
	}
	if v.state != secretmanagerpb.SecretVersion_ENABLED {
		return nil, status.Errorf(codes.FailedPrecondition, "Secret Version [%s] is in %s state.", s.VersionName(sec.id, v.n), v.state)
	}
	crc := int64(crc32.Checksum(v.data, crc32.MakeTable(crc32.Castagnoli)))
	if s.corrupt > 0 {
		s.corrupt--
		crc ^= 0x5a5a
	}
	return &secretmanagerpb.AccessSecretVersionResponse{
		Name:    s.VersionName(sec.id, v.n),
		Payload: &secretmanagerpb.SecretPayload{Data: append([]byte{}, v.data...), DataCrc32C: &crc},
	}, nil
}

// GetSecretVersion implements SecretManagerServiceServer.
func (s *Server) GetSecretVersion(ctx context.Context, req *secretmanagerpb.GetSecretVersionRequest) (_ *secretmanagerpb.SecretVersion, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sec, v, call, err := s.begin(ctx, MethodGetSecretVersion, PermGet, req.GetName())
	defer func() { call.Code = status.Code(err); s.record(call) }()
	if err != nil {
		return nil, err
	}
	return &secretmanagerpb.SecretVersion{
		Name:       s.VersionName(sec.id, v.n),
		CreateTime: timestamppb.New(v.created),
		State:      v.state,
	}, nil
}

// begin authenticates and authorises a call to method on name, then
// resolves name to a version, in the order Google checks: credentials,
// quota, permission (before existence, so that a caller learns nothing of
// secrets it may not read), then the secret and version. The caller holds
// s.mu and records the call it returns.
func (s *Server) begin(ctx context.Context, method, perm, name string) (*secretEntry, *version, Call, error) {
	call := Call{Method: method, Name: name}
	principal, err := s.authenticate(ctx)
	if err != nil {
		return nil, nil, call, err
	}
	call.Principal = principal
	if s.throttle > 0 {
		s.throttle--
		return nil, nil, call, status.Errorf(codes.ResourceExhausted,
			"Quota exceeded for quota metric 'Access requests' and limit 'Access requests per minute per project' of service 'secretmanager.googleapis.com' for consumer 'project_number:%s'.", s.opts.ProjectNumber)
	}
	m := versionNameRE.FindStringSubmatch(name)
	if m == nil {
		return nil, nil, call, status.Errorf(codes.InvalidArgument, "Invalid resource field value in the request.")
	}
	project, secretID, ver := m[1], m[2], m[3]
	if (project != s.opts.ProjectID && project != s.opts.ProjectNumber) || !s.allowed(principal, secretID, perm) {
		return nil, nil, call, status.Errorf(codes.PermissionDenied, "Permission '%s' denied for resource '%s' (or it may not exist).", perm, name)
	}
	secretName := "projects/" + s.opts.ProjectNumber + "/secrets/" + secretID
	sec, ok := s.secrets[secretID]
	if !ok || len(sec.versions) == 0 {
		return nil, nil, call, status.Errorf(codes.NotFound, "Secret [%s] not found or has no versions.", secretName)
	}
	var n int64
	switch {
	case ver == "latest":
		n = int64(len(sec.versions))
	case ver[0] >= '0' && ver[0] <= '9':
		n, err = strconv.ParseInt(ver, 10, 64)
		if err != nil || n < 1 {
			return nil, nil, call, status.Errorf(codes.InvalidArgument, "Invalid resource field value in the request.")
		}
	default:
		if n, ok = sec.aliases[ver]; !ok {
			return nil, nil, call, status.Errorf(codes.NotFound, "Secret Version alias [%s] not found.", ver)
		}
	}
	if n > int64(len(sec.versions)) {
		return nil, nil, call, status.Errorf(codes.NotFound, "Secret Version [%s/versions/%d] not found.", secretName, n)
	}
	return sec, sec.versions[n-1], call, nil
}

// authenticate returns the principal of the bearer token in the call's
// metadata. The caller holds s.mu.
func (s *Server) authenticate(ctx context.Context) (string, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	unauthenticated := status.Error(codes.Unauthenticated,
		"Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.")
	auth := md.Get("authorization")
	if len(auth) != 1 {
		return "", unauthenticated
	}
	scheme, tok, ok := strings.Cut(auth[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", unauthenticated
	}
	at, ok := s.tokens[tok]
	if !ok || !s.opts.Now().Before(at.expires) {
		return "", unauthenticated
	}
	return at.principal, nil
}

// SetLabels replaces the labels of secret. It panics if there is no such
// secret: that is a bug in the test.
func (s *Server) SetLabels(secret string, labels map[string]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sec, ok := s.secrets[secret]
	if !ok {
		panic(fmt.Sprintf("gcpsmtest: no secret %q", secret))
	}
	sec.labels = maps.Clone(labels)
}

// labelTerm is one term of a ListSecrets filter the server understands:
// labels.<key>=<value> (or labels.<key>:<value>), as Google spells them.
var labelTerm = regexp.MustCompile(`^labels\.([a-z][a-z0-9_-]*)[=:]([a-z0-9_-]*)$`)

// parseFilter reads a ListSecrets filter of label terms joined by AND (or
// by spaces, which Google reads as AND). Anything else is refused, as a
// filter Google would read differently than this fake must not pass.
func parseFilter(filter string) (map[string]string, bool) {
	want := map[string]string{}
	for _, term := range strings.Fields(filter) {
		if term == "AND" {
			continue
		}
		m := labelTerm.FindStringSubmatch(term)
		if m == nil {
			return nil, false
		}
		want[m[1]] = m[2]
	}
	return want, true
}

// ListSecrets implements SecretManagerServiceServer: the secrets of the
// project, in name order, whose labels match the filter, a page at a time.
// It needs PermList on "*" (the project), as Google's
// secretmanager.secrets.list is granted on the project.
func (s *Server) ListSecrets(ctx context.Context, req *secretmanagerpb.ListSecretsRequest) (_ *secretmanagerpb.ListSecretsResponse, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	call := Call{Method: MethodListSecrets, Name: req.GetParent()}
	defer func() { call.Code = status.Code(err); s.record(call) }()
	principal, err := s.authenticate(ctx)
	if err != nil {
		return nil, err
	}
	call.Principal = principal
	if s.throttle > 0 {
		s.throttle--
		return nil, status.Errorf(codes.ResourceExhausted, "Quota exceeded for quota metric 'List requests' of service 'secretmanager.googleapis.com' for consumer 'project_number:%s'.", s.opts.ProjectNumber)
	}
	parent := req.GetParent()
	if parent != "projects/"+s.opts.ProjectID && parent != "projects/"+s.opts.ProjectNumber || !s.allowed(principal, "*", PermList) {
		return nil, status.Errorf(codes.PermissionDenied, "Permission '%s' denied for resource '%s' (or it may not exist).", PermList, parent)
	}
	want, ok := parseFilter(req.GetFilter())
	if !ok {
		return nil, status.Errorf(codes.InvalidArgument, "Invalid filter: %q.", req.GetFilter())
	}
	start := 0
	if tok := req.GetPageToken(); tok != "" {
		if start, err = strconv.Atoi(tok); err != nil || start < 0 {
			return nil, status.Errorf(codes.InvalidArgument, "Invalid page token.")
		}
	}
	size := int(req.GetPageSize())
	if size <= 0 || size > 25000 {
		size = 25000
	}
	var matched []*secretEntry
	for _, id := range slices.Sorted(maps.Keys(s.secrets)) {
		sec := s.secrets[id]
		all := true
		for k, v := range want {
			if got, ok := sec.labels[k]; !ok || got != v {
				all = false
			}
		}
		if all {
			matched = append(matched, sec)
		}
	}
	resp := &secretmanagerpb.ListSecretsResponse{TotalSize: int32(len(matched))}
	for i := start; i < len(matched) && i < start+size; i++ {
		resp.Secrets = append(resp.Secrets, &secretmanagerpb.Secret{
			Name:   "projects/" + s.opts.ProjectNumber + "/secrets/" + matched[i].id,
			Labels: maps.Clone(matched[i].labels),
		})
	}
	if start+size < len(matched) {
		resp.NextPageToken = strconv.Itoa(start + size)
	}
	return resp, nil
}
