// Package backends links every storage backend into a program. The CLI
// and the server import it for its side effect and open repositories
// with storage.Open; they name no backend themselves.
package backends

import (
	// Each backend registers its scheme in an init function.
	_ "github.com/kurabackup/kura/internal/storage/local"
	_ "github.com/kurabackup/kura/internal/storage/s3"
)
