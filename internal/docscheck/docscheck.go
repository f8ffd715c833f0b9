// Package docscheck reads the repository's Markdown documentation (README.md
// and docs/*.md) the way its tests check it: the shell examples with the
// markers that say how to run them, the anchors GitHub gives headings, and
// the relative links. It only parses; the tests that run the examples
// (internal/devstack) and compare problem types with docs/api.md (handlers)
// decide what to do with it.
//
// # Example markers
//
// Every ```sh, ```bash and ```console block is an example a user may paste
// from the repository root, and a test runs it. An HTML comment on the line
// right before the opening fence (blank lines allowed in between) says how;
// GitHub does not render it:
//
//	<!-- example: not run (REASON) -->
//		the block is skipped and REASON is listed: it starts the stack,
//		needs Docker, AWS, the nats CLI or placeholders filled in, or takes
//		minutes. Nothing else may skip a block.
//	<!-- example: run with timeout DURATION -->
//		for a command that never ends by itself (curl -N on the live
//		stream): it runs for DURATION (a Go duration, e.g. 3s) and passes
//		if it was still running then or exited 0 before.
//	<!-- example: expects an HTTP error (REASON) -->
//		the block shows an error answer on purpose; its curl commands do
//		not fail on a 4xx or 5xx status.
//
// Any other comment starting with "example:" is an error, so a typo cannot
// skip a block. Blocks in other languages (```sql, ```json, output shown
// without a language) are not run and take no marker.
package docscheck

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"
	"unicode"
)

// Files returns README.md and then docs/*.md in name order, as paths
// relative to root (the repository root).
func Files(root string) ([]string, error) {
	docs, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		return nil, err
	}
	sort.Strings(docs)
	files := []string{"README.md"}
	for _, d := range docs {
		rel, err := filepath.Rel(root, d)
		if err != nil {
			return nil, err
		}
		files = append(files, filepath.ToSlash(rel))
	}
	return files, nil
}

// Block is one fenced code block of a Markdown document.
type Block struct {
	File string // as given to Parse
	Line int    // 1-based line of the opening fence
	Lang string // the info string's first word: "sh", "json", "" …
	Text string // the content, the fence's indentation removed
	// Comment is the HTML comment on the line before the fence (blank lines
	// allowed in between), without "<!--" and "-->", trimmed; "" if none.
	Comment string
}

// Doc is a parsed Markdown document.
type Doc struct {
	File    string
	Blocks  []Block
	Anchors map[string]bool // every heading's GitHub anchor, and id/name attributes
	Links   []Link
}

// Link is one link of a document, outside code.
type Link struct {
	Line   int
	Target string // as written: "docs/api.md#errors", "#lists", "https://…"
}

var (
	reFence   = regexp.MustCompile("^([ \t]*)(`{3,}|~{3,})[ \t]*([^ \t`]*)")
	reHeading = regexp.MustCompile(`^[ \t]{0,3}(#{1,6})[ \t]+(.*?)[ \t]*#*[ \t]*$`)
	reComment = regexp.MustCompile(`^[ \t]*<!--(.*)-->[ \t]*$`)
	reHTMLID  = regexp.MustCompile(`<a\s[^>]*(?:id|name)="([^"]+)"`)
	reCode    = regexp.MustCompile("`+[^`]*`+")
	reInline  = regexp.MustCompile(`\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)`)
	reRefDef  = regexp.MustCompile(`^[ \t]{0,3}\[[^\]]+\]:\s*<?([^\s>]+)`)
)

// ParseFile parses the Markdown file root/file.
func ParseFile(root, file string) (*Doc, error) {
	b, err := os.ReadFile(filepath.Join(root, file))
	if err != nil {
		return nil, err
	}
	return Parse(file, string(b)), nil
}

