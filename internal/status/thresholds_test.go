package status

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/outbox-relay/relay/internal/config"
)

func TestThresholdsLoad(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		want    Thresholds
		wantErr []string
	}{
		{name: "defaults", want: DefaultThresholds()},
		{name: "env", env: map[string]string{"RELAY_STATUS_LAG_WARN_BYTES": "10", "RELAY_STATUS_LAG_CRIT_BYTES": "20",
			"RELAY_STATUS_BACKLOG_WARN_SECONDS": "1.5", "RELAY_STATUS_BACKLOG_CRIT_SECONDS": "3"},
			want: Thresholds{LagWarnBytes: 10, LagCritBytes: 20, BacklogWarnSeconds: 1.5, BacklogCritSeconds: 3}},
		{name: "flag wins over env", args: []string{"--backlog-warn-seconds=5"},
			env:  map[string]string{"RELAY_STATUS_BACKLOG_WARN_SECONDS": "1"},
			want: Thresholds{LagWarnBytes: DefaultLagWarnBytes, LagCritBytes: DefaultLagCritBytes, BacklogWarnSeconds: 5, BacklogCritSeconds: DefaultBacklogCritSeconds}},
		{name: "zero turns a limit off", env: map[string]string{"RELAY_STATUS_LAG_CRIT_BYTES": "0"},
			want: Thresholds{LagWarnBytes: DefaultLagWarnBytes, BacklogWarnSeconds: DefaultBacklogWarnSeconds, BacklogCritSeconds: DefaultBacklogCritSeconds}},
		{name: "every problem at once", env: map[string]string{"RELAY_STATUS_LAG_WARN_BYTES": "lots",
			"RELAY_STATUS_BACKLOG_WARN_SECONDS": "700", "RELAY_STATUS_BACKLOG_CRIT_SECONDS": "600"},
			wantErr: []string{"RELAY_STATUS_LAG_WARN_BYTES: not a valid number", "RELAY_STATUS_BACKLOG_WARN_SECONDS (700) is above RELAY_STATUS_BACKLOG_CRIT_SECONDS (600)"}},
		{name: "negative", args: []string{"--lag-warn-bytes=-1"}, wantErr: []string{"must not be negative"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := pflag.NewFlagSet("status", pflag.ContinueOnError)
			th := DefaultThresholds()
			RegisterFlags(fs, &th)
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			err := th.Load(fs, tt.env)
			if len(tt.wantErr) > 0 {
				var ce *config.Error
				if !errors.As(err, &ce) {
					t.Fatalf("err = %v, want a *config.Error", err)
				}
				for _, sub := range tt.wantErr {
					if !strings.Contains(err.Error(), sub) {
						t.Errorf("error %q does not mention %q", err, sub)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if th != tt.want {
				t.Errorf("thresholds = %+v, want %+v", th, tt.want)
			}
		})
	}
}

func TestPollInterval(t *testing.T) {
	tests := []struct{ in, want string }{{"100ms", "1s"}, {"1s", "1s"}, {"10s", "10s"}, {"1m", "15s"}}
	for _, tt := range tests {
		in, err := time.ParseDuration(tt.in)
		if err != nil {
			t.Fatal(err)
		}
		if got := PollInterval(in).String(); got != tt.want {
			t.Errorf("PollInterval(%s) = %s, want %s", tt.in, got, tt.want)
		}
	}
}
