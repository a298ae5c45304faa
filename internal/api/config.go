package api

import (
	"errors"
	"fmt"
	"time"
)

// Defaults applied by [Config.withDefaults] to zero fields.
const (
	DefaultAddr              = ":8080"
	DefaultReadHeaderTimeout = 5 * time.Second
	DefaultReadTimeout       = 15 * time.Second
	DefaultWriteTimeout      = 15 * time.Second
	DefaultIdleTimeout       = 60 * time.Second
	DefaultShutdownTimeout   = 10 * time.Second
	DefaultDBTimeout         = 5 * time.Second
	DefaultReadyTimeout      = 1 * time.Second
	DefaultMaxBodyBytes      = 1 << 20
)

// Config holds the HTTP server settings. Zero fields take the defaults above,
// so Config{Addr: addr} is a complete configuration.
type Config struct {
	// Addr is the listen address, e.g. ":8080" (env API_ADDR in relay api).
	Addr string
	// http.Server timeouts; WriteTimeout bounds a whole request, so it must
	// exceed DBTimeout or a slow database would cut responses mid-write.
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	WriteTimeout      time.Duration
	IdleTimeout       time.Duration
	// ShutdownTimeout bounds the graceful drain after Run's context ends.
	ShutdownTimeout time.Duration
	// DBTimeout bounds each database call (for POST /users: the whole
	// transaction).
	DBTimeout time.Duration
	// ReadyTimeout bounds the ping behind /readyz.
	ReadyTimeout time.Duration
	// MaxBodyBytes caps request bodies; larger ones get 413.
	MaxBodyBytes int64
}

// DefaultConfig returns a Config with every default filled in.
func DefaultConfig() Config { return Config{}.withDefaults() }

func (c Config) withDefaults() Config {
	c.Addr = orDefault(c.Addr, DefaultAddr)
	c.ReadHeaderTimeout = orDefault(c.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	c.ReadTimeout = orDefault(c.ReadTimeout, DefaultReadTimeout)
	c.WriteTimeout = orDefault(c.WriteTimeout, DefaultWriteTimeout)
	c.IdleTimeout = orDefault(c.IdleTimeout, DefaultIdleTimeout)
	c.ShutdownTimeout = orDefault(c.ShutdownTimeout, DefaultShutdownTimeout)
	c.DBTimeout = orDefault(c.DBTimeout, DefaultDBTimeout)
	c.ReadyTimeout = orDefault(c.ReadyTimeout, DefaultReadyTimeout)
	c.MaxBodyBytes = orDefault(c.MaxBodyBytes, DefaultMaxBodyBytes)
	return c
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// Validate reports every problem of a Config (after defaults) at once.
func (c Config) Validate() error {
	var errs []error
	durations := []struct {
		name string
		d    time.Duration
	}{
		{"read header timeout", c.ReadHeaderTimeout},
		{"read timeout", c.ReadTimeout},
		{"write timeout", c.WriteTimeout},
		{"idle timeout", c.IdleTimeout},
		{"shutdown timeout", c.ShutdownTimeout},
		{"db timeout", c.DBTimeout},
		{"ready timeout", c.ReadyTimeout},
	}
	for _, d := range durations {
		if d.d < 0 {
			errs = append(errs, fmt.Errorf("%s must not be negative, got %s", d.name, d.d))
		}
	}
	if c.MaxBodyBytes < 0 {
		errs = append(errs, fmt.Errorf("max body bytes must not be negative, got %d", c.MaxBodyBytes))
	}
	if c.WriteTimeout > 0 && c.DBTimeout >= c.WriteTimeout {
		errs = append(errs, fmt.Errorf("db timeout (%s) must be shorter than write timeout (%s)", c.DBTimeout, c.WriteTimeout))
	}
	return errors.Join(errs...)
}
