package replication

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/rs/zerolog"

	"github.com/outbox-relay/relay/internal/ack"
	"github.com/outbox-relay/relay/internal/batch"
	"github.com/outbox-relay/relay/internal/event"
)

// BenchmarkReceive measures the stream's whole receive path in one
// process: a fake walsender on a loopback socket sends one-event
// transactions (Begin, a 512 B Insert, Commit; each message its own write,
// as a walsender flushes them), the stream reads, decodes and hands them
// over, and a consumer batches them (1,000 per batch) and gives their
// budget back. One op is one event.
//
//   - flat: the sender writes as fast as the socket takes it (a backlog):
//     ns/op and allocs/op of the path.
//   - 2000tx_s, 500tx_s: the sender paces itself (make bench's steady
//     load). ns/op is then the pace; cpu-us/event is this process's CPU
//     per event (the sender runs in a process of its own): the cost of
//     waking up for a trickle of small messages.
//
// The stream waits 10ms (RELAY_RECEIVE_WAIT's default) once caught up,
// paced by the consumer's batch as relay run does (Config.NextCut); the
// _waitN variants wait N ms (0: read at once) without pacing.
func BenchmarkReceive(b *testing.B) {
	const paced = true
	for _, bc := range []struct {
		name  string
		rate  int // transactions per second; 0 = flat out
		wait  time.Duration
		paced bool
	}{
		{"flat", 0, 10 * time.Millisecond, paced},
		{"2000tx_s", 2000, 10 * time.Millisecond, paced}, {"2000tx_s_wait0", 2000, 0, !paced},
		{"2000tx_s_wait10", 2000, 10 * time.Millisecond, !paced}, {"2000tx_s_wait20", 2000, 20 * time.Millisecond, !paced},
		{"500tx_s", 500, 10 * time.Millisecond, paced}, {"500tx_s_wait10", 500, 10 * time.Millisecond, !paced},
	} {
		b.Run(bc.name, func(b *testing.B) { benchReceive(b, bc.rate, bc.wait, bc.paced, false) })
	}
	// The same over TLS (sslmode=require): a walsender's every message is
	// its own TLS record, and a TLS read returns one record.
	for _, bc := range []struct {
		name string
		rate int
	}{{"flat_tls", 0}, {"2000tx_s_tls", 2000}} {
		b.Run(bc.name, func(b *testing.B) { benchReceive(b, bc.rate, 10*time.Millisecond, paced, true) })
	}
}

func benchReceive(b *testing.B, rate int, wait time.Duration, paced, useTLS bool) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n := b.N
	addr, stopSender := startFakeWalsender(b, n, rate, useTLS)
	defer stopSender()

	forecast := new(batch.Forecast)
	nextCut := forecast.Load
	if !paced {
		nextCut = nil
	}
	st, _, budget, out := fakeStream(ctx, b, addr, wait, nextCut, useTLS)
	streamErr := make(chan error, 1)

	b.ReportAllocs()
	cpu0 := processCPU()
	b.ResetTimer()
	go func() { streamErr <- st.receive(ctx, ctx) }()
	bt := batch.New(batch.Policy{MaxEvents: 1000, MaxBytes: 16 << 20, MaxAge: time.Second})
	for got := 0; got < n; {
		select {
		case its := <-out:
			for _, it := range its {
				now := it.At
				if it.Commit {
					bt.Commit(it.EndLSN, now)
				} else {
					bt.Add(it.Event, now)
					got++
				}
				for bt.Ready() {
					release(budget, bt.Cut())
				}
			}
			forecast.Store(bt.ExpectedCut(time.Now()))
		case err := <-streamErr:
			b.Fatalf("stream ended after %d events: %v", got, err)
		}
	}
	release(budget, bt.Cut()) // nothing is Ready: the complete transactions
	b.StopTimer()
	b.ReportMetric(float64(processCPU()-cpu0)/float64(time.Microsecond)/float64(n), "cpu-us/event")
	cancel()
	if err := <-streamErr; err != nil && !errors.Is(err, context.Canceled) {
		b.Fatalf("stream: %v", err)
	}
}

// fakeStream connects a session to the fake walsender at addr (see
// fakeWalsender) with the given receive wait and NextCut; the connection
// is closed when tb ends.
func fakeStream(ctx context.Context, tb testing.TB, addr string, wait time.Duration, nextCut func() time.Time, useTLS bool) (*session, Config, *event.Budget, chan []Item) {
	tb.Helper()
	sslmode := "disable"
	if useTLS {
		sslmode = "require"
	}
	cfg := Config{ConnString: "postgres://bench@" + addr + "/bench?sslmode=" + sslmode,
		Slot: "bench", Publication: "bench", Outboxes: []Outbox{*defaultOutbox()},
		StatusInterval: 10 * time.Second, DrainTimeout: time.Second,
		ReceiveWait: wait, NextCut: nextCut}
	budget := event.NewBudget(1 << 26)
	src := New(cfg, nil, ack.New(0), budget, zerolog.Nop(), Hooks{}, nil)
	conn, err := src.connect(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = conn.Close(context.Background()) })
	out := make(chan []Item, 1024)
	return newSession(src, conn, newHandover(out, budget, cfg.StatusInterval/2)), cfg, budget, out
}

func release(budget *event.Budget, bt batch.Batch) {
	budget.Give(event.All(bt.Events))
}

