// Command hallmark-agent runs the Hallmark agent and talks to a running
// agent's Workload API:
//
//	hallmark-agent run|validate -config agent.hcl [-joinToken TOKEN]
//	hallmark-agent api fetch [x509] [-socketPath PATH] [-write DIR] [-silent] [-output json]
//	hallmark-agent api fetch jwt -audience A [-spiffeID ID] [-socketPath PATH]
//	hallmark-agent api validate jwt -audience A -svid TOKEN [-socketPath PATH]
//	hallmark-agent api watch [-count N] [-socketPath PATH]
//	hallmark-agent healthcheck [-shallow] [-socketPath PATH]
//	hallmark-agent -version
//	hallmark-agent tpm ek-hash|info [-device /dev/tpmrm0|unix:PATH|tcp:HOST:PORT]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/hallmarkid/hallmark/agent"
	"github.com/hallmarkid/hallmark/agent/config"
)

// defaultSocketPath is the Workload API socket of an agent on the default
// socket_path: the root agent's when its directory exists (only root can
// create it in /run), the non-root agent's otherwise.
func defaultSocketPath() string {
	if _, err := os.Lstat(filepath.Dir(config.RootSocketPath)); err == nil {
		return config.RootSocketPath
	}
	return config.DefaultSocketPath
}

const usage = `Usage: hallmark-agent <command> [flags]

Commands:
  run                 run the agent (-config agent.hcl [-joinToken TOKEN])
  validate            check a configuration without starting (-config agent.hcl)
  api fetch x509      fetch this process's X.509-SVIDs from the Workload API
                      (also bare 'api fetch'; -write DIR, -silent, -output json)
  api fetch jwt       fetch JWT-SVIDs (-audience A [-spiffeID ID]) and the JWT bundles
  api validate jwt    have the agent validate a JWT-SVID (-audience A -svid TOKEN)
  api watch           print each X.509 update the agent pushes (-count N)
  healthcheck         check that the agent is healthy (-shallow: only that it answers)
  tpm ek-hash         print the TPM's EK public key hash (for ek_hashes allow-lists)
  tpm info            print TPM manufacturer, firmware, EK certificate and PCR banks
  -version            print the version

Run 'hallmark-agent <command> -h' for a command's flags.
`

var errUsage = errors.New("usage")

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch {
	case args[0] == "run":
		err = runAgent(args[1:], stderr)
	case args[0] == "validate":
		err = validateConfig(args[1:], stdout)
	case len(args) >= 3 && args[0] == "api" && args[1] == "fetch" && args[2] == "x509":
		err = fetchX509(args[3:], stdout)
	case len(args) >= 2 && args[0] == "api" && args[1] == "fetch" && (len(args) == 2 || strings.HasPrefix(args[2], "-")):
		err = fetchX509(args[2:], stdout) // SPIRE's bare `api fetch`
	case len(args) >= 3 && args[0] == "api" && args[1] == "fetch" && args[2] == "jwt":
		err = fetchJWT(args[3:], stdout)
	case len(args) >= 3 && args[0] == "api" && args[1] == "validate" && args[2] == "jwt":
		err = validateJWT(args[3:], stdout)
	case len(args) >= 2 && args[0] == "api" && args[1] == "watch":
		err = watch(args[2:], stdout)
	case args[0] == "tpm":
		err = tpmCmd(args[1:], stdout)
	case args[0] == "healthcheck":
		err = healthcheck(args[1:], stdout)
	case args[0] == "-h" || args[0] == "-help" || args[0] == "--help" || args[0] == "help":
		fmt.Fprint(stdout, usage)
		return 0
	case args[0] == "-version" || args[0] == "--version" || args[0] == "version":
		fmt.Fprintln(stdout, versionString())
		return 0
	default:
		fmt.Fprintf(stderr, "unknown command %q\n\n%s", strings.Join(args, " "), usage)
		return 2
	}
	if err != nil {
		if errors.Is(err, errUsage) {
			return 2
		}
		if le := (loggedError{}); errors.As(err, &le) {
			return 1
		}
		fmt.Fprintf(stderr, "Error: %v\n", err)
		return 1
	}
	return 0
}

func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	return nil
}

// agentGCPercent is the agent's default GOGC: its heap is a few MiB, so
// collecting at +50% instead of +100% costs little CPU while minting and
// nothing when idle, and keeps its footprint ~2 MiB lower with 1,000 SVIDs
// (docs/performance.md, Footprint). GOGC in the environment wins.
const agentGCPercent = 50

func runAgent(args []string, stderr io.Writer) error {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(agentGCPercent)
	}
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	cf := defineConfigFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := cf.load()
	if err != nil {
		return err
	}
	log, closer, err := cfg.Logger(stderr)
	if err != nil {
		return err
	}
	defer closer.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	a, err := agent.New(cfg, log, agent.WithVersion(versionString()))
	if err != nil {
		log.Error("Agent failed to start", "error", err)
		return logged(cfg.LogFile, err)
	}
	if err := a.Run(ctx); err != nil {
		log.Error("Agent stopped with an error", "error", err)
		return logged(cfg.LogFile, err)
	}
	return nil
}

// loggedError is an error the daemon already logged to stderr: run exits
// with it without printing it a second time.
type loggedError struct{ error }

func (e loggedError) Unwrap() error { return e.error }

// logged marks err as printed when the daemon's log goes to stderr (no
// log_file); with a log_file, run still prints it on stderr.
func logged(logFile string, err error) error {
	if logFile == "" {
		return loggedError{err}
	}
	return err
}
