/*
 * vmm/linux/bzimage.h — loads a Linux bzImage into guest memory by the x86
 * 64-bit boot protocol (Documentation/arch/x86/boot.rst), on gm_space.
 *
 * The caller owns the VM: it has registered guest RAM as gm_space slots and
 * passes the RAM ranges (gpa, size, type) it wants the guest to see as the
 * e820 map. The loader writes everything through gm_space_gfn_to_hva (so a
 * write outside the slots is refused, never performed) and returns the
 * vCPU state for the 64-bit entry as plain numbers (no <linux/kvm.h> here):
 * the VMM copies them into kvm_regs / kvm_sregs.
 *
 *   struct gm_bzimage img;
 *   char err[256];
 *   if (gm_bzimage_parse(buf, len, &img, err, sizeof err)) ...  // header only
 *   struct gm_linux_ram ram[] = { { 0, 256 << 20, GM_E820_RAM } };
 *   struct gm_linux_boot boot = { .kernel = buf, .kernel_size = len,
 *       .initrd = rd, .initrd_size = rdlen, .cmdline = "console=ttyS0",
 *       .ram = ram, .nram = 1 };
 *   struct gm_linux_entry entry;
 *   if (gm_linux_load(space, &boot, &entry, err, sizeof err)) ...
 *
 * Guest-physical layout (all below 1 MiB, inside a RAM range the caller
 * passes; the caller must give RAM at [0, 1 MiB) and the kernel's range):
 *   0x0500  GDT (null, null, code64 0x10, data 0x18)
 *   0x7000  boot_params (the "zero page")
 *   0x8ff0  initial stack top (unused by the kernel, which sets its own)
 *   0x9000  PML4, 0xa000 PDPT, 0xb000-0xefff four page directories:
 *           the first 4 GiB identity-mapped with 2 MiB pages
 *   0x20000 command line (up to the kernel's cmdline_size)
 * The e820 map marks [0x9fc00, 0x100000) reserved (EBDA, VGA, BIOS) inside
 * any RAM range that covers it. The kernel goes at 1 MiB (its 64-bit entry
 * at 1 MiB + 0x200; a relocatable kernel moves itself to where it wants),
 * the initrd as high as it fits below the kernel's initrd_addr_max and
 * 4 GiB, above the kernel's init_size, page-aligned.
 *
 * Errors are a negative errno and a sentence in err (may be NULL):
 * -ENOTSUP (GM_LINUX_BOOT_VMLINUX and a payload it cannot decompress),
 * -EINVAL (NULL arguments, not a bzImage, boot protocol older than 2.12,
 * no 64-bit entry (XLF_KERNEL_64), a command line longer than the kernel
 * takes, ranges that overlap or are misaligned), -E2BIG (more than 128 e820
 * entries), -ENOSPC (kernel, initrd or the boot structures do not fit in
 * the RAM ranges), -EFAULT (a RAM range the caller passed is not backed by
 * a gm_space slot). Nothing is written to guest memory unless the checks
 * pass; -EFAULT may leave a partial image behind.
 */
#ifndef GM_VMM_LINUX_BZIMAGE_H
#define GM_VMM_LINUX_BZIMAGE_H

#include <gmtrack/space.h>

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* e820 types */
enum gm_e820_type {
	GM_E820_RAM = 1,
	GM_E820_RESERVED = 2,
	GM_E820_ACPI = 3,
	GM_E820_NVS = 4,
	GM_E820_UNUSABLE = 5,
};

/* One guest-physical range for the e820 map. RAM ranges must be backed by
 * gm_space slots; other types are only reported to the guest. */
struct gm_linux_ram {
	uint64_t gpa;
	uint64_t size;
	uint32_t type; /* enum gm_e820_type */
};

