/*
 * fuzz/gmvm_device_fuzz.c — gmvm's device emulation (vmm/device.c) driven
 * by guest-controlled requests against a live gm_space (no KVM): each
 * 12-byte record is one op — a test-device register write or read (any
 * offset, any size, any value: DMA fill / checksum commands with guest
 * chosen gpa and length), a serial or exit-port access, a slot change
 * (add / delete / move / resize of four small slots over one host buffer,
 * as gmvm_mem checks them), or marking a range "being removed". A model
 * of the slots decides, for every DMA command, whether it may happen;
 * abort() if the device did something the model forbids (wrote outside
 * guest RAM, into a slot being removed or read-only, or refused a valid
 * request), if any byte outside the requested range changed, or if
 * gm_space_validate fails.
 */
#include "device.h"
#include "memory.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define NSLOTS 4
#define PAGES 8 /* per slot's host area */
#define HOST_BYTES (NSLOTS * PAGES * 4096)

struct mslot {
	bool on, ro;
	uint64_t gfn, np;
};

static uint8_t host[HOST_BYTES] __attribute__((aligned(4096)));
static uint8_t shadow[HOST_BYTES];
static struct mslot ms[NSLOTS];
static uint64_t removing_first = 1, removing_last = 0; /* empty */

/* One live space and its devices for the whole run (creating and
 * destroying a gm_space waits for RCU grace periods); each input starts
 * from no slots, no attributes, fresh device banks. */
static struct gmvm_mem mem;
static struct gmvm_testdev dev;
static struct gmvm_serial ser;
static struct gmvm_exitport ex;

/* True if [gpa, gpa + len) is all guest RAM of the model, not removing,
 * and (write) not read-only. */
static bool model_allows(uint64_t gpa, uint64_t len, bool write)
{
	if (!len)
		return true;
	if (gpa + len < gpa || len > GMVM_DMA_MAX)
		return false;
	for (uint64_t g = gpa >> 12; g <= (gpa + len - 1) >> 12; g++) {
		if (g >= removing_first && g <= removing_last)
			return false;
		bool found = false;
		for (int i = 0; i < NSLOTS; i++)
			if (ms[i].on && g >= ms[i].gfn && g < ms[i].gfn + ms[i].np) {
				if (write && ms[i].ro)
					return false;
				found = true;
			}
		if (!found)
			return false;
	}
	return true;
}

/* The model's effect of a fill on the shadow copy of host memory. */
static void model_fill(uint64_t gpa, uint64_t len, uint8_t byte)
{
	for (uint64_t a = gpa; a < gpa + len; a++)
		for (int i = 0; i < NSLOTS; i++)
			if (ms[i].on && (a >> 12) >= ms[i].gfn && (a >> 12) < ms[i].gfn + ms[i].np)
				shadow[i * PAGES * 4096 + (a - (ms[i].gfn << 12))] = byte;
}

static void slot_op(const uint8_t *r)
{
	int i = r[1] % NSLOTS;
	uint64_t hva = (uintptr_t)host + (uint64_t)i * PAGES * 4096;
	struct gmvm_change c = {.id = (uint32_t)i};
	struct mslot next = ms[i];
	switch (r[2] % 4) {
	case 0:
		c.kind = GMVM_ADD;
		c.gpa = (uint64_t)(r[3] % 64) << 12;
		c.bytes = (uint64_t)(1 + r[4] % PAGES) << 12;
		c.hva = hva;
		c.flags = (r[5] & 1) ? GM_SPACE_SLOT_READONLY : GM_SPACE_SLOT_DIRTY_LOG;
		next = (struct mslot){true, (r[5] & 1) != 0, c.gpa >> 12, c.bytes >> 12};
		break;
	case 1:
		c.kind = GMVM_DELETE;
		next.on = false;
		break;
	case 2:
		c.kind = GMVM_MOVE;
		c.gpa = (uint64_t)(r[3] % 64) << 12;
		next.gfn = c.gpa >> 12;
		break;
	default:
		c.kind = GMVM_RESIZE;
		c.bytes = (uint64_t)(1 + r[4] % PAGES) << 12;
		next.np = c.bytes >> 12;
		break;
	}
	if (gmvm_mem_apply(&mem, &c, 1, NULL, 0) == 0)
		ms[i] = next;
}

static uint64_t word_of(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}

/* A register access by the guest; DMA commands are checked against the
 * model. */
