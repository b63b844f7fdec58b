// Package store keeps Spillway's state in badger: images, sandboxes, sessions, exceptions, records and the audit chain.
package store
