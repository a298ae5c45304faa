package clickhouse

import (
	"errors"
	"fmt"

	ch "github.com/ClickHouse/clickhouse-go/v2"

	"github.com/outbox-relay/relay/internal/event"
	"github.com/outbox-relay/relay/internal/retry"
)

// ClickHouse exception codes that mean "try again later": the server is
// overloaded, restarting or the network failed, or on a cluster a shard,
// a replica or ZooKeeper is out of reach. Every other exception is a
// problem with the data or the schema and is permanent.
var retryableCodes = map[int32]bool{
	3:   true, // UNEXPECTED_END_OF_FILE
	32:  true, // ATTEMPT_TO_READ_AFTER_EOF (a server of the cluster went away)
	159: true, // TIMEOUT_EXCEEDED
	164: true, // READONLY
	202: true, // TOO_MANY_SIMULTANEOUS_QUERIES
	203: true, // NO_FREE_CONNECTION
	209: true, // SOCKET_TIMEOUT
	210: true, // NETWORK_ERROR
	236: true, // ABORTED
	241: true, // MEMORY_LIMIT_EXCEEDED
	242: true, // TABLE_IS_READ_ONLY
	225: true, // NO_ZOOKEEPER
	252: true, // TOO_MANY_PARTS
	279: true, // ALL_CONNECTION_TRIES_FAILED (a shard of a Distributed insert is down)
	285: true, // TOO_FEW_LIVE_REPLICAS
	286: true, // UNSATISFIED_QUORUM_FOR_PREVIOUS_WRITE
	319: true, // UNKNOWN_STATUS_OF_INSERT
	394: true, // QUERY_WAS_CANCELLED
	425: true, // SYSTEM_ERROR
	439: true, // CANNOT_SCHEDULE_TASK
	999: true, // KEEPER_EXCEPTION
}

// Exception codes caused by a value in the data, not by the server or the
// schema: the event is rejected (event.ErrRejected) and dead-lettered.
var dataCodes = map[int32]bool{
	6:   true, // CANNOT_PARSE_TEXT
	27:  true, // CANNOT_PARSE_INPUT_ASSERTION_FAILED
	38:  true, // CANNOT_PARSE_DATE
	41:  true, // CANNOT_PARSE_DATETIME
	53:  true, // TYPE_MISMATCH
	69:  true, // ARGUMENT_OUT_OF_BOUND
	70:  true, // CANNOT_CONVERT_TYPE
	72:  true, // CANNOT_PARSE_NUMBER
	117: true, // INCORRECT_DATA
	131: true, // TOO_LARGE_STRING_SIZE
	321: true, // VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
	376: true, // CANNOT_PARSE_UUID
}

// classify marks permanent errors; connection-level errors (no exception
// from the server) are retryable.
func classify(op string, err error) error {
	if err == nil {
		return nil
	}
	var ex *ch.Exception
	switch {
	case errors.As(err, &ex) && dataCodes[ex.Code]:
		return retry.Permanent(fmt.Errorf("clickhouse %s: %w: %w", op, event.ErrRejected, err))
	case errors.As(err, &ex) && !retryableCodes[ex.Code]:
		return retry.Permanent(fmt.Errorf("clickhouse %s: %w", op, err))
	}
	return fmt.Errorf("clickhouse %s: %w", op, err)
}
