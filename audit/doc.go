// Package audit is imapwarden's compliance trail: the record schema, the
// hash-chained JSON-lines writer, its sinks (rotating file, stdout,
// RFC 5424 syslog), and the reader side, Verify and Scan. README.md next
// to this file documents the schema with examples.
//
// It imports no other package of imapwarden (ARCHITECTURE.md §4): cmd/imapwarden
// turns proxy events into Records.
//
// Implementation notes — invariants a reader must keep:
//
//   - Whoever holds the write side (Trail.wmu) owns the chain: the writer
//     goroutine, or a LogWait caller that found it free and writes the
//     queued records and its own itself (Trail.logDirect, whose comment
//     lists the hazards), after yielding once for others' records to join
//     its write while callers meet there (group commit). Log only queues a *Record; the writer numbers
//     it (seq), encodes it straight into the batch (jsonLine: the bytes
//     zapcore's JSON encoder wrote, TestLineMatchesZap; never through the
//     operational logger, unsampled), and links it to the
//     previous record: prev is SHA-256 of the previous line's exact
//     bytes without the "\n"; with a key, each record ends with its sig
//     (HMAC-SHA256 over the line before ,"sig":"), and hmac, the link, is
//     the previous record's sig. With a key, nothing unsigned is part of
//     the trail: Verify checks every sig, New resumes only from a signed
//     last record, and no reader accepts a key twice. seq is given
//     at write time, so a dropped record leaves no gap in seq; the drop is
//     told by an audit.dropped record instead.
//   - The chain state advances only with what the sink took: a batch the
//     sink refused is rolled back (Drop) or retried whole (Block), so the
//     stored chain never forks.
//   - Records reach the OS as soon as the queue runs empty (or a batch
//     reaches maxBatch): a killed process loses only what was queued. The
//     fsync interval bounds what a crashed machine loses.
//   - A FileSink writes a batch into one file or not at all (a partial
//     write is cut back), rotates between batches, and at open cuts a torn
//     last line off (reported in audit.start as torn_bytes), so that the
//     chain resumes from the last complete record.
//   - Nothing here sees a password, a SASL exchange or message content:
//     a Record has no field that could carry one, and cmd fills it from
//     proxy events that have none either.
//   - Field order is fixed: ts, kind, v, seq, prev|hmac, then the session
//     (ip before anything a client chose), sig last, so that fail2ban's regular
//     expressions can anchor on it; the encoder escapes quotes, so a
//     client's string cannot fake a field.
package audit
