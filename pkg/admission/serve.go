package admission

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/go-logr/logr"
	"gomodules.xyz/jsonpatch/v2"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/keyhook/keyhook/pkg/mutate"
)

// maxReviewSize is the largest AdmissionReview read, controller-runtime's
// limit: two objects of at most 3 MB and the rest.
const maxReviewSize = 7 << 20

// admissionReviewKind is the kind of every AdmissionReview.
const admissionReviewKind = "AdmissionReview"

// reviewVersions are the AdmissionReview versions served: the one keyhook
// registers (v1), and v1beta1, which has the same shape and which
// controller-runtime's webhook.Admission also answered.
var reviewVersions = map[string]bool{
	admissionv1.SchemeGroupVersion.String(): true,
	"admission.k8s.io/v1beta1":              true,
}

// review is an AdmissionReview as the API server sends it.
type review struct {
	APIVersion string         `json:"apiVersion"`
	Kind       string         `json:"kind"`
	Request    *reviewRequest `json:"request"`
}

// reviewRequest is the request of a review, its object (the pod) decoded
// as a PodView in the same pass.
type reviewRequest struct {
	admissionv1.AdmissionRequest
	Object podObject `json:"object"`
}

// podObject is the pod of a review: decoded into a PodView while the review
// is, its bytes located by their offsets in the review, so that the pod is
// read once, not copied out and decoded again.
type podObject struct {
	view       *mutate.PodView
	start, end int64
}

// UnmarshalJSONFrom implements json.UnmarshalerFrom.
func (o *podObject) UnmarshalJSONFrom(dec *jsontext.Decoder) error {
	if dec.PeekKind() == 'n' {
		// No object, as runtime.RawExtension reads null.
		return dec.SkipValue()
	}
	o.start = dec.InputOffset()
	o.view = &mutate.PodView{}
	if err := jsonv2.UnmarshalDecode(dec, o.view); err != nil {
		return fmt.Errorf("decoding the pod: %w", err)
	}
	o.end = dec.InputOffset()
	return nil
}

// admissionLog is the logger of admissions, as controller-runtime names it.
var admissionLog = log.Log.WithName("admission")

// bufs holds response buffers between requests.
var bufs = sync.Pool{New: func() any { return new([]byte) }}

// ServeHTTP serves the pod mutation: it reads the AdmissionReview, calls
// Handle and writes the AdmissionReview answering it, as controller-runtime's
// webhook.Admission does (the same limits, errors and panic recovery, the
// request's review version echoed), with the webhook server's metrics around
// it (server.Register). It differs in cost only: the review is decoded once
// (webhook.Admission decodes it twice, once to read its kind) with the same
// strict decoder as the pod (mutate.DecodePod: case-sensitive names,
// duplicate names refused), and the response and its patch are written
// directly, not through reflection over the response, each patch operation
// marshalled twice and the result compacted.
func (h *PodInjector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if _, err := logr.FromContext(ctx); err != nil {
		ctx = log.IntoContext(ctx, admissionLog)
	}
	if r.Body == nil || r.Body == http.NoBody {
		err := errors.New("request body is empty")
		admissionLog.Error(err, "bad request")
		writeReview(w, "", admission.Errored(http.StatusBadRequest, err))
		return
	}
	defer r.Body.Close()
	limited := &io.LimitedReader{R: r.Body, N: maxReviewSize}
	body, err := readBody(limited, r.ContentLength)
	if err != nil {
		admissionLog.Error(err, "unable to read the body from the incoming request")
		writeReview(w, "", admission.Errored(http.StatusBadRequest, err))
		return
	}
	if limited.N <= 0 {
		err := fmt.Errorf("request entity is too large; limit is %d bytes", maxReviewSize)
		admissionLog.Error(err, "unable to read the body from the incoming request; limit reached")
		writeReview(w, "", admission.Errored(http.StatusRequestEntityTooLarge, err))
		return
	}
	if contentType := r.Header.Get("Content-Type"); contentType != "application/json" {
		err := fmt.Errorf("contentType=%s, expected application/json", contentType)
		admissionLog.Error(err, "unable to process a request with unknown content type")
		writeReview(w, "", admission.Errored(http.StatusBadRequest, err))
		return
	}
	var in review
	if err := jsonv2.Unmarshal(body, &in, mutate.DecodeOptions); err != nil {
		err = fmt.Errorf("decoding the AdmissionReview: %w", err)
		admissionLog.Error(err, "unable to decode the request")
		writeReview(w, "", admission.Errored(http.StatusBadRequest, err))
		return
	}
	if in.Kind != admissionReviewKind || !reviewVersions[in.APIVersion] {
		// Not an AdmissionReview keyhook serves: refused, where
		// webhook.Admission answered an empty request.
		err := fmt.Errorf("the request is a %s %s, not an AdmissionReview of %s or admission.k8s.io/v1beta1", in.APIVersion, in.Kind, admissionv1.SchemeGroupVersion)
		admissionLog.Error(err, "unable to decode the request")
		writeReview(w, "", admission.Errored(http.StatusBadRequest, err))
		return
	}
	req := admission.Request{}
	var view *mutate.PodView
	if in.Request != nil {
		req.AdmissionRequest = in.Request.AdmissionRequest
		if obj := in.Request.Object; obj.view != nil {
			// body is this request's own: the pod's bytes are not copied.
			// They start after the name "object": past the colon and
			// whitespace.
			req.Object.Raw = bytes.TrimLeft(body[obj.start:obj.end], " \t\r\n:")
			view = obj.view
		}
	}
	writeReview(w, in.APIVersion, h.serve(ctx, req, view))
}