/* What the setup header says (gm_bzimage_parse). */
struct gm_bzimage {
	uint16_t version;          /* boot protocol, 0x020c = 2.12 */
	uint8_t setup_sects;       /* 512-byte sectors of real-mode setup */
	uint8_t relocatable;
	uint16_t xloadflags;       /* XLF_* */
	uint8_t loadflags;
	uint32_t code32_start;
	uint32_t initrd_addr_max;  /* highest byte address an initrd may use */
	uint32_t kernel_alignment;
	uint32_t cmdline_size;     /* max length, without the NUL */
	uint32_t init_size;        /* bytes the kernel needs from its load address */
	uint64_t pref_address;
	size_t setup_size;         /* (setup_sects + 1) * 512: file offset of
				    * the protected-mode kernel */
	size_t kernel_size;        /* bytes of protected-mode kernel */
	char kernel_version[64];   /* the version string the header points at,
				    * "" if absent */
};

#define GM_BZIMAGE_XLF_KERNEL_64 0x1u
#define GM_BZIMAGE_MIN_VERSION 0x020cu

/*
 * gm_bzimage_parse — checks the setup header of buf[0, len) and fills *out.
 * 0, or -EINVAL (buf or out NULL, shorter than its setup, no 0xAA55 boot
 * flag or "HdrS" magic, protocol < 2.12, not loadable high, no 64-bit
 * entry) with a sentence in err.
 */
int gm_bzimage_parse(const void *buf, size_t len, struct gm_bzimage *out,
		     char *err, size_t errlen);

struct gm_linux_boot {
	const void *kernel;            /* the whole bzImage file */
	size_t kernel_size;
	const void *initrd;            /* NULL / 0: no initrd */
	size_t initrd_size;
	const char *cmdline;           /* NULL: "" */
	const struct gm_linux_ram *ram; /* sorted or not; must not overlap */
	size_t nram;
	unsigned flags;                /* GM_LINUX_BOOT_* */
};

/*
 * GM_LINUX_BOOT_VMLINUX — decompress the bzImage's payload on the host
 * (LZ4, the Debian cloud kernel's; an uncompressed ELF too) and load the
 * vmlinux ELF's segments at their physical addresses, entering at its
 * startup_64 with the same boot_params (what Firecracker does with a
 * vmlinux). Skips the in-guest decompressor, which is minutes of emulated
 * code under kvm_pvm. No KASLR then (the decompressor does it). Other
 * payload formats are -ENOTSUP with a sentence.
 */
#define GM_LINUX_BOOT_VMLINUX 0x1u

/* A segment register, KVM's layout of fields (struct kvm_segment). */
struct gm_linux_segment {
	uint64_t base;
	uint32_t limit;
	uint16_t selector;
	uint8_t type, present, dpl, db, s, l, g, avl;
};

/* vCPU state for the 64-bit entry. */
struct gm_linux_entry {
	uint64_t rip, rsi, rsp, rflags;
	uint64_t cr0, cr3, cr4, efer;
	uint64_t gdt_base;
	uint16_t gdt_limit;
	struct gm_linux_segment cs, ds; /* ds also for es, fs, gs, ss */
	struct gm_linux_segment tr, ldt;
	/* Where things went (for the VMM's log). */
	uint64_t kernel_gpa, kernel_end; /* end: kernel_gpa + init_size */
	uint64_t initrd_gpa, initrd_size;
	uint64_t boot_params_gpa, cmdline_gpa;
	unsigned e820_entries;
	struct gm_bzimage image;
};

/*
 * gm_linux_load — parses boot->kernel, checks that everything fits in the
 * RAM ranges, writes the kernel, initrd, command line, boot_params (setup
 * header copied from the image, e820 map from boot->ram), page tables and
 * GDT into guest memory through s, and fills *entry. Writer of guest
 * memory; s read under the caller's gm_rcu_read_lock() is not needed (the
 * loader takes it). Errors as in the opening comment.
 */
int gm_linux_load(struct gm_space *s, const struct gm_linux_boot *boot,
		  struct gm_linux_entry *entry, char *err, size_t errlen);

/*
 * gm_linux_read_file — reads a whole file into a malloc'd buffer (*buf,
 * *len; free() it). 0, or a negative errno with a sentence in err
 * (-ENOENT, -EISDIR, -EFBIG past max bytes, ...).
 */
int gm_linux_read_file(const char *path, size_t max, void **buf, size_t *len,
		       char *err, size_t errlen);

#ifdef __cplusplus
}
#endif

#endif
