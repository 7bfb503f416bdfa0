package nbd

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"
)

// fuzzSession is what a well-behaved client sends: negotiation with
// structured replies and base:allocation, then a read, a block status, a
// write and a disconnect.
func fuzzSession() []byte {
	b := be32(flagFixedNewstyle | flagNoZeroes)
	b = appendOptHeader(b, optStructuredRepl, 0)
	meta := appendMetaRequest(nil, "", []string{"base:allocation"})
	b = append(appendOptHeader(b, optSetMetaContext, len(meta)), meta...)
	info := appendInfoRequest(nil, "", []uint16{infoBlockSize})
	b = append(appendOptHeader(b, optGo, len(info)), info...)
	var h [requestHeaderLen]byte
	for i, r := range []reqHeader{{cmd: cmdRead, length: 4096}, {cmd: cmdBlockStatus, off: 1 << 20, length: 8 << 20},
		{cmd: cmdWrite, length: 4}, {cmd: cmdDisc}} {
		r.cookie = uint64(i)
		r.put(h[:])
		b = append(b, h[:]...)
		if r.cmd == cmdWrite {
			b = append(b, "abcd"...)
		}
	}
	return b
}

// FuzzServerSession feeds arbitrary client traffic to a server connection:
// it must neither panic nor hang, and every reply it writes must be
// well-formed.
func FuzzServerSession(f *testing.F) {
	f.Add(fuzzSession())
	f.Add(be32(flagFixedNewstyle))
	f.Add(append(be32(flagFixedNewstyle), appendOptHeader(nil, optExportName, 0)...))
	lst := append(be32(flagFixedNewstyle), appendOptHeader(nil, optList, 0)...)
	f.Add(append(lst, appendOptHeader(nil, optInfo, 3)...))
	m := newMemExport(16<<20, 1<<20, func(i int64) bool { return i%2 == 0 })
	srv := NewServer(ServerOptions{BufferBytes: 64 << 20})
	if err := srv.AddExport("", "", m); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cli, sconn := net.Pipe()
		c := &srvConn{s: srv, conn: sconn, sem: make(chan struct{}, 4), hard: context.Background()}
		done := make(chan struct{})
		go func() { c.run(context.Background()); close(done) }()
		out := make(chan []byte)
		go func() {
			b, _ := io.ReadAll(cli)
			out <- b
		}()
		go func() {
			_ = cli.SetWriteDeadline(time.Now().Add(5 * time.Second))
			_, _ = cli.Write(data)
			// Give the server time to answer what it got, then hang up.
			time.Sleep(time.Millisecond)
			cli.Close()
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("server connection did not end")
		}
		b := <-out
		if len(b) < 18 || binary.BigEndian.Uint64(b) != magicNBD {
			t.Fatalf("server output does not start with the greeting: %x", b[:min(len(b), 18)])
		}
	})
}

// FuzzCheckRequest checks that every accepted request lies inside the
// export and respects the limits.
func FuzzCheckRequest(f *testing.F) {
	f.Add(uint16(0), uint16(cmdRead), uint64(0), uint32(4096), int64(1<<20), true, true)
	f.Add(uint16(cmdFlagReqOne), uint16(cmdBlockStatus), uint64(1<<20), uint32(1<<30), int64(1<<40), true, true)
	f.Add(uint16(0), uint16(cmdCache), uint64(0), uint32(0), int64(0), false, false)
	f.Fuzz(func(t *testing.T, flags, cmd uint16, off uint64, length uint32, size int64, structured, meta bool) {
		if size < 0 {
			return
		}
		h := reqHeader{flags: flags, cmd: cmd, off: off, length: length}
		if e := checkRequest(h, size, structured, meta); e == nil {
			if _, ok := cmdFlags[cmd]; !ok || cmd == cmdWrite || cmd == cmdTrim || cmd == cmdWriteZeroes {
				t.Fatalf("accepted command %d", cmd)
			}
			if cmd != cmdFlush && (off > uint64(size) || off+uint64(length) > uint64(size)) {
				t.Fatalf("accepted %+v beyond size %d", h, size)
			}
			if cmd == cmdRead && (length == 0 || length > maxServerBlock) {
				t.Fatalf("accepted read of %d bytes", length)
			}
			if cmd == cmdBlockStatus && (!structured || !meta) {
				t.Fatal("accepted block status without a context")
			}
		} else if e.code == 0 || e.msg == "" {
			t.Fatalf("error without code or message: %+v", e)
		}
	})
}

// FuzzOptionData checks the option data decoders: anything decoded
// re-encodes to the same bytes.
func FuzzOptionData(f *testing.F) {
	f.Add(appendInfoRequest(nil, "vda", []uint16{infoBlockSize, infoName}))
	f.Add(appendMetaRequest(nil, "vda", []string{"base:allocation", "qemu:"}))
	f.Add([]byte{0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, d []byte) {
		if name, infos, err := decodeInfoRequest(d); err == nil {
			if got := appendInfoRequest(nil, name, infos); !bytes.Equal(got, d) {
				t.Fatalf("info request %x re-encodes as %x", d, got)
			}
		}
		if name, qs, err := decodeMetaRequest(d); err == nil {
			if got := appendMetaRequest(nil, name, qs); !bytes.Equal(got, d) {
				t.Fatalf("meta request %x re-encodes as %x", d, got)
			}
		}
		if h, err := decodeReqHeader(d); err == nil {
			var b [requestHeaderLen]byte
			h.put(b[:])
			if !bytes.Equal(b[:], d[:requestHeaderLen]) {
				t.Fatalf("request header %x re-encodes as %x", d[:requestHeaderLen], b)
			}
		}
	})
}
