package repo

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/kurabackup/kura/internal/storage"
	"github.com/kurabackup/kura/internal/testenv/s3server"
)

// Immutability on a real Object Lock bucket, versioned (as on AWS) and not
// (versitygw's own mode): a forever-incremental chain stays locked by
// extending reused chunks rather than uploading them again; prune and gc
// wait for locks to expire; the repository's own credentials cannot
// destroy a locked chunk, index or manifest, and every point restores.
func TestImmutableS3(t *testing.T) {
	for _, versioned := range []bool{true, false} {
		name := map[bool]string{true: "versioned", false: "unversioned"}[versioned]
		t.Run(name, func(t *testing.T) { immutableScenario(t, versioned) })
	}
}

func immutableScenario(t *testing.T, versioned bool) {
	ctx := context.Background()
	srv := s3server.Start(t, s3server.Options{NoVersioning: !versioned})
	plainBucket := srv.Bucket(t, "plain", false)
	if _, err := Init(ctx, openLocation(t, srv.Location(plainBucket, "r")), InitOptions{Immutable: time.Hour}); err == nil {
		t.Fatal("immutable repository accepted on a bucket without Object Lock")
	}
	bucket := srv.Bucket(t, "locked", true)
	be := openLocation(t, srv.Location(bucket, "repo"))
	const period, slack = 3 * time.Second, 2 * time.Second
	r, err := Init(ctx, be, InitOptions{Password: "p", ChunkSize: testCS, Encrypt: true, KDF: cheapKDF,
		Immutable: period, ImmutableSlack: slack})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]byte{}
	var parent *Index
	var prev []byte
	point := func(seed uint64) *Manifest {
		img := killImage(seed)
		m, _ := writePoint(t, r, DiskSource{Reader: bytes.NewReader(img), Size: int64(len(img)), Parent: parent,
			Extents: dirtyMap(prev, img)})
		want[m.ID], prev = img, img
		if parent, err = r.LoadIndex(ctx, m.Disks[0].Index); err != nil {
			t.Fatal(err)
		}
		if m.RetainUntil.Before(m.Started.Add(period)) {
			t.Fatalf("point %s retained until %s, before start + period", m.ID, m.RetainUntil)
		}
		return m
	}
	a := point(1)
	b := point(2)
	// config and the key file are extended by every point; chunks only
	// past the slack.
	const meta = 2
	if b.Requests == nil || b.Requests.Retention != meta {
		t.Errorf("incremental within the slack extended chunk retentions: %+v", b.Requests)
	}
	checkPoints(t, r, want)
	if err := r.DeletePoint(ctx, a.ID); !errors.Is(err, ErrStillLocked) {
		t.Fatalf("delete of a locked point: %v", err)
	}
	// Chunks no point references (a writer that never committed).
	w, err := r.NewWriter(ctx, "abandoned")
	if err != nil {
		t.Fatal(err)
	}
	orphan := randomBytes(99, 3*testCS)
	if _, _, err := w.WriteDisk(ctx, DiskSource{Reader: bytes.NewReader(orphan), Size: int64(len(orphan))}, nil); err != nil {
		t.Fatal(err)
	}
	w.Close()
	g, err := r.GC(ctx, GCOptions{})
	if err != nil || g.Locked < 3 || g.DeletedChunks != 0 || g.LockedUntil.IsZero() {
		t.Fatalf("gc with locked unused chunks: %+v %v", g, err)
	}
	attack(t, srv, bucket, r, a, versioned)
	checkPoints(t, r, want)
	if versioned {
		hide(t, srv, bucket, r, a)
		if _, err := Open(ctx, be, "p", OpenOptions{}); err == nil {
			t.Fatal("repository still opens with its config and key hidden")
		}
		names, err := be.(storage.Unhider).Unhide(ctx)
		if err != nil || len(names) != 5 {
			t.Fatalf("unhide: %v, %v", names, err)
		}
		if r, err = Open(ctx, be, "p", OpenOptions{}); err != nil {
			t.Fatal(err)
		}
		checkPoints(t, r, want)
	}

	// Past the slack, the next incremental extends the chunks it reuses.
	time.Sleep(time.Until(a.RetainUntil.Add(time.Second)))
	c := point(3)
	if c.Requests == nil || c.Requests.Retention <= meta || c.Disks[0].Stats.ChunksReused == 0 {
		t.Errorf("incremental past the slack extended nothing: %+v, %+v", c.Requests, c.Disks[0].Stats)
	}
	t.Logf("requests: full %+v, incremental %+v, incremental with extensions %+v", *a.Requests, *b.Requests, *c.Requests)
	checkPoints(t, r, want)
	if err := r.DeletePoint(ctx, a.ID); err != nil {
		t.Fatalf("delete of a point whose lock expired: %v", err)
	}
	delete(want, a.ID)
	g, err = r.GC(ctx, GCOptions{})
	if err != nil || g.DeletedChunks < 3 {
		t.Fatalf("gc after the locks expired: %+v %v", g, err)
	}
	checkPoints(t, r, want)
	if versioned {
		// A policy longer than the locks (the config cannot be changed: its
		// MAC is in every manifest): the retention check names every
		// object locked too short.
		g, err := r.loadRefs(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		set, err := r.referenced(ctx, g, &VerifyReport{})
		if err != nil {
			t.Fatal(err)
		}
		r.cfg.Immutable = &Immutability{RetainSeconds: 3600, SlackSeconds: 60}
		probs, err := r.verifyRetention(ctx, g, set)
		if err != nil || len(probs) == 0 {
			t.Fatalf("retention check with a longer policy: %v %+v", err, probs)
		}
		for _, p := range probs {
			if !p.RetainUntil.Before(p.Need) {
				t.Errorf("problem %+v", p)
			}
		}
	}
}

