package awstest

import (
	"fmt"
	"sort"
)

// listSecrets is ListSecrets: the names of the secrets, first page only
// (MaxResults, default the page size), never a value. Like IAM, it needs
// secretsmanager:ListSecrets on Resource "*" (Allow with prefix "").
func (s *Server) listSecrets(caller *accessKey, body []byte) (any, *apiError) {
	var in struct{ MaxResults *int }
	if aerr := decode(body, &in); aerr != nil {
		return nil, aerr
	}
	if in.MaxResults != nil && (*in.MaxResults < 1 || *in.MaxResults > 100) {
		return nil, validation("Value at 'maxResults' failed to satisfy constraint: Member must have value between 1 and 100")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	const action = "secretsmanager:ListSecrets"
	if !s.allowed(caller.principal, action, "") {
		return nil, accessDenied(caller, action, fmt.Sprintf("arn:aws:secretsmanager:%s:%s:secret:*", s.opts.Region, s.opts.AccountID))
	}
	var names []string
	for name := range s.secrets {
		names = append(names, name)
	}
	sort.Strings(names)
	size := s.opts.PageSize
	if in.MaxResults != nil {
		size = min(size, *in.MaxResults)
	}
	type entry struct{ ARN, Name string }
	out := struct{ SecretList []entry }{SecretList: []entry{}}
	for _, n := range names[:min(size, len(names))] {
		out.SecretList = append(out.SecretList, entry{s.secrets[n].arn, n})
	}
	return out, nil
}
