// Command hallmark-server runs the Hallmark server and administers it over
// its admin socket, with SPIRE's verbs and flag names:
//
//	hallmark-server run -config server.hcl
//	hallmark-server entry create -spiffeID ID -parentID ID -selector type:value ...
//	hallmark-server entry update -entryID ID -spiffeID ID -parentID ID -selector type:value ... | -data FILE
//	hallmark-server entry show|count [-selector t:v ... -matchSelectorsOn M] [-federatesWith TD] [-hint H] [-output json]
//	hallmark-server entry delete -entryID ID | -file FILE
//	hallmark-server token generate [-spiffeID ID] [-ttl 600]
//	hallmark-server agent list|count [-attestationType T] [-banned B] [-canReattest B] [-expiresBefore T] [-selector t:v ...]
//	hallmark-server agent show|evict|ban -spiffeID ID
//	hallmark-server agent purge [-expiredFor 24h] [-dryRun]
//	hallmark-server bundle show [-format pem|spiffe]
//	hallmark-server bundle list [-id TD] [-format pem|spiffe]
//	hallmark-server bundle set -id TD [-path FILE] [-format pem|spiffe]
//	hallmark-server bundle delete -id TD [-mode restrict|dissociate|delete]
//	hallmark-server federation list | show -trustDomain TD | refresh -id TD | delete -id TD
//	hallmark-server federation create|update -trustDomain TD -bundleEndpointURL URL -bundleEndpointProfile P [-endpointSpiffeID ID] | -data FILE
//	hallmark-server x509 mint -spiffeID ID [-ttl D] [-dns N] [-write DIR] | jwt mint -spiffeID ID -audience A [-ttl D] [-write FILE]
//	hallmark-server localauthority x509|jwt show | prepare
//	hallmark-server localauthority x509|jwt activate|taint|revoke -authorityID ID
//	hallmark-server healthcheck
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/hallmarkid/hallmark/internal/hclconf"
	"github.com/hallmarkid/hallmark/server"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `Usage: hallmark-server <command> [flags]

Commands:
  run                 run the server (-config server.hcl)
  validate            check a configuration without starting (-config server.hcl)
  entry create        create registration entries
  entry update        replace registration entries (-entryID, or -data)
  entry show          list registration entries (filters: -spiffeID, -parentID, -entryID, -selector,
                      -matchSelectorsOn, -federatesWith, -matchFederatesWithOn, -hint, -downstream)
  entry count         count registration entries (same filters but -entryID)
  entry delete        delete registration entries (-entryID, or -file with {"ids": [...]})
  token generate      generate a single-use join token
  agent list          list attested agents (filters: -attestationType, -banned, -canReattest,
                      -expiresBefore, -selector, -matchSelectorsOn)
  agent count         count attested agents (same filters)
  agent show          show one agent (-spiffeID)
  agent evict         evict an agent: delete its record, it must attest again (-spiffeID);
                      evicting a banned agent lifts the ban
  agent ban           ban an agent: end its streams, refuse its renewal and re-attestation
                      until it is evicted (-spiffeID)
  agent purge         delete agents whose SVID expired long ago (-expiredFor, -dryRun)
  bundle show         print the trust bundle
  bundle list         print federated bundles (-id for one)
  bundle count        count the bundles held: ours and the federated ones
  bundle set          trust another domain's bundle (-id, -path, -format)
  bundle delete       delete a bundle set with bundle set (-id, -mode restrict|dissociate|delete
                      for the entries that federate with it)
  federation list     show federation relationships and their refresh state
  federation show     show one relationship (-trustDomain)
  federation create   add a dynamic relationship (-trustDomain, -bundleEndpointURL,
                      -bundleEndpointProfile, -endpointSpiffeID, -trustDomainBundlePath, or -data)
  federation update   change a dynamic relationship (same flags)
  federation delete   delete a dynamic relationship (-id); those of the configuration's
                      federation block are read-only
  federation refresh  fetch a federated bundle now (-id)
  x509 mint           mint an X.509-SVID without an entry (-spiffeID, -ttl, -dns, -write)
  jwt mint            mint a JWT-SVID without an entry (-spiffeID, -audience, -ttl, -write)
  logger get|set|reset
                      the server's log level now (set -level debug|info|warn|error; reset: the
                      level it started with)
  localauthority x509 show|prepare|activate|taint|revoke
                      manage the X.509 CA's authorities (-authorityID)
  localauthority jwt show|prepare|activate|taint|revoke
                      manage the JWT signing keys (-authorityID)
  healthcheck         check that the server is ready (-shallow: only that it answers)
  -version            print the version

Run 'hallmark-server <command> -h' for a command's flags.
`

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "run":
		err = runServer(args[1:], stderr)
	case "validate":
		err = validate(args[1:], stdout)
	case "entry", "token", "agent", "bundle", "federation", "x509", "jwt", "logger":
		if len(args) < 2 {
			fmt.Fprint(stderr, usage)
			return 2
		}
		err = admin(args[0]+" "+args[1], args[2:], stdout)
	case "localauthority":
		if len(args) < 3 || (args[1] != "x509" && args[1] != "jwt") || strings.HasPrefix(args[2], "-") {
			fmt.Fprint(stderr, usage)
			return 2
		}
		err = admin(strings.Join(args[:3], " "), args[3:], stdout)
	case "healthcheck":
		err = admin("healthcheck", args[1:], stdout)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	case "-version", "--version", "version":
		fmt.Fprintln(stdout, versionString())
		return 0
	default:
		fmt.Fprintf(stderr, "unknown command %q\n\n%s", args[0], usage)
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

// validate is `hallmark-server validate`: everything start-up checks,
// without opening the datastore or writing to data_dir.
func validate(args []string, stdout io.Writer) error {
	fs := newFlagSet("validate")
	cf := defineConfigFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := cf.load()
	if err != nil {
		return err
	}
	if err := server.Validate(cfg, nil); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Configuration %s is valid.\n", *cf.path)
	return nil
}

func runServer(args []string, stderr io.Writer) error {
	fs := newFlagSet("run")
	cf := defineConfigFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := cf.load()
	if err != nil {
		return err
	}
	log, level, closer, err := hclconf.OpenLoggerVar(cfg.LogLevel, cfg.LogFormat, cfg.LogFile, stderr)
	if err != nil {
		return err
	}
	defer closer.Close()
	gogc, source := memoryPolicy(os.Getenv)
	log.Info("Runtime memory policy", "gogc", gogc, "source", source)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv, err := server.New(ctx, cfg, log, server.WithLogLevel(level), server.WithVersion(versionString()))
	if err != nil {
		log.Error("Server failed to start", "error", err)
		return logged(cfg.LogFile, err)
	}
	if err := srv.Run(ctx); err != nil {
		log.Error("Server stopped with an error", "error", err)
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
