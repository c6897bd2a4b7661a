/*
 * gm-linuxboot — boots a Linux bzImage under KVM with the loader of
 * vmm/linux/bzimage.c, guest RAM and PIO dispatch in a gm_space.
 *
 *   gm-linuxboot --kernel K [--initrd I] [--mem MiB] [--timeout S]
 *                [--keep-cpuid] [--cpuid-clear LEAF:REG:BIT]... [--verbose]
 *                -- "kernel command line"
 *
 * Devices: a 16550 UART at 0x3f8 (IRQ 4; output to stdout), a CMOS clock
 * at 0x70, the i8042's status/command port 0x64 (command 0xFE resets the
 * guest: boot with reboot=k), an exit port at 0x501 (a byte written there
 * ends the run with that exit status), KVM's in-kernel PIC, IOAPIC, LAPIC
 * and PIT. Other ports read as all ones and ignore writes.
 *
 * The guest has no ACPI, so `poweroff -f` halts it ("reboot: System
 * halted" / "reboot: Power down" on the console, then HLT with interrupts
 * off, which KVM's in-kernel LAPIC never reports): the run ends as a clean
 * power-off when that line appears and the vCPU then makes no exit for
 * 0.3 s.
 *
 * Exit status: 0 guest powered off (or exit port 0), 1 bad usage or input,
 * 2 KVM failure or an exit the guest cannot continue from (internal error,
 * failed entry, ...), 3 timeout, 4 guest reset / triple fault / panic,
 * other: the exit port's value.
 */
#define _GNU_SOURCE
#include "bzimage.h"

#include <gmtrack/rcu.h>
#include <gmtrack/space.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define EXIT_OFF 0
#define EXIT_USAGE 1
#define EXIT_KVM 2
#define EXIT_TIMEOUT 3
#define EXIT_RESET 4

#define LOW_RAM_LIMIT (3ull << 30) /* RAM above this goes to 4 GiB */

static bool verbose;
static bool g_cpuid_min;
static bool int3_assist = true;

