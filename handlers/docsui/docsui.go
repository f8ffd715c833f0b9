// Package docsui is the API's docs page (GET /docs): Swagger UI, vendored
// from the swagger-ui-dist npm package (version and update steps in
// README.md), with our own index.html, init.js and docs.css pointing it at
// /openapi.json. Every file is embedded in the binary and the page loads
// nothing from another origin, so it works with no internet access.
package docsui

import (
	"embed"
	"io/fs"
)

// SwaggerUIVersion is the swagger-ui-dist release vendored here.
const SwaggerUIVersion = "5.35.0"

// Index is the page's entry file.
const Index = "index.html"

//go:embed index.html init.js docs.css swagger-ui-bundle.js swagger-ui.css favicon-32x32.png favicon-16x16.png LICENSE NOTICE swagger-ui-bundle.js.LICENSE.txt
var files embed.FS

// FS returns the page's files, flat (no directories).
func FS() fs.FS { return files }
