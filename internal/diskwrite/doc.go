// Package diskwrite writes restored disk images so that they stay thin.
//
// Create makes a new image under a temporary name ("<path>.kura-partial"):
// raw images are sparse files written directly with pwrite; qcow2 images
// are created with `qemu-img create` and written through a private
// `qemu-nbd` child process with kura's NBD client (package nbd), the way
// the hypervisor itself would write them; vmdk images are monolithicSparse
// files written by package vmdk. Commit flushes, stops qemu-nbd,
// fsyncs the file and renames it to its final path, so an interrupted
// restore never leaves a file that looks complete; Abort removes it.
//
// Thinness: a freshly created image reads as zeros everywhere, so zero
// ranges are simply not written (Zero is a no-op, and all-zero blocks
// inside WriteAt data are skipped). They stay unallocated: holes in a raw
// file, unallocated clusters in a qcow2, unallocated grains in a vmdk. With Options.Rewrite (ranges may
// be written more than once), zeros are written as hole punches (raw) or
// NBD WRITE_ZEROES with may-trim (qcow2), which qemu-nbd started with
// --discard=unmap --detect-zeroes=unmap also turns into unallocated
// clusters.
//
// A Writer is safe for concurrent use: the restore engine writes chunks
// from several goroutines.
package diskwrite