static void die(int code, const char *fmt, ...) __attribute__((noreturn, format(printf, 2, 3)));
static void die(int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "gm-linuxboot: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	exit(code);
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- the VM --------------------------------------------------------------- */

struct vm {
	int kvm, fd, vcpu;
	struct kvm_run *run;
	size_t run_size;
	struct gm_space *space;
	struct gm_space_cache cache;
	double start;
	/* console */
	char line[512];
	size_t line_len;
	bool halting;     /* saw "reboot: System halted" / "Power down" */
	bool panicked;
	int exit_port;    /* -1, or the value written to 0x501 */
	bool reset;
	uint64_t unhandled_pio, unhandled_mmio;
	uint64_t exits, io_exits, mmio_exits;
	uint64_t int3_assists;
	/* --mailbox: gminit's output page, found in guest RAM */
	bool mailbox;
	const struct gm_linux_ram *ram;
	size_t nram;
	volatile struct mailbox *mb;
	uint32_t mb_printed;
};

static void irq_line(struct vm *vm, unsigned irq, int level)
{
	struct kvm_irq_level l = { .irq = irq, .level = level };
	if (ioctl(vm->fd, KVM_IRQ_LINE, &l) < 0)
		die(EXIT_KVM, "KVM_IRQ_LINE: %s", strerror(errno));
}

/* ---- 16550 UART ------------------------------------------------------------ */

struct uart {
	struct vm *vm;
	uint8_t ier, lcr, mcr, scr, dll, dlm, fcr;
	bool thr_pending; /* THR-empty interrupt pending */
	int irq_level;
};

#define UART_LSR_THRE 0x20
#define UART_LSR_TEMT 0x40
#define UART_IER_THRI 0x02
#define UART_MCR_LOOP 0x10

static void console_char(struct vm *vm, char ch)
{
	if (ch == '\n' || vm->line_len == sizeof vm->line - 1) {
		vm->line[vm->line_len] = 0;
		printf("%s\n", vm->line);
		fflush(stdout);
		if (strstr(vm->line, "reboot: System halted") ||
		    strstr(vm->line, "reboot: Power down"))
			vm->halting = true;
		if (strstr(vm->line, "Kernel panic"))
			vm->panicked = true;
		vm->line_len = 0;
		if (ch == '\n')
			return;
	}
	if (ch != '\r')
		vm->line[vm->line_len++] = ch;
}

static void uart_update(struct uart *u)
{
	int level = (u->ier & UART_IER_THRI) && u->thr_pending;
	if (level != u->irq_level) {
		u->irq_level = level;
		irq_line(u->vm, 4, level);
	}
}

static void uart_io(void *ctx, uint64_t addr, void *data, unsigned size, bool is_write)
{
	struct uart *u = ctx;
	uint8_t *d = data;
	unsigned reg = (unsigned)(addr - 0x3f8);
	bool dlab = u->lcr & 0x80;
	(void)size;
	if (is_write) {
		uint8_t v = d[0];
		switch (reg) {
		case 0:
			if (dlab) {
				u->dll = v;
			} else {
				if (!(u->mcr & UART_MCR_LOOP))
					console_char(u->vm, (char)v);
				u->thr_pending = true; /* sent at once */
			}
			break;
		case 1:
			if (dlab) {
				u->dlm = v;
			} else {
				if ((v & UART_IER_THRI) && !(u->ier & UART_IER_THRI))
					u->thr_pending = true;
				u->ier = v & 0x0f;
			}
			break;
		case 2: u->fcr = v & 0xc9; break;
		case 3: u->lcr = v; break;
		case 4: u->mcr = v & 0x1f; break;
		case 7: u->scr = v; break;
		default: break; /* LSR, MSR: read-only */
		}
	} else {
		uint8_t v = 0;
		switch (reg) {
		case 0: v = dlab ? u->dll : 0; break;
		case 1: v = dlab ? u->dlm : u->ier; break;
		case 2:
			if ((u->ier & UART_IER_THRI) && u->thr_pending) {
				v = 0x02;
				u->thr_pending = false; /* reading IIR clears THRI */
			} else {
				v = 0x01;
			}
			if (u->fcr & 0x01)
				v |= 0xc0;
			break;
		case 3: v = u->lcr; break;
		case 4: v = u->mcr; break;
		case 5: v = UART_LSR_THRE | UART_LSR_TEMT; break;
		case 6:
			if (u->mcr & UART_MCR_LOOP)
				v = (uint8_t)(((u->mcr & 0x02) << 3) | ((u->mcr & 0x01) << 5) |
					      ((u->mcr & 0x0c) << 4));
			else
				v = 0xb0; /* DCD, DSR, CTS */
			break;
		case 7: v = u->scr; break;
		}
		memset(d, 0, size);
		d[0] = v;
	}
	uart_update(u);
}

/* ---- CMOS clock (0x70 index, 0x71 data) ------------------------------------ */

struct cmos {
	uint8_t index;
};

static uint8_t bcd(int v) { return (uint8_t)((v / 10) << 4 | (v % 10)); }

static void cmos_io(void *ctx, uint64_t addr, void *data, unsigned size, bool is_write)
{
	struct cmos *c = ctx;
	uint8_t *d = data;
	if (is_write) {
		if (addr == 0x70)
			c->index = d[0] & 0x7f;
		return;
	}
	memset(d, 0, size);
	if (addr == 0x70) {
		d[0] = 0xff;
		return;
	}
	time_t t = time(NULL);
	struct tm tm;
	gmtime_r(&t, &tm);
	switch (c->index) {
	case 0x00: d[0] = bcd(tm.tm_sec); break;
	case 0x02: d[0] = bcd(tm.tm_min); break;
	case 0x04: d[0] = bcd(tm.tm_hour); break;
	case 0x06: d[0] = bcd(tm.tm_wday + 1); break;
	case 0x07: d[0] = bcd(tm.tm_mday); break;
	case 0x08: d[0] = bcd(tm.tm_mon + 1); break;
	case 0x09: d[0] = bcd(tm.tm_year % 100); break;
	case 0x32: d[0] = bcd(tm.tm_year / 100 + 19); break;
	case 0x0a: d[0] = 0x26; break; /* UIP clear, 32 kHz, 1 kHz */
	case 0x0b: d[0] = 0x02; break; /* 24 h, BCD */
	case 0x0d: d[0] = 0x80; break; /* valid */
	default: d[0] = 0; break;
	}
}

/* ---- i8042 (0x64) and the exit port (0x501) --------------------------------- */

static void i8042_io(void *ctx, uint64_t addr, void *data, unsigned size, bool is_write)
{
	struct vm *vm = ctx;
	uint8_t *d = data;
	if (is_write) {
		if (addr == 0x64 && d[0] == 0xfe) {
			vm->reset = true;
			vm->run->immediate_exit = 1;
		}
		return;
	}
	memset(d, 0, size); /* no data, input buffer empty */
}

static void exit_io(void *ctx, uint64_t addr, void *data, unsigned size, bool is_write)
{
	struct vm *vm = ctx;
	(void)addr;
	if (is_write) {
		vm->exit_port = ((uint8_t *)data)[0];
		vm->run->immediate_exit = 1;
	} else {
		memset(data, 0xff, size);
	}
}

/* ---- guest memory for diagnostics -------------------------------------------- */

static void *gpa_ptr(struct vm *vm, uint64_t gpa, size_t len)
{
	uint64_t hva;
	if ((gpa & 0xfff) + len > 0x1000)
		return NULL;
	gm_rcu_read_lock();
	int rc = gm_space_gfn_to_hva(vm->space, &vm->cache, gpa >> 12, &hva);
	gm_rcu_read_unlock();
	return rc ? NULL : (void *)(uintptr_t)(hva + (gpa & 0xfff));
}

/* Walks the guest's 4- or 5-level page tables: gva -> gpa, or UINT64_MAX. */
static uint64_t gva_to_gpa(struct vm *vm, const struct kvm_sregs *sr, uint64_t gva)
{
	if (!(sr->cr0 & 0x80000000ull))
		return gva;
	int levels = (sr->cr4 & (1u << 12)) ? 5 : 4;
	uint64_t table = sr->cr3 & 0x000ffffffffff000ull;
	for (int lvl = levels; lvl >= 1; lvl--) {
		unsigned idx = (unsigned)(gva >> (12 + 9 * (lvl - 1))) & 511;
		uint64_t *e = gpa_ptr(vm, table + idx * 8, 8);
		if (!e || !(*e & 1))
			return UINT64_MAX;
		uint64_t pa = *e & 0x000ffffffffff000ull;
		if (lvl == 1)
			return pa | (gva & 0xfff);
		if ((lvl == 2 || lvl == 3) && (*e & 0x80)) {
			uint64_t mask = (1ull << (12 + 9 * (lvl - 1))) - 1;
			return (pa & ~mask) | (gva & mask);
		}
		table = pa;
	}
	return UINT64_MAX;
}

static void dump_state(struct vm *vm, const char *why)
{
	struct kvm_regs r;
	struct kvm_sregs sr;
	if (ioctl(vm->vcpu, KVM_GET_REGS, &r) < 0 || ioctl(vm->vcpu, KVM_GET_SREGS, &sr) < 0) {
		fprintf(stderr, "gm-linuxboot: %s; cannot read registers: %s\n", why,
			strerror(errno));
		return;
	}
	fprintf(stderr, "gm-linuxboot: %s\n", why);
	fprintf(stderr, "  rip %#llx rsp %#llx rflags %#llx cs %#x cr0 %#llx cr3 %#llx cr4 %#llx efer %#llx\n",
		r.rip, r.rsp, r.rflags, sr.cs.selector, sr.cr0, sr.cr3, sr.cr4, sr.efer);
	fprintf(stderr, "  rax %#llx rbx %#llx rcx %#llx rdx %#llx rsi %#llx rdi %#llx\n",
		r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi);
	uint64_t gpa = gva_to_gpa(vm, &sr, sr.cs.base + r.rip);
	fprintf(stderr, "  instruction at gpa %#llx:", (unsigned long long)gpa);
	for (int i = 0; i < 16 && gpa != UINT64_MAX; i++) {
		uint8_t *b = gpa_ptr(vm, gpa + i, 1);
		if (!b) {
			fprintf(stderr, " (not in guest RAM)");
			break;
		}
		fprintf(stderr, " %02x", *b);
	}
	if (gpa == UINT64_MAX)
		fprintf(stderr, " (rip not mapped by the guest's page tables)");
	fprintf(stderr, "\n");
	if (vm->line_len) {
		vm->line[vm->line_len] = 0;
		fprintf(stderr, "  console (unfinished line): %s\n", vm->line);
	}
}

/*
 * Instructions kvm_pvm's emulator gives up on (KVM_EXIT_INTERNAL_ERROR,
 * emulation failure) that the VMM completes itself; true if it did.
 * - INT3: KVM's emulator delivers software interrupts only in real mode
 *   (emulate_int: "protected mode interrupts unimplemented"), and Linux
 *   executes one in int3_selftest (alternative_instructions) and hits the
 *   ones text_poke_bp plants while patching. RIP goes past the INT3 and #BP
 *   is injected (KVM_SET_VCPU_EVENTS): the guest's IDT handles it as the
 *   CPU would have.
 * - FWAIT (fpu__drop): no x87 exception can be pending for the emulator,
 *   so it is a no-op; RIP goes past it.
 */
static bool assist_int3(struct vm *vm)
{
	struct kvm_regs r;
	struct kvm_sregs sr;
	if (ioctl(vm->vcpu, KVM_GET_REGS, &r) < 0 || ioctl(vm->vcpu, KVM_GET_SREGS, &sr) < 0)
		return false;
	uint64_t gpa = gva_to_gpa(vm, &sr, sr.cs.base + r.rip);
	uint8_t *b = gpa == UINT64_MAX ? NULL : gpa_ptr(vm, gpa, 1);
	if (b && *b == 0x9b) {
		/* FWAIT: KVM's emulator has no x87 exception state to wait
		 * for; with none pending (the guest's fxsave'd state decides
		 * that, and Linux ignores a fault here) it is a no-op. */
		r.rip += 1;
		if (ioctl(vm->vcpu, KVM_SET_REGS, &r) < 0)
			return false;
		if (verbose)
			fprintf(stderr, "gm-linuxboot: FWAIT at rip %#llx: skipped\n", r.rip - 1);
		return true;
	}
	if (!b || *b != 0xcc)
		return false;
	struct kvm_vcpu_events ev;
	if (ioctl(vm->vcpu, KVM_GET_VCPU_EVENTS, &ev) < 0)
		return false;
	if (ev.exception.injected || ev.exception.pending || ev.interrupt.injected)
		return false;
	r.rip += 1;
	ev.exception.injected = 1;
	ev.exception.nr = 3;
	ev.exception.has_error_code = 0;
	ev.exception.error_code = 0;
	ev.flags = 0;
	if (ioctl(vm->vcpu, KVM_SET_REGS, &r) < 0 || ioctl(vm->vcpu, KVM_SET_VCPU_EVENTS, &ev) < 0)
		return false;
	if (verbose)
		fprintf(stderr, "gm-linuxboot: INT3 at rip %#llx: #BP injected\n", r.rip - 1);
	return true;
}

/* ---- the mailbox (gminit.c) ------------------------------------------------
 * A page of guest memory, starting with two magic words, where the guest's
 * init writes what it prints: under kvm_pvm no system call of a non-PVM
 * kernel's user space reaches the kernel, so this is its way out. The VMM
 * finds it by scanning guest RAM through gm_space's gfn->hva. */
#define MB_MAGIC0 0x786f626c69616d67ull /* "gmailbox" */
struct mailbox {
	uint64_t magic[2];
	uint32_t state; /* 1 running, 2 done */
	uint32_t len;
	char text[4096 - 24];
};

/* Prints what is new; true once the guest says done. */
static bool mailbox_poll(struct vm *vm)
{
	if (vm->mb && (vm->mb->magic[0] != MB_MAGIC0 || vm->mb->magic[1] != ~MB_MAGIC0))
		vm->mb = NULL; /* the page moved (or was freed): look again */
	for (size_t i = 0; !vm->mb && i < vm->nram; i++) {
		uint64_t first = vm->ram[i].gpa >> 12, n = vm->ram[i].size >> 12;
		gm_rcu_read_lock();
		for (uint64_t g = first; g < first + n; g++) {
			uint64_t hva;
			if (gm_space_gfn_to_hva(vm->space, &vm->cache, g, &hva))
				continue;
			volatile uint64_t *w = (volatile uint64_t *)(uintptr_t)hva;
			if (w[0] == MB_MAGIC0 && w[1] == ~MB_MAGIC0) {
				vm->mb = (volatile struct mailbox *)(uintptr_t)hva;
				if (verbose)
					fprintf(stderr, "gm-linuxboot: mailbox at gpa %#llx\n",
						(unsigned long long)(g << 12));
				break;
			}
		}
		gm_rcu_read_unlock();
	}
	if (!vm->mb)
		return false;
	uint32_t len = __atomic_load_n(&vm->mb->len, __ATOMIC_ACQUIRE);
	if (len > sizeof vm->mb->text)
		len = sizeof vm->mb->text;
	if (len < vm->mb_printed)
		vm->mb_printed = 0; /* a new mailbox (init restarted?) */
	for (uint32_t i = vm->mb_printed; i < len; i++)
		console_char(vm, vm->mb->text[i]);
	vm->mb_printed = len;
	return vm->mb->state == 2;
}

/* ---- CPUID ---------------------------------------------------------------------- */

struct cpuid_clear {
	uint32_t leaf;
	int reg; /* 0 eax 1 ebx 2 ecx 3 edx */
	int bit;
};

static void setup_cpuid(struct vm *vm, const struct cpuid_clear *clr, int nclr)
{
	int n = 64;
	struct kvm_cpuid2 *c;
	for (;;) {
		c = calloc(1, sizeof *c + n * sizeof c->entries[0]);
		if (!c)
			die(EXIT_KVM, "out of memory");
		c->nent = (uint32_t)n;
		if (ioctl(vm->kvm, KVM_GET_SUPPORTED_CPUID, c) == 0)
			break;
		if (errno != E2BIG)
			die(EXIT_KVM, "KVM_GET_SUPPORTED_CPUID: %s", strerror(errno));
		free(c);
		n *= 2;
	}
	for (uint32_t i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];
		for (int k = 0; k < nclr; k++) {
			if (e->function != clr[k].leaf)
				continue;
			if (clr[k].leaf == 7 && e->index != 0)
				continue;
			uint32_t *regs[4] = { &e->eax, &e->ebx, &e->ecx, &e->edx };
			uint32_t *r = regs[clr[k].reg];
			if (verbose && (*r & (1u << clr[k].bit)))
				fprintf(stderr, "gm-linuxboot: cpuid %#x.%s bit %d cleared\n",
					clr[k].leaf, (const char *[]){ "eax", "ebx", "ecx", "edx" }[clr[k].reg],
					clr[k].bit);
			*r &= ~(1u << clr[k].bit);
		}
		if (e->function == 1)
			e->ebx &= 0x00ffffff; /* initial APIC id 0 */
		if (g_cpuid_min) {
			/* A QEMU-"qemu64"-like set: no XSAVE/AVX, no leaf-7 features. */
			if (e->function == 1) {
				e->ecx &= (1u << 0) | (1u << 9) | (1u << 19) | (1u << 20) |
					  (1u << 23) | (1u << 31) | (1u << 13);
				e->edx &= 0x178bfbffu;
			}
			if (e->function == 7 || e->function == 0xd || e->function == 0x14)
				e->eax = e->ebx = e->ecx = e->edx = 0;
			if (e->function == 0x80000001)
				e->ecx &= (1u << 0) | (1u << 5), e->edx &= 0x28100800u | (1u << 27) | (1u << 29);
		}
	}
	if (verbose)
		for (uint32_t i = 0; i < c->nent; i++)
			fprintf(stderr, "gm-linuxboot: cpuid %#010x.%u: %08x %08x %08x %08x\n",
				c->entries[i].function, c->entries[i].index, c->entries[i].eax,
				c->entries[i].ebx, c->entries[i].ecx, c->entries[i].edx);
	if (ioctl(vm->vcpu, KVM_SET_CPUID2, c) < 0)
		die(EXIT_KVM, "KVM_SET_CPUID2: %s", strerror(errno));
	free(c);
}

