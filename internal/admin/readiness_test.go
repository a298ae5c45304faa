package admin

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/outbox-relay/relay/internal/replication"
	"github.com/outbox-relay/relay/internal/status"
)

var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

func at(sec float64) time.Time { return t0.Add(time.Duration(sec * float64(time.Second))) }

// step is one event fed to the tracker at a time (seconds after t0).
type step struct {
	at    float64
	event func(r *Readiness, at time.Time)
}

func connect(up bool) func(*Readiness, time.Time) {
	return func(r *Readiness, t time.Time) { r.StreamConnected(up, t) }
}
func acked(lsn uint64) func(*Readiness, time.Time) {
	return func(r *Readiness, t time.Time) { r.Acked(lsn, t) }
}
func walEnd(lsn uint64) func(*Readiness, time.Time) {
	return func(r *Readiness, t time.Time) { r.ServerWALEnd(lsn, t) }
}
func keepalive(lsn uint64) func(*Readiness, time.Time) {
	return func(r *Readiness, t time.Time) { r.Keepalive(lsn, t) }
}
func replied() func(*Readiness, time.Time) {
	return func(r *Readiness, t time.Time) { r.Replied(t) }
}

var errHung = errors.New("no handshake from ClickHouse within 5s")

func sinkWrite(err error) func(*Readiness, time.Time) {
	return func(r *Readiness, t time.Time) { r.SinkWrite(err, t) }
}

func TestReadiness(t *testing.T) {
	cfg := ReadinessConfig{MaxSilence: 30 * time.Second, StuckAfter: 60 * time.Second}
	tests := []struct {
		name  string
		steps []step
		now   float64
		want  bool
		why   string
	}{
		{name: "never connected", now: 1, want: false, why: "not connected"},
		{name: "just connected", steps: []step{{0, connect(true)}}, now: 1, want: true, why: "streaming"},
		{name: "disconnected", steps: []step{{0, connect(true)}, {5, connect(false)}}, now: 6, want: false, why: "not connected"},
		{name: "reconnected", steps: []step{{0, connect(true)}, {5, connect(false)}, {8, connect(true)}}, now: 9, want: true},
		{name: "silent past the limit", steps: []step{{0, connect(true)}, {0, replied()}}, now: 31, want: false, why: "no sign of life"},
		{name: "silent at the limit", steps: []step{{0, connect(true)}, {0, replied()}}, now: 30, want: true},
		{name: "silence unjudged without reply times", steps: []step{{0, connect(true)}, {1, acked(100)}}, now: 300, want: true},
		{name: "status replies keep it alive", steps: []step{{0, connect(true)}, {20, replied()}, {40, replied()}}, now: 65, want: true},
		{name: "keepalives keep it alive", steps: []step{{0, connect(true)}, {0, replied()}, {25, keepalive(100)}, {26, acked(100)}}, now: 50, want: true},
		{name: "an unchanged ack is no sign of life", steps: []step{{0, connect(true)}, {0, replied()}, {1, acked(100)}, {20, acked(100)}}, now: 40, want: false, why: "no sign of life"},
		{name: "stuck without reply times", steps: []step{{0, connect(true)}, {0, acked(100)}, {1, walEnd(200)}}, now: 61, want: false, why: "stuck"},
		{name: "behind but moving", steps: []step{
			{0, connect(true)}, {0, acked(100)}, {1, walEnd(200)}, {30, acked(150)}, {31, replied()}, {50, replied()}, {70, acked(190)}, {71, replied()},
		}, now: 80, want: true},
		{name: "stuck: WAL ahead, ack still", steps: []step{
			{0, connect(true)}, {0, acked(100)}, {1, walEnd(200)}, {20, replied()}, {40, replied()}, {60, replied()},
		}, now: 61, want: false, why: "stuck: confirmed LSN 0/64 has not moved for 1m0s while the server sent up to 0/C8"},
		{name: "not yet stuck", steps: []step{
			{0, connect(true)}, {0, acked(100)}, {1, walEnd(200)}, {20, replied()}, {40, replied()},
		}, now: 60.9, want: true},
		{name: "caught up clears behind", steps: []step{
			{0, connect(true)}, {0, acked(100)}, {1, walEnd(200)}, {50, acked(200)}, {70, replied()}, {90, replied()},
		}, now: 100, want: true},
		{name: "idle: ack equals WAL end", steps: []step{
			{0, connect(true)}, {1, keepalive(100)}, {2, acked(100)}, {20, replied()}, {40, replied()}, {60, replied()}, {80, replied()},
		}, now: 90, want: true},
		{name: "reconnect restarts the stuck clock", steps: []step{
			{0, connect(true)}, {0, acked(100)}, {1, walEnd(200)}, {50, connect(false)}, {55, connect(true)},
		}, now: 70, want: true},
		{name: "ClickHouse write failed", steps: []step{{0, connect(true)}, {1, sinkWrite(errHung)}}, now: 5, want: false,
			why: "ClickHouse writes failing for 4s: no handshake"},
		{name: "ClickHouse failing, then stuck", steps: []step{
			{0, connect(true)}, {0, acked(100)}, {1, walEnd(200)}, {2, sinkWrite(errHung)}, {30, sinkWrite(errHung)},
		}, now: 61, want: false, why: "stuck"},
		{name: "ClickHouse write succeeded again", steps: []step{{0, connect(true)}, {1, sinkWrite(errHung)}, {3, sinkWrite(nil)}}, now: 5, want: true},
		{name: "stale WAL end is ignored", steps: []step{
			{0, connect(true)}, {0, acked(300)}, {1, walEnd(200)}, {20, replied()}, {40, replied()},
		}, now: 45, want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewReadiness(cfg)
			for _, s := range tt.steps {
				s.event(r, at(s.at))
			}
			got, why := r.Ready(at(tt.now))
			if got != tt.want {
				t.Errorf("Ready = %v (%s), want %v", got, why, tt.want)
			}
			if tt.why != "" && !strings.Contains(why, tt.why) {
				t.Errorf("reason %q does not contain %q", why, tt.why)
			}
		})
	}
}

