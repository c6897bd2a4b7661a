/*
 * vmm/linux/bzimage.c — the x86 64-bit Linux boot protocol on gm_space
 * (see bzimage.h). Offsets are the setup header's and boot_params' from
 * the kernel's Documentation/arch/x86/boot.rst and zero-page.rst.
 */
#include "bzimage.h"

#include <gmtrack/rcu.h>

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* setup header (offsets in the file and in boot_params alike) */
#define HDR_SETUP_SECTS 0x1f1
#define HDR_BOOT_FLAG 0x1fe
#define HDR_JUMP 0x200
#define HDR_MAGIC 0x202
#define HDR_VERSION 0x206
#define HDR_KERNEL_VERSION 0x20e
#define HDR_TYPE_OF_LOADER 0x210
#define HDR_LOADFLAGS 0x211
#define HDR_CODE32_START 0x214
#define HDR_RAMDISK_IMAGE 0x218
#define HDR_RAMDISK_SIZE 0x21c
#define HDR_HEAP_END_PTR 0x224
#define HDR_CMD_LINE_PTR 0x228
#define HDR_INITRD_ADDR_MAX 0x22c
#define HDR_KERNEL_ALIGNMENT 0x230
#define HDR_RELOCATABLE 0x234
#define HDR_XLOADFLAGS 0x236
#define HDR_CMDLINE_SIZE 0x238
#define HDR_PREF_ADDRESS 0x258
#define HDR_INIT_SIZE 0x260
#define HDR_END_MIN 0x264 /* protocol 2.12 reaches init_size's end */

/* boot_params fields outside the setup header */
#define BP_EXT_RAMDISK_IMAGE 0x0c0
#define BP_EXT_RAMDISK_SIZE 0x0c4
#define BP_EXT_CMD_LINE_PTR 0x0c8
#define BP_E820_ENTRIES 0x1e8
#define BP_E820_TABLE 0x2d0
#define BP_E820_MAX 128
#define BP_SIZE 4096

#define LOADED_HIGH 0x01
#define CAN_USE_HEAP 0x80

/* guest-physical layout (bzimage.h) */
#define GDT_GPA 0x500ull
#define BOOT_PARAMS_GPA 0x7000ull
#define STACK_TOP 0x8ff0ull
#define PML4_GPA 0x9000ull
#define PDPT_GPA 0xa000ull
#define PD_GPA 0xb000ull /* four of them */
#define CMDLINE_GPA 0x20000ull
#define CMDLINE_MAX 0x10000ull /* room reserved at CMDLINE_GPA */
#define EBDA_START 0x9fc00ull
#define HIGH_START 0x100000ull
#define KERNEL_GPA 0x100000ull
#define IDENTITY_LIMIT (4ull << 30)

static int fail(char *err, size_t errlen, int rc, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int fail(char *err, size_t errlen, int rc, const char *fmt, ...)
{
	if (err && errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return rc;
}

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}
static uint64_t rd64(const uint8_t *p) { return rd32(p) | (uint64_t)rd32(p + 4) << 32; }
static void wr16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void wr32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}
static void wr64(uint8_t *p, uint64_t v)
{
	wr32(p, (uint32_t)v);
	wr32(p + 4, (uint32_t)(v >> 32));
}

