package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/challenge-v3/challenge-v3/messaging"
)

// dlqShow prints one dead letter: what it is, its headers and the reading's
// fields, the image elided to its content type and size.
func dlqShow(ctx context.Context, e dlqEnv, seq uint64) int {
	d, err := messaging.GetDeadLetter(ctx, e.js, seq)
	if err != nil {
		fmt.Fprintf(e.errOut, "worker dlq show: %s\n", explain(seq, err))
		return exitFail
	}
	tw := tabwriter.NewWriter(e.out, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "sequence\t%d\n", d.Sequence)
	fmt.Fprintf(tw, "subject\t%s\n", d.Subject)
	fmt.Fprintf(tw, "dead-lettered at\t%s\n", d.DeadLetteredAt.UTC().Format(time.RFC3339Nano))
	fmt.Fprintf(tw, "reason\t%s\n", oneLine(d.Reason))
	fmt.Fprintf(tw, "original subject\t%s\n", oneLine(d.OriginalSubject))
	fmt.Fprintf(tw, "original sequence\t%d\n", d.OriginalSequence)
	fmt.Fprintf(tw, "deliveries\t%d\n", d.Deliveries)
	fmt.Fprintf(tw, "size\t%d bytes\n", d.Size)
	fmt.Fprintln(tw, "headers:")
	names := make([]string, 0, len(d.Header))
	for k := range d.Header {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		for _, v := range d.Header[k] {
			fmt.Fprintf(tw, "  %s\t%s\n", k, oneLine(v))
		}
	}
	fmt.Fprintln(tw, "reading:")
	writeReading(tw, d.Data)
	if err := tw.Flush(); err != nil {
		fmt.Fprintf(e.errOut, "worker dlq show: %v\n", err)
		return exitFail
	}
	return exitOK
}

// writeReading prints the top-level fields of a message body in their order.
// A photo's image is never printed, only its content type and size; a body
// that is not a JSON object is not printed at all (it may be anything).
func writeReading(w io.Writer, data []byte) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	fields, ok := decodeObject(dec)
	if !ok {
		fmt.Fprintf(w, "  (the body is not a JSON object; %d bytes, not shown)\n", len(data))
		return
	}
	contentType := ""
	for _, f := range fields {
		if f.name == "content_type" {
			_ = json.Unmarshal(f.raw, &contentType)
		}
	}
	for _, f := range fields {
		v := strings.TrimSpace(string(f.raw))
		if f.name == "image" {
			v = elideImage(f.raw, contentType)
		} else if len(v) > 200 {
			v = v[:200] + "…"
		}
		fmt.Fprintf(w, "  %s\t%s\n", oneLine(f.name), oneLine(v))
	}
}

type field struct {
	name string
	raw  json.RawMessage
}

// decodeObject reads one JSON object's fields in order.
func decodeObject(dec *json.Decoder) ([]field, bool) {
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, false
	}
	var out []field
	for dec.More() {
		tok, err := dec.Token()
		name, isName := tok.(string)
		if err != nil || !isName {
			return nil, false
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, false
		}
		out = append(out, field{name, raw})
	}
	return out, true
}

// elideImage describes the base64 image of a photo message without it.
func elideImage(raw json.RawMessage, contentType string) string {
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return fmt.Sprintf("(elided: not a base64 string, %d bytes of JSON)", len(raw))
	}
	if contentType == "" {
		contentType = "unknown content type"
	}
	if img, err := base64.StdEncoding.DecodeString(s); err == nil {
		return fmt.Sprintf("(elided: %s, %d bytes)", contentType, len(img))
	}
	return fmt.Sprintf("(elided: %s, %d characters of invalid base64)", contentType, len(s))
}
