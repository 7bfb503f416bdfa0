package nbd

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"
)

// rawClient speaks the protocol byte by byte to test the server's answers
// to what the Client never sends.
type rawClient struct {
	t    *testing.T
	conn net.Conn
}

func rawDial(t *testing.T, sock string, clientFlags uint32) *rawClient {
	t.Helper()
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	rc := &rawClient{t: t, conn: conn}
	hello := rc.read(18)
	if binary.BigEndian.Uint64(hello) != magicNBD || binary.BigEndian.Uint64(hello[8:]) != magicOpts ||
		binary.BigEndian.Uint16(hello[16:]) != flagFixedNewstyle|flagNoZeroes {
		t.Fatalf("greeting %x", hello)
	}
	rc.write(be32(clientFlags))
	return rc
}

func (rc *rawClient) read(n int) []byte {
	rc.t.Helper()
	b := make([]byte, n)
	if _, err := io.ReadFull(rc.conn, b); err != nil {
		rc.t.Fatalf("read %d bytes: %v", n, err)
	}
	return b
}

func (rc *rawClient) write(b []byte) {
	rc.t.Helper()
	if _, err := rc.conn.Write(b); err != nil {
		rc.t.Fatal(err)
	}
}

func (rc *rawClient) opt(opt uint32, data []byte) {
	rc.write(append(appendOptHeader(nil, opt, len(data)), data...))
}

// reply reads one option reply and checks its option number.
func (rc *rawClient) reply(opt uint32) (typ uint32, data []byte) {
	rc.t.Helper()
	h := rc.read(optReplyHdrLen)
	if binary.BigEndian.Uint64(h) != magicOptReply || binary.BigEndian.Uint32(h[8:]) != opt {
		rc.t.Fatalf("option reply header %x for option %d", h, opt)
	}
	return binary.BigEndian.Uint32(h[12:]), rc.read(int(binary.BigEndian.Uint32(h[16:])))
}

func (rc *rawClient) expect(opt, typ uint32) []byte {
	rc.t.Helper()
	got, data := rc.reply(opt)
	if got != typ {
		rc.t.Fatalf("option %d: reply type %#x (%q), want %#x", opt, got, data, typ)
	}
	return data
}

func (rc *rawClient) request(cmd, flags uint16, cookie, off uint64, length uint32, payload []byte) {
	var b [requestHeaderLen]byte
	reqHeader{flags: flags, cmd: cmd, cookie: cookie, off: off, length: length}.put(b[:])
	rc.write(append(b[:], payload...))
}

// simple reads a simple reply and returns its error number.
func (rc *rawClient) simple(cookie uint64) uint32 {
	rc.t.Helper()
	h := rc.read(simpleReplyLen)
	if binary.BigEndian.Uint32(h) != magicSimpleReply || binary.BigEndian.Uint64(h[8:]) != cookie {
		rc.t.Fatalf("simple reply %x, want cookie %d", h, cookie)
	}
	return binary.BigEndian.Uint32(h[4:])
}

type rawChunk struct {
	flags, typ uint16
	payload    []byte
}

// chunks reads structured chunks of one reply up to the DONE flag.
func (rc *rawClient) chunks(cookie uint64) []rawChunk {
	rc.t.Helper()
	var out []rawChunk
	for {
		h := rc.read(structHeaderLen)
		if binary.BigEndian.Uint32(h) != magicStructReply || binary.BigEndian.Uint64(h[8:]) != cookie {
			rc.t.Fatalf("chunk header %x, want cookie %d", h, cookie)
		}
		c := rawChunk{flags: binary.BigEndian.Uint16(h[4:]), typ: binary.BigEndian.Uint16(h[6:])}
		c.payload = rc.read(int(binary.BigEndian.Uint32(h[16:])))
		out = append(out, c)
		if c.flags&chunkDone != 0 {
			return out
		}
	}
}

func (rc *rawClient) errorCode(cookie uint64) uint32 {
	rc.t.Helper()
	cs := rc.chunks(cookie)
	if len(cs) != 1 || cs[0].typ != chunkError {
		rc.t.Fatalf("want one error chunk, got %+v", cs)
	}
	se, err := decodeErrorChunk(chunkError, cs[0].payload)
	if err != nil {
		rc.t.Fatal(err)
	}
	return se.Code
}