int gm_bzimage_parse(const void *buf, size_t len, struct gm_bzimage *out,
		     char *err, size_t errlen)
{
	if (!buf || !out)
		return fail(err, errlen, -EINVAL, "no image given");
	const uint8_t *b = buf;
	memset(out, 0, sizeof *out);
	if (len < 0x400)
		return fail(err, errlen, -EINVAL,
			    "not a bzImage: %zu bytes, too short for a setup header", len);
	if (rd16(b + HDR_BOOT_FLAG) != 0xaa55)
		return fail(err, errlen, -EINVAL,
			    "not a bzImage: no 0xAA55 boot flag at 0x1fe");
	if (memcmp(b + HDR_MAGIC, "HdrS", 4) != 0)
		return fail(err, errlen, -EINVAL,
			    "not a bzImage: no \"HdrS\" magic at 0x202 (a pre-2.0 zImage or not a kernel)");
	out->version = rd16(b + HDR_VERSION);
	if (out->version < GM_BZIMAGE_MIN_VERSION)
		return fail(err, errlen, -EINVAL,
			    "boot protocol %u.%02u is older than 2.12 (no 64-bit entry, no xloadflags)",
			    out->version >> 8, out->version & 0xff);
	size_t hdr_end = HDR_JUMP + 2 + b[HDR_JUMP + 1];
	if (hdr_end < HDR_END_MIN)
		return fail(err, errlen, -EINVAL,
			    "setup header ends at %#zx, before init_size (%#x): corrupt header",
			    hdr_end, HDR_END_MIN);
	out->setup_sects = b[HDR_SETUP_SECTS] ? b[HDR_SETUP_SECTS] : 4;
	out->setup_size = ((size_t)out->setup_sects + 1) * 512;
	if (hdr_end > out->setup_size || out->setup_size >= len)
		return fail(err, errlen, -EINVAL,
			    "truncated bzImage: %zu bytes, setup alone takes %zu",
			    len, out->setup_size);
	out->kernel_size = len - out->setup_size;
	out->loadflags = b[HDR_LOADFLAGS];
	out->code32_start = rd32(b + HDR_CODE32_START);
	out->initrd_addr_max = rd32(b + HDR_INITRD_ADDR_MAX);
	out->kernel_alignment = rd32(b + HDR_KERNEL_ALIGNMENT);
	out->relocatable = b[HDR_RELOCATABLE];
	out->xloadflags = rd16(b + HDR_XLOADFLAGS);
	out->cmdline_size = rd32(b + HDR_CMDLINE_SIZE);
	out->pref_address = rd64(b + HDR_PREF_ADDRESS);
	out->init_size = rd32(b + HDR_INIT_SIZE);
	if (!(out->loadflags & LOADED_HIGH))
		return fail(err, errlen, -EINVAL,
			    "a zImage (loaded low at 0x10000), not a bzImage");
	if (!(out->xloadflags & GM_BZIMAGE_XLF_KERNEL_64))
		return fail(err, errlen, -EINVAL,
			    "the kernel has no 64-bit entry point (XLF_KERNEL_64 clear)");
	uint32_t syssize = rd32(b + 0x1f4);
	if ((uint64_t)syssize * 16 > out->kernel_size)
		return fail(err, errlen, -EINVAL,
			    "truncated bzImage: header says %llu bytes of kernel, file has %zu",
			    (unsigned long long)syssize * 16, out->kernel_size);
	if (out->init_size < out->kernel_size)
		out->init_size = (uint32_t)out->kernel_size;
	uint16_t kv = rd16(b + HDR_KERNEL_VERSION);
	if (kv && (size_t)kv + 0x200 < out->setup_size) {
		const char *s = (const char *)b + kv + 0x200;
		size_t n = 0;
		size_t room = out->setup_size - (kv + 0x200);
		while (n < room && n < sizeof out->kernel_version - 1 && s[n] >= 0x20 &&
		       s[n] < 0x7f)
			n++;
		memcpy(out->kernel_version, s, n);
		out->kernel_version[n] = 0;
	}
	return 0;
}

/* ---- guest memory through gm_space -------------------------------------- */

/* Copies len bytes to gpa, slot by slot; -EFAULT if any frame is unmapped. */
static int guest_write(struct gm_space *s, struct gm_space_cache *c,
		       uint64_t gpa, const void *src, uint64_t len)
{
	const uint8_t *p = src;
	gm_rcu_read_lock();
	while (len) {
		const struct gm_space_slot *slot;
		uint64_t gfn = gpa >> GM_SPACE_PAGE_SHIFT;
		if (gm_space_gfn_to_slot(s, c, gfn, &slot)) {
			gm_rcu_read_unlock();
			return -EFAULT;
		}
		uint64_t off = gpa - (slot->base_gfn << GM_SPACE_PAGE_SHIFT);
		uint64_t room = (slot->npages << GM_SPACE_PAGE_SHIFT) - off;
		uint64_t n = len < room ? len : room;
		if (slot->flags & GM_SPACE_SLOT_READONLY) {
			gm_rcu_read_unlock();
			return -EFAULT;
		}
		if (p)
			memcpy((void *)(uintptr_t)(slot->hva + off), p, n);
		else
			memset((void *)(uintptr_t)(slot->hva + off), 0, n);
		if (p)
			p += n;
		gpa += n;
		len -= n;
	}
	gm_rcu_read_unlock();
	return 0;
}

