/*
 * vmm/device.c — the serial port and the test device (see device.h), and
 * the DMA path every guest-supplied address goes through: a run of
 * gm_space lookups (one per slot the range covers, with the calling
 * thread's own gm_space_cache: one per vCPU thread), the removal
 * attribute, the read-only flag, then the copy. No KVM here.
 */
#define _GNU_SOURCE
#include "device.h"

#include <stdatomic.h>
#include <errno.h>
#include <stdarg.h>
#include <string.h>

/* One translation cache per thread (the vCPU threads run the handlers),
 * for one space at a time: a gm_space_cache does not say which space
 * filled it, and two spaces' generations can be equal (source and
 * destination VM in one process). */
static _Thread_local struct gm_space_cache tl_cache;
static _Thread_local uint64_t tl_cache_owner; /* the device's epoch */
static _Atomic uint64_t next_epoch = 1;

/* (a space freed and another allocated at its address would look the
 * same: the device's epoch, unique per init, names the owner) */
static struct gm_space_cache *thread_cache(const struct gmvm_testdev *d)
{
	if (tl_cache_owner != d->epoch) {
		gm_space_cache_init(&tl_cache);
		tl_cache_owner = d->epoch;
	}
	return &tl_cache;
}

static int refuse(char *why, size_t whylen, int rc, const char *fmt, ...)
{
	if (why && whylen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(why, whylen, fmt, ap);
		va_end(ap);
	}
	return rc;
}

uint64_t gmvm_fnv(uint64_t h, const void *p, uint64_t len)
{
	const uint8_t *b = p;
	for (uint64_t i = 0; i + 8 <= len; i += 8) {
		uint64_t w;
		memcpy(&w, b + i, 8);
		h = (h ^ w) * GMVM_FNV_PRIME;
	}
	return h;
}

/* ---- DMA ----------------------------------------------------------------- */

/* Calls fn(ctx, slot, hva, bytes) for each slot-contiguous piece of the
 * range, in order (the range was checked). */
typedef void (*piece_fn)(void *ctx, const struct gm_space_slot *slot, uint64_t gpa,
			 uint8_t *hva, uint64_t bytes);

static void for_each_piece(struct gm_space *s, struct gm_space_cache *c, uint64_t gpa,
			   uint64_t len, piece_fn fn, void *ctx)
{
	while (len) {
		const struct gm_space_slot *sl;
		if (gm_space_gfn_to_slot(s, c, gpa >> 12, &sl))
			return; /* cannot happen after a check in the same section */
		uint64_t end = (sl->base_gfn + sl->npages) << 12; /* 0: slot ends at 2^64 */
		uint64_t n = end && end - gpa < len ? end - gpa : len;
		fn(ctx, sl, gpa, (uint8_t *)(uintptr_t)(sl->hva + (gpa - (sl->base_gfn << 12))), n);
		gpa += n;
		len -= n;
	}
}

int gmvm_dma_check(struct gm_space *s, struct gm_space_cache *c, uint64_t gpa,
		   uint64_t len, bool write, char *why, size_t whylen)
{
	if (!s)
		return refuse(why, whylen, -EINVAL, "no address space");
	if (!len)
		return 0;
	if (len > GMVM_DMA_MAX)
		return refuse(why, whylen, -E2BIG, "DMA of %llu bytes at gpa 0x%llx: longer than %llu",
			      (unsigned long long)len, (unsigned long long)gpa, GMVM_DMA_MAX);
	if (gpa + len < gpa)
		return refuse(why, whylen, -EFAULT, "DMA gpa 0x%llx + 0x%llx wraps",
			      (unsigned long long)gpa, (unsigned long long)len);
	uint64_t g = gpa >> 12, last = (gpa + len - 1) >> 12;
	if (!gm_space_attr_all(s, g, last, 0))
		return refuse(why, whylen, -EBUSY, "DMA gpa 0x%llx+0x%llx: into a slot being removed",
			      (unsigned long long)gpa, (unsigned long long)len);
	for (;;) {
		const struct gm_space_slot *sl;
		if (gm_space_gfn_to_slot(s, c, g, &sl))
			return refuse(why, whylen, -EFAULT,
				      "DMA gpa 0x%llx+0x%llx: gfn 0x%llx is not guest RAM",
				      (unsigned long long)gpa, (unsigned long long)len,
				      (unsigned long long)g);
		if (write && (sl->flags & GM_SPACE_SLOT_READONLY))
			return refuse(why, whylen, -EROFS, "DMA write to read-only slot %u", sl->id);
		uint64_t slast = sl->base_gfn + sl->npages - 1;
		if (slast >= last)
			return 0;
		g = slast + 1;
	}
}

