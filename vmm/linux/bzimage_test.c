/*
 * bzimage_test — the bzImage parser and loader of vmm/linux on garbage,
 * truncated and hand-made headers, into a gm_space over anonymous memory;
 * and on a real bzImage when its path is given (argv[1]).
 */
#include "bzimage.h"

#include <gmtrack/rcu.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static int failures;

#define CHECK(c)                                                                   \
	do {                                                                       \
		if (!(c)) {                                                        \
			fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #c); \
			failures++;                                                \
		}                                                                  \
	} while (0)

static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void put32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> 8 * i); }
static uint32_t get32(const uint8_t *p) { return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }
static uint64_t get64(const uint8_t *p) { return get32(p) | (uint64_t)get32(p + 4) << 32; }

/* A minimal bzImage: 4 setup sectors + 1 (boot sector), then `payload`
 * bytes of "kernel". */
static uint8_t *fake(size_t payload, size_t *len)
{
	size_t setup = 5 * 512;
	*len = setup + payload;
	uint8_t *b = calloc(1, *len);
	b[0x1f1] = 4;
	put32(b + 0x1f4, (uint32_t)(payload / 16));
	put16(b + 0x1fe, 0xaa55);
	b[0x200] = 0xeb;
	b[0x201] = 0x66; /* header ends at 0x268 */
	memcpy(b + 0x202, "HdrS", 4);
	put16(b + 0x206, 0x020f);
	put16(b + 0x20e, 0x300); /* version string at 0x500 */
	memcpy(b + 0x500, "9.9.9-test", 11);
	b[0x211] = 0x01;              /* LOADED_HIGH */
	put32(b + 0x214, 0x100000);
	put32(b + 0x22c, 0x7fffffff);  /* initrd_addr_max */
	put32(b + 0x230, 0x200000);    /* kernel_alignment */
	b[0x234] = 1;                  /* relocatable */
	put16(b + 0x236, 0x1);         /* XLF_KERNEL_64 */
	put32(b + 0x238, 2047);        /* cmdline_size */
	put32(b + 0x258, 0x1000000);   /* pref_address 16 MiB */
	put32(b + 0x25c, 0);
	put32(b + 0x260, 0x800000);    /* init_size 8 MiB */
	for (size_t i = 0; i < payload; i++)
		b[setup + i] = (uint8_t)(i * 7 + 1);
	return b;
}

static void test_parse_bad(void)
{
	char err[256];
	struct gm_bzimage img;
	uint8_t junk[8192];
	for (size_t i = 0; i < sizeof junk; i++)
		junk[i] = (uint8_t)(i * 131 + 17);
	CHECK(gm_bzimage_parse(junk, sizeof junk, &img, err, sizeof err) == -EINVAL);
	CHECK(strstr(err, "not a bzImage"));
	CHECK(gm_bzimage_parse(junk, 10, &img, err, sizeof err) == -EINVAL);
	CHECK(strstr(err, "too short"));
	CHECK(gm_bzimage_parse(NULL, 10, &img, err, sizeof err) == -EINVAL);
	CHECK(gm_bzimage_parse(junk, sizeof junk, NULL, NULL, 0) == -EINVAL);

	size_t len;
	uint8_t *b = fake(4096, &len);
	CHECK(gm_bzimage_parse(b, len, &img, err, sizeof err) == 0);
	CHECK(img.version == 0x020f && img.setup_size == 2560 && img.kernel_size == 4096);
	CHECK(!strcmp(img.kernel_version, "9.9.9-test"));
	CHECK(img.init_size == 0x800000 && img.pref_address == 0x1000000);
	/* truncated: the header's syssize says more than the file has */
	CHECK(gm_bzimage_parse(b, len - 100, &img, err, sizeof err) == -EINVAL);
	CHECK(strstr(err, "truncated"));
	CHECK(gm_bzimage_parse(b, 2560, &img, err, sizeof err) == -EINVAL);
	/* old protocol */
	put16(b + 0x206, 0x0201);
	CHECK(gm_bzimage_parse(b, len, &img, err, sizeof err) == -EINVAL);
	CHECK(strstr(err, "older than 2.12"));
	put16(b + 0x206, 0x020f);
	/* no 64-bit entry */
	put16(b + 0x236, 0);
	CHECK(gm_bzimage_parse(b, len, &img, err, sizeof err) == -EINVAL);
	CHECK(strstr(err, "64-bit"));
	put16(b + 0x236, 1);
	/* zImage */
	b[0x211] = 0;
	CHECK(gm_bzimage_parse(b, len, &img, err, sizeof err) == -EINVAL);
	b[0x211] = 1;
	/* setup_sects running past the file */
	b[0x1f1] = 200;
	CHECK(gm_bzimage_parse(b, len, &img, err, sizeof err) == -EINVAL);
	b[0x1f1] = 4;
	/* every single-byte corruption of the header: an error or a parse,
	 * never a crash (ASan watches) */
	for (size_t off = 0x1f0; off < 0x268; off++) {
		uint8_t keep = b[off];
		b[off] = 0xff;
		(void)gm_bzimage_parse(b, len, &img, err, sizeof err);
		b[off] = 0;
		(void)gm_bzimage_parse(b, len, &img, err, sizeof err);
		b[off] = keep;
	}
	free(b);
}