/* ---- host-side decompression (GM_LINUX_BOOT_VMLINUX) -------------------- */

#define HDR_PAYLOAD_OFFSET 0x248
#define HDR_PAYLOAD_LENGTH 0x24c
#define LZ4_LEGACY_MAGIC 0x184c2102u
#define VMLINUX_MAX (1ull << 30)

/* One LZ4 block: src[0, n) into dst[*pos, cap). -1 on malformed input. */
static int lz4_block(const uint8_t *src, size_t n, uint8_t *dst, size_t *pos, size_t cap)
{
	size_t i = 0, o = *pos;
	while (i < n) {
		uint8_t token = src[i++];
		size_t lit = token >> 4;
		if (lit == 15) {
			uint8_t b;
			do {
				if (i >= n)
					return -1;
				b = src[i++];
				lit += b;
			} while (b == 255);
		}
		if (lit > n - i || lit > cap - o)
			return -1;
		memcpy(dst + o, src + i, lit);
		i += lit;
		o += lit;
		if (i == n)
			break; /* the last sequence has literals only */
		if (n - i < 2)
			return -1;
		size_t off = src[i] | (size_t)src[i + 1] << 8;
		i += 2;
		if (off == 0 || off > o)
			return -1;
		size_t len = (token & 15) + 4;
		if ((token & 15) == 15) {
			uint8_t b;
			do {
				if (i >= n)
					return -1;
				b = src[i++];
				len += b;
			} while (b == 255);
		}
		if (len > cap - o)
			return -1;
		for (size_t k = 0; k < len; k++, o++)
			dst[o] = dst[o - off];
	}
	*pos = o;
	return 0;
}

/* The vmlinux ELF inside the bzImage's payload, in a malloc'd buffer. */
static int extract_vmlinux(const uint8_t *kb, size_t klen, const struct gm_bzimage *img,
			   uint8_t **out, size_t *outlen, char *err, size_t errlen)
{
	if (img->version < 0x0208)
		return fail(err, errlen, -ENOTSUP, "protocol %u.%02u has no payload fields",
			    img->version >> 8, img->version & 0xff);
	uint64_t po = rd32(kb + HDR_PAYLOAD_OFFSET), pl = rd32(kb + HDR_PAYLOAD_LENGTH);
	uint64_t at = img->setup_size + po;
	if (pl < 8 || at > klen || pl > klen - at)
		return fail(err, errlen, -EINVAL,
			    "payload [%#llx, +%#llx) lies outside the %zu-byte file",
			    (unsigned long long)at, (unsigned long long)pl, klen);
	const uint8_t *p = kb + at;
	if (!memcmp(p, "\x7f" "ELF", 4)) {
		uint8_t *e = malloc(pl);
		if (!e)
			return fail(err, errlen, -ENOMEM, "out of memory");
		memcpy(e, p, pl);
		*out = e;
		*outlen = pl;
		return 0;
	}
	if (rd32(p) != LZ4_LEGACY_MAGIC) {
		const char *what = p[0] == 0x1f && p[1] == 0x8b ? "gzip" :
				   !memcmp(p, "\xfd" "7zXZ", 5) ? "xz" :
				   rd32(p) == 0xfd2fb528u ? "zstd" :
				   p[0] == 0x5d && p[1] == 0 ? "lzma" :
				   p[0] == 'B' && p[1] == 'Z' ? "bzip2" :
				   p[0] == 0x89 && p[1] == 'L' ? "lzo" : "unknown";
		return fail(err, errlen, -ENOTSUP,
			    "the kernel's payload is %s-compressed: host-side decompression "
			    "handles LZ4 only (boot the bzImage itself instead)", what);
	}
	/* kernel's size_append: the decompressed size in the last 4 bytes */
	uint64_t size = rd32(p + pl - 4);
	if (size < 64 || size > VMLINUX_MAX)
		return fail(err, errlen, -EINVAL, "payload says the kernel is %llu bytes",
			    (unsigned long long)size);
	uint8_t *dst = malloc(size);
	if (!dst)
		return fail(err, errlen, -ENOMEM, "out of memory for a %llu-byte vmlinux",
			    (unsigned long long)size);
	size_t i = 4, o = 0, end = pl - 4;
	while (i < end && o < size) {
		if (end - i < 4)
			break;
		uint32_t n = rd32(p + i);
		i += 4;
		if (n == LZ4_LEGACY_MAGIC)
			continue; /* concatenated streams */
		if (n > end - i || lz4_block(p + i, n, dst, &o, size)) {
			free(dst);
			return fail(err, errlen, -EINVAL, "corrupt LZ4 payload at offset %zu", i);
		}
		i += n;
	}
	if (o != size) {
		free(dst);
		return fail(err, errlen, -EINVAL,
			    "LZ4 payload decompressed to %zu bytes, the header says %llu",
			    o, (unsigned long long)size);
	}
	*out = dst;
	*outlen = size;
	return 0;
}

