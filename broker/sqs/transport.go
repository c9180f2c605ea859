package sqs

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
)

// bufferedBodies hands net/http request bodies it can always read to the
// end. The SDK's own request body may be closed by the SDK as soon as the
// response arrives; net/http reads the body once more after Content-Length
// bytes to check there is nothing left, and when that read fails it closes
// the connection, under the response being read. A ReceiveMessage response
// lost that way leaves its messages invisible until their visibility
// timeout (seen against the emulator under load). SQS and SNS request
// bodies are small, so they are read into memory first.
type bufferedBodies struct{ next http.RoundTripper }

func (t bufferedBodies) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return t.next.RoundTrip(r)
	}
	b, err := io.ReadAll(r.Body)
	_ = r.Body.Close()
	if err != nil {
		return nil, fmt.Errorf("read request body: %w", err)
	}
	r2 := r.Clone(r.Context())
	r2.ContentLength = int64(len(b))
	r2.Body = io.NopCloser(bytes.NewReader(b))
	r2.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
	return t.next.RoundTrip(r2)
}