struct fill_ctx {
	uint8_t byte;
};

static void fill_piece(void *ctx, const struct gm_space_slot *sl, uint64_t gpa, uint8_t *hva,
		       uint64_t bytes)
{
	(void)sl;
	(void)gpa;
	memset(hva, ((struct fill_ctx *)ctx)->byte, bytes);
}

/* Marks the range dirty in every logging slot it covers (no frame marked
 * on -ENOMEM in the first slot that fails; earlier slots stay marked,
 * which only costs a resend). */
struct mark_ctx {
	int rc;
	struct gm_space *s;
};

static void mark_piece(void *ctx, const struct gm_space_slot *sl, uint64_t gpa, uint8_t *hva,
			uint64_t bytes)
{
	struct mark_ctx *m = ctx;
	(void)hva;
	if (m->rc || !(sl->flags & GM_SPACE_SLOT_DIRTY_LOG))
		return;
	uint64_t first = gpa >> 12, last = (gpa + bytes - 1) >> 12;
	m->rc = gm_space_dirty_restore(m->s, sl, first, last - first + 1);
}

static int mark_range(struct gm_space *s, struct gm_space_cache *c, uint64_t gpa, uint64_t len)
{
	struct mark_ctx m = {0, s};
	for_each_piece(s, c, gpa, len, mark_piece, &m);
	return m.rc;
}

int gmvm_dma_fill(struct gm_space *s, struct gm_space_cache *c, uint64_t gpa,
		  uint64_t len, uint8_t byte, char *why, size_t whylen)
{
	gm_rcu_read_lock();
	int rc = gmvm_dma_check(s, c, gpa, len, true, why, whylen);
	if (!rc && len) {
		/* reserve the log's chunks (and mark) before, mark again after:
		 * a harvest between the two copies this write's result next round */
		rc = mark_range(s, c, gpa, len);
		if (rc) {
			refuse(why, whylen, rc, "DMA: dirty log: %s", strerror(-rc));
		} else {
			struct fill_ctx f = {byte};
			for_each_piece(s, c, gpa, len, fill_piece, &f);
			rc = mark_range(s, c, gpa, len);
		}
	}
	gm_rcu_read_unlock();
	return rc;
}

struct sum_ctx {
	uint64_t h;
};

static void sum_piece(void *ctx, const struct gm_space_slot *sl, uint64_t gpa, uint8_t *hva,
		      uint64_t bytes)
{
	(void)sl;
	(void)gpa;
	struct sum_ctx *x = ctx;
	x->h = gmvm_fnv(x->h, hva, bytes);
}

int gmvm_dma_checksum(struct gm_space *s, struct gm_space_cache *c, uint64_t gpa,
		      uint64_t len, uint64_t *sum, char *why, size_t whylen)
{
	if ((len | gpa) & 7)
		return refuse(why, whylen, -EINVAL, "checksum DMA gpa 0x%llx len %llu: not 8-byte aligned",
			      (unsigned long long)gpa, (unsigned long long)len);
	gm_rcu_read_lock();
	int rc = gmvm_dma_check(s, c, gpa, len, false, why, whylen);
	if (!rc) {
		struct sum_ctx x = {GMVM_FNV_BASIS};
		for_each_piece(s, c, gpa, len, sum_piece, &x);
		*sum = x.h;
	}
	gm_rcu_read_unlock();
	return rc;
}

