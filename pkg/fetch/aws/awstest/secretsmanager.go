package awstest

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"
)

// Version stages Secrets Manager moves on every new value.
const (
	StageCurrent  = "AWSCURRENT"
	StagePrevious = "AWSPREVIOUS"
)

type secret struct {
	name, arn string
	created   time.Time
	changed   time.Time
	versions  map[string]*secretVersion
	stages    map[string]string // stage → version id
}

type secretVersion struct {
	id      string
	str     *string
	bin     []byte
	created time.Time
}

func (sec *secret) stagesOf(id string) []string {
	var out []string
	for st, v := range sec.stages {
		if v == id {
			out = append(out, st)
		}
	}
	sort.Strings(out)
	return out
}

// PutSecretString stores value as a new version of the secret name,
// creating the secret if need be, and returns the new VersionId. As
// PutSecretValue does, it moves AWSCURRENT to the new version and
// AWSPREVIOUS to the version that was current.
func (s *Server) PutSecretString(name, value string) string {
	return s.putSecret(name, &secretVersion{str: &value})
}

// PutSecretBinary is PutSecretString for a SecretBinary value.
func (s *Server) PutSecretBinary(name string, value []byte) string {
	return s.putSecret(name, &secretVersion{bin: append([]byte(nil), value...)})
}

func (s *Server) putSecret(name string, v *secretVersion) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.opts.Now()
	sec, ok := s.secrets[name]
	if !ok {
		sec = &secret{
			name:     name,
			arn:      fmt.Sprintf("arn:aws:secretsmanager:%s:%s:secret:%s-%s", s.opts.Region, s.opts.AccountID, name, randomString(6, alnum)),
			created:  now,
			versions: map[string]*secretVersion{},
			stages:   map[string]string{},
		}
		s.secrets[name] = sec
	}
	v.id = newUUID()
	v.created = now
	sec.versions[v.id] = v
	sec.changed = now
	if cur, ok := sec.stages[StageCurrent]; ok {
		sec.stages[StagePrevious] = cur
	}
	sec.stages[StageCurrent] = v.id
	return v.id
}

// SetSecretStage attaches stage (a custom label, or AWSCURRENT/AWSPREVIOUS)
// to versionID of the secret name, taking it off any other version, as
// UpdateSecretVersionStage does. It panics if the secret or version does
// not exist: that is a bug in the test.
func (s *Server) SetSecretStage(name, stage, versionID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sec, ok := s.secrets[name]
	if !ok || sec.versions[versionID] == nil {
		panic(fmt.Sprintf("awstest: SetSecretStage: secret %q has no version %q", name, versionID))
	}
	sec.stages[stage] = versionID
	sec.changed = s.opts.Now()
}

// SecretARN returns the ARN of the secret name, "" if there is none.
func (s *Server) SecretARN(name string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sec, ok := s.secrets[name]; ok {
		return sec.arn
	}
	return ""
}

// lookupSecret finds a secret by name or full ARN. The caller holds s.mu.
func (s *Server) lookupSecret(id string) *secret {
	if strings.HasPrefix(id, "arn:") {
		for _, sec := range s.secrets {
			if sec.arn == id {
				return sec
			}
		}
		return nil
	}
	return s.secrets[id]
}

// secretResource is the ARN IAM evaluates for id, and the name policies
// match against.
func (s *Server) secretResource(id string) (arn, name string) {
	if sec := s.lookupSecret(id); sec != nil {
		return sec.arn, sec.name
	}
	if strings.HasPrefix(id, "arn:") {
		_, name, _ = strings.Cut(id, ":secret:")
		return id, name
	}
	return fmt.Sprintf("arn:aws:secretsmanager:%s:%s:secret:%s", s.opts.Region, s.opts.AccountID, id), id
}

func secretNotFound() *apiError {
	return errorf(http.StatusBadRequest, "ResourceNotFoundException", "Secrets Manager can't find the specified secret.")
}

type secretValueEntry struct {
	ARN           string   `json:"ARN"`
	Name          string   `json:"Name"`
	VersionId     string   `json:"VersionId"`
	SecretString  *string  `json:"SecretString,omitempty"`
	SecretBinary  []byte   `json:"SecretBinary,omitempty"` // base64, as the service sends it
	VersionStages []string `json:"VersionStages"`
	CreatedDate   epoch    `json:"CreatedDate"`
}

func entry(sec *secret, v *secretVersion) secretValueEntry {
	return secretValueEntry{
		ARN: sec.arn, Name: sec.name, VersionId: v.id,
		SecretString: v.str, SecretBinary: v.bin,
		VersionStages: sec.stagesOf(v.id), CreatedDate: epoch(v.created),
	}
}

