package test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"github.com/hallmarkid/hallmark/internal/kubetest"
	"github.com/hallmarkid/hallmark/test/testenv"
	"github.com/hallmarkid/hallmark/tpm/tpmtest"
)

// TestMain lets the test binary double as a workload: with
// HALLMARK_TEST_CHILD=fetch it waits for a line on stdin (so the parent
// can first move it into a cgroup), fetches its X.509-SVIDs from the
// Workload API at HALLMARK_TEST_ADDR with the stock client and prints their
// SPIFFE IDs.
func TestMain(m *testing.M) {
	if os.Getenv("HALLMARK_TEST_CHILD") == "fetch" {
		os.Exit(childFetch())
	}
	if mode := os.Getenv(callerEnv); mode != "" {
		os.Exit(callerChild(mode, childArgs()))
	}
	code := m.Run()
	tpmtest.Cleanup()
	testenv.Cleanup()
	kubetest.Stop()
	os.Exit(code)
}

// childArgs returns the arguments after "--".
func childArgs() []string {
	for i, a := range os.Args {
		if a == "--" {
			return os.Args[i+1:]
		}
	}
	return nil
}

func childFetch() int {
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		fmt.Fprintln(os.Stderr, "child: stdin:", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	svids, err := workloadapi.FetchX509SVIDs(ctx, workloadapi.WithAddr(os.Getenv("HALLMARK_TEST_ADDR")))
	// HALLMARK_TEST_RETRY: retry until the identity arrives, as workloads
	// started before their registration do (Envoy, istio-agent).
	for err != nil && os.Getenv("HALLMARK_TEST_RETRY") != "" && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
		svids, err = workloadapi.FetchX509SVIDs(ctx, workloadapi.WithAddr(os.Getenv("HALLMARK_TEST_ADDR")))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "child: fetch:", err)
		return 1
	}
	for _, s := range svids {
		fmt.Println(s.ID)
	}
	return 0
}