static void dev_op(const uint8_t *r)
{
	unsigned bank = r[1] % 3; /* bank 2 does not exist */
	unsigned reg = r[2] % 0x48;
	unsigned size = 1u << (r[3] % 4);
	uint64_t v = word_of(r + 4);
	bool write = r[3] & 0x80;
	uint64_t addr = GMVM_DEV_GPA + bank * GMVM_DEV_BANK + reg;
	if (bank < 2 && reg == R_CMD && write && size == 8) {
		/* a command: what may it do? */
		struct gmvm_bank *b = &dev.bank[bank];
		uint64_t gpa = b->arg[0], len = b->arg[1];
		uint64_t cmd = v % 6;
		bool ok = cmd == C_DMA_FILL ? model_allows(gpa, len, true)
			  : cmd == C_DMA_SUM ? !((gpa | len) & 7) && model_allows(gpa, len, false)
					     : cmd >= 1 && cmd <= 4;
		gmvm_testdev_io(&dev, addr, &cmd, 8, true);
		if ((b->status == 0) != ok)
			abort(); /* refused a valid request, or did a forbidden one */
		if (ok && cmd == C_DMA_FILL)
			model_fill(gpa, len, (uint8_t)b->arg[2]);
		if (memcmp(host, shadow, HOST_BYTES))
			abort(); /* a byte changed that the request did not cover */
		return;
	}
	uint8_t buf[8];
	memcpy(buf, &v, 8);
	gmvm_testdev_io(&dev, addr, buf, size, write);
}


static void setup_once(void)
{
	gm_rcu_register_thread();
	if (gmvm_mem_init(&mem, NULL))
		abort();
	gmvm_testdev_init(&dev, mem.space, 2);
	gmvm_serial_init(&ser, NULL);
}

static void reset(void)
{
	for (int i = 0; i < NSLOTS; i++) {
		struct gmvm_change c = {.kind = GMVM_DELETE, .id = (uint32_t)i};
		if (ms[i].on && gmvm_mem_apply(&mem, &c, 1, NULL, 0))
			abort();
	}
	if (gm_space_slot_count(mem.space) || gm_space_attr_set(mem.space, 0, 1023, 0))
		abort();
	memset(dev.bank, 0, sizeof(dev.bank));
	memset(host, 0, sizeof(host));
	memset(shadow, 0, sizeof(shadow));
	memset(ms, 0, sizeof(ms));
	removing_first = 1;
	removing_last = 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
	static bool once;
	if (!once) {
		setup_once();
		once = true;
	}
	reset();
	if (gmvm_devices_register(mem.space, &ser, &dev, &ex))
		abort();
	for (size_t i = 0; i + 12 <= n; i += 12) {
		const uint8_t *r = d + i;
		switch (r[0] % 8) {
		case 0:
			slot_op(r);
			break;
		case 1: { /* part of guest RAM is being removed (or no longer) */
			uint64_t a = r[1] % 64, b = a + r[2] % 8;
			if (gm_space_attr_set(mem.space, removing_first <= removing_last ? removing_first : 0,
					      removing_first <= removing_last ? removing_last : 0, 0))
				abort();
			if (r[3] & 1) {
				if (gm_space_attr_set(mem.space, a, b, GMVM_ATTR_REMOVING))
					abort();
				removing_first = a;
				removing_last = b;
			} else {
				removing_first = 1;
				removing_last = 0;
			}
			break;
		}
		case 2: { /* serial / exit port: any port of the range, any size */
			uint8_t buf[4] = {r[2], r[3], r[4], r[5]};
			unsigned size = 1u << (r[3] % 3);
			if (r[1] & 1)
				gmvm_serial_io(&ser, GMVM_SERIAL_PORT + r[2] % 8, buf, size, r[1] & 2);
			else
				gmvm_exitport_io(&ex, GMVM_EXIT_PORT, buf, size, r[1] & 2);
			break;
		}
		default: /* the test device: arguments with guest-chosen values */
			if (r[0] % 8 == 3) { /* a gpa/len near the slots, to hit edges */
				uint8_t w[12];
				memcpy(w, r, 12);
				uint64_t v = (uint64_t)(r[4] % 72) << 12 | (r[5] & 0x0f ? 0 : r[6]);
				if (r[7] & 1)
					v = (uint64_t)(r[4] % 72) * 512 + r[6]; /* a length */
				memcpy(w + 4, &v, 8);
				w[1] = 0;
				w[2] = (r[7] & 1) ? R_ARG1 : R_ARG0;
				w[3] = 0x80 | 3;
				dev_op(w);
			} else {
				dev_op(r);
			}
			break;
		}
	}
	const char *reason;
	if (gm_space_validate(mem.space, &reason))
		abort();
	reset();
	/* the I/O ranges come and go with each input: LeakSanitizer cannot
	 * see the handler objects inside gm_space's range maps */
	if (gm_space_io_remove(mem.space, GM_SPACE_PIO, GMVM_SERIAL_PORT) ||
	    gm_space_io_remove(mem.space, GM_SPACE_PIO, GMVM_EXIT_PORT) ||
	    gm_space_io_remove(mem.space, GM_SPACE_MMIO, GMVM_DEV_GPA))
		abort();
	gm_rcu_barrier(); /* what the run retired is freed before the leak check */
	return 0;
}