func TestServerNegotiationOptions(t *testing.T) {
	m := testExport()
	sock, _, _ := serveTest(t, map[string]Export{"vda": m, "vdb": m})
	rc := rawDial(t, sock, flagFixedNewstyle|flagNoZeroes)

	rc.opt(optList, nil)
	for _, want := range []string{"vda", "vdb"} {
		name, rest, err := string32(rc.expect(optList, repServer))
		if err != nil || name != want || string(rest) != "export "+want {
			t.Fatalf("list entry %q %q %v, want %s", name, rest, err, want)
		}
	}
	rc.expect(optList, repAck)
	rc.opt(optList, []byte{1})
	rc.expect(optList, repErrInvalid)
	rc.opt(99, nil)
	rc.expect(99, repErrUnsup)
	rc.opt(optStartTLS, nil)
	rc.expect(optStartTLS, repErrUnsup)
	rc.opt(optInfo, []byte{0, 0})
	rc.expect(optInfo, repErrInvalid)
	rc.opt(optInfo, appendInfoRequest(nil, "nope", nil))
	rc.expect(optInfo, repErrUnknown)
	// Meta contexts need structured replies; listing does not.
	rc.opt(optSetMetaContext, appendMetaRequest(nil, "vda", []string{"base:allocation"}))
	rc.expect(optSetMetaContext, repErrInvalid)
	rc.opt(optListMetaContext, appendMetaRequest(nil, "vda", []string{"base:"}))
	if d := rc.expect(optListMetaContext, repMetaContext); string(d[4:]) != "base:allocation" {
		t.Fatalf("listed context %q", d)
	}
	rc.expect(optListMetaContext, repAck)
	rc.opt(optListMetaContext, appendMetaRequest(nil, "vda", []string{"qemu:dirty-bitmap:x"}))
	rc.expect(optListMetaContext, repAck)

	rc.opt(optInfo, appendInfoRequest(nil, "vda", []uint16{infoName, infoDescription, infoBlockSize, 77}))
	var gotInfos []uint16
	for {
		typ, d := rc.reply(optInfo)
		if typ == repAck {
			break
		}
		if typ != repInfo {
			t.Fatalf("info reply type %#x", typ)
		}
		var info exportInfo
		switch it := binary.BigEndian.Uint16(d); it {
		case infoExport, infoBlockSize:
			if err := decodeInfo(d, &info); err != nil {
				t.Fatal(err)
			}
			if it == infoExport && (info.size != m.Size() || info.flags&tfReadOnly == 0 || info.flags&tfCanMultiConn == 0) {
				t.Fatalf("info export %+v", info)
			}
		case infoName:
			if string(d[2:]) != "vda" {
				t.Fatalf("info name %q", d[2:])
			}
		case infoDescription:
			if string(d[2:]) != "export vda" {
				t.Fatalf("info description %q", d[2:])
			}
		}
		gotInfos = append(gotInfos, binary.BigEndian.Uint16(d))
	}
	if len(gotInfos) != 4 {
		t.Fatalf("info types sent %v", gotInfos)
	}

	// Without structured replies the transmission uses simple replies.
	rc.opt(optGo, appendInfoRequest(nil, "vdb", nil))
	rc.expect(optGo, repInfo)
	rc.expect(optGo, repAck)
	rc.request(cmdRead, 0, 7, 0, 4096, nil)
	if e := rc.simple(7); e != 0 {
		t.Fatalf("read error %d", e)
	}
	if got := rc.read(4096); !bytes.Equal(got, m.data[:4096]) {
		t.Fatal("simple read differs")
	}
	rc.request(cmdBlockStatus, 0, 8, 0, 4096, nil)
	if e := rc.simple(8); e != errEINVAL {
		t.Fatalf("block status without contexts: error %d", e)
	}
	rc.request(cmdWrite, 0, 9, 0, 3, []byte("abc"))
	if e := rc.simple(9); e != errEPERM {
		t.Fatalf("write: error %d", e)
	}
	rc.request(cmdFlush, 0, 10, 0, 0, nil)
	if e := rc.simple(10); e != 0 {
		t.Fatalf("flush: error %d", e)
	}
	rc.request(cmdDisc, 0, 11, 0, 0, nil)
	if _, err := rc.conn.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("after disconnect: %v", err)
	}
}

