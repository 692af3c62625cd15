// Package rules decides which backend an HTTP request goes to and edits the
// header fields of requests and responses.
//
// A [RouteSpec] is one configured routing rule; [CompileRoute] checks it and
// turns it into a [Route], and a [Table] holds the routes of a frontend in
// order, the first matching one winning. A [HeaderRuleSpec] is one configured
// header rule; [CompileHeaderRule] turns it into a [HeaderRule], whose value
// is a [Template] expanded with the variables of an [Env].
//
// Matching and applying never allocate once the caller's buffers have grown
// to size, so that both can run on every request.
//
// # Errors
//
// The compile functions return a [*SpecError], which names the configuration
// key at fault, the list element for list keys, and the value, apart from the
// message. The message says what is wrong and what to do, but neither names
// the key nor quotes the value: Error puts both in front, as in
//
//	path_regex "^(/": is not a valid regular expression: missing closing ): ...
//	host "*foo.com": has "*" inside a label: a wildcard must be ...
//
// Msg starts with a lower-case word and reads after such a prefix. When Key is
// empty the problem is with the whole spec, and Msg stands alone.
package rules
