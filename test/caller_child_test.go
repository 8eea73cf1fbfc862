package test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	secretv3 "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// callerEnv selects a caller-identity child mode of the test binary (see
// callerChild); the arguments follow "--".
const callerEnv = "HALLMARK_TEST_CALLER"

// callerChild runs the test binary as one of the processes of the caller
// identity tests:
//
//	connect-pass SOCK  connect to the Workload API socket, hand the
//	                   connection to the parent over fd 3, then obey stdin:
//	                   "exec PATH" (the new program runs "wait"), "setgid G"
//	                   (real, effective and saved gid), "exit"
//	wait               print "ready", then wait for stdin to close
//	fetch ADDR         fetch X.509-SVIDs with the stock go-spiffe client and
//	                   print their IDs, or "err <message>"
//	sds SOCK NAME...   FetchSecrets each name on the Workload API socket and
//	                   print "NAME ok" or "NAME err <code>: <message>"
func callerChild(mode string, args []string) int {
	var err error
	switch mode {
	case "connect-pass":
		err = childConnectPass(args[0])
	case "wait":
		fmt.Println("ready")
		_, err = io.Copy(io.Discard, os.Stdin)
	case "fetch":
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		svids, ferr := workloadapi.FetchX509SVIDs(ctx, workloadapi.WithAddr(args[0]))
		if ferr != nil {
			fmt.Println("err", ferr)
			return 0
		}
		for _, s := range svids {
			fmt.Println(s.ID)
		}
	case "sds":
		err = childSDS(args[0], args[1:])
	default:
		err = fmt.Errorf("unknown mode %q", mode)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	return 0
}

func childConnectPass(sock string) error {
	c, err := net.Dial("unix", sock)
	if err != nil {
		return err
	}
	f, err := c.(*net.UnixConn).File()
	if err != nil {
		return err
	}
	if err := unix.Sendmsg(3, []byte{0}, unix.UnixRights(int(f.Fd())), nil, 0); err != nil {
		return err
	}
	f.Close()
	c.Close() // the parent holds the connection now
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		cmd := strings.Fields(in.Text())
		if len(cmd) == 0 {
			continue
		}
		switch cmd[0] {
		case "exec":
			var env []string
			for _, kv := range os.Environ() {
				if !strings.HasPrefix(kv, callerEnv+"=") {
					env = append(env, kv)
				}
			}
			env = append(env, callerEnv+"=wait")
			return syscall.Exec(cmd[1], []string{cmd[1], "--"}, env)
		case "setgid":
			g, err := strconv.Atoi(cmd[1])
			if err != nil {
				return err
			}
			if err := syscall.Setresgid(g, g, g); err != nil {
				return err
			}
			fmt.Println("done")
		case "exit":
			return nil
		default:
			return fmt.Errorf("unknown command %q", cmd[0])
		}
	}
	return in.Err()
}

func childSDS(sock string, names []string) error {
	cc, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer cc.Close()
	client := secretv3.NewSecretDiscoveryServiceClient(cc)
	for _, name := range names {
		ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), "workload.spiffe.io", "true"), 10*time.Second)
		_, err := client.FetchSecrets(ctx, &discoveryv3.DiscoveryRequest{TypeUrl: secretType, ResourceNames: []string{name}})
		cancel()
		if err != nil {
			s := status.Convert(err)
			fmt.Printf("%s err %s: %s\n", name, s.Code(), s.Message())
			continue
		}
		fmt.Printf("%s ok\n", name)
	}
	return nil
}
