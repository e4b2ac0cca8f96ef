package audit

import (
	"context"
	"errors"
	"testing"
)

// TestQueryContextStops: a query whose context ended stops within
// scanCheckEvery lines, with the context's error, instead of reading the
// whole trail for an asker who has gone (admin searches hold one of
// admin.audit_searches while they read); a live one reads every record.
func TestQueryContextStops(t *testing.T) {
	const n = 3*scanCheckEvery + 10
	files, _ := writeTrail(t, n, FileOptions{})
	count := func(ctx context.Context) (int, error) {
		seen := 0
		_, err := QueryContext(ctx, files, &Filter{}, func(*Record, []byte) error {
			seen++
			return nil
		})
		return seen, err
	}
	// The trail's own records (its start, its end) are among them.
	if seen, err := count(context.Background()); err != nil || seen < n {
		t.Fatalf("a live query: %d records, %v; want at least %d", seen, err, n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	seen, err := count(ctx)
	if !errors.Is(err, context.Canceled) || seen >= scanCheckEvery {
		t.Errorf("a cancelled query: %d records, %v; want fewer than %d and context.Canceled", seen, err, scanCheckEvery)
	}
}
