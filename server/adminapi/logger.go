package adminapi

import (
	"context"
	"log/slog"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	apiv1 "github.com/hallmarkid/hallmark/api/v1"
	"github.com/hallmarkid/hallmark/internal/hclconf"
)

var errNoLogger = status.Error(codes.FailedPrecondition, "this server's log level cannot be changed at run time")

func levelName(l slog.Level) string { return strings.ToLower(l.String()) }

func (s *Server) logger() *apiv1.Logger {
	return &apiv1.Logger{CurrentLevel: levelName(s.cfg.LogLevel.Level()), LaunchLevel: levelName(s.cfg.LaunchLogLevel)}
}

// GetLogger returns the current and launch log levels.
func (s *Server) GetLogger(context.Context, *apiv1.GetLoggerRequest) (*apiv1.Logger, error) {
	if s.cfg.LogLevel == nil {
		return nil, errNoLogger
	}
	return s.logger(), nil
}

// SetLogLevel changes the log level until reset or restart.
func (s *Server) SetLogLevel(ctx context.Context, req *apiv1.SetLogLevelRequest) (*apiv1.Logger, error) {
	if s.cfg.LogLevel == nil {
		return nil, errNoLogger
	}
	lvl, err := hclconf.ParseLogLevel(req.GetLevel())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "%v", err)
	}
	old := s.cfg.LogLevel.Level()
	s.cfg.LogLevel.Set(lvl)
	s.audit(ctx, map[string]any{"action": "log_level_set", "from": levelName(old), "to": levelName(lvl)})
	return s.logger(), nil
}

// ResetLogLevel restores the level the server started with.
func (s *Server) ResetLogLevel(ctx context.Context, _ *apiv1.ResetLogLevelRequest) (*apiv1.Logger, error) {
	if s.cfg.LogLevel == nil {
		return nil, errNoLogger
	}
	old := s.cfg.LogLevel.Level()
	s.cfg.LogLevel.Set(s.cfg.LaunchLogLevel)
	s.audit(ctx, map[string]any{"action": "log_level_reset", "from": levelName(old), "to": levelName(s.cfg.LaunchLogLevel)})
	return s.logger(), nil
}
