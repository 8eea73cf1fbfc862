package test

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hallmarkid/hallmark/test/testenv"
)

// memStatus reads the resident-set lines of /proc/<pid>/status, in MiB.
func memStatus(b *testing.B, pid int) map[string]float64 {
	b.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(data), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || (k != "VmRSS" && k != "RssAnon" && k != "RssFile" && k != "VmHWM") {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		if err != nil {
			b.Fatalf("%s: %v", line, err)
		}
		out[k] = float64(kb) / 1024
	}
	if len(out) != 4 {
		b.Fatalf("/proc/%d/status: got %v", pid, out)
	}
	return out
}

// BenchmarkAgentRSS: the agent's resident memory just after start (idle,
// attested, no SVIDs) and with 1,000 workload SVIDs, split into anonymous
// memory (heap, stacks) and file-backed pages (the binary).
func BenchmarkAgentRSS(b *testing.B) {
	for range b.N {
		env := testenv.New(b)
		srv := env.StartServer()
		ag := env.StartAgent(srv, srv.Token())
		testenv.WaitIdle(b, ag.PID(), 30*time.Second)
		m0 := memStatus(b, ag.PID())

		createAll(b, srv, entries(ag.ID(), 1000, "rss", 200000))
		srv.CreateEntry("spiffe://example.org/rss/marker", ag.ID(), "-selector", uidSelector())
		waitForSVIDb(b, ag.Addr(), "spiffe://example.org/rss/marker")
		testenv.WaitIdle(b, ag.PID(), 120*time.Second)
		m1 := memStatus(b, ag.PID())

		b.ReportMetric(m0["VmRSS"], "start-rss-MiB")
		b.ReportMetric(m0["RssAnon"], "start-anon-MiB")
		b.ReportMetric(m0["RssFile"], "start-file-MiB")
		b.ReportMetric(m1["VmRSS"], "1k-rss-MiB")
		b.ReportMetric(m1["RssAnon"], "1k-anon-MiB")
		b.ReportMetric(m1["RssFile"], "1k-file-MiB")
		b.ReportMetric(m1["VmHWM"], "1k-peak-rss-MiB")
	}
}
