package h1

import (
	"bufio"
	"fmt"
)

// WriteRequestHead writes r's head to w: "METHOD TARGET HTTP/1.1\r\n",
// every field as "Name: Value\r\n", then "\r\n". It always writes
// HTTP/1.1, whatever r.Minor, and does not flush. It refuses (writing
// nothing) a method that is not a token, a target with whitespace or
// control characters, and a field whose name is not a token or whose value
// holds a control character (CR and LF above all, which would let a value
// add fields or end the head).
func WriteRequestHead(w *bufio.Writer, r *Request) error {
	if !isToken(r.Method) {
		return fmt.Errorf("h1: writing request head: invalid method %s", quoted(r.Method))
	}
	if len(r.Target) == 0 {
		return fmt.Errorf("h1: writing request head: empty target")
	}
	if e := checkTarget(r.Target); e != nil {
		return fmt.Errorf("h1: writing request head: %s", e.Reason)
	}
	if err := checkFields(&r.Head); err != nil {
		return fmt.Errorf("h1: writing request head: %w", err)
	}
	w.Write(r.Method)
	w.WriteByte(' ')
	w.Write(r.Target)
	w.WriteString(" HTTP/1.1\r\n")
	if err := writeFields(w, &r.Head); err != nil {
		return fmt.Errorf("h1: writing request head: %w", err)
	}
	return nil
}

// WriteResponseHead writes r's head to w: "HTTP/1.1 STATUS REASON\r\n"
// (StatusText(STATUS) when Reason is empty), every field as "Name:
// Value\r\n", then "\r\n". It always writes HTTP/1.1, whatever r.Minor,
// and does not flush. It refuses (writing nothing) a status outside 100 to
// 999, a reason with control characters, and fields as WriteRequestHead
// does.
func WriteResponseHead(w *bufio.Writer, r *Response) error {
	if r.Status < 100 || r.Status > 999 {
		return fmt.Errorf("h1: writing response head: invalid status %d", r.Status)
	}
	reason := r.Reason
	if !validValue(reason) {
		return fmt.Errorf("h1: writing response head: invalid character in reason %s", quoted(reason))
	}
	if err := checkFields(&r.Head); err != nil {
		return fmt.Errorf("h1: writing response head: %w", err)
	}
	w.WriteString("HTTP/1.1 ")
	w.WriteByte(byte('0' + r.Status/100))
	w.WriteByte(byte('0' + r.Status/10%10))
	w.WriteByte(byte('0' + r.Status%10))
	w.WriteByte(' ')
	if len(reason) > 0 {
		w.Write(reason)
	} else {
		w.WriteString(StatusText(r.Status))
	}
	w.WriteString("\r\n")
	if err := writeFields(w, &r.Head); err != nil {
		return fmt.Errorf("h1: writing response head: %w", err)
	}
	return nil
}

// checkFields checks that every field of h can be written as it is.
func checkFields(h *Head) error {
	for _, f := range h.Fields {
		if !isToken(f.Name) {
			return fmt.Errorf("invalid field name %s", quoted(f.Name))
		}
		if !validValue(f.Value) {
			return fmt.Errorf("invalid character in value of field %s", quoted(f.Name))
		}
	}
	return nil
}

// writeFields writes the fields of h and the empty line that ends the
// head, and returns w's error, if any.
func writeFields(w *bufio.Writer, h *Head) error {
	for _, f := range h.Fields {
		w.Write(f.Name)
		w.WriteString(": ")
		w.Write(f.Value)
		w.WriteString("\r\n")
	}
	_, err := w.WriteString("\r\n")
	return err
}

// StatusText returns the standard reason phrase of an HTTP status code,
// or "" for a code it does not know.
func StatusText(code int) string {
	switch code {
	case 100:
		return "Continue"
	case 101:
		return "Switching Protocols"
	case 102:
		return "Processing"
	case 103:
		return "Early Hints"
	case 200:
		return "OK"
	case 201:
		return "Created"
	case 202:
		return "Accepted"
	case 203:
		return "Non-Authoritative Information"
	case 204:
		return "No Content"
	case 205:
		return "Reset Content"
	case 206:
		return "Partial Content"
	case 207:
		return "Multi-Status"
	case 208:
		return "Already Reported"
	case 226:
		return "IM Used"
	case 300:
		return "Multiple Choices"
	case 301:
		return "Moved Permanently"
	case 302:
		return "Found"
	case 303:
		return "See Other"
	case 304:
		return "Not Modified"
	case 305:
		return "Use Proxy"
	case 307:
		return "Temporary Redirect"
	case 308:
		return "Permanent Redirect"
	case 400:
		return "Bad Request"
	case 401:
		return "Unauthorized"
	case 402:
		return "Payment Required"
	case 403:
		return "Forbidden"
	case 404:
		return "Not Found"
	case 405:
		return "Method Not Allowed"
	case 406:
		return "Not Acceptable"
	case 407:
		return "Proxy Authentication Required"
	case 408:
		return "Request Timeout"
	case 409:
		return "Conflict"
	case 410:
		return "Gone"
	case 411:
		return "Length Required"
	case 412:
		return "Precondition Failed"
	case 413:
		return "Content Too Large"
	case 414:
		return "URI Too Long"
	case 415:
		return "Unsupported Media Type"
	case 416:
		return "Range Not Satisfiable"
	case 417:
		return "Expectation Failed"
	case 418:
		return "I'm a teapot"
	case 421:
		return "Misdirected Request"
	case 422:
		return "Unprocessable Content"
	case 423:
		return "Locked"
	case 424:
		return "Failed Dependency"
	case 425:
		return "Too Early"
	case 426:
		return "Upgrade Required"
	case 428:
		return "Precondition Required"
	case 429:
		return "Too Many Requests"
	case 431:
		return "Request Header Fields Too Large"
	case 451:
		return "Unavailable For Legal Reasons"
	case 500:
		return "Internal Server Error"
	case 501:
		return "Not Implemented"
	case 502:
		return "Bad Gateway"
	case 503:
		return "Service Unavailable"
	case 504:
		return "Gateway Timeout"
	case 505:
		return "HTTP Version Not Supported"
	case 506:
		return "Variant Also Negotiates"
	case 507:
		return "Insufficient Storage"
	case 508:
		return "Loop Detected"
	case 510:
		return "Not Extended"
	case 511:
		return "Network Authentication Required"
	}
	return ""
}
