//go:build unix

package client

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ordoledger/ordo/codec"
	"github.com/ordoledger/ordo/crypto"
	"github.com/ordoledger/ordo/pbft"
)

// BenchmarkSubmitExchange is the HTTP cost of a submit on both sides: a node
// in this process (httptest) answers at once with a fixed reply bundle, and
// 64 senders submit, each request in an exchange of its own ("single") or
// through a Batcher ("batched"). cpu-µs/request is the process's CPU time
// (client and server together) per request; the bundle is not verified.
func BenchmarkSubmitExchange(b *testing.B) {
	tn := newTestNet(b, 4)
	req := pbft.SignRequest(crypto.NewSigner(tn.client, tn.chain), 1, make([]byte, 200))
	bundle := codec.MustMarshal(tn.batchBundle(b, req))
	var exchanges atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/requests", func(w http.ResponseWriter, r *http.Request) {
		exchanges.Add(1)
		if _, err := io.ReadAll(r.Body); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", mediaCBOR)
		w.Write(bundle)
	})
	mux.HandleFunc("POST /v1/requests/batch", func(w http.ResponseWriter, r *http.Request) {
		exchanges.Add(1)
		body, err := io.ReadAll(r.Body)
		var raws [][]byte
		if err == nil {
			err = codec.Unmarshal(body, &raws)
		}
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		var out []byte
		for i := range raws {
			out, _ = codec.AppendFrame(out, &pbft.SubmitAnswer{Index: uint32(i), Status: http.StatusOK, ContentType: mediaCBOR, Body: bundle})
		}
		w.Header().Set("Content-Type", pbft.SubmitAnswersMediaType)
		w.Write(out)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	for _, batched := range []bool{false, true} {
		name := "single"
		if batched {
			name = "batched"
		}
		b.Run(name, func(b *testing.B) {
			tr := http.DefaultTransport.(*http.Transport).Clone()
			tr.MaxIdleConnsPerHost = 64
			defer tr.CloseIdleConnections()
			hc := &http.Client{Transport: tr}
			cfg := Config{Nodes: []string{srv.URL}, HTTPClient: hc, Timeout: 10 * time.Second}
			if batched {
				bt, err := NewBatcher(BatcherConfig{HTTPClient: hc})
				if err != nil {
					b.Fatal(err)
				}
				defer bt.Close()
				cfg.Batcher = bt
			}
			c, err := New(cfg)
			if err != nil {
				b.Fatal(err)
			}
			exchanges.Store(0)
			cpu := processCPU(b)
			b.SetParallelism(32) // 64 senders on 2 cores, as ordo bench's 64 clients
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if a, err := c.submitExchange(context.Background(), srv.URL, req); err != nil || a.status != http.StatusOK {
						b.Errorf("status %d, %v", a.status, err)
						return
					}
				}
			})
			b.ReportMetric(float64((processCPU(b)-cpu).Microseconds())/float64(b.N), "cpu-µs/request")
			b.ReportMetric(float64(b.N)/float64(exchanges.Load()), "requests/exchange")
		})
	}
}

// processCPU is the CPU time this process has used, user and system.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
