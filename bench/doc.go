// Package bench measures an ordo network from the outside, as a client sees
// it: committed events per second, submit-to-verified-reply latency,
// projection lag, and the CPU and memory of each node process. It is shared
// by `ordo bench` and by Go benchmarks.
//
// It owns the load generator (closed loop, or open loop at a fixed rate with
// a bound on outstanding requests), an HDR-style latency histogram of fixed
// size, the per-second sampler, the local cluster launcher (a temporary
// network of `ordo node` processes laid out as testnet.sh lays them out), the
// measured signature-verification bound, and the report: summary.json,
// timeseries.csv and the throughput and latency plots.
//
// It must never reach into a node: everything it knows comes from the HTTP
// API, the client's verified reply bundles, and /proc. Every reply is
// verified by the client as in production, so verification is part of the
// latency. Memory is bounded: latencies go into fixed-size histograms, and
// the per-second series is bounded by DurationMax.
package bench
