module github.com/imapwarden/imapwarden

go 1.26.8

require (
	github.com/emersion/go-imap/v2 v2.0.0-beta.8
	github.com/emersion/go-sasl v0.0.0-20241020182733-b788ff22d5a6
	go.uber.org/zap v1.28.0
	go.yaml.in/yaml/v3 v3.0.6
)

require (
	github.com/emersion/go-message v0.18.2 // indirect
	go.uber.org/multierr v1.10.0 // indirect
)
