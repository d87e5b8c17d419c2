package node

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"

	"github.com/ordoledger/ordo/codec"
	"github.com/ordoledger/ordo/crypto"
	"github.com/ordoledger/ordo/ledger"
	"github.com/ordoledger/ordo/pbft"
)

func testReplyBundle() *pbft.ReplyBundle {
	res := ledger.Result{RequestHash: crypto.Hash([]byte("req")), Code: ledger.CodeOK, Positions: []uint64{4, 5}, StreamVersion: 2, EntrySeq: 9}
	return &pbft.ReplyBundle{
		EntrySeq: 9, Result: codec.MustMarshal(&res), ResultIndex: 1, ResultCount: 3,
		Proof:    []crypto.Digest{crypto.Hash([]byte("p0")), crypto.Hash([]byte("p1"))},
		Executed: [][]byte{[]byte("statement 0"), []byte("statement 2")},
	}
}

// bundleJSONGolden is the JSON answer for testReplyBundle as the build before
// CBOR bundles wrote it: curl users and older clients rely on it.
const bundleJSONGolden = `{"entry_seq":9,"result":{"code":"ok","message":"","positions":[4,5],"stream_version":2,"entry_seq":9,"request_hash":"c3f7bdf537c46724392c4428e47e04c148c56966190c3c9ed92114800c9f35bb"},"result_b64":"pQFYIMP3vfU3xGckOSxEKOR+BMFIxWlmGQw8ntkhFIAMnzW7AmJvawSCBAUFAgYJ","result_index":1,"result_count":3,"proof":["169b5b823c62b64ca7e5f8456a13c8d5d06f4ece522a58bc2b8a784dcf3609b0","f64551fcd6f07823cb87971cfb91446425da18286b3ab1ef935e0cbd7a69f68a"],"executed":["c3RhdGVtZW50IDA=","c3RhdGVtZW50IDI="]}` + "\n"

func submitWith(accept string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/v1/requests", nil)
	if accept != "" {
		r.Header.Set("Accept", accept)
	}
	return r
}

func TestWriteBundleJSONUnchanged(t *testing.T) {
	for _, accept := range []string{"", "application/json", "*/*", "application/cbor;q=0", "application/cbor; q=0.0", "application/cbor;q=x", "application/cbor-seq", "text/html, application/json"} {
		w := httptest.NewRecorder()
		if code, status, _ := writeBundle(w, submitWith(accept), testReplyBundle()); code != ledger.CodeOK || status != http.StatusOK {
			t.Fatalf("Accept %q: %s %d", accept, code, status)
		}
		if ct := w.Header().Get("Content-Type"); ct != mediaJSON {
			t.Errorf("Accept %q: Content-Type %q", accept, ct)
		}
		if got := w.Body.String(); got != bundleJSONGolden {
			t.Errorf("Accept %q: JSON answer changed:\n got %s\nwant %s", accept, got, bundleJSONGolden)
		}
	}
}

// The CBOR answer is the canonical encoding of the one wire type, and the
// JSON answer carries the same fields under the wire type's json names.
func TestWriteBundleCBOR(t *testing.T) {
	want := testReplyBundle()
	for _, accept := range []string{"application/cbor", "application/CBOR", "application/json;q=0.5, application/cbor", "application/cbor; q=0.9", "application/cbor;level=1", "text/html,application/cbor ; Q=1"} {
		w := httptest.NewRecorder()
		writeBundle(w, submitWith(accept), want)
		if ct := w.Header().Get("Content-Type"); ct != mediaCBOR {
			t.Fatalf("Accept %q: Content-Type %q", accept, ct)
		}
		got, err := codec.Canonical[pbft.ReplyBundle](w.Body.Bytes())
		if err != nil {
			t.Fatalf("Accept %q: %v", accept, err)
		}
		if !reflect.DeepEqual(&got, want) {
			t.Fatalf("Accept %q: decoded %+v, want %+v", accept, got, want)
		}
	}
	var fromJSON pbft.ReplyBundle
	if err := json.Unmarshal([]byte(bundleJSONGolden), &fromJSON); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&fromJSON, want) {
		t.Fatalf("the JSON answer decodes to %+v, want %+v", fromJSON, want)
	}
}
