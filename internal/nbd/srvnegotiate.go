package nbd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
)

// The server half of the fixed newstyle negotiation.

const (
	// maxOptLen bounds the option data the server reads; longer options
	// are discarded and refused with NBD_REP_ERR_TOO_BIG.
	maxOptLen = 64 << 10
	// maxOptDiscard bounds what the server discards before hanging up.
	maxOptDiscard = 16 << 20
)

// errNegotiationEnded: the client aborted or the server hung up.
var errNegotiationEnded = errors.New("negotiation ended")

// negotiated is what a connection agreed on.
type negotiated struct {
	export     *srvExport
	structured bool
	metaID     uint32 // 0 when base:allocation was not selected
	noZeroes   bool
}

// srvNegotiator runs the server side of the handshake over rw.
type srvNegotiator struct {
	s  *Server
	rw io.ReadWriter
	n  negotiated
	// metaExport is the export the meta context selection was made for.
	metaExport string
	metaSet    bool
}

// transmissionFlags are the flags every (read-only) export announces.
const transmissionFlags = tfHasFlags | tfReadOnly | tfSendFlush | tfSendDF | tfCanMultiConn | tfSendCache

func (g *srvNegotiator) run() (*negotiated, error) {
	hello := binary.BigEndian.AppendUint64(nil, magicNBD)
	hello = binary.BigEndian.AppendUint64(hello, magicOpts)
	hello = binary.BigEndian.AppendUint16(hello, flagFixedNewstyle|flagNoZeroes)
	if _, err := g.rw.Write(hello); err != nil {
		return nil, err
	}
	var cf [4]byte
	if _, err := io.ReadFull(g.rw, cf[:]); err != nil {
		return nil, err
	}
	flags := binary.BigEndian.Uint32(cf[:])
	if flags&flagFixedNewstyle == 0 || flags&^uint32(flagFixedNewstyle|flagNoZeroes) != 0 {
		return nil, fmt.Errorf("client flags %#x: only fixed newstyle negotiation is served", flags)
	}
	g.n.noZeroes = flags&flagNoZeroes != 0
	for {
		var h [16]byte
		if _, err := io.ReadFull(g.rw, h[:]); err != nil {
			return nil, err
		}
		if m := binary.BigEndian.Uint64(h[:]); m != magicOpts {
			return nil, fmt.Errorf("bad option magic %#x", m)
		}
		opt, l := binary.BigEndian.Uint32(h[8:]), binary.BigEndian.Uint32(h[12:])
		if l > maxOptLen {
			if l > maxOptDiscard || opt == optExportName {
				return nil, fmt.Errorf("option %d with %d bytes of data", opt, l)
			}
			if _, err := io.CopyN(io.Discard, g.rw, int64(l)); err != nil {
				return nil, err
			}
			if err := g.reply(opt, repErrTooBig, []byte("option data too large")); err != nil {
				return nil, err
			}
			continue
		}
		data := make([]byte, l)
		if _, err := io.ReadFull(g.rw, data); err != nil {
			return nil, err
		}
		done, err := g.option(opt, data)
		if err != nil || done {
			return &g.n, err
		}
	}
}

func (g *srvNegotiator) reply(opt, typ uint32, data []byte) error {
	_, err := g.rw.Write(appendOptReply(nil, opt, typ, data))
	return err
}

func (g *srvNegotiator) refuse(opt, typ uint32, format string, args ...any) error {
	return g.reply(opt, typ, []byte(fmt.Sprintf(format, args...)))
}

