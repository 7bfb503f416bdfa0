package nbd

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"
)

// Wire builders for a scripted server over net.Pipe. These speak the
// server half of the protocol only as far as the tests need.

func greeting() []byte {
	b := binary.BigEndian.AppendUint64(nil, magicNBD)
	b = binary.BigEndian.AppendUint64(b, magicOpts)
	return binary.BigEndian.AppendUint16(b, flagFixedNewstyle|flagNoZeroes)
}

func optReply(opt, typ uint32, data []byte) []byte {
	b := binary.BigEndian.AppendUint64(nil, magicOptReply)
	b = binary.BigEndian.AppendUint32(b, opt)
	b = binary.BigEndian.AppendUint32(b, typ)
	b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
	return append(b, data...)
}

func chunk(flags, typ uint16, cookie uint64, payload []byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, magicStructReply)
	b = binary.BigEndian.AppendUint16(b, flags)
	b = binary.BigEndian.AppendUint16(b, typ)
	b = binary.BigEndian.AppendUint64(b, cookie)
	b = binary.BigEndian.AppendUint32(b, uint32(len(payload)))
	return append(b, payload...)
}

func be64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }
func be32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// fakeSize is the export size the scripted handshake announces.
const fakeSize = 1 << 20

// handshakeScript answers STRUCTURED_REPLY, SET_META_CONTEXT (granting
// base:allocation as id 1) and GO (1 MiB export, all features, block
// sizes 1/4096/64K), in the order the client sends them.
func handshakeScript() []byte {
	export := cat(binary.BigEndian.AppendUint16(nil, infoExport), be64(fakeSize),
		binary.BigEndian.AppendUint16(nil, tfHasFlags|tfSendFlush|tfSendTrim|tfWriteZeroes))
	bs := cat(binary.BigEndian.AppendUint16(nil, infoBlockSize), be32(1), be32(4096), be32(64<<10))
	return cat(greeting(),
		optReply(optStructuredRepl, repAck, nil),
		optReply(optSetMetaContext, repMetaContext, cat(be32(1), []byte("base:allocation"))),
		optReply(optSetMetaContext, repAck, nil),
		optReply(optGo, repInfo, export), optReply(optGo, repInfo, bs), optReply(optGo, repAck, nil))
}

// fakeServer serves a handshake script, then for each request it reads
// writes the next reply segment. It returns the client end.
func fakeServer(t testing.TB, handshake []byte, replies [][]byte) net.Conn {
	cli, srv := net.Pipe()
	go func() {
		defer srv.Close()
		go func() {
			// Without requests to serve, hang up once the script is
			// read, so a client waiting for more fails at once.
			if _, err := srv.Write(handshake); err != nil || replies == nil {
				srv.Close()
			}
		}()
		// Read client option traffic until the GO/EXPORT_NAME option
		// has been sent; then serve requests.
		if err := skipOptions(srv); err != nil {
			return
		}
		for i, r := range replies {
			if i > 0 {
				// A client stuck on an incomplete reply sends nothing
				// more: hang up rather than let it wait.
				srv.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			}
			var h [requestHeaderLen]byte
			if _, err := io.ReadFull(srv, h[:]); err != nil {
				return
			}
			if binary.BigEndian.Uint16(h[6:]) == cmdWrite {
				io.CopyN(io.Discard, srv, int64(binary.BigEndian.Uint32(h[24:])))
			}
			if _, err := srv.Write(r); err != nil {
				return
			}
		}
		// All replies sent: hang up once the client goes quiet.
		srv.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		io.Copy(io.Discard, srv)
	}()
	return cli
}

// skipOptions consumes client flags and options up to NBD_OPT_GO.
func skipOptions(r io.Reader) error {
	var b [16]byte
	if _, err := io.ReadFull(r, b[:4]); err != nil {
		return err
	}
	for {
		if _, err := io.ReadFull(r, b[:16]); err != nil {
			return err
		}
		opt := binary.BigEndian.Uint32(b[8:])
		if _, err := io.CopyN(io.Discard, r, int64(binary.BigEndian.Uint32(b[12:]))); err != nil {
			return err
		}
		if opt == optGo || opt == optExportName {
			return nil
		}
	}
}

