package nbd

import (
	"encoding/binary"
	"errors"
)

// Wire formats spoken by both the client and the server. Each message has
// one encoder and one decoder here, so the two halves cannot disagree.

// reqHeader is a transmission request header (28 bytes, without payload).
type reqHeader struct {
	flags  uint16
	cmd    uint16
	cookie uint64
	off    uint64
	length uint32
}

func (h reqHeader) put(b []byte) {
	binary.BigEndian.PutUint32(b[0:], magicRequest)
	binary.BigEndian.PutUint16(b[4:], h.flags)
	binary.BigEndian.PutUint16(b[6:], h.cmd)
	binary.BigEndian.PutUint64(b[8:], h.cookie)
	binary.BigEndian.PutUint64(b[16:], h.off)
	binary.BigEndian.PutUint32(b[24:], h.length)
}

// errBadRequestMagic: the 28 bytes read are not a request header.
var errBadRequestMagic = errors.New("bad request magic")

func decodeReqHeader(b []byte) (reqHeader, error) {
	if len(b) < requestHeaderLen || binary.BigEndian.Uint32(b) != magicRequest {
		return reqHeader{}, errBadRequestMagic
	}
	return reqHeader{
		flags:  binary.BigEndian.Uint16(b[4:]),
		cmd:    binary.BigEndian.Uint16(b[6:]),
		cookie: binary.BigEndian.Uint64(b[8:]),
		off:    binary.BigEndian.Uint64(b[16:]),
		length: binary.BigEndian.Uint32(b[24:]),
	}, nil
}

// appendOptHeader appends a client option header (magic, option, length).
func appendOptHeader(b []byte, opt uint32, length int) []byte {
	b = binary.BigEndian.AppendUint64(b, magicOpts)
	b = binary.BigEndian.AppendUint32(b, opt)
	return binary.BigEndian.AppendUint32(b, uint32(length))
}

// appendOptReply appends a server option reply.
func appendOptReply(b []byte, opt, typ uint32, data []byte) []byte {
	b = binary.BigEndian.AppendUint64(b, magicOptReply)
	b = binary.BigEndian.AppendUint32(b, opt)
	b = binary.BigEndian.AppendUint32(b, typ)
	b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
	return append(b, data...)
}

func putString32(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

// errMalformed: an option payload does not have the layout its option
// requires.
var errMalformed = errors.New("malformed option data")

// string32 reads a length-prefixed string of at most maxStringLen bytes.
func string32(d []byte) (string, []byte, error) {
	if len(d) < 4 {
		return "", nil, errMalformed
	}
	n := binary.BigEndian.Uint32(d)
	if n > maxStringLen || uint64(n) > uint64(len(d)-4) {
		return "", nil, errMalformed
	}
	return string(d[4 : 4+n]), d[4+n:], nil
}

// appendInfoRequest encodes the data of NBD_OPT_INFO / NBD_OPT_GO: the
// export name and the information types asked for.
func appendInfoRequest(b []byte, export string, infos []uint16) []byte {
	b = putString32(b, export)
	b = binary.BigEndian.AppendUint16(b, uint16(len(infos)))
	for _, i := range infos {
		b = binary.BigEndian.AppendUint16(b, i)
	}
	return b
}

func decodeInfoRequest(d []byte) (export string, infos []uint16, err error) {
	export, d, err = string32(d)
	if err != nil {
		return "", nil, err
	}
	if len(d) < 2 {
		return "", nil, errMalformed
	}
	n := int(binary.BigEndian.Uint16(d))
	d = d[2:]
	if len(d) != 2*n {
		return "", nil, errMalformed
	}
	for i := 0; i < n; i++ {
		infos = append(infos, binary.BigEndian.Uint16(d[2*i:]))
	}
	return export, infos, nil
}

// appendMetaRequest encodes the data of NBD_OPT_SET_META_CONTEXT and
// NBD_OPT_LIST_META_CONTEXT: the export name and the queries.
func appendMetaRequest(b []byte, export string, queries []string) []byte {
	b = putString32(b, export)
	b = binary.BigEndian.AppendUint32(b, uint32(len(queries)))
	for _, q := range queries {
		b = putString32(b, q)
	}
	return b
}

func decodeMetaRequest(d []byte) (export string, queries []string, err error) {
	export, d, err = string32(d)
	if err != nil {
		return "", nil, err
	}
	if len(d) < 4 {
		return "", nil, errMalformed
	}
	n := binary.BigEndian.Uint32(d)
	d = d[4:]
	if uint64(n) > uint64(len(d))/4 {
		return "", nil, errMalformed
	}
	for i := uint32(0); i < n; i++ {
		var q string
		if q, d, err = string32(d); err != nil {
			return "", nil, err
		}
		queries = append(queries, q)
	}
	if len(d) != 0 {
		return "", nil, errMalformed
	}
	return export, queries, nil
}

// appendInfoExport encodes an NBD_INFO_EXPORT reply payload.
func appendInfoExport(b []byte, size uint64, flags uint16) []byte {
	b = binary.BigEndian.AppendUint16(b, infoExport)
	b = binary.BigEndian.AppendUint64(b, size)
	return binary.BigEndian.AppendUint16(b, flags)
}

// appendInfoBlockSize encodes an NBD_INFO_BLOCK_SIZE reply payload.
func appendInfoBlockSize(b []byte, minimum, preferred, maximum uint32) []byte {
	b = binary.BigEndian.AppendUint16(b, infoBlockSize)
	b = binary.BigEndian.AppendUint32(b, minimum)
	b = binary.BigEndian.AppendUint32(b, preferred)
	return binary.BigEndian.AppendUint32(b, maximum)
}

// appendSimpleReply appends a simple reply header.
func appendSimpleReply(b []byte, errno uint32, cookie uint64) []byte {
	b = binary.BigEndian.AppendUint32(b, magicSimpleReply)
	b = binary.BigEndian.AppendUint32(b, errno)
	return binary.BigEndian.AppendUint64(b, cookie)
}

// appendChunkHeader appends a structured reply chunk header.
func appendChunkHeader(b []byte, flags, typ uint16, cookie uint64, length uint32) []byte {
	b = binary.BigEndian.AppendUint32(b, magicStructReply)
	b = binary.BigEndian.AppendUint16(b, flags)
	b = binary.BigEndian.AppendUint16(b, typ)
	b = binary.BigEndian.AppendUint64(b, cookie)
	return binary.BigEndian.AppendUint32(b, length)
}

// appendBlockStatus encodes a BLOCK_STATUS chunk payload: the context id
// then one (length, flags) descriptor per extent.
func appendBlockStatus(b []byte, id uint32, exts []Extent) []byte {
	b = binary.BigEndian.AppendUint32(b, id)
	for _, e := range exts {
		b = binary.BigEndian.AppendUint32(b, uint32(e.Length))
		b = binary.BigEndian.AppendUint32(b, e.Flags)
	}
	return b
}

// appendErrorChunk encodes an NBD_REPLY_TYPE_ERROR payload.
func appendErrorChunk(b []byte, code uint32, msg string) []byte {
	if len(msg) > maxStringLen {
		msg = msg[:maxStringLen]
	}
	b = binary.BigEndian.AppendUint32(b, code)
	b = binary.BigEndian.AppendUint16(b, uint16(len(msg)))
	return append(b, msg...)
}

func appendU64(b []byte, v uint64) []byte { return binary.BigEndian.AppendUint64(b, v) }
func appendU32(b []byte, v uint32) []byte { return binary.BigEndian.AppendUint32(b, v) }