func TestObserveSlot(t *testing.T) {
	cfg := ReadinessConfig{MaxSilence: 30 * time.Second, StuckAfter: 60 * time.Second}
	age := 2 * time.Second
	tests := []struct {
		name    string
		samples []status.SlotSample
		now     float64
		want    bool
		why     string
	}{
		{name: "replies by the server's clock", samples: []status.SlotSample{
			{At: at(25), Exists: true, Active: true, ConfirmedLSN: 100, SentLSN: 100, ReplyAge: &age},
		}, now: 50, want: true},
		{name: "reply too old", samples: []status.SlotSample{
			{At: at(25), Exists: true, Active: true, ConfirmedLSN: 100, SentLSN: 100, ReplyAge: new(25 * time.Second)},
		}, now: 31, want: false, why: "no sign of life"},
		{name: "sent beyond confirmed for too long", samples: []status.SlotSample{
			{At: at(1), Exists: true, Active: true, ConfirmedLSN: 100, SentLSN: 200, ReplyAge: &age},
			{At: at(30), Exists: true, Active: true, ConfirmedLSN: 100, SentLSN: 200, ReplyAge: &age},
			{At: at(61), Exists: true, Active: true, ConfirmedLSN: 100, SentLSN: 200, ReplyAge: &age},
		}, now: 62, want: false, why: "stuck"},
		{name: "inactive samples are ignored", samples: []status.SlotSample{
			{At: at(0), Exists: true, Active: true, ConfirmedLSN: 100, SentLSN: 100, ReplyAge: new(time.Duration(0))},
			{At: at(25), Exists: true, Active: false, ConfirmedLSN: 200, ReplyAge: &age},
			{At: at(26), Exists: false},
		}, now: 31, want: false, why: "no sign of life"},
		{name: "hidden walsender: current WAL stands in", samples: []status.SlotSample{
			{At: at(0), Exists: true, Active: true, ConfirmedLSN: 100, CurrentLSN: 300},
			{At: at(30), Exists: true, Active: true, ConfirmedLSN: 100, CurrentLSN: 400},
			{At: at(60), Exists: true, Active: true, ConfirmedLSN: 100, CurrentLSN: 500},
		}, now: 60, want: false, why: "stuck: confirmed LSN 0/64 has not moved for 1m0s while the server sent up to 0/1F4"},
		{name: "hidden walsender, idle: caught up", samples: []status.SlotSample{
			{At: at(0), Exists: true, Active: true, ConfirmedLSN: 100, CurrentLSN: 300},
			{At: at(30), Exists: true, Active: true, ConfirmedLSN: 300, CurrentLSN: 300},
			{At: at(90), Exists: true, Active: true, ConfirmedLSN: 300, CurrentLSN: 300},
		}, now: 200, want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewReadiness(cfg)
			r.StreamConnected(true, t0)
			for _, s := range tt.samples {
				r.ObserveSlot(s)
			}
			got, why := r.Ready(at(tt.now))
			if got != tt.want {
				t.Errorf("Ready = %v (%s), want %v", got, why, tt.want)
			}
			if tt.why != "" && !strings.Contains(why, tt.why) {
				t.Errorf("reason %q does not contain %q", why, tt.why)
			}
		})
	}
}

