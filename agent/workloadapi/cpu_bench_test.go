package workloadapi_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"github.com/hallmarkid/hallmark/internal/telemetry"
)

// clientEnv, when set to a Workload API address, makes the test binary a
// benchmark client instead (see BenchmarkFetchX509SVIDAgentCPU).
const clientEnv = "HALLMARK_BENCH_WORKLOAD_CLIENT"

func TestMain(m *testing.M) {
	if addr := os.Getenv(clientEnv); addr != "" {
		os.Exit(benchClient(addr, os.Stdin, os.Stdout))
	}
	if addr := os.Getenv(fetcherEnv); addr != "" {
		os.Exit(fetcher(addr, os.Stdin, os.Stdout))
	}
	os.Exit(m.Run())
}

// benchClient is the child of BenchmarkFetchX509SVIDAgentCPU: one stock
// go-spiffe client that warms up, says "ready", then makes as many
// sequential FetchX509SVID calls as the line it reads says and answers
// "done <p50 ns> <p99 ns>".
func benchClient(addr string, in io.Reader, out io.Writer) int {
	ctx := context.Background()
	client, err := workloadapi.New(ctx, workloadapi.WithAddr(addr))
	if err != nil {
		fmt.Fprintln(out, "error", err)
		return 1
	}
	defer client.Close()
	for range 200 {
		if _, err := client.FetchX509SVID(ctx); err != nil {
			fmt.Fprintln(out, "error", err)
			return 1
		}
	}
	fmt.Fprintln(out, "ready")
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		n, err := strconv.Atoi(sc.Text())
		if err != nil {
			fmt.Fprintln(out, "error", err)
			return 1
		}
		lat := make([]time.Duration, n)
		for i := range n {
			t0 := time.Now()
			if _, err := client.FetchX509SVID(ctx); err != nil {
				fmt.Fprintln(out, "error", err)
				return 1
			}
			lat[i] = time.Since(t0)
		}
		slices.Sort(lat)
		fmt.Fprintln(out, "done", int64(lat[n/2]), int64(lat[min(n-1, n*99/100)]))
	}
	return 0
}

// BenchmarkFetchX509SVIDAgentCPU: a stock go-spiffe client in another
// process makes sequential FetchX509SVID calls to this process, which
// serves them as the agent does (peercred transport, unix attestor,
// metrics interceptors, cache). agent-cpu-us/op is this process's CPU time
// (getrusage) per call: the agent's side alone, client excluded, so
// -cpuprofile and -benchmem show only the agent's work.
func BenchmarkFetchX509SVIDAgentCPU(b *testing.B) {
	defer debug.SetGCPercent(debug.SetGCPercent(50)) // as cmd/hallmark-agent runs
	f := newFixtureWith(b, telemetry.New(telemetry.Config{Daemon: telemetry.Agent}))
	f.add(b, "w", 1, time.Hour, me())
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), clientEnv+"="+f.addr)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		stdin.Close()
		_ = cmd.Wait()
	}()
	lines := bufio.NewScanner(stdout)
	next := func() []string {
		if !lines.Scan() {
			b.Fatalf("client: %v", lines.Err())
		}
		f := strings.Fields(lines.Text())
		if len(f) == 0 || f[0] == "error" {
			b.Fatalf("client: %s", lines.Text())
		}
		return f
	}
	if r := next(); r[0] != "ready" {
		b.Fatalf("client: %v", r)
	}
	var ru0, ru1 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	b.ResetTimer()
	fmt.Fprintln(stdin, b.N)
	r := next()
	b.StopTimer()
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	cpu := (ru1.Utime.Nano() + ru1.Stime.Nano()) - (ru0.Utime.Nano() + ru0.Stime.Nano())
	p50, _ := strconv.ParseInt(r[1], 10, 64)
	p99, _ := strconv.ParseInt(r[2], 10, 64)
	b.ReportMetric(float64(cpu)/1e3/float64(b.N), "agent-cpu-us/op")
	b.ReportMetric(float64(p50)/1e6, "p50-ms")
	b.ReportMetric(float64(p99)/1e6, "p99-ms")
}