// processCPU is the process's user and system CPU time so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// startFakeWalsender runs fakeWalsender in a child process (this test
// binary, TestFakeWalsenderProcess), so that its CPU is not counted, and
// returns its address.
func startFakeWalsender(b *testing.B, n, rate int, useTLS bool) (addr string, stop func()) {
	b.Helper()
	cmd := exec.CommandContext(b.Context(), os.Args[0], "-test.run=^TestFakeWalsenderProcess$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("FAKE_WALSENDER=%d:%d:%t", n, rate, useTLS))
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	stop = func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		stop()
		b.Fatalf("fake walsender: %v", err)
	}
	return strings.TrimSpace(strings.TrimPrefix(line, "listening on ")), stop
}

// TestFakeWalsenderProcess is the child process of startFakeWalsender;
// skipped unless FAKE_WALSENDER is n:rate.
func TestFakeWalsenderProcess(t *testing.T) {
	spec := os.Getenv("FAKE_WALSENDER")
	if spec == "" {
		t.Skip("the child process of BenchmarkReceive")
	}
	var n, rate int
	var useTLS bool
	if _, err := fmt.Sscanf(spec, "%d:%d:%t", &n, &rate, &useTLS); err != nil {
		t.Fatal(err)
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("listening on %s\n", ln.Addr())
	fakeWalsender(context.Background(), ln, n, rate, useTLS)
}

// fakeWalsender accepts one connection, answers the startup with
// AuthenticationOk and ReadyForQuery, then sends a Relation message and n
// one-event transactions, rate per second (0: flat out), and keeps the
// connection open until ctx ends.
func fakeWalsender(ctx context.Context, ln net.Listener, n, rate int, useTLS bool) {
	conn, err := ln.Accept()
	if err != nil {
		return
	}
	defer func() { _ = conn.Close() }()
	go func() { <-ctx.Done(); _ = conn.Close() }()
	be := pgproto3.NewBackend(conn, conn)
	startup, err := be.ReceiveStartupMessage()
	if err != nil {
		return
	}
	if _, ok := startup.(*pgproto3.SSLRequest); ok {
		if !useTLS {
			return
		}
		if _, err := conn.Write([]byte{'S'}); err != nil {
			return
		}
		tc := tls.Server(conn, &tls.Config{Certificates: []tls.Certificate{selfSigned()}, MinVersion: tls.VersionTLS12})
		if err := tc.HandshakeContext(ctx); err != nil {
			return
		}
		conn = tc
		be = pgproto3.NewBackend(conn, conn)
		if _, err := be.ReceiveStartupMessage(); err != nil {
			return
		}
	}
	be.Send(&pgproto3.AuthenticationOk{})
	be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	if err := be.Flush(); err != nil {
		return
	}
	// Status updates from the stream are read and dropped; the stream
	// closing its end ends the sender.
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		for {
			if _, err := be.Receive(); err != nil {
				return
			}
		}
	}()
	var frame, begin, commit []byte // reused: the sender's allocations are not the stream's
	send := func(msg []byte) bool {
		frame = append(frame[:0], 'd', 0, 0, 0, 0)
		frame = append(frame, 'w')
		frame = binary.BigEndian.AppendUint64(frame, 0)
		frame = binary.BigEndian.AppendUint64(frame, 0)
		frame = binary.BigEndian.AppendUint64(frame, 0)
		frame = append(frame, msg...)
		binary.BigEndian.PutUint32(frame[1:], uint32(len(frame)-1))
		_, err := conn.Write(frame)
		return err == nil
	}
	if !send(benchRelationMessage()) {
		return
	}
	insert := append([]byte{'I'}, benchInsertBody(512)...)
	start := time.Now()
	pace := time.NewTimer(0)
	defer pace.Stop()
	<-pace.C
	for i := 0; i < n; i++ {
		if rate > 0 {
			// Transaction i is due at start + i/rate: behind, it goes at once
			// (the schedule catches up); the wait ends with ctx too.
			if d := time.Until(start.Add(time.Duration(i) * time.Second / time.Duration(rate))); d > 0 {
				pace.Reset(d)
				select {
				case <-pace.C:
				case <-ctx.Done():
					return
				}
			}
		}
		lsn := uint64(i+1) * 1000
		begin = append(begin[:0], 'B')
		begin = binary.BigEndian.AppendUint64(begin, lsn)
		begin = binary.BigEndian.AppendUint64(begin, 0)
		begin = binary.BigEndian.AppendUint32(begin, uint32(i))
		commit = append(commit[:0], 'C', 0)
		commit = binary.BigEndian.AppendUint64(commit, lsn)
		commit = binary.BigEndian.AppendUint64(commit, lsn+1)
		commit = binary.BigEndian.AppendUint64(commit, 0)
		if !send(begin) || !send(insert) || !send(commit) {
			return
		}
	}
	select {
	case <-ctx.Done():
	case <-closed:
	}
}

// benchRelationMessage is the outbox table's Relation message (the shape
// of benchOutboxRelation, relation id 16384).
func benchRelationMessage() []byte {
	m := []byte{'R'}
	m = binary.BigEndian.AppendUint32(m, 16384)
	m = append(m, "public\x00outbox_event\x00"...)
	m = append(m, 'd')
	cols := []struct {
		name string
		oid  uint32
	}{{colID, oidUUID}, {colEventType, oidText}, {colEventDateTime, oidTimestamptz},
		{colEnvironment, oidText}, {colEventContext, oidJSONB}, {colMetadataVersion, oidInt8}}
	m = binary.BigEndian.AppendUint16(m, uint16(len(cols)))
	for _, c := range cols {
		m = append(m, 0)
		m = append(m, c.name...)
		m = append(m, 0)
		m = binary.BigEndian.AppendUint32(m, c.oid)
		m = binary.BigEndian.AppendUint32(m, 0xffffffff)
	}
	return m
}

// selfSigned is a throwaway certificate for the fake walsender's TLS
// (sslmode=require does not verify it).
func selfSigned() tls.Certificate {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "fake walsender"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		panic(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