struct elf_load {
	uint64_t lo, hi, entry;
	unsigned nload;
};

/* Checks the vmlinux ELF's program headers: PT_LOAD segments within the
 * file, physical ranges above 1 MiB, entry inside one of them. */
static int elf_check(const uint8_t *e, size_t len, struct elf_load *l, char *err, size_t errlen)
{
	if (len < 64 || memcmp(e, "\x7f" "ELF", 4) || e[4] != 2 || e[5] != 1 ||
	    rd16(e + 18) != 62)
		return fail(err, errlen, -EINVAL, "the payload is not a 64-bit x86 ELF");
	uint64_t phoff = rd64(e + 32);
	unsigned phentsize = rd16(e + 54), phnum = rd16(e + 56);
	if (phentsize < 56 || phoff > len || (uint64_t)phnum * phentsize > len - phoff)
		return fail(err, errlen, -EINVAL, "vmlinux: program headers outside the file");
	l->lo = UINT64_MAX;
	l->hi = 0;
	l->nload = 0;
	l->entry = rd64(e + 24);
	bool entry_ok = false;
	for (unsigned i = 0; i < phnum; i++) {
		const uint8_t *ph = e + phoff + (uint64_t)i * phentsize;
		if (rd32(ph) != 1 /* PT_LOAD */)
			continue;
		uint64_t off = rd64(ph + 8), pa = rd64(ph + 24), fsz = rd64(ph + 32),
			 msz = rd64(ph + 40);
		if (off > len || fsz > len - off || fsz > msz || pa < HIGH_START ||
		    pa + msz < pa || pa + msz > IDENTITY_LIMIT)
			return fail(err, errlen, -EINVAL,
				    "vmlinux: segment %u (paddr %#llx, %#llx bytes) is malformed",
				    i, (unsigned long long)pa, (unsigned long long)msz);
		if (pa < l->lo)
			l->lo = pa;
		if (pa + msz > l->hi)
			l->hi = pa + msz;
		if (l->entry >= pa && l->entry < pa + msz)
			entry_ok = true;
		l->nload++;
	}
	if (!l->nload || !entry_ok)
		return fail(err, errlen, -EINVAL, "vmlinux: no loadable segment holds the entry %#llx",
			    (unsigned long long)l->entry);
	return 0;
}

static int elf_write(struct gm_space *s, struct gm_space_cache *c, const uint8_t *e)
{
	uint64_t phoff = rd64(e + 32);
	unsigned phentsize = rd16(e + 54), phnum = rd16(e + 56);
	for (unsigned i = 0; i < phnum; i++) {
		const uint8_t *ph = e + phoff + (uint64_t)i * phentsize;
		if (rd32(ph) != 1)
			continue;
		uint64_t off = rd64(ph + 8), pa = rd64(ph + 24), fsz = rd64(ph + 32),
			 msz = rd64(ph + 40);
		if (guest_write(s, c, pa, e + off, fsz) ||
		    guest_write(s, c, pa + fsz, NULL, msz - fsz))
			return -EFAULT;
	}
	return 0;
}