// readBody reads r, which holds size bytes when size is not -1: in one
// buffer of that size (io.ReadAll grows its buffer step by step, a dozen
// KB of garbage for a 6 KB review), else as io.ReadAll does.
func readBody(r *io.LimitedReader, size int64) ([]byte, error) {
	if size <= 0 || size > r.N {
		return io.ReadAll(r)
	}
	// One byte more than announced, to see the end: net/http ends the body
	// there.
	b := make([]byte, size+1)
	n, err := io.ReadFull(r, b)
	if err == io.ErrUnexpectedEOF || err == io.EOF {
		return b[:n], nil
	}
	if err != nil {
		return nil, err
	}
	// More than announced (a reader that is not net/http's): the rest too.
	rest, err := io.ReadAll(r)
	return append(b, rest...), err
}

// serve is Handle completed as the API server reads it, with a panic
// answered as controller-runtime answers it (the panic handlers run, 500).
func (h *PodInjector) serve(ctx context.Context, req admission.Request, view *mutate.PodView) (resp admission.Response) {
	defer func() {
		if r := recover(); r != nil {
			for _, fn := range utilruntime.PanicHandlers {
				fn(ctx, r)
			}
			resp = admission.Errored(http.StatusInternalServerError, fmt.Errorf("panic: %v [recovered]", r))
			resp.UID = req.UID
		}
	}()
	resp = h.handleView(ctx, req, view)
	resp.UID = req.UID
	if resp.Result == nil {
		resp.Result = &metav1.Status{}
	}
	if resp.Result.Code == 0 {
		resp.Result.Code = http.StatusOK
	}
	if len(resp.Patches) > 0 {
		patch, err := appendPatch(make([]byte, 0, 4096), resp.Patches)
		if err != nil {
			log.FromContext(ctx).Error(err, "unable to encode response")
			resp = admission.Errored(http.StatusInternalServerError, errors.New("unable to encode response"))
			resp.UID = req.UID
			return resp
		}
		resp.Patch = patch
		resp.PatchType = &jsonPatchType
	}
	return resp
}

// appendPatch appends the JSON patch ops to b as jsonpatch.Operation's
// MarshalJSON writes it: a value marshalled by encoding/json, and "value":
// null for an add or replace without one.
func appendPatch(b []byte, ops []jsonpatch.Operation) ([]byte, error) {
	b = append(b, '[')
	for i, op := range ops {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"op":`...)
		b = appendString(b, op.Operation)
		b = append(b, `,"path":`...)
		b = appendString(b, op.Path)
		switch {
		case op.Value != nil:
			v, err := json.Marshal(op.Value)
			if err != nil {
				return nil, err
			}
			b = append(b, `,"value":`...)
			b = append(b, v...)
		case op.Operation == "add" || op.Operation == "replace":
			b = append(b, `,"value":null`...)
		}
		b = append(b, '}')
	}
	return append(b, ']'), nil
}

// appendString appends s as a JSON string.
func appendString(b []byte, s string) []byte {
	b, _ = jsontext.AppendQuote(b, s)
	return b
}

// writeReview writes the AdmissionReview of apiVersion that answers with
// resp; with no apiVersion or kind when "" (an answer to a request that is
// not an AdmissionReview, as controller-runtime writes it).
func writeReview(w http.ResponseWriter, apiVersion string, resp admission.Response) {
	bp := bufs.Get().(*[]byte)
	b, err := appendReview((*bp)[:0], apiVersion, &resp.AdmissionResponse)
	if err != nil {
		admissionLog.Error(err, "unable to encode the response")
		failed := admission.Errored(http.StatusInternalServerError, errors.New("unable to encode the response"))
		failed.UID = resp.UID
		b, _ = appendReview((*bp)[:0], apiVersion, &failed.AdmissionResponse)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	if _, err := w.Write(b); err != nil {
		admissionLog.Error(err, "unable to write the response")
	}
	if cap(b) <= 64<<10 {
		*bp = b
		bufs.Put(bp)
	}
}

// appendReview appends the AdmissionReview answering with resp, as
// encoding/json writes an admissionv1.AdmissionReview.
func appendReview(b []byte, apiVersion string, resp *admissionv1.AdmissionResponse) ([]byte, error) {
	if apiVersion != "" {
		b = append(b, `{"kind":"AdmissionReview","apiVersion":`...)
		b = appendString(b, apiVersion)
		b = append(b, `,"response":{"uid":`...)
	} else {
		b = append(b, `{"response":{"uid":`...)
	}
	b = appendString(b, string(resp.UID))
	b = append(b, `,"allowed":`...)
	b = strconv.AppendBool(b, resp.Allowed)
	if resp.Result != nil {
		status, err := json.Marshal(resp.Result)
		if err != nil {
			return nil, err
		}
		b = append(b, `,"status":`...)
		b = append(b, status...)
	}
	if len(resp.Patch) > 0 {
		b = append(b, `,"patch":"`...)
		b = base64.StdEncoding.AppendEncode(b, resp.Patch)
		b = append(b, '"')
	}
	if resp.PatchType != nil {
		b = append(b, `,"patchType":`...)
		b = appendString(b, string(*resp.PatchType))
	}
	if len(resp.AuditAnnotations) > 0 {
		a, err := json.Marshal(resp.AuditAnnotations)
		if err != nil {
			return nil, err
		}
		b = append(b, `,"auditAnnotations":`...)
		b = append(b, a...)
	}
	if len(resp.Warnings) > 0 {
		b = append(b, `,"warnings":[`...)
		for i, w := range resp.Warnings {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, w)
		}
		b = append(b, ']')
	}
	return append(b, "}}\n"...), nil
}
