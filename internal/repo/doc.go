// Package repo implements kura's repository: content-addressed storage of
// VM disk images on a storage.Backend.
//
// Concepts:
//
//   - A disk image is cut into fixed-size chunks aligned to disk offsets
//     (Config.ChunkSize, 4 MiB by default). A chunk is named by its digest,
//     HMAC-SHA256 under the repository MAC key (plain SHA-256 when the
//     repository is unencrypted), so identical data is stored once.
//     All-zero chunks are never stored.
//   - Every stored object other than config, keys, locks and gc markers is
//     an envelope: a 12-byte header, then the zstd-compressed (when it pays)
//     payload sealed with AES-256-GCM, or followed by a CRC32C when the
//     repository is unencrypted.
//   - An Index lists the digests of one disk of one recovery point.
//   - A Manifest describes a recovery point (VM, config, disks, times,
//     stats). Writing it is the commit: chunks, then indexes, then the
//     manifest, each with an atomic Put, so a crash leaves only
//     unreferenced objects that GC removes.
//   - Every point is logically full: an incremental backup reads only
//     changed windows and copies the parent's digests for the rest.
//     Deleting a point removes only its manifest.
//   - GC marks what manifests reference and sweeps the rest, coordinating
//     with running Writers through locks and gc markers.
//
// The byte-level format is specified in docs/design/repository-format.md.
package repo