static bool in_ram(const struct gm_linux_boot *b, uint64_t gpa, uint64_t len)
{
	for (size_t i = 0; i < b->nram; i++) {
		const struct gm_linux_ram *r = &b->ram[i];
		if (r->type == GM_E820_RAM && gpa >= r->gpa && len <= r->size &&
		    gpa - r->gpa <= r->size - len)
			return true;
	}
	return false;
}

static int cmp_ram(const void *a, const void *b)
{
	const struct gm_linux_ram *x = a, *y = b;
	return x->gpa < y->gpa ? -1 : x->gpa > y->gpa;
}

struct e820 {
	struct gm_linux_ram e[BP_E820_MAX];
	unsigned n;
};

static int e820_push(struct e820 *m, uint64_t gpa, uint64_t size, uint32_t type)
{
	if (!size)
		return 0;
	if (m->n == BP_E820_MAX)
		return -E2BIG;
	m->e[m->n++] = (struct gm_linux_ram){ gpa, size, type };
	return 0;
}

/* The caller's ranges sorted, with the legacy hole [EBDA, 1 MiB) carved out
 * of RAM and reported reserved. */
static int build_e820(const struct gm_linux_boot *b, struct e820 *m,
		      char *err, size_t errlen)
{
	struct gm_linux_ram sorted[BP_E820_MAX];
	if (b->nram > BP_E820_MAX - 2)
		return fail(err, errlen, -E2BIG, "%zu RAM ranges: at most %d fit in e820",
			    b->nram, BP_E820_MAX - 2);
	memcpy(sorted, b->ram, b->nram * sizeof *sorted);
	qsort(sorted, b->nram, sizeof *sorted, cmp_ram);
	m->n = 0;
	bool hole = false;
	for (size_t i = 0; i < b->nram; i++) {
		const struct gm_linux_ram *r = &sorted[i];
		if (!r->size || r->gpa + r->size < r->gpa || r->type < GM_E820_RAM ||
		    r->type > GM_E820_UNUSABLE)
			return fail(err, errlen, -EINVAL,
				    "bad range [%#llx, +%#llx) type %u",
				    (unsigned long long)r->gpa, (unsigned long long)r->size,
				    r->type);
		if (i && sorted[i - 1].gpa + sorted[i - 1].size > r->gpa)
			return fail(err, errlen, -EINVAL,
				    "ranges overlap at %#llx", (unsigned long long)r->gpa);
		uint64_t end = r->gpa + r->size;
		int rc = 0;
		if (r->type == GM_E820_RAM && r->gpa < HIGH_START && end > EBDA_START) {
			rc |= e820_push(m, r->gpa, r->gpa < EBDA_START ? EBDA_START - r->gpa : 0,
					GM_E820_RAM);
			hole = true;
			uint64_t hs = r->gpa > EBDA_START ? r->gpa : EBDA_START;
			uint64_t he = end < HIGH_START ? end : HIGH_START;
			rc |= e820_push(m, hs, he - hs, GM_E820_RESERVED);
			if (end > HIGH_START)
				rc |= e820_push(m, HIGH_START, end - HIGH_START, GM_E820_RAM);
		} else {
			rc = e820_push(m, r->gpa, r->size, r->type);
		}
		if (rc)
			return fail(err, errlen, -E2BIG, "more than %d e820 entries",
				    BP_E820_MAX);
	}
	(void)hole;
	return 0;
}

/* The highest page-aligned gpa for size bytes in RAM, ending at or below
 * limit (exclusive) and starting at or above floor. 0 if none. */
static uint64_t place_high(const struct e820 *m, uint64_t size, uint64_t floor,
			   uint64_t limit)
{
	uint64_t best = 0;
	for (unsigned i = 0; i < m->n; i++) {
		const struct gm_linux_ram *r = &m->e[i];
		if (r->type != GM_E820_RAM)
			continue;
		uint64_t lo = r->gpa > floor ? r->gpa : floor;
		uint64_t hi = r->gpa + r->size < limit ? r->gpa + r->size : limit;
		if (hi <= lo || hi - lo < size)
			continue;
		uint64_t at = (hi - size) & ~0xfffull;
		if (at >= lo && at > best)
			best = at;
	}
	return best;
}