// dirtyMap marks as unchanged every window of img equal to prev's, like a
// hypervisor's dirty bitmap would.
func dirtyMap(prev, img []byte) []Extent {
	if prev == nil {
		return nil
	}
	var out []Extent
	for off := 0; off < len(img); off += testCS {
		end := min(off+testCS, len(img))
		k := ExtentData
		if bytes.Equal(prev[off:end], img[off:end]) {
			k = ExtentUnchanged
		}
		out = append(out, Extent{Offset: int64(off), Length: int64(end - off), Kind: k})
	}
	return out
}

// attack tries, with the repository's own credentials, to destroy locked
// objects of point m: delete them (by version where versioned), shorten or
// weaken their retention, overwrite them.
func attack(t *testing.T, srv *s3server.Server, bucket string, r *Repository, m *Manifest, versioned bool) {
	ctx := context.Background()
	x, err := r.LoadIndex(ctx, m.Disks[0].Index)
	if err != nil {
		t.Fatal(err)
	}
	var chunk string
	for _, d := range x.Digests {
		if !d.IsZero() {
			chunk = chunkName(d)
			break
		}
	}
	cl := srv.Client(t)
	soon := time.Now().Add(time.Second)
	gov, comp := minio.Governance, minio.Compliance
	keys, err := r.listNames(ctx, "keys/")
	if err != nil || len(keys) != 1 {
		t.Fatalf("keys %v, %v", keys, err)
	}
	for _, name := range []string{chunk, indexName(m.Disks[0].Index), pointName(m.ID), configName, keys[0]} {
		key := "repo/" + name
		oi, err := cl.StatObject(ctx, bucket, key, minio.StatObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if err := cl.RemoveObject(ctx, bucket, key, minio.RemoveObjectOptions{VersionID: oi.VersionID}); err == nil {
			t.Errorf("%s: deleting the locked version was allowed", name)
		}
		if err := cl.PutObjectRetention(ctx, bucket, key, minio.PutObjectRetentionOptions{Mode: &comp, RetainUntilDate: &soon, VersionID: oi.VersionID}); err == nil {
			t.Errorf("%s: shortening the retention was allowed", name)
		}
		if err := cl.PutObjectRetention(ctx, bucket, key, minio.PutObjectRetentionOptions{Mode: &gov, RetainUntilDate: &soon, VersionID: oi.VersionID, GovernanceBypass: true}); err == nil {
			t.Errorf("%s: switching to governance mode was allowed", name)
		}
		if !versioned {
			if _, err := cl.PutObject(ctx, bucket, key, bytes.NewReader([]byte("ransom")), 6, minio.PutObjectOptions{}); err == nil {
				t.Errorf("%s: overwrite was allowed", name)
			}
			if err := cl.RemoveObject(ctx, bucket, key, minio.RemoveObjectOptions{}); err == nil {
				t.Errorf("%s: delete was allowed", name)
			}
		}
	}
}

// hide does what a versioned bucket lets anyone with the repository's
// credentials do to locked objects: delete them (a delete marker) and
// overwrite them (a newer version).
func hide(t *testing.T, srv *s3server.Server, bucket string, r *Repository, m *Manifest) {
	ctx := context.Background()
	x, err := r.LoadIndex(ctx, m.Disks[0].Index)
	if err != nil {
		t.Fatal(err)
	}
	keys, _ := r.listNames(ctx, "keys/")
	cl := srv.Client(t)
	for _, name := range []string{chunkName(x.Digests[0]), pointName(m.ID), configName, keys[0]} {
		if err := cl.RemoveObject(ctx, bucket, "repo/"+name, minio.RemoveObjectOptions{}); err != nil {
			t.Fatalf("delete marker on %s: %v", name, err)
		}
	}
	if _, err := cl.PutObject(ctx, bucket, "repo/"+indexName(m.Disks[0].Index), bytes.NewReader([]byte("ransom")), 6, minio.PutObjectOptions{}); err != nil {
		t.Fatalf("overwrite: %v", err)
	}
}