/* ---- serial ------------------------------------------------------------- */

void gmvm_serial_init(struct gmvm_serial *s, FILE *out)
{
	memset(s, 0, sizeof(*s));
	pthread_mutex_init(&s->lock, NULL);
	s->out = out;
}

static void serial_line_out(struct gmvm_serial *s)
{
	if (s->len && s->out) {
		fprintf(s->out, "[guest] %.*s\n", (int)s->len, s->line);
		fflush(s->out);
	}
	s->len = 0;
}

void gmvm_serial_flush(struct gmvm_serial *s)
{
	pthread_mutex_lock(&s->lock);
	serial_line_out(s);
	pthread_mutex_unlock(&s->lock);
}

void gmvm_serial_destroy(struct gmvm_serial *s)
{
	gmvm_serial_flush(s);
	pthread_mutex_destroy(&s->lock);
}

static void serial_put(struct gmvm_serial *s, uint8_t ch)
{
	pthread_mutex_lock(&s->lock);
	s->bytes++;
	if (s->tail_len + 1 >= sizeof(s->tail)) {
		memmove(s->tail, s->tail + sizeof(s->tail) / 2, sizeof(s->tail) / 2);
		s->tail_len -= sizeof(s->tail) / 2;
	}
	s->tail[s->tail_len++] = (char)ch;
	s->tail[s->tail_len] = 0;
	if (ch == '\n' || s->len == sizeof(s->line))
		serial_line_out(s);
	if (ch != '\n')
		s->line[s->len++] = (char)(ch >= 0x20 && ch < 0x7f ? ch : '?');
	pthread_mutex_unlock(&s->lock);
}

void gmvm_serial_io(void *ctx, uint64_t port, void *data, unsigned size, bool is_write)
{
	struct gmvm_serial *s = ctx;
	unsigned reg = (unsigned)(port - GMVM_SERIAL_PORT);
	if (is_write) {
		if (reg == 0 && size >= 1)
			serial_put(s, *(uint8_t *)data);
		return; /* other registers: accepted, ignored */
	}
	memset(data, 0, size);
	if (reg == 5)
		*(uint8_t *)data = 0x60; /* LSR: THR empty, transmitter empty */
}

/* ---- test device ------------------------------------------------------- */

void gmvm_testdev_init(struct gmvm_testdev *d, struct gm_space *space, unsigned nbanks)
{
	memset(d, 0, sizeof(*d));
	d->space = space;
	d->epoch = atomic_fetch_add(&next_epoch, 1);
	d->nbanks = nbanks > GMVM_MAX_VCPUS ? GMVM_MAX_VCPUS : nbanks;
	pthread_mutex_init(&d->lock, NULL);
}

void gmvm_testdev_destroy(struct gmvm_testdev *d)
{
	pthread_mutex_destroy(&d->lock);
}

void gmvm_exitport_io(void *ctx, uint64_t port, void *data, unsigned size, bool is_write)
{
	struct gmvm_exitport *e = ctx;
	(void)port;
	if (!is_write) {
		memset(data, 0xff, size);
		return;
	}
	int expected = 0;
	atomic_compare_exchange_strong(&e->requested, &expected, 1 + *(uint8_t *)data);
}

/* Registers the serial port, the exit port and (dev not NULL) the test
 * device; on an error none stays registered. */