static struct gm_linux_segment seg(uint16_t sel, uint8_t type, uint8_t l, uint8_t db)
{
	return (struct gm_linux_segment){ .base = 0, .limit = 0xffffffff,
					   .selector = sel, .type = type,
					   .present = 1, .dpl = 0, .db = db,
					   .s = 1, .l = l, .g = 1, .avl = 0 };
}

int gm_linux_load(struct gm_space *s, const struct gm_linux_boot *boot,
		  struct gm_linux_entry *entry, char *err, size_t errlen)
{
	if (!s || !boot || !entry || !boot->kernel || (!boot->ram && boot->nram))
		return fail(err, errlen, -EINVAL, "gm_linux_load: NULL argument");
	if (!boot->initrd && boot->initrd_size)
		return fail(err, errlen, -EINVAL, "initrd size without initrd");
	memset(entry, 0, sizeof *entry);
	struct gm_bzimage *img = &entry->image;
	int rc = gm_bzimage_parse(boot->kernel, boot->kernel_size, img, err, errlen);
	if (rc)
		return rc;
	const char *cmdline = boot->cmdline ? boot->cmdline : "";
	size_t cmdlen = strlen(cmdline);
	uint64_t cmdmax = img->cmdline_size ? img->cmdline_size : 255;
	if (cmdmax > CMDLINE_MAX - 1)
		cmdmax = CMDLINE_MAX - 1;
	if (cmdlen > cmdmax)
		return fail(err, errlen, -EINVAL,
			    "command line is %zu bytes, the kernel takes at most %llu",
			    cmdlen, (unsigned long long)cmdmax);

	struct e820 map = { .n = 0 };
	rc = build_e820(boot, &map, err, errlen);
	if (rc)
		return rc;
	/* The boot structures below 1 MiB. */
	if (!in_ram(boot, 0, EBDA_START) || !in_ram(boot, CMDLINE_GPA, CMDLINE_MAX))
		return fail(err, errlen, -ENOSPC,
			    "no RAM range covers [0, %#llx): the GDT, boot_params, page "
			    "tables and command line go there",
			    (unsigned long long)EBDA_START);
	uint8_t *elf = NULL;
	size_t elf_len = 0;
	struct elf_load el = { 0 };
	uint64_t kend;
	if (boot->flags & ~GM_LINUX_BOOT_VMLINUX)
		return fail(err, errlen, -EINVAL, "unknown flags %#x", boot->flags);
	if (boot->flags & GM_LINUX_BOOT_VMLINUX) {
		rc = extract_vmlinux(boot->kernel, boot->kernel_size, img, &elf, &elf_len,
				     err, errlen);
		if (rc)
			return rc;
		rc = elf_check(elf, elf_len, &el, err, errlen);
		if (!rc && !in_ram(boot, el.lo, el.hi - el.lo))
			rc = fail(err, errlen, -ENOSPC,
				  "the kernel needs RAM at [%#llx, %#llx) (%llu MiB): give the "
				  "guest more memory",
				  (unsigned long long)el.lo, (unsigned long long)el.hi,
				  (unsigned long long)(el.hi >> 20) + 1);
		if (rc) {
			free(elf);
			return rc;
		}
		entry->kernel_gpa = el.lo;
		entry->kernel_end = kend = el.hi;
		goto place_initrd;
	}
	/* The kernel: copied to 1 MiB; it runs (decompresses) from
	 * max(1 MiB aligned, pref_address) up to init_size bytes on. */
	uint64_t align = img->kernel_alignment ? img->kernel_alignment : 0x200000;
	if (align & (align - 1))
		return fail(err, errlen, -EINVAL, "kernel_alignment %#llx is not a power of 2",
			    (unsigned long long)align);
	uint64_t run = (KERNEL_GPA + align - 1) & ~(align - 1);
	if (img->relocatable && img->pref_address > run)
		run = img->pref_address;
	if (!img->relocatable)
		run = img->pref_address > KERNEL_GPA ? img->pref_address : KERNEL_GPA;
	kend = run + img->init_size;
	if (KERNEL_GPA + img->kernel_size > kend)
		kend = KERNEL_GPA + img->kernel_size;
	if (!in_ram(boot, KERNEL_GPA, kend - KERNEL_GPA))
		return fail(err, errlen, -ENOSPC,
			    "the kernel needs RAM at [%#llx, %#llx) (%llu MiB, init_size %u): "
			    "give the guest more memory",
			    (unsigned long long)KERNEL_GPA, (unsigned long long)kend,
			    (unsigned long long)(kend >> 20) + 1, img->init_size);
	entry->kernel_gpa = KERNEL_GPA;
	entry->kernel_end = kend;
place_initrd:;
	/* The initrd: high, below initrd_addr_max and 4 GiB, above the kernel. */
	uint64_t rd_gpa = 0;
	if (boot->initrd_size) {
		uint64_t limit = (uint64_t)img->initrd_addr_max + 1;
		if (img->xloadflags & 0x2 /* XLF_CAN_BE_LOADED_ABOVE_4G */)
			limit = UINT64_MAX;
		if (limit > IDENTITY_LIMIT)
			limit = IDENTITY_LIMIT; /* keep it inside the ident map */
		rd_gpa = place_high(&map, boot->initrd_size, (kend + 0xfff) & ~0xfffull, limit);
		if (!rd_gpa) {
			free(elf);
			return fail(err, errlen, -ENOSPC,
				    "the initrd (%zu bytes) does not fit in RAM between the kernel's "
				    "end %#llx and %#llx: give the guest more memory",
				    boot->initrd_size, (unsigned long long)kend,
				    (unsigned long long)limit);
		}
	}