// option handles one option; done means transmission starts.
func (g *srvNegotiator) option(opt uint32, data []byte) (done bool, err error) {
	switch opt {
	case optExportName:
		x := g.s.lookup(string(data))
		if x == nil {
			return false, fmt.Errorf("unknown export %q (NBD_OPT_EXPORT_NAME)", data)
		}
		g.n.export = x
		g.selectFor(x.name)
		b := binary.BigEndian.AppendUint64(nil, uint64(x.e.Size()))
		b = binary.BigEndian.AppendUint16(b, transmissionFlags)
		if !g.n.noZeroes {
			b = append(b, make([]byte, 124)...)
		}
		_, err := g.rw.Write(b)
		return err == nil, err
	case optAbort:
		_ = g.reply(opt, repAck, nil)
		return false, errNegotiationEnded
	case optList:
		if len(data) != 0 {
			return false, g.refuse(opt, repErrInvalid, "NBD_OPT_LIST takes no data")
		}
		for _, x := range g.s.exportNames() {
			if err := g.reply(opt, repServer, append(putString32(nil, x.name), x.desc...)); err != nil {
				return false, err
			}
		}
		return false, g.reply(opt, repAck, nil)
	case optInfo, optGo:
		return g.info(opt, data)
	case optStructuredRepl:
		if len(data) != 0 {
			return false, g.refuse(opt, repErrInvalid, "NBD_OPT_STRUCTURED_REPLY takes no data")
		}
		g.n.structured = true
		return false, g.reply(opt, repAck, nil)
	case optListMetaContext, optSetMetaContext:
		return false, g.meta(opt, data)
	case optStartTLS:
		return false, g.refuse(opt, repErrUnsup, "TLS is not supported")
	}
	return false, g.refuse(opt, repErrUnsup, "option %d not supported", opt)
}

func (g *srvNegotiator) info(opt uint32, data []byte) (bool, error) {
	name, infos, err := decodeInfoRequest(data)
	if err != nil {
		return false, g.refuse(opt, repErrInvalid, "malformed NBD_OPT_INFO/GO data")
	}
	x := g.s.lookup(name)
	if x == nil {
		return false, g.refuse(opt, repErrUnknown, "export %q not found", name)
	}
	if err := g.reply(opt, repInfo, appendInfoExport(nil, uint64(x.e.Size()), transmissionFlags)); err != nil {
		return false, err
	}
	sent := map[uint16]bool{}
	for _, i := range infos {
		if sent[i] {
			continue
		}
		sent[i] = true
		var p []byte
		switch i {
		case infoName:
			p = append(binary.BigEndian.AppendUint16(nil, infoName), x.name...)
		case infoDescription:
			p = append(binary.BigEndian.AppendUint16(nil, infoDescription), x.desc...)
		case infoBlockSize:
			p = appendInfoBlockSize(nil, 1, 4096, maxServerBlock)
		default:
			continue
		}
		if err := g.reply(opt, repInfo, p); err != nil {
			return false, err
		}
	}
	if err := g.reply(opt, repAck, nil); err != nil {
		return false, err
	}
	if opt == optGo {
		g.n.export = x
		g.selectFor(x.name)
		return true, nil
	}
	return false, nil
}

// selectFor drops a meta context selection made for another export.
func (g *srvNegotiator) selectFor(name string) {
	if !g.metaSet || g.metaExport != name {
		g.n.metaID = 0
	}
}

func (g *srvNegotiator) meta(opt uint32, data []byte) error {
	name, queries, err := decodeMetaRequest(data)
	if err != nil {
		return g.refuse(opt, repErrInvalid, "malformed meta context request")
	}
	if opt == optSetMetaContext && !g.n.structured {
		return g.refuse(opt, repErrInvalid, "NBD_OPT_SET_META_CONTEXT needs structured replies first")
	}
	if g.s.lookup(name) == nil {
		return g.refuse(opt, repErrUnknown, "export %q not found", name)
	}
	match := false
	for _, q := range queries {
		if matchContext(q, opt == optListMetaContext) {
			match = true
		}
	}
	if opt == optListMetaContext && len(queries) == 0 {
		match = true
	}
	if opt == optSetMetaContext {
		g.metaSet, g.metaExport, g.n.metaID = true, name, 0
		if match {
			g.n.metaID = baseAllocationID
		}
	}
	if match {
		if err := g.reply(opt, repMetaContext, append(binary.BigEndian.AppendUint32(nil, baseAllocationID), "base:allocation"...)); err != nil {
			return err
		}
	}
	return g.reply(opt, repAck, nil)
}

// matchContext reports whether query selects base:allocation; listing
// also accepts the bare namespace "base:".
func matchContext(q string, list bool) bool {
	if q == "base:allocation" {
		return true
	}
	return list && strings.EqualFold(q, "base:")
}
