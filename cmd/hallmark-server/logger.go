package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	apiv1 "github.com/hallmarkid/hallmark/api/v1"
)

// loggerCommand returns the run function of SPIRE's `logger get|set|reset`,
// or nil for other commands.
func loggerCommand(cmd string, fs *flag.FlagSet, stdout io.Writer) func(context.Context, apiv1.AdminClient) error {
	var level *string
	switch cmd {
	case "logger get", "logger reset":
	case "logger set":
		level = fs.String("level", "", "the new log level: debug, info, warn or error")
	default:
		return nil
	}
	output := outputFlag(fs)
	return func(ctx context.Context, c apiv1.AdminClient) error {
		if err := checkOutput(*output); err != nil {
			return err
		}
		var l *apiv1.Logger
		var err error
		switch cmd {
		case "logger get":
			l, err = c.GetLogger(ctx, &apiv1.GetLoggerRequest{})
		case "logger reset":
			l, err = c.ResetLogLevel(ctx, &apiv1.ResetLogLevelRequest{})
		default:
			if *level == "" {
				return errors.New("-level is required (debug, info, warn or error)")
			}
			l, err = c.SetLogLevel(ctx, &apiv1.SetLogLevelRequest{Level: strings.ToLower(*level)})
		}
		if err != nil {
			return err
		}
		if *output == "json" {
			// SPIRE's types.Logger: levels as its enum names.
			return writeJSON(stdout, map[string]string{"current_level": strings.ToUpper(l.GetCurrentLevel()), "launch_level": strings.ToUpper(l.GetLaunchLevel())})
		}
		fmt.Fprintf(stdout, "Logger Level : %s\nLaunch Level : %s\n\n", l.GetCurrentLevel(), l.GetLaunchLevel())
		return nil
	}
}
