package nbd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
)

// exportInfo is what negotiation learns about the export.
type exportInfo struct {
	size        int64
	flags       uint16
	structured  bool
	contexts    map[string]uint32 // negotiated meta context name -> id
	minBlock    uint32
	prefBlock   uint32
	maxBlock    uint32
	haveGoReply bool
}

// optError is an error reply to an option.
type optError struct {
	opt   uint32
	typ   uint32
	msg   string
	unsup bool
}

func (e *optError) Error() string {
	s := fmt.Sprintf("nbd: option %d refused by server (reply type %#x)", e.opt, e.typ)
	if e.msg != "" {
		s += ": " + e.msg
	}
	return s
}

func (e *optError) Unwrap() error {
	if e.unsup {
		return ErrUnsupported
	}
	return ErrServer
}

// negotiator runs the fixed newstyle handshake over rw.
type negotiator struct {
	rw       io.ReadWriter
	log      *slog.Logger
	noZeroes bool
}

func (n *negotiator) run(export string, metas []string) (*exportInfo, error) {
	var hdr [18]byte
	if _, err := io.ReadFull(n.rw, hdr[:16]); err != nil {
		return nil, fmt.Errorf("nbd: reading server greeting: %w", err)
	}
	if binary.BigEndian.Uint64(hdr[:8]) != magicNBD {
		return nil, protoErr("bad greeting magic %#x", binary.BigEndian.Uint64(hdr[:8]))
	}
	switch m := binary.BigEndian.Uint64(hdr[8:16]); m {
	case magicOpts:
	case magicOldstyle:
		return nil, fmt.Errorf("%w: oldstyle negotiation", ErrUnsupported)
	default:
		return nil, protoErr("bad negotiation magic %#x", m)
	}
	if _, err := io.ReadFull(n.rw, hdr[16:18]); err != nil {
		return nil, fmt.Errorf("nbd: reading handshake flags: %w", err)
	}
	hflags := binary.BigEndian.Uint16(hdr[16:18])
	if hflags&flagFixedNewstyle == 0 {
		return nil, fmt.Errorf("%w: server does not speak fixed newstyle negotiation", ErrUnsupported)
	}
	cflags := uint32(flagFixedNewstyle)
	if hflags&flagNoZeroes != 0 {
		cflags |= flagNoZeroes
		n.noZeroes = true
	}
	if err := binary.Write(n.rw, binary.BigEndian, cflags); err != nil {
		return nil, fmt.Errorf("nbd: sending client flags: %w", err)
	}

	info := &exportInfo{contexts: map[string]uint32{}}
	err := n.simpleOpt(optStructuredRepl, nil)
	var oe *optError
	switch {
	case err == nil:
		info.structured = true
	case errors.As(err, &oe):
		n.log.Debug("nbd: server refused structured replies", "err", err)
	default:
		return nil, err
	}
	if info.structured && len(metas) > 0 {
		if err := n.setMetaContexts(export, metas, info); err != nil {
			if !errors.As(err, &oe) {
				return nil, err
			}
			n.log.Warn("nbd: server refused meta contexts", "err", err)
		}
	}
	for _, m := range metas {
		if _, ok := info.contexts[m]; !ok {
			n.log.Warn("nbd: meta context not available", "context", m, "export", export)
		}
	}
	err = n.optGo(export, info)
	if errors.As(err, &oe) && oe.unsup {
		n.log.Debug("nbd: NBD_OPT_GO unsupported, using NBD_OPT_EXPORT_NAME")
		return info, n.exportName(export, info)
	}
	return info, err
}

func (n *negotiator) sendOpt(opt uint32, data []byte) error {
	buf := append(appendOptHeader(make([]byte, 0, 16+len(data)), opt, len(data)), data...)
	if _, err := n.rw.Write(buf); err != nil {
		return fmt.Errorf("nbd: sending option %d: %w", opt, err)
	}
	return nil
}

// readOptReply reads one option reply; error replies become *optError.
func (n *negotiator) readOptReply(opt uint32) (typ uint32, data []byte, err error) {
	var h [optReplyHdrLen]byte
	if _, err := io.ReadFull(n.rw, h[:]); err != nil {
		return 0, nil, fmt.Errorf("nbd: reading reply to option %d: %w", opt, err)
	}
	if m := binary.BigEndian.Uint64(h[0:]); m != magicOptReply {
		return 0, nil, protoErr("bad option reply magic %#x", m)
	}
	if o := binary.BigEndian.Uint32(h[8:]); o != opt {
		return 0, nil, protoErr("reply for option %d while waiting for %d", o, opt)
	}
	typ = binary.BigEndian.Uint32(h[12:])
	l := binary.BigEndian.Uint32(h[16:])
	if l > maxOptReply {
		return 0, nil, protoErr("option reply of %d bytes", l)
	}
	data = make([]byte, l)
	if _, err := io.ReadFull(n.rw, data); err != nil {
		return 0, nil, fmt.Errorf("nbd: reading reply to option %d: %w", opt, err)
	}
	if typ&repErrBit != 0 {
		msg := data
		if len(msg) > maxStringLen {
			msg = msg[:maxStringLen]
		}
		return typ, nil, &optError{opt: opt, typ: typ, msg: string(msg), unsup: typ == repErrUnsup}
	}
	return typ, data, nil
}