func TestServerStructuredTransmission(t *testing.T) {
	m := testExport()
	sock, _, _ := serveTest(t, map[string]Export{"vda": m})
	rc := rawDial(t, sock, flagFixedNewstyle|flagNoZeroes)
	rc.opt(optStructuredRepl, nil)
	rc.expect(optStructuredRepl, repAck)
	rc.opt(optSetMetaContext, appendMetaRequest(nil, "vda", []string{"base:allocation", "qemu:allocation-depth"}))
	d := rc.expect(optSetMetaContext, repMetaContext)
	id := binary.BigEndian.Uint32(d)
	rc.expect(optSetMetaContext, repAck)
	rc.opt(optGo, appendInfoRequest(nil, "vda", nil))
	rc.expect(optGo, repInfo)
	rc.expect(optGo, repAck)

	// A read over data, a hole and data: data/hole/data chunks, done last.
	rc.request(cmdRead, 0, 1, 512<<10, 2<<20, nil)
	cs := rc.chunks(1)
	if len(cs) != 3 || cs[0].typ != chunkOffsetData || cs[1].typ != chunkOffsetHole || cs[2].typ != chunkOffsetData {
		t.Fatalf("chunks %+v", cs)
	}
	if !bytes.Equal(cs[0].payload[8:], m.data[512<<10:1<<20]) || !bytes.Equal(cs[2].payload[8:], m.data[2<<20:2<<20+512<<10]) {
		t.Fatal("data chunks differ")
	}
	if hole := cs[1].payload; binary.BigEndian.Uint64(hole) != 1<<20 || binary.BigEndian.Uint32(hole[8:]) != 1<<20 {
		t.Fatalf("hole chunk %x", hole)
	}
	// With DF: one data chunk, holes as zeros.
	rc.request(cmdRead, cmdFlagDF, 2, 512<<10, 2<<20, nil)
	cs = rc.chunks(2)
	if len(cs) != 1 || cs[0].typ != chunkOffsetData || !bytes.Equal(cs[0].payload[8:], m.data[512<<10:2<<20+512<<10]) {
		t.Fatalf("DF read: %d chunks", len(cs))
	}
	// Block status, whole and REQ_ONE.
	rc.request(cmdBlockStatus, 0, 3, 0, 5<<20, nil)
	cs = rc.chunks(3)
	gid, exts, err := decodeBlockStatus(cs[0].payload, 0)
	if err != nil || gid != id || len(exts) != 4 || exts[1] != (Extent{1 << 20, 1 << 20, StateHole | StateZero}) {
		t.Fatalf("block status %d %v %v", gid, exts, err)
	}
	rc.request(cmdBlockStatus, cmdFlagReqOne, 4, 0, 5<<20, nil)
	if _, exts, _ := decodeBlockStatus(rc.chunks(4)[0].payload, 0); len(exts) != 1 || exts[0].Length != 1<<20 {
		t.Fatalf("REQ_ONE block status %v", exts)
	}
	// Errors: beyond the end, zero length, too large, unknown flags and
	// commands, writes.
	for i, r := range []struct {
		cmd, flags uint16
		off        uint64
		length     uint32
		code       uint32
	}{
		{cmdRead, 0, uint64(m.Size()) - 10, 20, errEINVAL},
		{cmdRead, 0, 0, 0, errEINVAL},
		{cmdRead, 0, 0, maxServerBlock + 1, errEINVAL},
		{cmdRead, cmdFlagReqOne, 0, 10, errEINVAL},
		{cmdBlockStatus, 0, uint64(m.Size()), 1, errEINVAL},
	} {
		cookie := uint64(100 + i)
		rc.request(r.cmd, r.flags, cookie, r.off, r.length, nil)
		if got := rc.errorCode(cookie); got != r.code {
			t.Errorf("request %d: error %d, want %d", i, got, r.code)
		}
	}
	for i, r := range []struct {
		cmd  uint16
		code uint32
	}{{cmdTrim, errEPERM}, {cmdWriteZeroes, errEPERM}, {42, errEINVAL}} {
		cookie := uint64(200 + i)
		rc.request(r.cmd, 0, cookie, 0, 4096, nil)
		if got := rc.simple(cookie); got != r.code {
			t.Errorf("command %d: error %d, want %d", r.cmd, got, r.code)
		}
	}
	rc.request(cmdCache, 0, 300, 0, 1<<20, nil)
	if e := rc.simple(300); e != 0 {
		t.Fatalf("cache: error %d", e)
	}
	// Garbage closes the connection.
	rc.write(make([]byte, requestHeaderLen))
	if _, err := rc.conn.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("after garbage: %v", err)
	}
}

func TestServerExportNameFallback(t *testing.T) {
	m := testExport()
	sock, _, _ := serveTest(t, map[string]Export{"vda": m})
	for _, flags := range []uint32{flagFixedNewstyle, flagFixedNewstyle | flagNoZeroes} {
		rc := rawDial(t, sock, flags)
		rc.opt(optExportName, []byte("vda"))
		n := 10
		if flags&flagNoZeroes == 0 {
			n += 124
		}
		b := rc.read(n)
		if int64(binary.BigEndian.Uint64(b)) != m.Size() || binary.BigEndian.Uint16(b[8:])&tfReadOnly == 0 {
			t.Fatalf("export name reply %x", b[:10])
		}
		rc.request(cmdRead, 0, 1, 0, 16, nil)
		if e := rc.simple(1); e != 0 || !bytes.Equal(rc.read(16), m.data[:16]) {
			t.Fatal("read after NBD_OPT_EXPORT_NAME")
		}
	}
	// An unknown name makes the server hang up; so does a client without
	// fixed newstyle.
	rc := rawDial(t, sock, flagFixedNewstyle)
	rc.opt(optExportName, []byte("nope"))
	if _, err := rc.conn.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("unknown export: %v", err)
	}
	rc = rawDial(t, sock, 0)
	if _, err := rc.conn.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("client without fixed newstyle: %v", err)
	}
}
