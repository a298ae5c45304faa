package config

import (
	"strings"
	"testing"
)

func TestSettingsRedactSecrets(t *testing.T) {
	tests := []struct {
		name string
		edit func(c *Config)
		env  string
		want string
	}{
		{"postgres URL", func(c *Config) { c.DatabaseURL = "postgres://relay:s3cret@db:5432/app?sslmode=disable" },
			"DATABASE_URL", "postgres://relay:xxxxx@db:5432/app?sslmode=disable"},
		{"postgres URL, password parameter", func(c *Config) { c.DatabaseURL = "postgresql://db/app?password=s3cret&user=relay" },
			"DATABASE_URL", "postgresql://db/app?password=xxxxx&user=relay"},
		{"postgres keywords", func(c *Config) { c.DatabaseURL = "host=db user=relay password=s3cret dbname=app" },
			"DATABASE_URL", "host=db user=relay password=xxxxx dbname=app"},
		{"postgres keywords, quoted", func(c *Config) { c.DatabaseURL = `host=db password='s3 cr\'et' dbname=app` },
			"DATABASE_URL", "host=db password=xxxxx dbname=app"},
		{"postgres URL without password", func(c *Config) { c.DatabaseURL = "postgres://relay@db/app" },
			"DATABASE_URL", "postgres://relay@db/app"},
		{"clickhouse", func(c *Config) { c.ClickHouseURL = "clickhouse://default:s3cret@ch:9000/default?secure=true" },
			"CLICKHOUSE_URL", "clickhouse://default:xxxxx@ch:9000/default?secure=true"},
		{"sentry", func(c *Config) { c.SentryDSN = "https://s3cret@o1.ingest.example/42" },
			"SENTRY_DSN", "https://xxxxx@o1.ingest.example/42"},
		{"plain value", func(c *Config) { c.BatchSize = 500 }, "CH_OUTBOX_BATCH_SIZE", "500"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Defaults()
			tt.edit(&c)
			var got string
			for _, s := range c.Settings() {
				if strings.Contains(s.Value, "s3") {
					t.Errorf("%s leaks a secret: %q", s.Env, s.Value)
				}
				if s.Env == tt.env {
					got = s.Value
				}
			}
			if got != tt.want {
				t.Errorf("%s = %q, want %q", tt.env, got, tt.want)
			}
		})
	}
}
