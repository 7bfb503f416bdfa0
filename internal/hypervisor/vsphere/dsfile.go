package vsphere

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path"
	"strconv"
	"strings"
	"sync"

	"github.com/vmware/govmomi/fault"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/kurabackup/kura/internal/vmdk"
)

// dsPath is a parsed datastore path "[datastore] dir/file.vmdk".
type dsPath struct{ ds, rel string }

func parseDSPath(p string) (dsPath, error) {
	var dp object.DatastorePath
	if !dp.FromString(p) || dp.Datastore == "" || strings.Contains(dp.Path, "..") {
		return dsPath{}, fmt.Errorf("%q is not a datastore path like \"[datastore1] vm/vm.vmdk\"", p)
	}
	return dsPath{dp.Datastore, strings.TrimPrefix(path.Clean("/"+dp.Path), "/")}, nil
}

func (p dsPath) String() string {
	return (&object.DatastorePath{Datastore: p.ds, Path: p.rel}).String()
}

// sibling is the path of name in the same directory.
func (p dsPath) sibling(name string) dsPath {
	return dsPath{p.ds, path.Join(path.Dir(p.rel), name)}
}

// dsFile reads a datastore file by HTTP range requests on the /folder
// URL; it is a vmdk.File. Reads may run concurrently.
type dsFile struct {
	ctx  context.Context
	c    *Connector
	p    dsPath
	once sync.Once
	size int64
	err  error
}

// openFile opens a datastore file for reading; ctx bounds every read.
func (c *Connector) openFile(ctx context.Context, p dsPath) (*dsFile, error) {
	f := &dsFile{ctx: ctx, c: c, p: p}
	if _, err := f.probe(); err != nil {
		return nil, err
	}
	return f, nil
}

// get requests bytes [off, off+n) of the file's /folder URL (a plain
// range request with the session's cookie).
func (f *dsFile) get(off, n int64) (*http.Response, error) {
	ds, err := f.c.datastore(f.ctx, f.p.ds)
	if err != nil {
		return nil, err
	}
	res, err := f.c.vc.Client.DownloadRequest(f.ctx, ds.NewURL(f.p.rel),
		&soap.Download{Method: http.MethodGet, Headers: map[string]string{"Range": fmt.Sprintf("bytes=%d-%d", off, off+n-1)}})
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", f.p, err)
	}
	return res, nil
}

// probe learns the file's size from the first byte's Content-Range.
func (f *dsFile) probe() (int64, error) {
	f.once.Do(func() {
		res, err := f.get(0, 1)
		if err != nil {
			f.err = err
			return
		}
		defer res.Body.Close()
		switch res.StatusCode {
		case http.StatusPartialContent:
			cr := res.Header.Get("Content-Range")
			_, total, ok := strings.Cut(cr, "/")
			if f.size, err = strconv.ParseInt(total, 10, 64); !ok || err != nil {
				f.err = fmt.Errorf("read %s: no size in Content-Range %q", f.p, cr)
			}
		case http.StatusOK:
			f.size = res.ContentLength
		case http.StatusRequestedRangeNotSatisfiable:
			f.size = 0
		case http.StatusNotFound:
			f.err = fmt.Errorf("read %s: %w", f.p, errNoFile)
		default:
			f.err = fmt.Errorf("read %s: %s", f.p, res.Status)
		}
	})
	return f.size, f.err
}

var errNoFile = errors.New("no such datastore file")

// Size implements vmdk.File.
func (f *dsFile) Size() int64 { return f.size }

// ReadAt implements io.ReaderAt with one range request.
func (f *dsFile) ReadAt(p []byte, off int64) (int, error) {
	if off >= f.size {
		return 0, io.EOF
	}
	n := min(int64(len(p)), f.size-off)
	res, err := f.get(off, n)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	body := io.Reader(res.Body)
	switch res.StatusCode {
	case http.StatusPartialContent:
	case http.StatusOK: // the server ignored the range
		if _, err := io.CopyN(io.Discard, res.Body, off); err != nil {
			return 0, fmt.Errorf("read %s at %d: %w", f.p, off, err)
		}
	default:
		return 0, fmt.Errorf("read %s at %d: %s", f.p, off, res.Status)
	}
	got, err := io.ReadFull(body, p[:n])
	if err != nil {
		return got, fmt.Errorf("read %s at %d: %w", f.p, off, err)
	}
	if n < int64(len(p)) {
		return got, io.EOF
	}
	return got, nil
}

// openDisk opens the VMDK at p (and its parents) over HTTP.
func (c *Connector) openDisk(ctx context.Context, p dsPath) (*vmdk.Disk, error) {
	return vmdk.Open(func(name string) (vmdk.File, error) {
		return c.openFile(ctx, p.sibling(name))
	}, path.Base(p.rel))
}

// fileExists reports whether a datastore file exists (datastore browser).
func (c *Connector) fileExists(ctx context.Context, p dsPath) (bool, error) {
	ds, err := c.datastore(ctx, p.ds)
	if err != nil {
		return false, err
	}
	_, err = ds.Stat(ctx, p.rel)
	var noFile object.DatastoreNoSuchFileError
	var noDir object.DatastoreNoSuchDirectoryError
	switch {
	case err == nil:
		return true, nil
	case errors.As(err, &noFile), errors.As(err, &noDir), types.IsFileNotFound(err):
		return false, nil
	}
	return false, fmt.Errorf("stat %s: %w", p, err)
}

// upload writes a datastore file from r (n bytes), creating its directory.
func (c *Connector) upload(ctx context.Context, p dsPath, r io.Reader, n int64) error {
	ds, err := c.datastore(ctx, p.ds)
	if err != nil {
		return err
	}
	dir := dsPath{p.ds, path.Dir(p.rel)}
	if err := object.NewFileManager(c.vc).MakeDirectory(ctx, dir.String(), c.dc, true); err != nil && !isExists(err) {
		return fmt.Errorf("make directory %s: %w", dir, err)
	}
	param := soap.DefaultUpload
	param.ContentLength = n
	if err := ds.Upload(ctx, r, p.rel, &param); err != nil {
		return fmt.Errorf("upload %s: %w", p, err)
	}
	return nil
}

func isExists(err error) bool { return fault.Is(err, &types.FileAlreadyExists{}) }

// removeFile deletes a datastore file; a missing file is no error.
func (c *Connector) removeFile(ctx context.Context, p dsPath) error {
	task, err := object.NewFileManager(c.vc).DeleteDatastoreFile(ctx, p.String(), c.dc)
	if err == nil {
		err = task.Wait(ctx)
	}
	if err != nil && !types.IsFileNotFound(err) {
		return fmt.Errorf("delete %s: %w", p, err)
	}
	return nil
}