/* ---- timeout / halt watchdog ----------------------------------------------------- */

static struct kvm_run *g_run;
static volatile sig_atomic_t g_alarm;

static void on_alarm(int sig)
{
	(void)sig;
	g_alarm = 1;
	if (g_run)
		g_run->immediate_exit = 1;
}

static volatile sig_atomic_t g_status;

static void on_status(int sig)
{
	(void)sig;
	g_status = 1;
	if (g_run)
		g_run->immediate_exit = 1;
}

static void arm(double seconds)
{
	struct itimerval it = { 0 };
	it.it_value.tv_sec = (time_t)seconds;
	it.it_value.tv_usec = (suseconds_t)((seconds - (double)(time_t)seconds) * 1e6);
	if (!it.it_value.tv_sec && !it.it_value.tv_usec)
		it.it_value.tv_usec = 1;
	setitimer(ITIMER_REAL, &it, NULL);
}

/* ---- main -------------------------------------------------------------------------- */

static void usage(void)
{
	fprintf(stderr,
		"usage: gm-linuxboot --kernel BZIMAGE [--initrd FILE] [--mem MiB] [--timeout SECONDS]\n"
		"                    [--vmlinux] [--keep-cpuid] [--cpuid-min] [--cpuid-clear LEAF:REG:BIT]...\n"
		"                    [--no-int3-assist] [--mailbox] [--verbose]\n"
		"                    [-- \"kernel command line\"]\n"
		"  CPUID is KVM_GET_SUPPORTED_CPUID with CX16 (1:ecx:13) cleared unless --keep-cpuid.\n"
		"  --vmlinux: decompress the bzImage's payload on the host and enter the vmlinux ELF.\n"
		"  --mailbox: also print what gminit writes to its mailbox page; its \"done\" ends the run.\n");
}

