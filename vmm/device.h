/*
 * vmm/device.h — gmvm's emulated devices, with no KVM in them (so the
 * device fuzzer and unit tests drive them against a plain gm_space):
 *  - a 16550-style serial port (PIO 0x3f8..0x3ff): THR output, LSR "ready";
 *  - the test device (MMIO at GMVM_DEV_GPA, a 256-byte register bank per
 *    vCPU, vmm/layout.h): ID and DATA reads, commands to report a
 *    checksum, fill guest memory (write DMA), checksum guest memory (read
 *    DMA), and "done".
 * Both register as gm_space I/O ranges; the vCPU loop finds them with
 * gm_space_io_find. Every guest-supplied address and length is checked
 * through gm_space before the host touches memory (gmvm_dma_check): an
 * access outside guest RAM, into a slot being removed (attribute
 * GMVM_ATTR_REMOVING), a write to a read-only slot or a range past the end
 * of guest RAM is refused and counted, never performed. A DMA spanning two
 * adjacent slots is done slot by slot. DMA writes mark the pages dirty in
 * gm_space (before, to reserve the log's chunks, and after the write).
 */
#ifndef GMVM_DEVICE_H
#define GMVM_DEVICE_H

#include "layout.h"

#include <stdatomic.h>
#include <gmtrack/gmtrack.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define GMVM_DMA_MAX (1ull << 30) /* longest DMA a guest may ask for */

struct gmvm_serial {
	pthread_mutex_t lock;
	FILE *out;               /* NULL: output kept only in tail */
	char line[256];
	size_t len;
	char tail[4096];         /* the last output, NUL-terminated */
	size_t tail_len;
	uint64_t bytes;
};

struct gmvm_bank {
	uint64_t arg[3], status, result, checksum;
	bool reported, done;
};

struct gmvm_testdev {
	struct gm_space *space;
	pthread_mutex_t lock;
	unsigned nbanks;
	struct gmvm_bank bank[GMVM_MAX_VCPUS];
	_Atomic uint64_t refused, dma_bytes, bad_access, done_count;
	char last_refusal[200];
	bool verbose;            /* print each refusal on stderr */
	uint64_t epoch;          /* unique per init: tags threads' caches */
};

/* The exit port: a guest write asks the VMM to stop the VM with a status. */
struct gmvm_exitport {
	_Atomic int requested;   /* 0, or 1 + the status written */
};

void gmvm_serial_init(struct gmvm_serial *s, FILE *out);
void gmvm_serial_flush(struct gmvm_serial *s);
void gmvm_serial_destroy(struct gmvm_serial *s);
void gmvm_testdev_init(struct gmvm_testdev *d, struct gm_space *space, unsigned nbanks);
void gmvm_testdev_destroy(struct gmvm_testdev *d);

/* Registers both devices' ranges in space (writer: caller serializes). */
int gmvm_devices_register(struct gm_space *space, struct gmvm_serial *ser,
			  struct gmvm_testdev *dev, struct gmvm_exitport *ex);

/* The I/O handlers (gm_space_io_fn). */
void gmvm_serial_io(void *ctx, uint64_t port, void *data, unsigned size, bool is_write);
void gmvm_exitport_io(void *ctx, uint64_t port, void *data, unsigned size, bool is_write);
void gmvm_testdev_io(void *ctx, uint64_t addr, void *data, unsigned size, bool is_write);

/*
 * gmvm_dma_check — 0 if [gpa, gpa + len) lies in guest RAM (any number of
 * adjacent slots), none of it is being removed, and (write) no slot is
 * read-only; otherwise -EFAULT (outside RAM, past a slot's end into no
 * slot, or wrapping), -EBUSY (being removed), -EROFS, -E2BIG (len past
 * GMVM_DMA_MAX), with a reason in why. Under gm_rcu_read_lock().
 */
int gmvm_dma_check(struct gm_space *s, struct gm_space_cache *c, uint64_t gpa,
		   uint64_t len, bool write, char *why, size_t whylen);
/* Fills [gpa, gpa + len) with byte (after gmvm_dma_check), marking dirty. */
int gmvm_dma_fill(struct gm_space *s, struct gm_space_cache *c, uint64_t gpa,
		  uint64_t len, uint8_t byte, char *why, size_t whylen);
/* FNV-1a of the 64-bit words of [gpa, gpa + len) (len % 8 == 0). */
int gmvm_dma_checksum(struct gm_space *s, struct gm_space_cache *c, uint64_t gpa,
		      uint64_t len, uint64_t *sum, char *why, size_t whylen);
/* The host-side FNV-1a of len bytes (len % 8 == 0) at p, continuing h. */
uint64_t gmvm_fnv(uint64_t h, const void *p, uint64_t len);

#endif