// simpleOpt sends an option whose only good answer is ACK.
func (n *negotiator) simpleOpt(opt uint32, data []byte) error {
	if err := n.sendOpt(opt, data); err != nil {
		return err
	}
	typ, _, err := n.readOptReply(opt)
	if err != nil {
		return err
	}
	if typ != repAck {
		return protoErr("reply type %d to option %d, want ACK", typ, opt)
	}
	return nil
}

func (n *negotiator) setMetaContexts(export string, metas []string, info *exportInfo) error {
	if err := n.sendOpt(optSetMetaContext, appendMetaRequest(nil, export, metas)); err != nil {
		return err
	}
	for {
		typ, d, err := n.readOptReply(optSetMetaContext)
		if err != nil {
			return err
		}
		switch typ {
		case repAck:
			return nil
		case repMetaContext:
			if len(d) < 4 || len(d) > 4+maxStringLen {
				return protoErr("meta context reply of %d bytes", len(d))
			}
			id, name := binary.BigEndian.Uint32(d), string(d[4:])
			if !contains(metas, name) {
				return protoErr("server selected meta context %q that was not asked for", name)
			}
			info.contexts[name] = id
		default:
			return protoErr("reply type %d to NBD_OPT_SET_META_CONTEXT", typ)
		}
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func (n *negotiator) optGo(export string, info *exportInfo) error {
	if err := n.sendOpt(optGo, appendInfoRequest(nil, export, []uint16{infoBlockSize})); err != nil {
		return err
	}
	for {
		typ, d, err := n.readOptReply(optGo)
		if err != nil {
			return err
		}
		switch typ {
		case repAck:
			if !info.haveGoReply {
				return protoErr("NBD_OPT_GO acknowledged without export information")
			}
			return checkBlockSizes(info)
		case repInfo:
			if err := decodeInfo(d, info); err != nil {
				return err
			}
		default:
			return protoErr("reply type %d to NBD_OPT_GO", typ)
		}
	}
}

// decodeInfo decodes one NBD_REP_INFO payload into info.
func decodeInfo(d []byte, info *exportInfo) error {
	if len(d) < 2 {
		return protoErr("short NBD_REP_INFO")
	}
	switch binary.BigEndian.Uint16(d) {
	case infoExport:
		if len(d) != 12 {
			return protoErr("NBD_INFO_EXPORT of %d bytes", len(d))
		}
		size := binary.BigEndian.Uint64(d[2:])
		if size > 1<<62 {
			return protoErr("export size %d too large", size)
		}
		info.size = int64(size)
		info.flags = binary.BigEndian.Uint16(d[10:])
		info.haveGoReply = true
	case infoBlockSize:
		if len(d) != 14 {
			return protoErr("NBD_INFO_BLOCK_SIZE of %d bytes", len(d))
		}
		info.minBlock = binary.BigEndian.Uint32(d[2:])
		info.prefBlock = binary.BigEndian.Uint32(d[6:])
		info.maxBlock = binary.BigEndian.Uint32(d[10:])
	}
	return nil
}

func isPow2(v uint32) bool { return v != 0 && v&(v-1) == 0 }

// checkBlockSizes validates announced block sizes and fills defaults.
func checkBlockSizes(info *exportInfo) error {
	if info.minBlock == 0 && info.prefBlock == 0 && info.maxBlock == 0 {
		info.minBlock, info.prefBlock, info.maxBlock = 1, 4096, defaultMaxBlock
		return nil
	}
	if !isPow2(info.minBlock) || info.minBlock > 64<<10 || !isPow2(info.prefBlock) ||
		info.prefBlock < info.minBlock || info.maxBlock < info.minBlock ||
		info.maxBlock%info.minBlock != 0 {
		return protoErr("invalid block sizes min %d preferred %d max %d",
			info.minBlock, info.prefBlock, info.maxBlock)
	}
	if info.maxBlock > 1<<30 {
		info.maxBlock = 1 << 30
	}
	return nil
}

func (n *negotiator) exportName(export string, info *exportInfo) error {
	if err := n.sendOpt(optExportName, []byte(export)); err != nil {
		return err
	}
	l := 10
	if !n.noZeroes {
		l += 124
	}
	buf := make([]byte, l)
	if _, err := io.ReadFull(n.rw, buf); err != nil {
		return fmt.Errorf("nbd: export %q refused (NBD_OPT_EXPORT_NAME): %w", export, err)
	}
	size := binary.BigEndian.Uint64(buf)
	if size > 1<<62 {
		return protoErr("export size %d too large", size)
	}
	info.size = int64(size)
	info.flags = binary.BigEndian.Uint16(buf[8:])
	info.haveGoReply = true
	return checkBlockSizes(info)
}
