package node

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/ordoledger/ordo/codec"
	"github.com/ordoledger/ordo/pbft"
)

// mediaAnswerFrames is the media type of a batch submit's answer: a stream of
// frames (codec.AppendFrame), each one pbft.SubmitAnswer.
const mediaAnswerFrames = "application/x-ordo-answer-frames"

// handleSubmitBatch takes up to pbft.SubmitBatchMax signed requests in one
// body (a CBOR array of byte strings, each what POST /v1/requests takes) and
// submits each as that endpoint would. It answers 200 at once and then streams
// one frame per request, in the order they finish, each carrying what the
// single submit would have answered for it. One HTTP exchange per batch
// instead of per request saves a client and this gateway most of the
// exchange's cost (BENCHMARKS.md: about 75 µs of CPU on this machine).
func (n *Node) handleSubmitBatch(w http.ResponseWriter, r *http.Request) {
	raws, code, status, msg := n.readSubmitBatch(w, r)
	if status != 0 {
		n.metrics.submits.WithLabelValues(code).Inc()
		writeError(w, status, code, msg)
		return
	}
	if code, status, msg := n.admitSubmits(len(raws)); status != 0 {
		n.metrics.submits.WithLabelValues(code).Add(float64(len(raws)))
		writeError(w, status, code, msg)
		return
	}
	defer n.submitsInFlight.Add(-int64(len(raws)))
	n.metrics.submitBatchRequests.Observe(float64(len(raws)))
	ctx, cancel := context.WithTimeout(r.Context(), replyTimeout)
	defer cancel()
	answers := make(chan pbft.SubmitAnswer, len(raws)) // never blocks a sender
	for i, raw := range raws {
		go func() {
			start := time.Now()
			b, code, status, msg := n.submitRequest(ctx, raw)
			a, code := n.submitAnswer(uint32(i), b, code, status, msg)
			n.metrics.submits.WithLabelValues(code).Inc()
			if status == http.StatusOK {
				since(n.metrics.submitSeconds, start)
			}
			answers <- a
		}()
	}
	w.Header().Set("Content-Type", mediaAnswerFrames)
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	var buf []byte
	gone := false // the client went away: keep collecting, stop writing
	for left := len(raws); left > 0; {
		buf = appendAnswer(buf[:0], <-answers)
		left--
	ready:
		for left > 0 {
			select {
			case a := <-answers:
				buf = appendAnswer(buf, a)
				left--
			default:
				break ready
			}
		}
		if gone {
			continue
		}
		if _, err := w.Write(buf); err != nil {
			gone = true
			continue
		}
		// The answers are written now, not when the buffer fills: a client
		// waits on each.
		if err := rc.Flush(); err != nil {
			gone = true
		}
	}
}

// readSubmitBatch reads and decodes a batch submit's body, or says why not (a
// zero status means read).
func (n *Node) readSubmitBatch(w http.ResponseWriter, r *http.Request) (raws [][]byte, code string, status int, msg string) {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, mediaCBOR) {
		return nil, "malformed", http.StatusBadRequest, fmt.Sprintf("a batch submit is %s (an array of signed requests), not %s", mediaCBOR, ct)
	}
	body, code, status, msg := readBody(w, r, pbft.SubmitBatchBytesMax)
	if status != 0 {
		return nil, code, status, msg
	}
	raws, err := decodeSubmitBatch(body)
	if err != nil {
		return nil, "malformed", http.StatusBadRequest, err.Error()
	}
	return raws, "", 0, ""
}

// decodeSubmitBatch decodes a batch submit's body: a CBOR array of 1 to
// pbft.SubmitBatchMax byte strings.
func decodeSubmitBatch(body []byte) ([][]byte, error) {
	var raws [][]byte
	if err := codec.Unmarshal(body, &raws); err != nil {
		return nil, fmt.Errorf("batch submit: want a CBOR array of signed requests: %w", err)
	}
	if len(raws) == 0 || len(raws) > pbft.SubmitBatchMax {
		return nil, fmt.Errorf("batch submit of %d requests: want 1..%d", len(raws), pbft.SubmitBatchMax)
	}
	return raws, nil
}

// submitAnswer renders one request's outcome as the single submit would have
// answered a client accepting CBOR, and returns it with the code to count.
func (n *Node) submitAnswer(i uint32, b *pbft.ReplyBundle, code string, status int, msg string) (pbft.SubmitAnswer, string) {
	if status == http.StatusOK {
		code, body := bundleCBOR(b)
		return pbft.SubmitAnswer{Index: i, Status: http.StatusOK, ContentType: mediaCBOR, Body: body}, code
	}
	body, err := json.Marshal(apiError{Error: msg, Code: code})
	if err != nil {
		panic("node: an API error does not encode: " + err.Error())
	}
	return pbft.SubmitAnswer{Index: i, Status: uint16(status), ContentType: mediaJSON, Body: body}, code
}

// appendAnswer appends a's frame to buf.
func appendAnswer(buf []byte, a pbft.SubmitAnswer) []byte {
	buf, err := codec.AppendFrame(buf, &a)
	if err != nil {
		panic("node: a submit answer does not encode: " + err.Error())
	}
	return buf
}
