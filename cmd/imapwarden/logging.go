package main

import (
	"io"
	"sync"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/buffer"
	"go.uber.org/zap/zapcore"

	"github.com/imapwarden/imapwarden/internal/termsafe"
)

// newLogger builds the process's logger, writing to w. It is passed to every
// package that logs; nothing is installed globally. Logs are not sampled:
// security events must all be seen.
func newLogger(w io.Writer, level zapcore.Level, format string) *zap.Logger {
	return newLoggerAt(w, zap.NewAtomicLevelAt(level), format)
}

// newLoggerAt is newLogger with a level the admin API can change.
func newLoggerAt(w io.Writer, level zap.AtomicLevel, format string) *zap.Logger {
	ec := zapcore.EncoderConfig{
		TimeKey:        "ts",
		LevelKey:       "level",
		NameKey:        "logger",
		CallerKey:      zapcore.OmitKey,
		MessageKey:     "msg",
		StacktraceKey:  "stacktrace",
		LineEnding:     zapcore.DefaultLineEnding,
		EncodeLevel:    zapcore.LowercaseLevelEncoder,
		EncodeTime:     zapcore.RFC3339NanoTimeEncoder,
		EncodeDuration: zapcore.StringDurationEncoder,
		EncodeName:     zapcore.FullNameEncoder,
	}
	enc := safeEncoder{Encoder: zapcore.NewJSONEncoder(ec)}
	if format == "console" {
		ec.EncodeLevel = zapcore.CapitalLevelEncoder
		ec.EncodeTime = zapcore.TimeEncoderOfLayout(time.TimeOnly + ".000")
		enc = safeEncoder{Encoder: zapcore.NewConsoleEncoder(ec), console: true}
	}
	core := zapcore.NewCore(enc, zapcore.Lock(zapcore.AddSync(w)), level)
	return zap.New(core, zap.AddStacktrace(zapcore.DPanicLevel))
}

// safeEncoder keeps log lines from driving the terminal that shows them:
// field values carry client-chosen strings (user names, mailboxes, ID
// values, SNI). zap's JSON escapes C0 controls but writes DEL, C1
// controls, U+2028, U+2029 and bidi controls raw, and the console format
// writes the message and the logger name unquoted. So the console format
// escapes those two, and every line of either format goes through
// termsafe.AppendText, which keeps the layout (tabs, line feeds) and, in
// JSON, the values.
type safeEncoder struct {
	zapcore.Encoder
	console bool
}

func (e safeEncoder) Clone() zapcore.Encoder {
	return safeEncoder{Encoder: e.Encoder.Clone(), console: e.console}
}

// logScratch holds the escaped copy of a line while it is written back.
var logScratch = sync.Pool{New: func() any { return new([]byte) }}

func (e safeEncoder) EncodeEntry(ent zapcore.Entry, fields []zapcore.Field) (*buffer.Buffer, error) {
	if e.console {
		ent.Message = termsafe.String(ent.Message)
		ent.LoggerName = termsafe.String(ent.LoggerName)
	}
	buf, err := e.Encoder.EncodeEntry(ent, fields)
	if err != nil {
		return buf, err
	}
	s := logScratch.Get().(*[]byte)
	*s = termsafe.AppendText((*s)[:0], buf.Bytes())
	if len(*s) != buf.Len() { // every escape is longer than what it replaces
		buf.Reset()
		buf.Write(*s)
	}
	if cap(*s) <= 64<<10 {
		logScratch.Put(s)
	}
	return buf, nil
}