func fakeClient(t testing.TB, replies ...[]byte) *Client {
	t.Helper()
	conn := fakeServer(t, handshakeScript(), replies)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := NewClient(ctx, conn, Options{MaxInFlight: 1, MetaContexts: []string{"base:allocation"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestStructuredReadChunks(t *testing.T) {
	data := bytes.Repeat([]byte{0xab}, 100)
	c := fakeClient(t, cat(
		chunk(0, chunkOffsetData, 0, cat(be64(4196), data)),
		chunk(0, chunkOffsetHole, 0, cat(be64(4096), be32(100))),
		chunk(chunkDone, chunkOffsetHole, 0, cat(be64(4296), be32(3896))),
	))
	buf := bytes.Repeat([]byte{0xff}, 4096)
	if _, err := c.ReadAt(buf[:4096], 4096); err != nil {
		t.Fatal(err)
	}
	want := make([]byte, 4096)
	copy(want[100:], data)
	if !bytes.Equal(buf, want) {
		t.Fatal("holes not zero-filled or data misplaced")
	}
	if c.MetaContexts()[0] != "base:allocation" {
		t.Fatal(c.MetaContexts())
	}
}

func TestStructuredErrorAndShortCover(t *testing.T) {
	msg := []byte("disk on fire")
	c := fakeClient(t,
		cat(chunk(0, chunkErrorOffset, 0, cat(be32(5), binary.BigEndian.AppendUint16(nil, uint16(len(msg))), msg, be64(8192))),
			chunk(chunkDone, chunkNone, 0, nil)),
		chunk(chunkDone, chunkOffsetData, 1, cat(be64(0), make([]byte, 10))),
	)
	_, err := c.ReadAt(make([]byte, 4096), 8192)
	var se *ServerError
	if !errors.As(err, &se) || !errors.Is(err, syscall.EIO) || se.ErrOffset != 8192 || se.Message != string(msg) {
		t.Fatalf("got %v", err)
	}
	// Data covering only part of the request is a protocol error.
	if _, err := c.ReadAt(make([]byte, 4096), 0); !errors.Is(err, ErrProtocol) {
		t.Fatalf("short cover: %v", err)
	}
}

func TestBlockStatusClampAndOtherContexts(t *testing.T) {
	desc := func(l, f uint32) []byte { return cat(be32(l), be32(f)) }
	c := fakeClient(t, cat(
		chunk(0, chunkBlockStatus, 0, cat(be32(9), desc(4096, 0))), // context not asked for
		chunk(chunkDone, chunkBlockStatus, 0, cat(be32(1), desc(8192, 0), desc(1<<20, StateHole|StateZero))),
	))
	exts, err := c.BlockStatus(context.Background(), "base:allocation", 4096, 65536)
	if err != nil {
		t.Fatal(err)
	}
	want := []Extent{{4096, 8192, 0}, {12288, 65536 - 8192, 3}}
	sameExtents(t, exts, want)
}

// checkExtents asserts extents are contiguous from off and inside [off,end).
func checkExtents(t *testing.T, exts []Extent, off, end int64) {
	for _, e := range exts {
		if e.Offset != off || e.Length <= 0 || e.Offset+e.Length > end {
			t.Fatalf("bad extent %+v (expected start %d, end %d)", e, off, end)
		}
		off += e.Length
	}
}

func FuzzHandshake(f *testing.F) {
	f.Add(handshakeScript())
	f.Add(cat(greeting(), optReply(optStructuredRepl, repErrUnsup, nil), optReply(optGo, repErrUnsup, []byte("no")),
		be64(fakeSize), binary.BigEndian.AppendUint16(nil, 1)))
	f.Add(cat(greeting(), optReply(optStructuredRepl, repAck, nil), optReply(optSetMetaContext, repMetaContext, []byte{0, 0, 0})))
	f.Fuzz(func(t *testing.T, script []byte) {
		conn := fakeServer(t, script, nil)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		c, err := NewClient(ctx, conn, Options{MetaContexts: []string{"base:allocation"}})
		if err != nil {
			conn.Close()
			return
		}
		c.drain = 0
		defer c.Close()
		if c.Size() < 0 || c.chunk <= 0 {
			t.Fatalf("size %d chunk %d", c.Size(), c.chunk)
		}
		mn, _, mx := c.BlockSizes()
		if mn == 0 || mx < mn {
			t.Fatalf("block sizes %d %d", mn, mx)
		}
	})
}

// FuzzReplies feeds arbitrary reply streams to a read, a block status and
// a write; the client must not panic or hang and results must be sane.
func FuzzReplies(f *testing.F) {
	f.Add(cat(chunk(chunkDone, chunkOffsetData, 0, cat(be64(0), make([]byte, 512)))),
		cat(chunk(chunkDone, chunkBlockStatus, 1, cat(be32(1), be32(512), be32(3)))),
		cat(be32(magicSimpleReply), be32(0), be64(2)))
	f.Add(chunk(chunkDone, chunkOffsetHole, 0, cat(be64(0), be32(512))),
		chunk(chunkDone, chunkError, 1, cat(be32(22), []byte{0, 2}, []byte("no"))),
		cat(be32(magicSimpleReply), be32(28), be64(2)))
	f.Fuzz(func(t *testing.T, r1, r2, r3 []byte) {
		c := fakeClient(t, r1, r2, r3)
		c.drain = 0
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		buf := make([]byte, 512)
		if n, err := c.ReadAtContext(ctx, buf, 0); err == nil && n != 512 {
			t.Fatalf("read returned %d bytes without error", n)
		}
		if exts, err := c.BlockStatus(ctx, "base:allocation", 0, 4096); err == nil {
			if len(exts) == 0 {
				t.Fatal("block status succeeded with no extents")
			}
			checkExtents(t, exts, 0, 4096)
		}
		c.WriteAt(ctx, buf, 0)
	})
}

func FuzzDecodeBlockStatus(f *testing.F) {
	f.Add(cat(be32(1), be32(4096), be32(3)), int64(0))
	f.Fuzz(func(t *testing.T, p []byte, start int64) {
		if start < 0 || start > 1<<40 {
			return
		}
		_, exts, err := decodeBlockStatus(p, start)
		if err == nil {
			checkExtents(t, exts, start, start+int64(len(p))<<32)
		}
	})
}

func FuzzDecodeErrorChunk(f *testing.F) {
	f.Add(uint16(chunkErrorOffset), cat(be32(5), []byte{0, 1}, []byte("x"), be64(7)))
	f.Fuzz(func(t *testing.T, typ uint16, p []byte) {
		se, err := decodeErrorChunk(typ|chunkErrBit, p)
		if err == nil && (se.Code == 0 || len(se.Message) > len(p) || se.Error() == "") {
			t.Fatalf("bad decode %+v", se)
		}
	})
}

func TestExportNameFallback(t *testing.T) {
	script := cat(greeting(), optReply(optStructuredRepl, repErrUnsup, nil),
		optReply(optGo, repErrUnsup, nil), be64(12345<<9), binary.BigEndian.AppendUint16(nil, tfHasFlags|tfReadOnly))
	conn := fakeServer(t, script, nil)
	defer conn.Close()
	c, err := NewClient(context.Background(), conn, Options{MetaContexts: []string{"base:allocation"}})
	if err != nil {
		t.Fatal(err)
	}
	if c.Size() != 12345<<9 || !c.ReadOnly() || len(c.MetaContexts()) != 0 || c.info.structured {
		t.Fatalf("size %d ro %v contexts %v", c.Size(), c.ReadOnly(), c.MetaContexts())
	}
	if _, err := c.BlockStatus(context.Background(), "base:allocation", 0, 512); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("block status without structured replies: %v", err)
	}
}

func TestOptionErrorMessage(t *testing.T) {
	script := cat(greeting(), optReply(optStructuredRepl, repAck, nil),
		optReply(optGo, repErrBit+6, []byte("export 'vdz' not present")))
	conn := fakeServer(t, script, nil)
	defer conn.Close()
	_, err := NewClient(context.Background(), conn, Options{Export: "vdz"})
	if !errors.Is(err, ErrServer) || !bytes.Contains([]byte(err.Error()), []byte("not present")) {
		t.Fatalf("got %v", err)
	}
}
