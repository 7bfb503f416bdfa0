package nbd

import (
	"errors"
	"fmt"
	"syscall"
)

// Magic numbers and wire constants (doc/proto.md).
const (
	magicNBD          = 0x4e42444d41474943 // "NBDMAGIC"
	magicOpts         = 0x49484156454f5054 // "IHAVEOPT"
	magicOldstyle     = 0x0000420281861253
	magicOptReply     = 0x0003e889045565a9
	magicRequest      = 0x25609513
	magicSimpleReply  = 0x67446698
	magicStructReply  = 0x668e33ef
	magicExtendedRepl = 0x6e8a278c

	flagFixedNewstyle = 1 << 0 // handshake flags (server) and client flags
	flagNoZeroes      = 1 << 1

	optExportName      = 1
	optAbort           = 2
	optList            = 3
	optStartTLS        = 5
	optInfo            = 6
	optGo              = 7
	optStructuredRepl  = 8
	optListMetaContext = 9
	optSetMetaContext  = 10

	repAck          = 1
	repServer       = 2
	repInfo         = 3
	repMetaContext  = 4
	repErrBit       = 1 << 31
	repErrUnsup     = repErrBit + 1
	repErrPolicy    = repErrBit + 2
	repErrInvalid   = repErrBit + 3
	repErrTLSReqd   = repErrBit + 5
	repErrUnknown   = repErrBit + 6
	repErrShutdown  = repErrBit + 7
	repErrBlockSize = repErrBit + 8
	repErrTooBig    = repErrBit + 9

	infoExport      = 0
	infoName        = 1
	infoDescription = 2
	infoBlockSize   = 3

	// transmission flags
	tfHasFlags     = 1 << 0
	tfReadOnly     = 1 << 1
	tfSendFlush    = 1 << 2
	tfSendFUA      = 1 << 3
	tfSendTrim     = 1 << 5
	tfWriteZeroes  = 1 << 6
	tfSendDF       = 1 << 7
	tfCanMultiConn = 1 << 8
	tfSendCache    = 1 << 10

	cmdRead        = 0
	cmdWrite       = 1
	cmdDisc        = 2
	cmdFlush       = 3
	cmdTrim        = 4
	cmdCache       = 5
	cmdWriteZeroes = 6
	cmdBlockStatus = 7

	cmdFlagFUA    = 1 << 0
	cmdFlagNoHole = 1 << 1
	cmdFlagDF     = 1 << 2
	cmdFlagReqOne = 1 << 3

	chunkDone = 1 << 0

	chunkNone        = 0
	chunkOffsetData  = 1
	chunkOffsetHole  = 2
	chunkBlockStatus = 5
	chunkErrBit      = 1 << 15
	chunkError       = chunkErrBit + 1
	chunkErrorOffset = chunkErrBit + 2

	errEPERM     = 1
	errEIO       = 5
	errENOMEM    = 12
	errEINVAL    = 22
	errENOSPC    = 28
	errEOVERFLOW = 75
	errENOTSUP   = 95
	errESHUTDOWN = 108

	requestHeaderLen = 28
	simpleReplyLen   = 16
	structHeaderLen  = 20
	optReplyHdrLen   = 20

	// maxOptReply bounds an option reply payload the client will accept.
	maxOptReply = 1 << 20
	// maxStringLen is the protocol's bound on strings (names, messages).
	maxStringLen = 4096
	// defaultMaxBlock is the request payload limit used when the server
	// does not announce one (the specification's recommended default).
	defaultMaxBlock = 32 << 20
	// maxLenRequest bounds the length of a request without payload
	// (WRITE_ZEROES, TRIM, BLOCK_STATUS); the field is 32 bits.
	maxLenRequest = 1 << 30
)

// Extent states. base:allocation uses StateHole and StateZero; a
// qemu:dirty-bitmap context sets StateDirty on changed extents.
const (
	StateHole  = 1
	StateZero  = 2
	StateDirty = 1
)

// Extent is one run of bytes sharing the same status flags.
type Extent struct {
	Offset int64
	Length int64
	Flags  uint32
}

// Sentinel errors.
var (
	// ErrUnsupported: the server lacks a feature the call needs.
	ErrUnsupported = errors.New("nbd: unsupported by server")
	// ErrProtocol: the server sent something the protocol forbids.
	ErrProtocol = errors.New("nbd: protocol error")
	// ErrServer: the server answered a request with an error.
	ErrServer = errors.New("nbd: server error")
	// ErrClosed: the connection is closed or broken.
	ErrClosed = errors.New("nbd: connection closed")
)

// ServerError is an error reply to a request. It matches ErrServer and
// syscall.Errno(Code) (and ErrUnsupported for ENOTSUP) with errors.Is.
type ServerError struct {
	Op      string // "read", "write", "block status", ...
	Offset  int64
	Length  int64
	Code    uint32 // NBD error number (same values as Linux errno)
	Message string // optional human-readable text from the server
	// ErrOffset is the offset the server blamed (ERROR_OFFSET), or -1.
	ErrOffset int64
}

func (e *ServerError) Error() string {
	s := fmt.Sprintf("nbd: %s at offset %d length %d: server error %s (%d)",
		e.Op, e.Offset, e.Length, errName(e.Code), e.Code)
	if e.ErrOffset >= 0 {
		s += fmt.Sprintf(" at offset %d", e.ErrOffset)
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// Unwrap lets errors.Is match ErrServer and the errno.
func (e *ServerError) Unwrap() []error {
	errs := []error{ErrServer, syscall.Errno(e.Code)}
	if e.Code == errENOTSUP {
		errs = append(errs, ErrUnsupported)
	}
	return errs
}

func errName(code uint32) string {
	switch code {
	case 1:
		return "EPERM"
	case 5:
		return "EIO"
	case 12:
		return "ENOMEM"
	case 22:
		return "EINVAL"
	case 28:
		return "ENOSPC"
	case 75:
		return "EOVERFLOW"
	case 95:
		return "ENOTSUP"
	case 108:
		return "ESHUTDOWN"
	}
	return "E?"
}

func cmdName(cmd uint16) string {
	switch cmd {
	case cmdRead:
		return "read"
	case cmdWrite:
		return "write"
	case cmdFlush:
		return "flush"
	case cmdTrim:
		return "trim"
	case cmdWriteZeroes:
		return "write zeroes"
	case cmdBlockStatus:
		return "block status"
	case cmdCache:
		return "cache"
	case cmdDisc:
		return "disconnect"
	}
	return fmt.Sprintf("command %d", cmd)
}

func protoErr(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrProtocol}, args...)...)
}