	/* boot_params: zero, then the setup header as the image has it. */
	uint8_t bp[BP_SIZE];
	memset(bp, 0, sizeof bp);
	const uint8_t *kb = boot->kernel;
	size_t hdr_end = HDR_JUMP + 2 + kb[HDR_JUMP + 1];
	memcpy(bp + HDR_SETUP_SECTS, kb + HDR_SETUP_SECTS, hdr_end - HDR_SETUP_SECTS);
	bp[HDR_TYPE_OF_LOADER] = 0xff;
	bp[HDR_LOADFLAGS] = (uint8_t)(img->loadflags | CAN_USE_HEAP);
	wr16(bp + HDR_HEAP_END_PTR, 0xfe00);
	wr32(bp + HDR_CMD_LINE_PTR, (uint32_t)CMDLINE_GPA);
	wr32(bp + BP_EXT_CMD_LINE_PTR, (uint32_t)(CMDLINE_GPA >> 32));
	wr32(bp + HDR_RAMDISK_IMAGE, (uint32_t)rd_gpa);
	wr32(bp + HDR_RAMDISK_SIZE, (uint32_t)boot->initrd_size);
	wr32(bp + BP_EXT_RAMDISK_IMAGE, (uint32_t)(rd_gpa >> 32));
	wr32(bp + BP_EXT_RAMDISK_SIZE, (uint32_t)((uint64_t)boot->initrd_size >> 32));
	wr32(bp + HDR_CODE32_START, (uint32_t)KERNEL_GPA);
	bp[BP_E820_ENTRIES] = (uint8_t)map.n;
	for (unsigned i = 0; i < map.n; i++) {
		uint8_t *e = bp + BP_E820_TABLE + 20 * i;
		wr64(e, map.e[i].gpa);
		wr64(e + 8, map.e[i].size);
		wr32(e + 16, map.e[i].type);
	}

	/* Page tables: 4 GiB identity-mapped with 2 MiB pages. */
	uint64_t pml4[512] = { 0 }, pdpt[512] = { 0 };
	pml4[0] = PDPT_GPA | 0x3; /* present, writable */
	for (int i = 0; i < 4; i++)
		pdpt[i] = (PD_GPA + 0x1000ull * i) | 0x3;
	static uint64_t pd[4 * 512];
	for (uint64_t i = 0; i < 4 * 512; i++)
		pd[i] = (i << 21) | 0x83; /* present, writable, 2 MiB */
	/* GDT: 0x10 code64, 0x18 data. */
	uint64_t gdt[4] = { 0, 0, 0x00af9b000000ffffull, 0x00cf93000000ffffull };

