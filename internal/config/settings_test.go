package config

import (
	"slices"
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

// A command line shows no password or Sentry key, whichever form the
// flags take.
func TestRedactArgs(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{name: "flag=URL", args: []string{"relay", "run", "--database-url=postgres://u:s3cret@db/app", "--clickhouse-url=clickhouse://ch:s3cret@c:9000/d"},
			want: []string{"relay", "run", "--database-url=postgres://u:xxxxx@db/app", "--clickhouse-url=clickhouse://ch:xxxxx@c:9000/d"}},
		{name: "flag URL", args: []string{"relay", "run", "--database-url", "postgres://u:s3cret@db/app?sslpassword=s3cret"},
			want: []string{"relay", "run", "--database-url", "postgres://u:xxxxx@db/app?sslpassword=xxxxx"}},
		{name: "keyword DSN", args: []string{"relay", "run", "--database-url", "host=db user=u password=s3cret dbname=app"},
			want: []string{"relay", "run", "--database-url", "host=db user=u password=xxxxx dbname=app"}},
		{name: "keyword DSN in flag=", args: []string{"relay", "--database-url=host=db password='s 3cret'"},
			want: []string{"relay", "--database-url=host=db password=xxxxx"}},
		{name: "sentry DSN", args: []string{"relay", "--sentry-dsn", "https://k3y@sentry.example/1", "--sentry-dsn=https://k3y@sentry.example/1"},
			want: []string{"relay", "--sentry-dsn", "https://xxxxx@sentry.example/1", "--sentry-dsn=https://xxxxx@sentry.example/1"}},
		{name: "nothing secret", args: []string{"relay", "run", "--batch-size=10", "--slot", "s"},
			want: []string{"relay", "run", "--batch-size=10", "--slot", "s"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := RedactArgs(tc.args)
			if !slices.Equal(got, tc.want) {
				t.Errorf("RedactArgs(%q) = %q, want %q", tc.args, got, tc.want)
			}
			if strings.Contains(strings.Join(got, " "), "s3cret") || strings.Contains(strings.Join(got, " "), "k3y") {
				t.Errorf("a secret is left in %q", got)
			}
		})
	}
}