func (s *Server) getSecretValue(caller *accessKey, body []byte) (any, *apiError) {
	var in struct {
		SecretId     string
		VersionId    string
		VersionStage string
	}
	if aerr := decode(body, &in); aerr != nil {
		return nil, aerr
	}
	if in.VersionId != "" && (len(in.VersionId) < 32 || len(in.VersionId) > 64) {
		return nil, validation("Value at 'versionId' failed to satisfy constraint: Member must have length between 32 and 64")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	arn, name := s.secretResource(in.SecretId)
	const action = "secretsmanager:GetSecretValue"
	if !s.allowed(caller.principal, action, name) {
		return nil, accessDenied(caller, action, arn)
	}
	sec := s.lookupSecret(in.SecretId)
	if sec == nil {
		return nil, secretNotFound()
	}
	var v *secretVersion
	switch {
	case in.VersionId != "":
		v = sec.versions[in.VersionId]
		if v == nil {
			return nil, errorf(http.StatusBadRequest, "ResourceNotFoundException", "Secrets Manager can't find the specified secret value for VersionId: %s", in.VersionId)
		}
		if in.VersionStage != "" && sec.stages[in.VersionStage] != in.VersionId {
			return nil, errorf(http.StatusBadRequest, "InvalidRequestException", "You provided a VersionStage that is not associated to the provided VersionId.")
		}
	default:
		stage := in.VersionStage
		if stage == "" {
			stage = StageCurrent
		}
		v = sec.versions[sec.stages[stage]]
		if v == nil {
			return nil, errorf(http.StatusBadRequest, "ResourceNotFoundException", "Secrets Manager can't find the specified secret value for staging label: %s", stage)
		}
	}
	return entry(sec, v), nil
}

func (s *Server) describeSecret(caller *accessKey, body []byte) (any, *apiError) {
	var in struct{ SecretId string }
	if aerr := decode(body, &in); aerr != nil {
		return nil, aerr
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	arn, name := s.secretResource(in.SecretId)
	const action = "secretsmanager:DescribeSecret"
	if !s.allowed(caller.principal, action, name) {
		return nil, accessDenied(caller, action, arn)
	}
	sec := s.lookupSecret(in.SecretId)
	if sec == nil {
		return nil, secretNotFound()
	}
	stages := map[string][]string{}
	for id := range sec.versions {
		if st := sec.stagesOf(id); len(st) > 0 {
			stages[id] = st
		}
	}
	return struct {
		ARN                string
		Name               string
		CreatedDate        epoch
		LastChangedDate    epoch
		VersionIdsToStages map[string][]string
	}{sec.arn, sec.name, epoch(sec.created), epoch(sec.changed), stages}, nil
}

type secretFilter struct {
	Key    string
	Values []string
}

// matches applies the filters as ListSecrets does: values of one filter are
// alternatives, filters all apply, "!" negates a value.
func matches(filters []secretFilter, name string) bool {
	for _, f := range filters {
		hit := false
		for _, v := range f.Values {
			if neg, ok := strings.CutPrefix(v, "!"); ok {
				hit = hit || !strings.HasPrefix(name, neg)
			} else {
				hit = hit || strings.HasPrefix(name, v)
			}
		}
		if !hit {
			return false
		}
	}
	return true
}

func (s *Server) batchGetSecretValue(caller *accessKey, body []byte) (any, *apiError) {
	var in struct {
		SecretIdList []string
		Filters      []secretFilter
		MaxResults   *int
		NextToken    string
	}
	if aerr := decode(body, &in); aerr != nil {
		return nil, aerr
	}
	if (len(in.SecretIdList) == 0) == (len(in.Filters) == 0) {
		return nil, errorf(http.StatusBadRequest, "InvalidParameterException", "Either SecretIdList or Filters must be provided, but not both.")
	}
	if in.MaxResults != nil && len(in.Filters) == 0 {
		return nil, errorf(http.StatusBadRequest, "InvalidParameterException", "MaxResults can only be used with Filters.")
	}
	if in.MaxResults != nil && (*in.MaxResults < 1 || *in.MaxResults > 20) {
		return nil, validation("Value at 'maxResults' failed to satisfy constraint: Member must have value between 1 and 20")
	}
	for _, f := range in.Filters {
		if f.Key != "name" {
			return nil, errorf(http.StatusBadRequest, "InvalidParameterException", "awstest: filter key %q is not implemented", f.Key)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	resource := fmt.Sprintf("arn:aws:secretsmanager:%s:%s:secret:*", s.opts.Region, s.opts.AccountID)
	for _, action := range []string{"secretsmanager:BatchGetSecretValue", "secretsmanager:ListSecrets"} {
		if action == "secretsmanager:ListSecrets" && len(in.Filters) == 0 {
			continue
		}
		if !s.allowed(caller.principal, action, "") {
			return nil, accessDenied(caller, action, resource)
		}
	}

	ids := in.SecretIdList
	size := len(ids)
	if len(in.Filters) > 0 {
		ids = nil
		for name := range s.secrets {
			if matches(in.Filters, name) {
				ids = append(ids, name)
			}
		}
		sort.Strings(ids)
		size = s.opts.PageSize
		if in.MaxResults != nil {
			size = min(size, *in.MaxResults)
		}
	}
	start, end, next, aerr := page(len(ids), size, in.NextToken, "InvalidNextTokenException")
	if aerr != nil {
		return nil, aerr
	}
	type apiErrorType struct {
		SecretId  string
		ErrorCode string
		Message   string
	}
	out := struct {
		SecretValues []secretValueEntry
		Errors       []apiErrorType `json:",omitempty"`
		NextToken    string         `json:",omitempty"`
	}{SecretValues: []secretValueEntry{}, NextToken: next}
	for _, id := range ids[start:end] {
		arn, name := s.secretResource(id)
		const action = "secretsmanager:GetSecretValue"
		if !s.allowed(caller.principal, action, name) {
			e := accessDenied(caller, action, arn)
			out.Errors = append(out.Errors, apiErrorType{id, e.code, e.message})
			continue
		}
		sec := s.lookupSecret(id)
		if sec == nil {
			e := secretNotFound()
			out.Errors = append(out.Errors, apiErrorType{id, e.code, e.message})
			continue
		}
		out.SecretValues = append(out.SecretValues, entry(sec, sec.versions[sec.stages[StageCurrent]]))
	}
	return out, nil
}