	struct gm_space_cache c;
	gm_space_cache_init(&c);
	const char *what = "";
	bool vmlinux = elf != NULL;
	int krc = elf ? elf_write(s, &c, elf)
		      : guest_write(s, &c, KERNEL_GPA, kb + img->setup_size, img->kernel_size);
	free(elf);
	if ((what = "kernel", krc) ||
	    (what = "initrd", boot->initrd_size &&
			      guest_write(s, &c, rd_gpa, boot->initrd, boot->initrd_size)) ||
	    (what = "command line", guest_write(s, &c, CMDLINE_GPA, cmdline, cmdlen + 1)) ||
	    (what = "boot_params", guest_write(s, &c, BOOT_PARAMS_GPA, bp, sizeof bp)) ||
	    (what = "page tables", guest_write(s, &c, PML4_GPA, pml4, sizeof pml4) ||
				   guest_write(s, &c, PDPT_GPA, pdpt, sizeof pdpt) ||
				   guest_write(s, &c, PD_GPA, pd, sizeof pd)) ||
	    (what = "GDT", guest_write(s, &c, GDT_GPA, gdt, sizeof gdt)))
		return fail(err, errlen, -EFAULT,
			    "writing the %s: a RAM range is not backed by a writable gm_space slot",
			    what);

	entry->initrd_gpa = rd_gpa;
	entry->initrd_size = boot->initrd_size;
	entry->boot_params_gpa = BOOT_PARAMS_GPA;
	entry->cmdline_gpa = CMDLINE_GPA;
	entry->e820_entries = map.n;
	entry->rip = vmlinux ? el.entry : KERNEL_GPA + 0x200;
	entry->rsi = BOOT_PARAMS_GPA;
	entry->rsp = STACK_TOP;
	entry->rflags = 0x2;
	entry->cr0 = 0x80000011ull;  /* PG | ET | PE */
	entry->cr3 = PML4_GPA;
	entry->cr4 = 0x20;           /* PAE */
	entry->efer = 0x500;         /* LME | LMA */
	entry->gdt_base = GDT_GPA;
	entry->gdt_limit = sizeof gdt - 1;
	entry->cs = seg(0x10, 0xb, 1, 0);
	entry->ds = seg(0x18, 0x3, 0, 1);
	entry->tr = (struct gm_linux_segment){ .limit = 0xffff, .type = 0xb, .present = 1 };
	entry->ldt = (struct gm_linux_segment){ .limit = 0xffff, .type = 0x2, .present = 1 };
	return 0;
}

int gm_linux_read_file(const char *path, size_t max, void **buf, size_t *len,
		       char *err, size_t errlen)
{
	if (!path || !buf || !len)
		return fail(err, errlen, -EINVAL, "read_file: NULL argument");
	*buf = NULL;
	*len = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return fail(err, errlen, -errno, "%s: %s", path, strerror(errno));
	struct stat st;
	if (fstat(fd, &st)) {
		int e = errno;
		close(fd);
		return fail(err, errlen, -e, "%s: %s", path, strerror(e));
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		return fail(err, errlen, S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL,
			    "%s: not a regular file", path);
	}
	if ((uint64_t)st.st_size > max) {
		close(fd);
		return fail(err, errlen, -EFBIG, "%s: %lld bytes, more than %zu",
			    path, (long long)st.st_size, max);
	}
	size_t n = (size_t)st.st_size;
	uint8_t *p = malloc(n ? n : 1);
	if (!p) {
		close(fd);
		return fail(err, errlen, -ENOMEM, "%s: out of memory", path);
	}
	size_t got = 0;
	while (got < n) {
		ssize_t r = read(fd, p + got, n - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			int e = r < 0 ? errno : EIO;
			free(p);
			close(fd);
			return fail(err, errlen, -e, "%s: read: %s", path, strerror(e));
		}
		got += (size_t)r;
	}
	close(fd);
	*buf = p;
	*len = n;
	return 0;
}
