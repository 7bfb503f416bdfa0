// Package vmdk reads and writes VMware virtual disks (VMDK) as kura finds
// them on datastores and in exports, with a descriptor parser of its own.
//
// A VMDK is a text descriptor (a file of its own, or embedded in a sparse
// extent) listing extents: FLAT and VMFS extents hold the disk's bytes as
// they are (monolithicFlat, vmfs "-flat.vmdk" files), SPARSE extents are
// hosted sparse files (magic "KDMV": header, grain directory, grain tables,
// 64 KiB grains; monolithicSparse, twoGbMaxExtentSparse, and
// streamOptimized with deflate-compressed grains and markers), ZERO
// extents read as zeros. A child disk names its parent
// (parentFileNameHint, parentCID) and reads unallocated grains from it.
//
// Open reads a disk (following parents) through an Opener, which may read
// local files or datastore files over HTTP range requests: every read is a
// ReadAt of a byte range, adjacent grains are read in one request, grain
// tables are loaded when first needed. Allocated reports which ranges may
// hold data (unallocated grains of a sparse chain read as zeros).
//
// SparseWriter writes a monolithicSparse file from ranges given in any
// order (zero grains stay unallocated); Descriptor.Encode writes the
// descriptor of a flat disk. vSphere's delta formats (vmfsSparse "COWD",
// seSparse) and raw device mappings are not read: Open fails with
// ErrUnsupported naming the extent type.
//
// Every decoder (descriptor, sparse header, grain tables, compressed grain
// markers) is fuzzed.
package vmdk