struct guest {
	struct gm_space *s;
	uint8_t *ram;
	uint64_t size;
};

static void guest_init(struct guest *g, uint64_t size)
{
	g->size = size;
	g->ram = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(g->ram != MAP_FAILED);
	CHECK(gm_space_create(&g->s, NULL, GM_RCU, NULL) == 0);
	CHECK(gm_space_slot_add(g->s, 0, 0, size >> 12, (uint64_t)(uintptr_t)g->ram, 0) == 0);
}

static void guest_fini(struct guest *g)
{
	gm_space_destroy(g->s);
	munmap(g->ram, g->size);
}

static void test_load(void)
{
	char err[256];
	size_t len;
	uint8_t *k = fake(64 * 1024, &len);
	static uint8_t rd[300000];
	for (size_t i = 0; i < sizeof rd; i++)
		rd[i] = (uint8_t)(i ^ 0x5a);
	struct guest g;
	guest_init(&g, 64ull << 20);
	struct gm_linux_ram ram = { 0, g.size, GM_E820_RAM };
	struct gm_linux_boot boot = { .kernel = k, .kernel_size = len, .initrd = rd,
				      .initrd_size = sizeof rd, .cmdline = "console=ttyS0 quiet",
				      .ram = &ram, .nram = 1 };
	struct gm_linux_entry e;
	CHECK(gm_linux_load(g.s, &boot, &e, err, sizeof err) == 0);
	if (failures)
		fprintf(stderr, "load: %s\n", err);
	CHECK(e.rip == 0x100200 && e.rsi == 0x7000 && e.cr3 == 0x9000);
	CHECK(e.cs.l == 1 && e.cs.selector == 0x10 && e.ds.selector == 0x18);
	CHECK((e.efer & 0x500) == 0x500 && (e.cr0 & 0x80000001) == 0x80000001 && (e.cr4 & 0x20));
	CHECK(!memcmp(g.ram + 0x100000, k + 2560, len - 2560));
	/* the initrd: high, page-aligned, above the kernel's 16 MiB + 8 MiB */
	CHECK(e.initrd_gpa % 4096 == 0 && e.initrd_gpa >= 0x1800000);
	CHECK(e.initrd_gpa + sizeof rd <= g.size);
	CHECK(g.size - (e.initrd_gpa + sizeof rd) < 4096);
	CHECK(!memcmp(g.ram + e.initrd_gpa, rd, sizeof rd));
	const uint8_t *bp = g.ram + 0x7000;
	CHECK(!memcmp(bp + 0x202, "HdrS", 4));
	CHECK(bp[0x210] == 0xff);
	CHECK(get32(bp + 0x218) == e.initrd_gpa && get32(bp + 0x21c) == sizeof rd);
	CHECK(get32(bp + 0x228) == 0x20000);
	CHECK(!strcmp((const char *)g.ram + 0x20000, "console=ttyS0 quiet"));
	/* e820: [0, 0x9fc00) RAM, [0x9fc00, 1 MiB) reserved, [1 MiB, 64 MiB) RAM */
	CHECK(bp[0x1e8] == 3);
	CHECK(get64(bp + 0x2d0) == 0 && get64(bp + 0x2d8) == 0x9fc00 && get32(bp + 0x2e0) == 1);
	CHECK(get64(bp + 0x2e4) == 0x9fc00 && get32(bp + 0x2e4 + 16) == 2);
	CHECK(get64(bp + 0x2f8) == 0x100000 && get64(bp + 0x300) == g.size - 0x100000);
	/* page tables: identity, 2 MiB pages */
	CHECK(get64(g.ram + 0x9000) == (0xa000 | 3));
	CHECK(get64(g.ram + 0xb000 + 8 * 3) == ((3ull << 21) | 0x83));

	/* a kernel that does not fit: 16 MiB of RAM, the kernel runs at 16 MiB */
	ram.size = 16ull << 20;
	CHECK(gm_linux_load(g.s, &boot, &e, err, sizeof err) == -ENOSPC);
	CHECK(strstr(err, "kernel needs RAM"));
	/* an initrd that does not fit */
	ram.size = g.size;
	boot.initrd_size = 48ull << 20;
	static uint8_t *big;
	big = calloc(1, boot.initrd_size);
	boot.initrd = big;
	CHECK(gm_linux_load(g.s, &boot, &e, err, sizeof err) == -ENOSPC);
	CHECK(strstr(err, "initrd"));
	free(big);
	boot.initrd = rd;
	boot.initrd_size = sizeof rd;
	/* a command line longer than cmdline_size */
	char *longcmd = malloc(4000);
	memset(longcmd, 'x', 3999);
	longcmd[3999] = 0;
	boot.cmdline = longcmd;
	CHECK(gm_linux_load(g.s, &boot, &e, err, sizeof err) == -EINVAL);
	CHECK(strstr(err, "command line"));
	free(longcmd);
	boot.cmdline = NULL;
	/* RAM the caller claims but no slot backs */
	ram.size = 128ull << 20;
	CHECK(gm_linux_load(g.s, &boot, &e, err, sizeof err) == -EFAULT);
	ram.size = g.size;
	/* overlapping ranges, no low RAM, too many ranges */
	struct gm_linux_ram two[2] = { { 0, g.size, GM_E820_RAM }, { 0x100000, 4096, GM_E820_RESERVED } };
	boot.ram = two;
	boot.nram = 2;
	CHECK(gm_linux_load(g.s, &boot, &e, err, sizeof err) == -EINVAL);
	two[0] = (struct gm_linux_ram){ 0x100000, g.size - 0x100000, GM_E820_RAM };
	two[1] = (struct gm_linux_ram){ 0, 0x1000, GM_E820_RAM };
	CHECK(gm_linux_load(g.s, &boot, &e, err, sizeof err) == -ENOSPC);
	struct gm_linux_ram *many = calloc(200, sizeof *many);
	for (int i = 0; i < 200; i++)
		many[i] = (struct gm_linux_ram){ (uint64_t)i << 20, 4096, GM_E820_RAM };
	boot.ram = many;
	boot.nram = 200;
	CHECK(gm_linux_load(g.s, &boot, &e, err, sizeof err) == -E2BIG);
	free(many);
	CHECK(gm_linux_load(NULL, &boot, &e, err, sizeof err) == -EINVAL);
	CHECK(gm_linux_load(g.s, NULL, &e, err, sizeof err) == -EINVAL);
	guest_fini(&g);
	free(k);
}

