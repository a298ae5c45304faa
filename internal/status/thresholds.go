package status

import (
	"errors"
	"fmt"
	"reflect"

	"github.com/caarlos0/env/v11"
	"github.com/spf13/pflag"

	"github.com/outbox-relay/relay/internal/config"
)

// Default thresholds.
const (
	DefaultLagWarnBytes       = 256 << 20 // 256 MiB, as the OutboxRelaySlotLagHigh alert
	DefaultLagCritBytes       = 1 << 30   // 1 GiB
	DefaultBacklogWarnSeconds = 60
	DefaultBacklogCritSeconds = 600
)

// Thresholds are the limits Evaluate judges by. A zero limit is off. Every
// field has a flag and an environment twin (tags), like config.Config.
type Thresholds struct {
	LagWarnBytes       int64   `env:"RELAY_STATUS_LAG_WARN_BYTES" envDefault:"268435456" flag:"lag-warn-bytes" help:"slot lag (bytes) from which the verdict is WARNING; 0 is off"`
	LagCritBytes       int64   `env:"RELAY_STATUS_LAG_CRIT_BYTES" envDefault:"1073741824" flag:"lag-crit-bytes" help:"slot lag (bytes) from which the verdict is CRITICAL; 0 is off"`
	BacklogWarnSeconds float64 `env:"RELAY_STATUS_BACKLOG_WARN_SECONDS" envDefault:"60" flag:"backlog-warn-seconds" help:"age of the oldest row of a stream's outbox table from which the verdict is WARNING; 0 is off"`
	BacklogCritSeconds float64 `env:"RELAY_STATUS_BACKLOG_CRIT_SECONDS" envDefault:"600" flag:"backlog-crit-seconds" help:"age of the oldest row of a stream's outbox table from which the verdict is CRITICAL; 0 is off"`
}

// DefaultThresholds returns the thresholds with their defaults.
func DefaultThresholds() Thresholds {
	return Thresholds{
		LagWarnBytes: DefaultLagWarnBytes, LagCritBytes: DefaultLagCritBytes,
		BacklogWarnSeconds: DefaultBacklogWarnSeconds, BacklogCritSeconds: DefaultBacklogCritSeconds,
	}
}

// RegisterFlags adds the threshold flags to fs, bound to t.
func RegisterFlags(fs *pflag.FlagSet, t *Thresholds) {
	v := reflect.ValueOf(t).Elem()
	ty := v.Type()
	for i := range ty.NumField() {
		f := ty.Field(i)
		usage := fmt.Sprintf("%s (env %s)", f.Tag.Get("help"), f.Tag.Get("env"))
		switch p := v.Field(i).Addr().Interface().(type) {
		case *int64:
			fs.Int64Var(p, f.Tag.Get("flag"), *p, usage)
		case *float64:
			fs.Float64Var(p, f.Tag.Get("flag"), *p, usage)
		}
	}
}

// Load fills every threshold whose flag was not given from environ, then
// validates; problems come back together as a *config.Error (exit 2).
func (t *Thresholds) Load(fs *pflag.FlagSet, environ map[string]string) error {
	var problems []error
	fromEnv := DefaultThresholds()
	if err := env.ParseWithOptions(&fromEnv, env.Options{Environment: environ}); err != nil {
		var agg env.AggregateError
		if errors.As(err, &agg) {
			for _, e := range agg.Errors {
				problems = append(problems, envProblem(e))
			}
		} else {
			problems = append(problems, err)
		}
	}
	src, dst := reflect.ValueOf(&fromEnv).Elem(), reflect.ValueOf(t).Elem()
	for i := range dst.NumField() {
		if fl := fs.Lookup(dst.Type().Field(i).Tag.Get("flag")); fl != nil && fl.Changed {
			continue
		}
		dst.Field(i).Set(src.Field(i))
	}
	problems = append(problems, t.problems()...)
	if len(problems) > 0 {
		return &config.Error{Problems: problems}
	}
	return nil
}

func envProblem(err error) error {
	var pe env.ParseError
	if errors.As(err, &pe) {
		if f, ok := reflect.TypeFor[Thresholds]().FieldByName(pe.Name); ok {
			return fmt.Errorf("%s: not a valid number", f.Tag.Get("env"))
		}
	}
	return err
}

// Validate reports every problem at once as a *config.Error.
func (t *Thresholds) Validate() error {
	if p := t.problems(); len(p) > 0 {
		return &config.Error{Problems: p}
	}
	return nil
}

func (t *Thresholds) problems() []error {
	var p []error
	if t.LagWarnBytes < 0 || t.LagCritBytes < 0 {
		p = append(p, errors.New("RELAY_STATUS_LAG_WARN_BYTES and RELAY_STATUS_LAG_CRIT_BYTES must not be negative"))
	}
	if t.LagWarnBytes > 0 && t.LagCritBytes > 0 && t.LagWarnBytes > t.LagCritBytes {
		p = append(p, fmt.Errorf("RELAY_STATUS_LAG_WARN_BYTES (%d) is above RELAY_STATUS_LAG_CRIT_BYTES (%d)", t.LagWarnBytes, t.LagCritBytes))
	}
	if t.BacklogWarnSeconds < 0 || t.BacklogCritSeconds < 0 {
		p = append(p, errors.New("RELAY_STATUS_BACKLOG_WARN_SECONDS and RELAY_STATUS_BACKLOG_CRIT_SECONDS must not be negative"))
	}
	if t.BacklogWarnSeconds > 0 && t.BacklogCritSeconds > 0 && t.BacklogWarnSeconds > t.BacklogCritSeconds {
		p = append(p, fmt.Errorf("RELAY_STATUS_BACKLOG_WARN_SECONDS (%g) is above RELAY_STATUS_BACKLOG_CRIT_SECONDS (%g)", t.BacklogWarnSeconds, t.BacklogCritSeconds))
	}
	return p
}