// Parse parses a Markdown document; file only labels what it returns.
func Parse(file, text string) *Doc {
	d := &Doc{File: file, Anchors: map[string]bool{}}
	lines := strings.Split(text, "\n")
	seen := map[string]int{}
	lastComment, commentLine := "", -1
	for i := 0; i < len(lines); i++ {
		line := strings.TrimRight(lines[i], "\r")
		if m := reFence.FindStringSubmatch(line); m != nil {
			b := Block{File: file, Line: i + 1, Lang: m[3]}
			if commentLine >= 0 && blankBetween(lines, commentLine+1, i) {
				b.Comment = lastComment
			}
			indent, fence := m[1], m[2]
			var body []string
			for i++; i < len(lines); i++ {
				l := strings.TrimRight(lines[i], "\r")
				t := strings.TrimLeft(l, " \t")
				if strings.HasPrefix(t, fence) && strings.Trim(t, fence[:1]+" \t") == "" {
					break
				}
				body = append(body, strings.TrimPrefix(l, indent))
			}
			b.Text = strings.Join(body, "\n") + "\n"
			d.Blocks = append(d.Blocks, b)
			commentLine = -1
			continue
		}
		if m := reComment.FindStringSubmatch(line); m != nil {
			lastComment, commentLine = strings.TrimSpace(m[1]), i
		}
		if m := reHeading.FindStringSubmatch(line); m != nil {
			slug := Slug(m[2])
			if n := seen[slug]; n > 0 {
				d.Anchors[fmt.Sprintf("%s-%d", slug, n)] = true
			} else {
				d.Anchors[slug] = true
			}
			seen[slug]++
		}
		for _, m := range reHTMLID.FindAllStringSubmatch(line, -1) {
			d.Anchors[m[1]] = true
		}
		prose := reCode.ReplaceAllString(line, "")
		for _, m := range reInline.FindAllStringSubmatch(prose, -1) {
			d.Links = append(d.Links, Link{Line: i + 1, Target: m[1]})
		}
		if m := reRefDef.FindStringSubmatch(prose); m != nil {
			d.Links = append(d.Links, Link{Line: i + 1, Target: m[1]})
		}
	}
	return d
}

// blankBetween reports whether lines[from:to] are all blank.
func blankBetween(lines []string, from, to int) bool {
	for _, l := range lines[from:to] {
		if strings.TrimSpace(l) != "" {
			return false
		}
	}
	return true
}

var (
	reLinkText = regexp.MustCompile(`!?\[([^\]]*)\]\([^)]*\)`)
	reTag      = regexp.MustCompile(`<[^>]+>`)
)

