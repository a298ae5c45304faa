package api

import (
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/outbox-relay/relay/outbox"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name     string
		cfg      Config
		wantErrs []string
	}{
		{name: "zero takes defaults", cfg: Config{}},
		{name: "addr only", cfg: Config{Addr: "127.0.0.1:0"}},
		{
			name:     "every problem at once",
			cfg:      Config{ReadTimeout: -1, IdleTimeout: -time.Second, MaxBodyBytes: -5},
			wantErrs: []string{"read timeout must not be negative", "idle timeout", "max body bytes"},
		},
		{
			name:     "db timeout must fit in write timeout",
			cfg:      Config{DBTimeout: 20 * time.Second, WriteTimeout: 10 * time.Second},
			wantErrs: []string{"db timeout (20s) must be shorter than write timeout (10s)"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.withDefaults().Validate()
			if len(tt.wantErrs) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("want error, got nil")
			}
			for _, want := range tt.wantErrs {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %q", err, want)
				}
			}
		})
	}
}

func TestDefaultConfig(t *testing.T) {
	c := DefaultConfig()
	if c.Addr != ":8080" || c.MaxBodyBytes != 1<<20 || c.DBTimeout != DefaultDBTimeout || c.ReadHeaderTimeout == 0 {
		t.Errorf("DefaultConfig = %+v", c)
	}
}

func TestNewRejectsMissingDependencies(t *testing.T) {
	pub, err := outbox.NewPublisher("test")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		db      DB
		pub     *outbox.Publisher
		cfg     Config
		wantErr string
	}{
		{name: "nil db", pub: pub, wantErr: "db is nil"},
		{name: "nil publisher", db: &fakeDB{}, wantErr: "publisher is nil"},
		{name: "bad config", db: &fakeDB{}, pub: pub, cfg: Config{ReadTimeout: -1}, wantErr: "read timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg, tt.db, tt.pub, zerolog.Nop())
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}
