// Package exceptions models persistence exceptions: patterns, matching,
// limits, expiry and lint. It does no I/O.
//
// # Patterns
//
// A pattern is an absolute, clean path inside the sandbox in doublestar
// syntax: "*" any run of characters within one path element, "?" one
// character, "[…]" a class ("[!…]" or "[^…]" negated), "{a,b}" alternatives
// (which may hold "/"), "**" as a whole element any number of elements
// (zero included, so "/a/**" also matches the directory "/a"), and "\"
// escaping the next character. Wildcards match hidden names too: "/d/*"
// matches "/d/.profile". Only the pattern has wildcards: a path is matched
// literally, whatever bytes its names hold.
//
// ValidatePattern enforces: starts with "/"; no NUL; valid UTF-8 and no
// U+FFFD (which doublestar would match against any byte that is not UTF-8;
// match such bytes with "?" or "*"); at most 4096 bytes; a valid doublestar
// pattern; no "\" before "/"; at most 1024 combinations of "{…}"
// alternatives; and every combination clean, element by element: no empty
// element ("//" or a trailing "/", except the pattern "/" itself) and no "."
// or ".." element.
//
// # Lint
//
// Lint flags a pattern when some risky path could match it. The risky
// locations are a fixed table of patterns ("~" stands for /root and for
// /home/*); a user pattern and a risky pattern are compared element by
// element after expanding "{…}", with "**" on either side spanning any number
// of elements. Two literal elements must be equal; a wildcard element and a
// literal one are matched exactly; two wildcard elements are taken to overlap
// unless their literal prefixes or suffixes disagree. Lint may therefore
// over-report (it errs towards a finding), never under-report, for the
// locations in its table.
package exceptions