/* A bzImage whose payload is an LZ4 legacy stream (one literal-only block)
 * of a minimal vmlinux ELF: one PT_LOAD at paddr 2 MiB, entry there. */
static uint8_t *fake_vmlinux(size_t *len, bool corrupt)
{
	uint8_t elf[64 + 56 + 256];
	memset(elf, 0, sizeof elf);
	memcpy(elf, "\x7f" "ELF", 4);
	elf[4] = 2, elf[5] = 1, elf[6] = 1;
	put16(elf + 16, 2);
	put16(elf + 18, 62);
	put32(elf + 24, 0x200000);          /* e_entry */
	put32(elf + 32, 64);                /* e_phoff */
	put16(elf + 54, 56);
	put16(elf + 56, 1);
	uint8_t *ph = elf + 64;
	put32(ph, 1);                       /* PT_LOAD */
	put32(ph + 8, 120);                 /* p_offset */
	put32(ph + 16, 0x200000);           /* p_vaddr */
	put32(ph + 24, 0x200000);           /* p_paddr */
	put32(ph + 32, 256);                /* p_filesz */
	put32(ph + 40, 0x3000);             /* p_memsz */
	for (int i = 0; i < 256; i++)
		elf[120 + i] = (uint8_t)(0xc0 + i);
	size_t n = sizeof elf;                /* 376 literals: 15 + 255 + 106 */
	uint8_t blk[400];
	size_t b = 0;
	blk[b++] = 0xf0;
	blk[b++] = 255;
	blk[b++] = (uint8_t)(n - 15 - 255);
	memcpy(blk + b, elf, n);
	b += n;
	size_t payload = 4 + 4 + b + 4;
	uint8_t *k = fake(payload, len);
	uint8_t *p = k + 2560;
	put32(p, 0x184c2102);
	put32(p + 4, (uint32_t)b);
	memcpy(p + 8, blk, b);
	put32(p + 8 + b, (uint32_t)n);
	if (corrupt)
		p[10] = 200; /* literal length past the block */
	put32(k + 0x248, 0);
	put32(k + 0x24c, (uint32_t)payload);
	return k;
}