// Slug is the anchor GitHub gives a heading with this Markdown text: the
// rendered text lower-cased, each space a hyphen, and every character that
// is not a letter, digit, '-' or '_' dropped ("Live stream: `GET
// /telemetry/stream`" → "live-stream-get-telemetrystream").
func Slug(heading string) string {
	s := reLinkText.ReplaceAllString(heading, "$1")
	s = reTag.ReplaceAllString(s, "")
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.Is(unicode.Mn, r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// Example is a shell block of a document and how to run it.
type Example struct {
	Block
	// Skip is why the block is not run; "" means it runs.
	Skip string
	// Timeout, when set, ends the block after that long, which is then a
	// success (a command that never ends by itself).
	Timeout time.Duration
	// HTTPErrors is why the block's curl commands may get a 4xx or 5xx;
	// "" means such an answer fails the block.
	HTTPErrors string
}

// Commands is the shell text to run: the block as is, or for a console
// block its "$ " lines (with their continuation lines), prompts removed.
func (e Example) Commands() string {
	if e.Lang != "console" {
		return e.Text
	}
	var b strings.Builder
	cont := false
	for _, l := range strings.Split(e.Text, "\n") {
		switch {
		case cont:
		case strings.HasPrefix(l, "$ "):
			l = l[2:]
		default:
			continue
		}
		b.WriteString(l + "\n")
		cont = strings.HasSuffix(l, "\\")
	}
	return b.String()
}

// IsShell reports whether a block of this language is a shell example.
func IsShell(lang string) bool {
	return lang == "sh" || lang == "bash" || lang == "console"
}

var (
	reNotRun     = regexp.MustCompile(`^example:\s*not run \((.+)\)$`)
	reTimeout    = regexp.MustCompile(`^example:\s*run with timeout (\S+)$`)
	reHTTPErrors = regexp.MustCompile(`^example:\s*expects an HTTP error \((.+)\)$`)
)

// Examples returns the shell examples of doc in document order, with their
// markers applied. A malformed marker, or a marker on a block that is not a
// shell example, is an error naming its line.
func Examples(doc *Doc) ([]Example, error) {
	var out []Example
	for _, b := range doc.Blocks {
		marker := strings.HasPrefix(b.Comment, "example:")
		if !IsShell(b.Lang) {
			if marker {
				return nil, fmt.Errorf("%s:%d: marker %q on a ```%s block, which is never run", b.File, b.Line, b.Comment, b.Lang)
			}
			continue
		}
		e := Example{Block: b}
		if marker {
			if m := reNotRun.FindStringSubmatch(b.Comment); m != nil {
				e.Skip = m[1]
			} else if m := reTimeout.FindStringSubmatch(b.Comment); m != nil {
				d, err := time.ParseDuration(m[1])
				if err != nil || d <= 0 {
					return nil, fmt.Errorf("%s:%d: marker %q: want a positive Go duration such as 3s", b.File, b.Line, b.Comment)
				}
				e.Timeout = d
			} else if m := reHTTPErrors.FindStringSubmatch(b.Comment); m != nil {
				e.HTTPErrors = m[1]
			} else {
				return nil, fmt.Errorf("%s:%d: unknown marker %q; want \"example: not run (reason)\", "+
					"\"example: run with timeout 3s\" or \"example: expects an HTTP error (reason)\"", b.File, b.Line, b.Comment)
			}
		}
		out = append(out, e)
	}
	return out, nil
}

var reScheme = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*:`)

// CheckLinks checks every relative link of doc (a file under root): its
// path stays inside root and exists, and a fragment names an anchor of the
// Markdown file it points to. anchors returns a file's anchors (a path
// relative to root). Links with a scheme (https:, mailto:) are not checked.
func CheckLinks(root string, doc *Doc, anchors func(file string) (map[string]bool, error)) []error {
	var errs []error
	dir := filepath.Dir(doc.File)
	for _, l := range doc.Links {
		if reScheme.MatchString(l.Target) {
			continue
		}
		where := fmt.Sprintf("%s:%d: link %s", doc.File, l.Line, l.Target)
		path, frag, _ := strings.Cut(l.Target, "#")
		p, err := url.PathUnescape(path)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %v", where, err))
			continue
		}
		target := doc.File
		if p != "" {
			if filepath.IsAbs(p) {
				errs = append(errs, fmt.Errorf("%s: an absolute path; link relative to the file", where))
				continue
			}
			target = filepath.ToSlash(filepath.Join(dir, p))
			if target == ".." || strings.HasPrefix(target, "../") {
				errs = append(errs, fmt.Errorf("%s: outside the repository; a user's references must live in it", where))
				continue
			}
			if _, err := os.Stat(filepath.Join(root, target)); err != nil {
				errs = append(errs, fmt.Errorf("%s: %s does not exist", where, target))
				continue
			}
		}
		if frag == "" || !strings.HasSuffix(target, ".md") {
			continue
		}
		a := doc.Anchors
		if target != doc.File {
			if a, err = anchors(target); err != nil {
				errs = append(errs, fmt.Errorf("%s: %v", where, err))
				continue
			}
		}
		if !a[frag] {
			errs = append(errs, fmt.Errorf("%s: no heading in %s has the anchor #%s", where, target, frag))
		}
	}
	return errs
}