func TestHooksComposeWithExisting(t *testing.T) {
	r := NewReadiness(ReadinessConfig{MaxSilence: time.Hour, StuckAfter: time.Hour})
	var metricUp []bool
	var metricWAL []uint64
	h := r.Hooks(replication.Hooks{
		Connected:    func(up bool) { metricUp = append(metricUp, up) },
		ServerWALEnd: func(lsn uint64) { metricWAL = append(metricWAL, lsn) },
	})
	h.Connected(true)
	h.ServerWALEnd(42)
	if ok, why := r.Ready(time.Now()); !ok {
		t.Errorf("not ready after connect: %s", why)
	}
	h.Connected(false)
	if ok, _ := r.Ready(time.Now()); ok {
		t.Error("ready after disconnect")
	}
	if len(metricUp) != 2 || !metricUp[0] || metricUp[1] || len(metricWAL) != 1 || metricWAL[0] != 42 {
		t.Errorf("existing hooks saw connected=%v wal=%v", metricUp, metricWAL)
	}
	// Hooks without existing functions must not panic.
	r.Hooks(replication.Hooks{}).Connected(true)
}

func TestReadinessFor(t *testing.T) {
	got := ReadinessFor(10 * time.Second)
	if got.MaxSilence != 80*time.Second || got.StuckAfter != 100*time.Second {
		t.Errorf("ReadinessFor(10s) = %+v", got)
	}
	got = ReadinessFor(time.Second)
	if got.MaxSilence != 8*time.Second || got.StuckAfter != 10*time.Second {
		t.Errorf("ReadinessFor(1s) = %+v", got)
	}
}

func TestReadinessEventsMayBeLostIsSticky(t *testing.T) {
	at := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	r := NewReadiness(ReadinessConfig{MaxSilence: time.Minute, StuckAfter: time.Minute})
	r.StreamConnected(true, at)
	if ok, _ := r.Ready(at); !ok {
		t.Fatal("connected relay not ready")
	}
	r.EventsMayBeLost("outbox_relay", at)
	r.StreamConnected(true, at.Add(time.Second))
	r.Acked(100, at.Add(2*time.Second))
	ok, why := r.Ready(at.Add(3 * time.Second))
	if ok || !strings.Contains(why, "CRITICAL") || !strings.Contains(why, "events may have been lost") {
		t.Fatalf("Ready = %v, %q; want not ready, CRITICAL, events may have been lost", ok, why)
	}
}
