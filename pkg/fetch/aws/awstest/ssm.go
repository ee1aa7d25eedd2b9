package awstest

import (
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Parameter types.
const (
	String       = "String"
	StringList   = "StringList"
	SecureString = "SecureString"
)

type parameter struct {
	name     string
	typ      string
	versions []paramVersion // versions[i] is version i+1
	labels   map[string]int64
}

type paramVersion struct {
	value    string
	modified time.Time
}

// PutParameter stores value as a new version of the parameter name (type
// String, StringList or SecureString), creating it if need be, and returns
// the new version number.
func (s *Server) PutParameter(name, typ, value string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.params[name]
	if !ok {
		p = &parameter{name: name, labels: map[string]int64{}}
		s.params[name] = p
	}
	p.typ = typ
	p.versions = append(p.versions, paramVersion{value: value, modified: s.opts.Now()})
	return int64(len(p.versions))
}

// LabelParameterVersion attaches labels to a version of the parameter name,
// moving each off any other version, as LabelParameterVersion does. It
// panics if the parameter or version does not exist: that is a bug in the
// test.
func (s *Server) LabelParameterVersion(name string, version int64, labels ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.params[name]
	if !ok || version < 1 || version > int64(len(p.versions)) {
		panic(fmt.Sprintf("awstest: LabelParameterVersion: parameter %q has no version %d", name, version))
	}
	for _, l := range labels {
		p.labels[l] = version
	}
}

func (s *Server) paramARN(name string) string {
	if !strings.HasPrefix(name, "/") {
		name = "/" + name
	}
	return fmt.Sprintf("arn:aws:ssm:%s:%s:parameter%s", s.opts.Region, s.opts.AccountID, name)
}

// splitParamName splits "name:selector" (name may be an ARN) into the
// parameter's name and its selector.
func (s *Server) splitParamName(full string) (name, selector string) {
	name = full
	if i := strings.LastIndex(name, "/"); strings.Contains(name[i+1:], ":") {
		j := strings.LastIndex(name, ":")
		name, selector = name[:j], name[j+1:]
	}
	if rest, ok := strings.CutPrefix(name, "arn:"); ok {
		if _, path, ok := strings.Cut(rest, ":parameter/"); ok {
			// "parameter/a" is the ARN of both "a" and "/a".
			s.mu.Lock()
			_, bare := s.params[path]
			s.mu.Unlock()
			if bare {
				return path, selector
			}
			return "/" + path, selector
		}
	}
	return name, selector
}

type parameterJSON struct {
	ARN              string
	DataType         string
	LastModifiedDate epoch
	Name             string
	Selector         string `json:",omitempty"`
	Type             string
	Value            string
	Version          int64
}

// render returns what the service answers for version v of p: SecureString
// values are ciphertext unless decryption is asked for.
func (s *Server) render(p *parameter, version int64, decrypt bool, selector string) parameterJSON {
	v := p.versions[version-1]
	value := v.value
	if p.typ == SecureString && !decrypt {
		value = "AQICAH" + randomString(120, base64Chars)
	}
	out := parameterJSON{
		ARN: s.paramARN(p.name), DataType: "text", LastModifiedDate: epoch(v.modified),
		Name: p.name, Type: p.typ, Value: value, Version: version,
	}
	if selector != "" {
		out.Selector = ":" + selector
	}
	return out
}

func parameterNotFound() *apiError {
	// The service answers ParameterNotFound with no message at all.
	return errorf(http.StatusBadRequest, "ParameterNotFound", "")
}

func (s *Server) getParameter(caller *accessKey, body []byte) (any, *apiError) {
	var in struct {
		Name           string
		WithDecryption bool
	}
	if aerr := decode(body, &in); aerr != nil {
		return nil, aerr
	}
	name, selector := s.splitParamName(in.Name)
	s.mu.Lock()
	defer s.mu.Unlock()
	const action = "ssm:GetParameter"
	if !s.allowed(caller.principal, action, name) {
		return nil, accessDenied(caller, action, s.paramARN(name))
	}
	p, ok := s.params[name]
	if !ok {
		return nil, parameterNotFound()
	}
	version := int64(len(p.versions))
	if selector != "" {
		if n, err := strconv.ParseInt(selector, 10, 64); err == nil {
			if n < 1 || n > int64(len(p.versions)) {
				return nil, errorf(http.StatusBadRequest, "ParameterVersionNotFound",
					"Systems Manager could not find version %d of %s. Verify the version and try again.", n, name)
			}
			version = n
		} else {
			n, ok := p.labels[selector]
			if !ok {
				return nil, errorf(http.StatusBadRequest, "ParameterVersionNotFound",
					"Systems Manager could not find label %s of %s. Verify the label and try again.", selector, name)
			}
			version = n
		}
	}
	return struct{ Parameter parameterJSON }{s.render(p, version, in.WithDecryption, selector)}, nil
}

func (s *Server) getParametersByPath(caller *accessKey, body []byte) (any, *apiError) {
	var in struct {
		Path           string
		Recursive      bool
		WithDecryption bool
		MaxResults     *int
		NextToken      string
	}
	if aerr := decode(body, &in); aerr != nil {
		return nil, aerr
	}
	if !strings.HasPrefix(in.Path, "/") {
		return nil, validation("Value '%s' at 'path' failed to satisfy constraint: Member must begin with /", in.Path)
	}
	if in.MaxResults != nil && (*in.MaxResults < 1 || *in.MaxResults > 10) {
		return nil, validation("Value at 'maxResults' failed to satisfy constraint: Member must have value between 1 and 10")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	const action = "ssm:GetParametersByPath"
	if !s.allowed(caller.principal, action, in.Path) {
		return nil, accessDenied(caller, action, s.paramARN(in.Path))
	}
	prefix := in.Path
	if !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	var names []string
	for name := range s.params {
		rest, ok := strings.CutPrefix(name, prefix)
		if ok && (in.Recursive || !strings.Contains(rest, "/")) {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	size := s.opts.PageSize
	if in.MaxResults != nil {
		size = min(size, *in.MaxResults)
	}
	start, end, next, aerr := page(len(names), size, in.NextToken, "InvalidNextToken")
	if aerr != nil {
		return nil, aerr
	}
	out := struct {
		Parameters []parameterJSON
		NextToken  string `json:",omitempty"`
	}{Parameters: []parameterJSON{}, NextToken: next}
	for _, name := range names[start:end] {
		p := s.params[name]
		out.Parameters = append(out.Parameters, s.render(p, int64(len(p.versions)), in.WithDecryption, ""))
	}
	return out, nil
}

func (s *Server) describeParameters(caller *accessKey, body []byte) (any, *apiError) {
	var in struct {
		ParameterFilters []struct {
			Key    string
			Option string
			Values []string
		}
		MaxResults *int
		NextToken  string
	}
	if aerr := decode(body, &in); aerr != nil {
		return nil, aerr
	}
	if in.MaxResults != nil && (*in.MaxResults < 1 || *in.MaxResults > 50) {
		return nil, validation("Value at 'maxResults' failed to satisfy constraint: Member must have value between 1 and 50")
	}
	for _, f := range in.ParameterFilters {
		if f.Key != "Name" {
			return nil, errorf(http.StatusBadRequest, "InvalidFilterKey", "awstest: filter key %s is not implemented", f.Key)
		}
		if f.Option != "" && f.Option != "Equals" && f.Option != "BeginsWith" {
			return nil, errorf(http.StatusBadRequest, "InvalidFilterOption", "The filter option %s is not valid for key Name. Valid options: [BeginsWith, Equals]", f.Option)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	const action = "ssm:DescribeParameters"
	if !s.allowed(caller.principal, action, "") {
		return nil, accessDenied(caller, action, fmt.Sprintf("arn:aws:ssm:%s:%s:*", s.opts.Region, s.opts.AccountID))
	}
	// Like the service, page over all parameters first and filter each
	// page after: a page may come back short, or empty with a NextToken.
	var all []string
	for name := range s.params {
		all = append(all, name)
	}
	sort.Strings(all)
	size := s.opts.PageSize
	if in.MaxResults != nil {
		size = min(size, *in.MaxResults)
	}
	start, end, next, aerr := page(len(all), size, in.NextToken, "InvalidNextToken")
	if aerr != nil {
		return nil, aerr
	}
	var names []string
	for _, name := range all[start:end] {
		ok := true
		for _, f := range in.ParameterFilters {
			hit := false
			for _, v := range f.Values {
				if f.Option == "BeginsWith" {
					hit = hit || strings.HasPrefix(name, v)
				} else {
					hit = hit || name == v
				}
			}
			ok = ok && hit
		}
		if ok {
			names = append(names, name)
		}
	}
	type metadata struct {
		ARN              string
		DataType         string
		LastModifiedDate epoch
		LastModifiedUser string
		Name             string
		Tier             string
		Type             string
		Version          int64
	}
	out := struct {
		Parameters []metadata
		NextToken  string `json:",omitempty"`
	}{Parameters: []metadata{}, NextToken: next}
	for _, name := range names {
		p := s.params[name]
		v := p.versions[len(p.versions)-1]
		out.Parameters = append(out.Parameters, metadata{
			ARN: s.paramARN(name), DataType: "text", LastModifiedDate: epoch(v.modified),
			LastModifiedUser: fmt.Sprintf("arn:aws:iam::%s:root", s.opts.AccountID),
			Name:             name, Tier: "Standard", Type: p.typ, Version: int64(len(p.versions)),
		})
	}
	return out, nil
}