int gmvm_devices_register(struct gm_space *space, struct gmvm_serial *ser,
			  struct gmvm_testdev *dev, struct gmvm_exitport *ex)
{
	int rc = gm_space_io_add(space, GM_SPACE_PIO, GMVM_SERIAL_PORT,
				      GMVM_SERIAL_PORT + GMVM_SERIAL_PORTS - 1, gmvm_serial_io, ser);
	if (rc)
		return rc;
	rc = gm_space_io_add(space, GM_SPACE_PIO, GMVM_EXIT_PORT, GMVM_EXIT_PORT,
				  gmvm_exitport_io, ex);
	if (rc)
		goto no_exit;
	if (!dev)
		return 0;
	rc = gm_space_io_add(space, GM_SPACE_MMIO, GMVM_DEV_GPA,
				  GMVM_DEV_GPA + GMVM_DEV_BYTES - 1, gmvm_testdev_io, dev);
	if (!rc)
		return 0;
	gm_space_io_remove(space, GM_SPACE_PIO, GMVM_EXIT_PORT);
no_exit:
	gm_space_io_remove(space, GM_SPACE_PIO, GMVM_SERIAL_PORT);
	return rc;
}

static void dev_refused(struct gmvm_testdev *d, unsigned bank, const char *why)
{
	atomic_fetch_add(&d->refused, 1);
	snprintf(d->last_refusal, sizeof(d->last_refusal), "vCPU %u: %s", bank, why);
	if (d->verbose)
		fprintf(stderr, "gmvm: test device refused: vCPU %u: %s\n", bank, why);
}

static void dev_command(struct gmvm_testdev *d, unsigned bank, uint64_t cmd)
{
	struct gmvm_bank *b = &d->bank[bank];
	char why[160] = "";
	int rc = 0;
	switch (cmd) {
	case C_CHECKSUM:
		b->checksum = b->arg[0];
		b->reported = true;
		break;
	case C_DMA_FILL:
		rc = gmvm_dma_fill(d->space, thread_cache(d), b->arg[0], b->arg[1], (uint8_t)b->arg[2],
				   why, sizeof(why));
		if (!rc)
			atomic_fetch_add(&d->dma_bytes, b->arg[1]);
		break;
	case C_DMA_SUM:
		rc = gmvm_dma_checksum(d->space, thread_cache(d), b->arg[0], b->arg[1], &b->result, why,
				       sizeof(why));
		break;
	case C_DONE:
		if (!b->done)
			atomic_fetch_add(&d->done_count, 1);
		b->done = true;
		break;
	default:
		rc = -EINVAL;
		snprintf(why, sizeof(why), "unknown command %llu", (unsigned long long)cmd);
	}
	b->status = (uint64_t)(int64_t)rc;
	if (rc)
		dev_refused(d, bank, why);
}

void gmvm_testdev_io(void *ctx, uint64_t addr, void *data, unsigned size, bool is_write)
{
	struct gmvm_testdev *d = ctx;
	uint64_t off = addr - GMVM_DEV_GPA;
	unsigned bank = (unsigned)(off / GMVM_DEV_BANK), reg = (unsigned)(off % GMVM_DEV_BANK);
	if (off >= GMVM_DEV_BYTES || bank >= d->nbanks || size != 8 || (reg & 7) ||
	    reg > R_RESULT) {
		atomic_fetch_add(&d->bad_access, 1);
		if (!is_write)
			memset(data, 0xff, size);
		return;
	}
	pthread_mutex_lock(&d->lock);
	struct gmvm_bank *b = &d->bank[bank];
	uint64_t v = 0;
	if (is_write) {
		memcpy(&v, data, 8);
		if (reg >= R_ARG0 && reg <= R_ARG2)
			b->arg[(reg - R_ARG0) / 8] = v;
		else if (reg == R_CMD)
			dev_command(d, bank, v);
		else
			atomic_fetch_add(&d->bad_access, 1);
	} else {
		switch (reg) {
		case R_ID: v = GMVM_DEV_ID; break;
		case R_DATA: v = (b->arg[0] ^ bank) * GMVM_DEV_DATA_MUL; break;
		case R_ARG0: case R_ARG1: case R_ARG2: v = b->arg[(reg - R_ARG0) / 8]; break;
		case R_STATUS: v = b->status; break;
		case R_RESULT: v = b->result; break;
		default: v = ~0ull; break;
		}
		memcpy(data, &v, 8);
	}
	pthread_mutex_unlock(&d->lock);
}
