// Package nbd is a client and a read-only server for the Network Block
// Device protocol, written from the protocol specification
// (NetworkBlockDevice/nbd doc/proto.md). Both halves share the wire code
// (wire.go): one encoder and one decoder per message.
//
// Client concepts:
//
//   - Handshake: only the fixed newstyle negotiation is spoken. The client
//     asks for structured replies (NBD_OPT_STRUCTURED_REPLY), selects meta
//     contexts (NBD_OPT_SET_META_CONTEXT, e.g. "base:allocation" or
//     "qemu:dirty-bitmap:backup-vda") and enters transmission with
//     NBD_OPT_GO, asking for the export's block size constraints. Servers
//     that do not know NBD_OPT_GO get NBD_OPT_EXPORT_NAME instead.
//   - Transmission: every request carries a cookie. One reader goroutine
//     per connection decodes replies (simple or structured chunks) and hands
//     them to the waiting request, so many requests can be in flight at
//     once (Options.MaxInFlight). Read payloads are decoded straight into
//     the caller's buffer; OFFSET_HOLE chunks fill zeros.
//   - Block status: BlockStatus sends one NBD_CMD_BLOCK_STATUS and returns
//     the extents of one negotiated meta context; Map walks the whole export
//     and merges neighbouring extents with equal flags. For
//     base:allocation the flags are StateHole|StateZero; for a qemu dirty
//     bitmap StateDirty marks changed extents.
//   - Errors: errors returned by the server are *ServerError values that
//     match ErrServer and the corresponding syscall.Errno with errors.Is
//     (the protocol's error numbers are the Linux errno values). Malformed
//     server traffic is ErrProtocol; a missing server feature is
//     ErrUnsupported. Once the connection breaks every pending and future
//     request fails with an error matching ErrClosed.
//
// A Client is safe for concurrent use; ReadAt makes it an io.ReaderAt.
//
// Server concepts: a Server serves Exports (size, ReadAt, base:allocation)
// to any number of connections: fixed newstyle negotiation (LIST, INFO,
// GO, structured replies, meta contexts), READ answered with data and
// hole chunks (zero ranges are never read), BLOCK_STATUS, CACHE as a
// prefetch hint; writes are refused. Serve stops by closing connections
// (never with ESHUTDOWN), so clients that reconnect, like QEMU, carry on
// with a server started again on the same socket.
package nbd
