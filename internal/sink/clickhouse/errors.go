package clickhouse

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/ClickHouse/ch-go/proto"
	ch "github.com/ClickHouse/clickhouse-go/v2"

	"github.com/outbox-relay/relay/internal/event"
	"github.com/outbox-relay/relay/internal/retry"
)

// ClickHouse exception codes that mean "try again later": the server is
// overloaded, restarting or the network failed, or on a cluster a shard,
// a replica or ZooKeeper is out of reach. Every other exception is a
// problem with the data, the schema or the user's rights and is permanent:
// READONLY (164) is the user's readonly setting, which no retry changes
// (a replica that lost ZooKeeper says TABLE_IS_READ_ONLY, 242).
var retryableCodes = map[proto.Error]bool{
	proto.ErrUnexpectedEndOfFile:               true,
	proto.ErrAttemptToReadAfterEOF:             true, // a server of the cluster went away
	proto.ErrTimeoutExceeded:                   true,
	proto.ErrTooManySimultaneousQueries:        true,
	proto.ErrNoFreeConnection:                  true,
	proto.ErrSocketTimeout:                     true,
	proto.ErrNetworkError:                      true,
	proto.ErrAborted:                           true,
	proto.ErrMemoryLimitExceeded:               true,
	proto.ErrTableIsReadOnly:                   true,
	proto.ErrNoZookeeper:                       true,
	proto.ErrTooManyParts:                      true,
	proto.ErrAllConnectionTriesFailed:          true, // a shard of a Distributed insert is down
	proto.ErrTooFewLiveReplicas:                true,
	proto.ErrUnsatisfiedQuorumForPreviousWrite: true,
	proto.ErrUnknownStatusOfInsert:             true,
	proto.ErrQueryWasCancelled:                 true,
	proto.ErrSystemError:                       true,
	proto.ErrCannotScheduleTask:                true,
	proto.ErrKeeperException:                   true,
}

// Exception codes caused by a value in the data, not by the server or the
// schema: the event is rejected (event.ErrRejected) and dead-lettered.
var dataCodes = map[proto.Error]bool{
	proto.ErrCannotParseText:                 true,
	proto.ErrCannotParseInputAssertionFailed: true,
	proto.ErrCannotParseDate:                 true,
	proto.ErrCannotParseDatetime:             true,
	proto.ErrTypeMismatch:                    true,
	proto.ErrArgumentOutOfBound:              true,
	proto.ErrCannotConvertType:               true,
	proto.ErrCannotParseNumber:               true,
	proto.ErrIncorrectData:                   true,
	proto.ErrTooLargeStringSize:              true,
	proto.ErrValueIsOutOfRangeOfDataType:     true,
	proto.ErrCannotParseUUID:                 true,
}

// classify marks permanent errors; connection-level errors (no exception
// from the server) are retryable.
func classify(op string, err error) error {
	if err == nil {
		return nil
	}
	var ex *ch.Exception
	switch {
	case badCertificate(err):
		return retry.Permanent(fmt.Errorf("clickhouse %s: %w", op, err))
	case errors.As(err, &ex) && dataCodes[proto.Error(ex.Code)]:
		return retry.Permanent(fmt.Errorf("clickhouse %s: %w: %w", op, event.ErrRejected, err))
	case errors.As(err, &ex) && !retryableCodes[proto.Error(ex.Code)]:
		return retry.Permanent(fmt.Errorf("clickhouse %s: %w", op, err))
	}
	return fmt.Errorf("clickhouse %s: %w", op, err)
}

// badCertificate reports a TLS handshake that failed on a certificate,
// ours or the server's: configuration (tls_ca_file, tls_cert_file), which
// no retry mends. crypto/tls reports the server's alert as a net.OpError
// "remote error" around an unexported alert; every certificate alert says
// "certificate" (bad, unsupported, revoked, expired, unknown, unknown
// authority, required).
func badCertificate(err error) bool {
	var verify *tls.CertificateVerificationError
	if errors.As(err, &verify) {
		return true
	}
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "remote error" && op.Err != nil && strings.Contains(op.Err.Error(), "certificate")
}