static int parse_reg(const char *s)
{
	const char *names[4] = { "eax", "ebx", "ecx", "edx" };
	for (int i = 0; i < 4; i++)
		if (!strcmp(s, names[i]))
			return i;
	return -1;
}

int main(int argc, char **argv)
{
	const char *kernel = NULL, *initrd = NULL, *cmdline = "";
	unsigned long mem_mib = 256;
	double timeout = 300;
	struct cpuid_clear clr[32];
	int nclr = 0;
	bool keep_cpuid = false;
	unsigned boot_flags = 0;
	bool mailbox = false;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--")) {
			if (i + 1 < argc)
				cmdline = argv[i + 1];
			if (i + 2 < argc)
				die(EXIT_USAGE, "one command line string after --, got %d", argc - i - 1);
			break;
		} else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			usage();
			return 0;
		} else if (!strcmp(a, "--verbose")) {
			verbose = true;
		} else if (!strcmp(a, "--mailbox")) {
			mailbox = true;
		} else if (!strcmp(a, "--vmlinux")) {
			boot_flags |= GM_LINUX_BOOT_VMLINUX;
		} else if (!strcmp(a, "--no-int3-assist")) {
			int3_assist = false;
		} else if (!strcmp(a, "--cpuid-min")) {
			g_cpuid_min = true;
		} else if (!strcmp(a, "--keep-cpuid")) {
			keep_cpuid = true;
		} else if (!v) {
			usage();
			die(EXIT_USAGE, "%s: missing value (or unknown option)", a);
		} else if (!strcmp(a, "--kernel")) {
			kernel = v, i++;
		} else if (!strcmp(a, "--initrd")) {
			initrd = v, i++;
		} else if (!strcmp(a, "--mem")) {
			char *end;
			errno = 0;
			mem_mib = strtoul(v, &end, 0);
			if (errno || *end || mem_mib < 2 || mem_mib > (1ul << 20))
				die(EXIT_USAGE, "--mem %s: a size in MiB, 2 to 1048576", v);
			i++;
		} else if (!strcmp(a, "--timeout")) {
			char *end;
			timeout = strtod(v, &end);
			if (*end || !(timeout > 0) || timeout > 1e6)
				die(EXIT_USAGE, "--timeout %s: seconds, > 0", v);
			i++;
		} else if (!strcmp(a, "--cpuid-clear")) {
			char regname[8];
			unsigned leaf;
			int bit;
			if (nclr == 31 || sscanf(v, "%i:%7[a-z]:%d", (int *)&leaf, regname, &bit) != 3 ||
			    parse_reg(regname) < 0 || bit < 0 || bit > 31)
				die(EXIT_USAGE, "--cpuid-clear %s: LEAF:REG:BIT, e.g. 1:ecx:13", v);
			clr[nclr++] = (struct cpuid_clear){ leaf, parse_reg(regname), bit };
			i++;
		} else {
			usage();
			die(EXIT_USAGE, "unknown option %s", a);
		}
	}
	if (!kernel) {
		usage();
		die(EXIT_USAGE, "--kernel is required");
	}
	if (!keep_cpuid)
		clr[nclr++] = (struct cpuid_clear){ 1, 2, 13 }; /* CX16: cmpxchg16b */

	/* Inputs first: bad files are errors before any KVM work. */
	char err[512];
	void *kbuf, *ibuf = NULL;
	size_t klen, ilen = 0;
	if (gm_linux_read_file(kernel, 1ul << 30, &kbuf, &klen, err, sizeof err))
		die(EXIT_USAGE, "kernel: %s", err);
	struct gm_bzimage img;
	if (gm_bzimage_parse(kbuf, klen, &img, err, sizeof err))
		die(EXIT_USAGE, "kernel %s: %s", kernel, err);
	if (initrd && gm_linux_read_file(initrd, 1ul << 31, &ibuf, &ilen, err, sizeof err))
		die(EXIT_USAGE, "initrd: %s", err);

	struct vm vm = { .exit_port = -1, .mailbox = mailbox };
	vm.start = now();
	vm.kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (vm.kvm < 0)
		die(EXIT_KVM, "/dev/kvm: %s", strerror(errno));
	if (ioctl(vm.kvm, KVM_GET_API_VERSION, 0) != KVM_API_VERSION)
		die(EXIT_KVM, "KVM API version is not %d", KVM_API_VERSION);
	vm.fd = ioctl(vm.kvm, KVM_CREATE_VM, 0);
	if (vm.fd < 0)
		die(EXIT_KVM, "KVM_CREATE_VM: %s", strerror(errno));
	if (ioctl(vm.fd, KVM_SET_TSS_ADDR, 0xfffbd000ul) < 0 && verbose)
		fprintf(stderr, "gm-linuxboot: KVM_SET_TSS_ADDR: %s (ignored)\n", strerror(errno));
	uint64_t idmap = 0xfffbc000;
	if (ioctl(vm.fd, KVM_SET_IDENTITY_MAP_ADDR, &idmap) < 0 && verbose)
		fprintf(stderr, "gm-linuxboot: KVM_SET_IDENTITY_MAP_ADDR: %s (ignored)\n",
			strerror(errno));
	if (ioctl(vm.fd, KVM_CREATE_IRQCHIP, 0) < 0)
		die(EXIT_KVM, "KVM_CREATE_IRQCHIP: %s", strerror(errno));
	struct kvm_pit_config pit = { .flags = 0 };
	if (ioctl(vm.fd, KVM_CREATE_PIT2, &pit) < 0)
		die(EXIT_KVM, "KVM_CREATE_PIT2: %s", strerror(errno));

	/* Guest RAM: one anonymous mapping, [0, 3 GiB) at gpa 0 and the rest at
	 * 4 GiB; each part a gm_space slot mirrored to a KVM memslot. */
	gm_rcu_register_thread();
	if (gm_space_create(&vm.space, NULL, GM_RCU, NULL))
		die(EXIT_KVM, "gm_space_create failed");
	gm_space_cache_init(&vm.cache);
	uint64_t mem = (uint64_t)mem_mib << 20;
	void *ram = mmap(NULL, mem, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (ram == MAP_FAILED)
		die(EXIT_KVM, "mmap %lu MiB: %s", mem_mib, strerror(errno));
	madvise(ram, mem, MADV_MERGEABLE);
	struct gm_linux_ram ranges[2];
	size_t nranges = 0;
	uint64_t low = mem < LOW_RAM_LIMIT ? mem : LOW_RAM_LIMIT;
	ranges[nranges++] = (struct gm_linux_ram){ 0, low, GM_E820_RAM };
	if (mem > low)
		ranges[nranges++] = (struct gm_linux_ram){ 4ull << 30, mem - low, GM_E820_RAM };
	uint64_t hva_off = 0;
	for (size_t i = 0; i < nranges; i++) {
		uint64_t hva = (uint64_t)(uintptr_t)ram + hva_off;
		int rc = gm_space_slot_add(vm.space, (uint32_t)i, ranges[i].gpa >> 12,
					   ranges[i].size >> 12, hva, 0);
		if (rc)
			die(EXIT_KVM, "gm_space_slot_add: %s", strerror(-rc));
		struct kvm_userspace_memory_region r = {
			.slot = (uint32_t)i, .guest_phys_addr = ranges[i].gpa,
			.memory_size = ranges[i].size, .userspace_addr = hva,
		};
		if (ioctl(vm.fd, KVM_SET_USER_MEMORY_REGION, &r) < 0) {
			int e = errno;
			gm_space_slot_remove(vm.space, (uint32_t)i); /* the two agree */
			die(EXIT_KVM, "KVM_SET_USER_MEMORY_REGION: %s", strerror(e));
		}
		hva_off += ranges[i].size;
	}

	/* The vCPU. */
	vm.vcpu = ioctl(vm.fd, KVM_CREATE_VCPU, 0);
	if (vm.vcpu < 0)
		die(EXIT_KVM, "KVM_CREATE_VCPU: %s", strerror(errno));
	int rs = ioctl(vm.kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (rs <= 0)
		die(EXIT_KVM, "KVM_GET_VCPU_MMAP_SIZE: %s", strerror(errno));
	vm.run_size = (size_t)rs;
	vm.run = mmap(NULL, vm.run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vm.vcpu, 0);
	if (vm.run == MAP_FAILED)
		die(EXIT_KVM, "mmap kvm_run: %s", strerror(errno));
	setup_cpuid(&vm, clr, nclr);

	/* Load. */
	struct gm_linux_boot boot = {
		.kernel = kbuf, .kernel_size = klen, .initrd = ibuf, .initrd_size = ilen,
		.cmdline = cmdline, .ram = ranges, .nram = nranges, .flags = boot_flags,
	};
	struct gm_linux_entry en;
	int rc = gm_linux_load(vm.space, &boot, &en, err, sizeof err);
	if (rc)
		die(EXIT_USAGE, "loading %s: %s", kernel, err);
	free(kbuf);
	free(ibuf);
	fprintf(stderr,
		"gm-linuxboot: kernel %s (protocol %u.%02u), %lu MiB RAM in %zu slot(s), "
		"%u e820 entries, kernel at %#llx-%#llx, initrd %llu bytes at %#llx\n",
		en.image.kernel_version[0] ? en.image.kernel_version : "(no version)",
		en.image.version >> 8, en.image.version & 0xff, mem_mib, nranges,
		en.e820_entries, (unsigned long long)en.kernel_gpa,
		(unsigned long long)en.kernel_end, (unsigned long long)en.initrd_size,
		(unsigned long long)en.initrd_gpa);

	struct kvm_sregs sr;
	if (ioctl(vm.vcpu, KVM_GET_SREGS, &sr) < 0)
		die(EXIT_KVM, "KVM_GET_SREGS: %s", strerror(errno));
	struct gm_linux_segment *segs[2] = { &en.cs, &en.ds };
	struct kvm_segment ks[2];
	for (int i = 0; i < 2; i++)
		ks[i] = (struct kvm_segment){ .base = segs[i]->base, .limit = segs[i]->limit,
					      .selector = segs[i]->selector, .type = segs[i]->type,
					      .present = segs[i]->present, .dpl = segs[i]->dpl,
					      .db = segs[i]->db, .s = segs[i]->s, .l = segs[i]->l,
					      .g = segs[i]->g, .avl = segs[i]->avl };
	sr.cs = ks[0];
	sr.ds = sr.es = sr.fs = sr.gs = sr.ss = ks[1];
	sr.gdt.base = en.gdt_base;
	sr.gdt.limit = en.gdt_limit;
	sr.cr0 = en.cr0;
	sr.cr3 = en.cr3;
	sr.cr4 = en.cr4;
	sr.efer = en.efer;
	if (ioctl(vm.vcpu, KVM_SET_SREGS, &sr) < 0)
		die(EXIT_KVM, "KVM_SET_SREGS: %s", strerror(errno));
	struct kvm_regs regs = { .rip = en.rip, .rsi = en.rsi, .rsp = en.rsp,
				 .rflags = en.rflags };
	if (ioctl(vm.vcpu, KVM_SET_REGS, &regs) < 0)
		die(EXIT_KVM, "KVM_SET_REGS: %s", strerror(errno));

	/* Devices, through gm_space's PIO ranges. */
	struct uart uart = { .vm = &vm };
	struct cmos cmos = { 0 };
	if (gm_space_io_add(vm.space, GM_SPACE_PIO, 0x3f8, 0x3ff, uart_io, &uart) ||
	    gm_space_io_add(vm.space, GM_SPACE_PIO, 0x70, 0x71, cmos_io, &cmos) ||
	    gm_space_io_add(vm.space, GM_SPACE_PIO, 0x64, 0x64, i8042_io, &vm) ||
	    gm_space_io_add(vm.space, GM_SPACE_PIO, 0x60, 0x60, i8042_io, &vm) ||
	    gm_space_io_add(vm.space, GM_SPACE_PIO, 0x501, 0x501, exit_io, &vm))
		die(EXIT_KVM, "gm_space_io_add failed");

	g_run = vm.run;
	struct sigaction sa = { .sa_handler = on_alarm };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGALRM, &sa, NULL);
	struct sigaction su = { .sa_handler = on_status }; /* kill -USR1: where is it */
	sigemptyset(&su.sa_mask);
	sigaction(SIGUSR1, &su, NULL);
	vm.ram = ranges;
	vm.nram = nranges;
	arm(vm.mailbox && timeout > 0.25 ? 0.25 : timeout);
	double deadline = vm.start + timeout;
	double halt_seen = 0;
	int code = -1;
	const char *why = NULL;

	while (code < 0) {
		int r = ioctl(vm.vcpu, KVM_RUN, 0);
		int e = errno;
		if (r < 0 && e != EINTR && e != EAGAIN)
			die(EXIT_KVM, "KVM_RUN: %s", strerror(e));
		if (r < 0 || vm.run->immediate_exit || g_alarm) {
			vm.run->immediate_exit = 0;
			if (g_status) {
				g_status = 0;
				char what[96];
				snprintf(what, sizeof what, "status after %.1f s, %llu exits",
					 now() - vm.start, (unsigned long long)vm.exits);
				dump_state(&vm, what);
			}
			if (vm.exit_port >= 0) {
				code = vm.exit_port, why = "exit port 0x501 written";
			} else if (vm.reset) {
				code = vm.panicked ? EXIT_RESET : (vm.halting ? EXIT_OFF : EXIT_RESET);
				why = "guest reset through the i8042 (0x64 <- 0xfe)";
			} else if (g_alarm) {
				g_alarm = 0;
				if (vm.mailbox && mailbox_poll(&vm)) {
					code = EXIT_OFF;
					why = "workload done (mailbox): the guest cannot make the system "
					      "call to power off here";
				} else if (vm.halting && now() - halt_seen >= 0.25) {
					code = vm.panicked ? EXIT_RESET : EXIT_OFF;
					why = "guest halted after power-off (no exit for 0.3 s)";
				} else if (now() >= deadline) {
					code = EXIT_TIMEOUT, why = "timeout";
					dump_state(&vm, "timeout: vCPU state");
				} else if (vm.halting) {
					arm(0.3);
				} else {
					double left = deadline - now();
					arm(vm.mailbox && left > 0.25 ? 0.25 : left);
				}
			}
			if (r < 0)
				continue;
		}
		vm.exits++;
		struct kvm_run *run = vm.run;
		switch (run->exit_reason) {
		case KVM_EXIT_IO: {
			vm.io_exits++;
			uint8_t *p = (uint8_t *)run + run->io.data_offset;
			struct gm_space_io io;
			bool w = run->io.direction == KVM_EXIT_IO_OUT;
			gm_rcu_read_lock();
			int found = gm_space_io_find(vm.space, GM_SPACE_PIO, run->io.port, &io);
			gm_rcu_read_unlock();
			for (uint32_t k = 0; k < run->io.count; k++, p += run->io.size) {
				if (found == 0) {
					io.fn(io.ctx, run->io.port, p, run->io.size, w);
				} else {
					if (verbose && vm.unhandled_pio < 16)
						fprintf(stderr, "gm-linuxboot: unhandled PIO %s %#x/%u\n",
							w ? "write" : "read", run->io.port, run->io.size);
					vm.unhandled_pio++;
					if (!w)
						memset(p, 0xff, run->io.size);
				}
			}
			break;
		}
		case KVM_EXIT_MMIO: {
			vm.mmio_exits++;
			struct gm_space_io io;
			gm_rcu_read_lock();
			int found = gm_space_io_find(vm.space, GM_SPACE_MMIO, run->mmio.phys_addr, &io);
			gm_rcu_read_unlock();
			if (found == 0) {
				io.fn(io.ctx, run->mmio.phys_addr, run->mmio.data, run->mmio.len,
				      run->mmio.is_write);
			} else {
				if (verbose && vm.unhandled_mmio < 16)
					fprintf(stderr, "gm-linuxboot: unhandled MMIO %s %#llx/%u\n",
						run->mmio.is_write ? "write" : "read",
						run->mmio.phys_addr, run->mmio.len);
				vm.unhandled_mmio++;
				if (!run->mmio.is_write)
					memset(run->mmio.data, 0xff, sizeof run->mmio.data);
			}
			break;
		}
		case KVM_EXIT_HLT:
			code = vm.halting ? EXIT_OFF : EXIT_KVM;
			why = "KVM_EXIT_HLT";
			break;
		case KVM_EXIT_SHUTDOWN:
			code = vm.halting && !vm.panicked ? EXIT_OFF : EXIT_RESET;
			why = "KVM_EXIT_SHUTDOWN (triple fault or reset)";
			if (!vm.halting)
				dump_state(&vm, why);
			break;
		case KVM_EXIT_SYSTEM_EVENT:
			code = run->system_event.type == KVM_SYSTEM_EVENT_SHUTDOWN ? EXIT_OFF : EXIT_RESET;
			why = "KVM_EXIT_SYSTEM_EVENT";
			fprintf(stderr, "gm-linuxboot: system event type %u\n", run->system_event.type);
			break;
		case KVM_EXIT_INTERNAL_ERROR: {
			if (run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION && int3_assist &&
			    assist_int3(&vm)) {
				vm.int3_assists++;
				break;
			}
			char msg[256];
			int n = snprintf(msg, sizeof msg, "KVM_EXIT_INTERNAL_ERROR suberror %u (%s), %u data words:",
					 run->internal.suberror,
					 run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION ? "emulation failure" :
					 run->internal.suberror == KVM_INTERNAL_ERROR_SIMUL_EX ? "exception while delivering one" :
					 run->internal.suberror == KVM_INTERNAL_ERROR_DELIVERY_EV ? "event delivery" :
					 "other", run->internal.ndata);
			for (uint32_t k = 0; k < run->internal.ndata && k < 16 && n < (int)sizeof msg - 20; k++)
				n += snprintf(msg + n, sizeof msg - n, " %#llx", run->internal.data[k]);
			dump_state(&vm, msg);
			if (run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION &&
			    (run->emulation_failure.flags & KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES)) {
				fprintf(stderr, "  instruction bytes from KVM (%u):", run->emulation_failure.insn_size);
				for (unsigned k = 0; k < run->emulation_failure.insn_size && k < 16; k++)
					fprintf(stderr, " %02x", run->emulation_failure.insn_bytes[k]);
				fprintf(stderr, "\n");
			}
			code = EXIT_KVM, why = "KVM_EXIT_INTERNAL_ERROR";
			break;
		}
		case KVM_EXIT_FAIL_ENTRY:
			fprintf(stderr, "gm-linuxboot: KVM_EXIT_FAIL_ENTRY reason %#llx cpu %u\n",
				run->fail_entry.hardware_entry_failure_reason, run->fail_entry.cpu);
			dump_state(&vm, "failed entry");
			code = EXIT_KVM, why = "KVM_EXIT_FAIL_ENTRY";
			break;
		case KVM_EXIT_EXCEPTION:
			fprintf(stderr, "gm-linuxboot: KVM_EXIT_EXCEPTION %u error %#x\n",
				run->ex.exception, run->ex.error_code);
			dump_state(&vm, "exception exit");
			code = EXIT_KVM, why = "KVM_EXIT_EXCEPTION";
			break;
		case KVM_EXIT_IRQ_WINDOW_OPEN:
		case KVM_EXIT_INTR:
			break;
		case KVM_EXIT_UNKNOWN:
			fprintf(stderr, "gm-linuxboot: KVM_EXIT_UNKNOWN hardware reason %#llx\n",
				run->hw.hardware_exit_reason);
			dump_state(&vm, "unknown exit");
			code = EXIT_KVM, why = "KVM_EXIT_UNKNOWN";
			break;
		default:
			fprintf(stderr, "gm-linuxboot: unexpected exit reason %u\n", run->exit_reason);
			dump_state(&vm, "unexpected exit");
			code = EXIT_KVM, why = "unexpected exit reason";
			break;
		}
		/* After the power-off line, any exit restarts the 0.3 s wait. */
		if (vm.halting) {
			if (!halt_seen)
				arm(0.3);
			halt_seen = now();
		}
	}
	if (vm.line_len) {
		vm.line[vm.line_len] = 0;
		printf("%s\n", vm.line);
	}
	fflush(stdout);
	fprintf(stderr, "gm-linuxboot: %s after %.1f s: exit %d (%llu exits: %llu PIO, %llu MMIO; "
		"%llu PIO and %llu MMIO accesses to no device; %llu INT3 completed by the VMM)\n",
		why, now() - vm.start, code, (unsigned long long)vm.exits,
		(unsigned long long)vm.io_exits, (unsigned long long)vm.mmio_exits,
		(unsigned long long)vm.unhandled_pio, (unsigned long long)vm.unhandled_mmio,
		(unsigned long long)vm.int3_assists);
	return code;
}
