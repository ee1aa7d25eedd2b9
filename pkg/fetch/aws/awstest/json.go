package awstest

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// jsonHandler serves one operation of a JSON 1.1 service for an
// authenticated caller.
type jsonHandler func(s *Server, caller *accessKey, body []byte) (any, *apiError)

var jsonHandlers = map[string]jsonHandler{
	OpGetSecretValue:      (*Server).getSecretValue,
	OpDescribeSecret:      (*Server).describeSecret,
	OpBatchGetSecretValue: (*Server).batchGetSecretValue,
	OpListSecrets:         (*Server).listSecrets,
	OpGetParameter:        (*Server).getParameter,
	OpGetParametersByPath: (*Server).getParametersByPath,
	OpDescribeParameters:  (*Server).describeParameters,
}

// signingNames maps the X-Amz-Target prefix of a service to the name its
// requests are signed for.
var signingNames = map[string]string{
	"secretsmanager": "secretsmanager",
	"AmazonSSM":      "ssm",
}

func (s *Server) serveJSON(w http.ResponseWriter, r *http.Request, target string, body []byte) {
	idx, throttled := s.begin(target)
	var principal, akid string
	out, aerr := func() (any, *apiError) {
		if throttled {
			return nil, errorf(http.StatusBadRequest, "ThrottlingException", "Rate exceeded")
		}
		prefix, _, _ := strings.Cut(target, ".")
		signingName, ok := signingNames[prefix]
		if !ok {
			return nil, errorf(http.StatusBadRequest, "UnknownOperationException", "")
		}
		if ct := r.Header.Get("Content-Type"); ct != "application/x-amz-json-1.1" {
			return nil, errorf(http.StatusBadRequest, "SerializationException", "Content-Type %q is not application/x-amz-json-1.1", ct)
		}
		key, id, authErr := s.authenticate(r, body, signingName)
		akid = id
		if authErr != nil {
			return nil, authErr.render(false)
		}
		principal = key.principal
		h, ok := jsonHandlers[target]
		if !ok {
			return nil, errorf(http.StatusBadRequest, "UnknownOperationException", "")
		}
		return h(s, key, body)
	}()
	s.finish(idx, principal, akid, aerr)

	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("X-Amzn-RequestId", newRequestID())
	if aerr != nil {
		w.Header().Set("X-Amzn-ErrorType", aerr.code)
		w.WriteHeader(aerr.status)
		e := map[string]string{"__type": aerr.code}
		if aerr.message != "" {
			// Secrets Manager says "Message", SSM "message"; the SDK reads both.
			if strings.HasPrefix(target, "secretsmanager.") {
				e["Message"] = aerr.message
			} else {
				e["message"] = aerr.message
			}
		}
		_ = json.NewEncoder(w).Encode(e)
		return
	}
	_ = json.NewEncoder(w).Encode(out)
}

// decode reads a JSON request body; like AWS, it rejects unknown shapes
// only when they do not parse.
func decode(body []byte, v any) *apiError {
	if len(body) == 0 {
		body = []byte("{}")
	}
	if err := json.Unmarshal(body, v); err != nil {
		return errorf(http.StatusBadRequest, "SerializationException", "Start of structure or map found where not expected.")
	}
	return nil
}

// accessDenied is IAM's answer to a call no policy allows.
func accessDenied(caller *accessKey, action, resource string) *apiError {
	return errorf(http.StatusBadRequest, "AccessDeniedException",
		"User: %s is not authorized to perform: %s on resource: %s because no identity-based policy allows the %s action",
		caller.callerARN, action, resource, action)
}

// epoch renders a timestamp as the JSON protocols do: fractional seconds.
type epoch time.Time

func (t epoch) MarshalJSON() ([]byte, error) {
	return []byte(strconv.FormatFloat(float64(time.Time(t).UnixMilli())/1000, 'f', 3, 64)), nil
}

// page returns the window of n items that token points into and the token
// of the next window, "" at the end.
// A token that does not parse is answered with badTokenCode.
func page(n, size int, token, badTokenCode string) (start, end int, next string, aerr *apiError) {
	if token != "" {
		b, err := base64.StdEncoding.DecodeString(token)
		off, convErr := strconv.Atoi(strings.TrimPrefix(string(b), "awstest:"))
		if err != nil || convErr != nil || !strings.HasPrefix(string(b), "awstest:") || off < 0 || off > n {
			return 0, 0, "", errorf(http.StatusBadRequest, badTokenCode, "The NextToken value is invalid.")
		}
		start = off
	}
	end = min(start+size, n)
	if end < n {
		next = base64.StdEncoding.EncodeToString([]byte(fmt.Sprintf("awstest:%d", end)))
	}
	return start, end, next, nil
}

func validation(format string, args ...any) *apiError {
	return errorf(http.StatusBadRequest, "ValidationException", "1 validation error detected: "+format, args...)
}
