// Package policies holds the Rego policies that ship with imapwarden, so
// that the binary carries them: the framework that every policy directory
// needs (a directory loaded alone gets it from here when its parent has
// none), and the whole tree for "imapwarden demo". README.md is the
// contract; the Go code is only this file.
package policies

import "embed"

// Framework is imapwarden.rego: data.imapwarden.decision and the helpers
// every shipped policy uses.
//
//go:embed imapwarden.rego
var Framework []byte

// FrameworkFile is the framework's file name.
const FrameworkFile = "imapwarden.rego"

// FS is the shipped tree: the framework, README.md, and each policy
// directory with its Rego, tests and data.
//
//go:embed README.md imapwarden.rego imapwarden_test.rego */*.rego */*.yaml
var FS embed.FS