static void test_vmlinux(void)
{
	char err[256];
	size_t len;
	struct guest g;
	guest_init(&g, 64ull << 20);
	struct gm_linux_ram ram = { 0, g.size, GM_E820_RAM };
	uint8_t *k = fake_vmlinux(&len, false);
	struct gm_linux_boot boot = { .kernel = k, .kernel_size = len, .ram = &ram, .nram = 1,
				      .flags = GM_LINUX_BOOT_VMLINUX };
	struct gm_linux_entry e;
	memset(g.ram + 0x200000 + 256, 0xee, 64);
	CHECK(gm_linux_load(g.s, &boot, &e, err, sizeof err) == 0);
	CHECK(e.rip == 0x200000 && e.kernel_gpa == 0x200000 && e.kernel_end == 0x203000);
	CHECK(g.ram[0x200000] == 0xc0 && g.ram[0x2000ff] == (uint8_t)(0xc0 + 255));
	CHECK(g.ram[0x200000 + 256] == 0 && g.ram[0x200000 + 300] == 0); /* bss zeroed */
	free(k);
	k = fake_vmlinux(&len, true);
	boot.kernel = k;
	CHECK(gm_linux_load(g.s, &boot, &e, err, sizeof err) == -EINVAL);
	CHECK(strstr(err, "LZ4"));
	free(k);
	/* a gzip payload: not decompressed on the host */
	k = fake_vmlinux(&len, false);
	k[2560] = 0x1f, k[2561] = 0x8b;
	boot.kernel = k;
	CHECK(gm_linux_load(g.s, &boot, &e, err, sizeof err) == -ENOTSUP);
	CHECK(strstr(err, "gzip"));
	/* payload fields pointing past the file */
	k[2560] = 0x02, k[2561] = 0x21;
	put32(k + 0x24c, 1u << 30);
	CHECK(gm_linux_load(g.s, &boot, &e, err, sizeof err) == -EINVAL);
	boot.flags = 0x80;
	CHECK(gm_linux_load(g.s, &boot, &e, err, sizeof err) == -EINVAL);
	free(k);
	guest_fini(&g);
}

static void test_files(const char *real)
{
	char err[256];
	void *buf;
	size_t len;
	CHECK(gm_linux_read_file("/nonexistent/vmlinuz", 1 << 30, &buf, &len, err, sizeof err) == -ENOENT);
	CHECK(strstr(err, "No such file"));
	CHECK(gm_linux_read_file("/", 1 << 30, &buf, &len, err, sizeof err) == -EISDIR);
	if (!real || !*real) {
		printf("bzimage_test: no real bzImage given (scripts/install-deps fetches one): "
		       "that part skipped\n");
		return;
	}
	if (gm_linux_read_file(real, 1 << 30, &buf, &len, err, sizeof err)) {
		printf("bzimage_test: %s: real bzImage part skipped\n", err);
		return;
	}
	struct gm_bzimage img;
	CHECK(gm_bzimage_parse(buf, len, &img, err, sizeof err) == 0);
	CHECK(img.version >= 0x020c && (img.xloadflags & 1) && img.init_size >= img.kernel_size);
	printf("bzimage_test: %s: protocol %u.%02u, kernel %s, init_size %u, pref_address %#llx\n",
	       real, img.version >> 8, img.version & 0xff, img.kernel_version, img.init_size,
	       (unsigned long long)img.pref_address);
	CHECK(gm_bzimage_parse(buf, len / 2, &img, err, sizeof err) == -EINVAL);
	CHECK(strstr(err, "truncated"));
	/* loaded into 256 MiB */
	struct guest g;
	guest_init(&g, 256ull << 20);
	struct gm_linux_ram ram = { 0, g.size, GM_E820_RAM };
	struct gm_linux_boot boot = { .kernel = buf, .kernel_size = len, .ram = &ram, .nram = 1 };
	struct gm_linux_entry e;
	CHECK(gm_linux_load(g.s, &boot, &e, err, sizeof err) == 0);
	/* and its vmlinux, decompressed here */
	boot.flags = GM_LINUX_BOOT_VMLINUX;
	int rc = gm_linux_load(g.s, &boot, &e, err, sizeof err);
	CHECK(rc == 0 || rc == -ENOTSUP);
	if (rc == 0)
		CHECK(e.rip >= 0x100000 && e.kernel_gpa <= e.rip && e.rip < e.kernel_end);
	else
		printf("bzimage_test: %s\n", err);
	guest_fini(&g);
	free(buf);
}

int main(int argc, char **argv)
{
	gm_rcu_register_thread();
	test_parse_bad();
	test_load();
	test_vmlinux();
	test_files(argc > 1 ? argv[1] : NULL);
	gm_rcu_unregister_thread();
	if (failures) {
		fprintf(stderr, "bzimage_test: %d failures\n", failures);
		return 1;
	}
	printf("bzimage_test: ok\n");
	return 0;
}
