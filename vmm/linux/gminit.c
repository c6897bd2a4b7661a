/*
 * gminit — /init of the gm-linuxboot initramfs, freestanding (no libc):
 * mounts devtmpfs and proc, opens the console, runs gmwork's workload
 * (the same rounds and checksums as workload.c, which the test runs on the
 * host to know the expected values), then powers off as `poweroff -f`
 * does: reboot(LINUX_REBOOT_CMD_POWER_OFF).
 *
 * Why not busybox: under kvm_pvm with a non-PVM guest kernel, the SYSCALL
 * instruction from user mode reaches entry_SYSCALL_64 still at CPL 3 (the
 * kernel sees a user-mode #PF at that address and kills init). Interrupt
 * gates work, so every system call here is `int $0x80` (the i386 ABI,
 * which Linux serves for 64-bit tasks too; pointers must be below 4 GiB:
 * this static, non-PIE binary keeps its buffers in .data/.bss).
 *
 * Parameters: gmwork_mib=N gmwork_rounds=R on the kernel command line
 * (undotted, so the kernel passes them to init's environment), else
 * /proc/cmdline's gmwork.mib= / gmwork.rounds=; defaults 16 MiB, 4 rounds.
 */
#include <stddef.h>
#include <stdint.h>

#include "gmwork_round.h"

#define NR_exit 1
#define NR_read 3
#define NR_write 4
#define NR_open 5
#define NR_close 6
#define NR_mkdir 39
#define NR_mount 21
#define NR_dup2 63
#define NR_reboot 88
#define NR_getpid 20

#define MAX_MIB 64

static long sys(long nr, long a, long b, long c, long d, long e)
{
	long ret;
	__asm__ volatile("int $0x80"
			 : "=a"(ret)
			 : "a"(nr), "b"(a), "c"(b), "d"(c), "S"(d), "D"(e)
			 : "memory");
	return ret;
}

void *memset(void *d, int c, size_t n)
{
	unsigned char *p = d;
	while (n--)
		*p++ = (unsigned char)c;
	return d;
}

void *memcpy(void *d, const void *s, size_t n)
{
	unsigned char *p = d;
	const unsigned char *q = s;
	while (n--)
		*p++ = *q++;
	return d;
}

static size_t slen(const char *s)
{
	size_t n = 0;
	while (s[n])
		n++;
	return n;
}

static char outbuf[256];

static int use_syscalls = 1;
static void mb_put(const char *s);

static void put(const char *s)
{
	mb_put(s);
	if (!use_syscalls)
		return;
	size_t n = slen(s);
	if (n > sizeof outbuf)
		n = sizeof outbuf;
	memcpy(outbuf, s, n); /* below 4 GiB for the i386 ABI */
	sys(NR_write, 1, (long)outbuf, (long)n, 0, 0);
}

static char *fmt_u(char *p, uint64_t v)
{
	char t[24];
	int n = 0;
	do
		t[n++] = (char)('0' + v % 10);
	while (v /= 10);
	while (n)
		*p++ = t[--n];
	return p;
}

static char *fmt_x16(char *p, uint64_t v)
{
	for (int i = 15; i >= 0; i--)
		*p++ = "0123456789abcdef"[(v >> (4 * i)) & 15];
	return p;
}

static char *cat(char *p, const char *s)
{
	while (*s)
		*p++ = *s++;
	return p;
}

static uint64_t parse_u(const char *s)
{
	uint64_t v = 0;
	while (*s >= '0' && *s <= '9')
		v = v * 10 + (uint64_t)(*s++ - '0');
	return v;
}

/* key=value in a space-separated string (or one env string); 0 if absent */
static const char *find(const char *hay, const char *key)
{
	size_t n = slen(key);
	for (const char *p = hay; *p; p++) {
		if ((p == hay || p[-1] == ' ') && p[n] == '=') {
			size_t i = 0;
			while (i < n && p[i] == key[i])
				i++;
			if (i == n)
				return p + n + 1;
		}
	}
	return NULL;
}

/*
 * The mailbox: where this init also writes every line it prints, for a VMM
 * to read out of guest memory (gm-linuxboot --mailbox). Under kvm_pvm no
 * system call reaches the kernel (SYSCALL and INT 0x80 both fail in the
 * emulator), so the mailbox is the only way out. One page, page-aligned,
 * found by its two magic words at the start of a guest page.
 */
#define MB_MAGIC0 0x786f626c69616d67ull /* "gmailbox" */
#define MB_MAGIC1 (~MB_MAGIC0)
struct mailbox {
	volatile uint64_t magic[2];
	volatile uint32_t state; /* 1 running, 2 done */
	volatile uint32_t len;   /* bytes of text */
	char text[4096 - 24];
};
static struct mailbox mb __attribute__((aligned(4096)));

static void mb_put(const char *s)
{
	uint32_t n = mb.len;
	while (*s && n < sizeof mb.text)
		mb.text[n++] = *s++;
	__atomic_store_n(&mb.len, n, __ATOMIC_RELEASE);
}

static uint64_t set[(size_t)MAX_MIB << 17];
static char cmdline[4096];
static const char s_dev[] = "/dev", s_proc[] = "/proc", s_devtmpfs[] = "devtmpfs",
		  s_console[] = "/dev/console", s_cmdline[] = "/proc/cmdline";

static void run(char **envp)
{
	/* gminit_syscalls=0 (kernel command line -> init's environment):
	 * make none, report through the mailbox only. */
	for (char **e = envp; e && *e; e++) {
		const char *v = find(*e, "gminit_syscalls");
		if (v && *v == '0')
			use_syscalls = 0;
	}
	mb.magic[0] = MB_MAGIC0;
	mb.magic[1] = MB_MAGIC1;
	mb.state = 1;
	if (!use_syscalls) {
		mb_put("init: gminit up (no system calls: mailbox only)\n");
		goto work;
	}
	if (sys(NR_getpid, 0, 0, 0, 0, 0) != 1) {
		/* Never mount or power off anything but a guest. */
		put("gminit: not process 1: this is the guest's /init, not a host program\n");
		sys(NR_exit, 1, 0, 0, 0, 0);
	}
	sys(NR_mkdir, (long)s_dev, 0755, 0, 0, 0);
	sys(NR_mount, (long)s_devtmpfs, (long)s_dev, (long)s_devtmpfs, 0, 0);
	int fd = (int)sys(NR_open, (long)s_console, 2 /* O_RDWR */, 0, 0, 0);
	if (fd >= 0) {
		sys(NR_dup2, fd, 0, 0, 0, 0);
		sys(NR_dup2, fd, 1, 0, 0, 0);
		sys(NR_dup2, fd, 2, 0, 0, 0);
		if (fd > 2)
			sys(NR_close, fd, 0, 0, 0, 0);
	}
	sys(NR_mkdir, (long)s_proc, 0555, 0, 0, 0);
	static const char s_procfs[] = "proc";
	long mrc = sys(NR_mount, (long)s_procfs, (long)s_proc, (long)s_procfs, 0, 0);
	put(mrc == 0 ? "init: gminit up, proc mounted\n" : "init: gminit up, proc NOT mounted\n");

work:;
	uint64_t mib = 16, rounds = 4;
	int cfd = -1;
	if (use_syscalls)
		cfd = (int)sys(NR_open, (long)s_cmdline, 0, 0, 0, 0);
	if (cfd >= 0) {
		long n = sys(NR_read, cfd, (long)cmdline, sizeof cmdline - 1, 0, 0);
		cmdline[n > 0 ? n : 0] = 0;
		sys(NR_close, cfd, 0, 0, 0, 0);
		const char *v;
		if ((v = find(cmdline, "gmwork.mib")))
			mib = parse_u(v);
		if ((v = find(cmdline, "gmwork.rounds")))
			rounds = parse_u(v);
	}
	for (char **e = envp; e && *e; e++) {
		const char *v;
		if ((v = find(*e, "gmwork_mib")))
			mib = parse_u(v);
		if ((v = find(*e, "gmwork_rounds")))
			rounds = parse_u(v);
	}
	if (mib == 0 || mib > MAX_MIB || rounds == 0 || rounds > 1000000) {
		put("gmwork: bad size or rounds, using 16 MiB, 4 rounds\n");
		mib = 16, rounds = 4;
	}
	char line[128], *p = line;
	p = cat(p, "gmwork: ");
	p = fmt_u(p, mib);
	p = cat(p, " MiB, ");
	p = fmt_u(p, rounds);
	p = cat(p, " rounds\n");
	*p = 0;
	put(line);
	size_t words = (size_t)mib << 17;
	for (uint64_t r = 1; r <= rounds; r++) {
		uint64_t sum = gmwork_round(set, words, r);
		p = line;
		p = cat(p, "gmwork: round ");
		p = fmt_u(p, r);
		p = cat(p, "/");
		p = fmt_u(p, rounds);
		p = cat(p, " checksum ");
		p = fmt_x16(p, sum);
		p = cat(p, "\n");
		*p = 0;
		put(line);
	}
	put("gmwork: done\n");
	put(use_syscalls ? "init: gmwork exited with 0, powering off\n"
			 : "init: gmwork exited with 0; no system calls, so no power-off: done\n");
	__atomic_store_n(&mb.state, 2, __ATOMIC_RELEASE);
	if (!use_syscalls)
		for (;;)
			__asm__ volatile("pause");
	/* poweroff -f: reboot(LINUX_REBOOT_MAGIC1, MAGIC2, POWER_OFF) */
	sys(NR_reboot, (long)0xfee1dead, 672274793, 0x4321fedc, 0, 0);
	put("init: reboot() returned\n");
	for (;;)
		sys(NR_exit, 0, 0, 0, 0, 0);
}

/* The kernel enters here with argc, argv..., NULL, envp..., NULL on the
 * stack. */
__attribute__((used)) static void start_c(long *sp)
{
	long argc = sp[0];
	char **envp = (char **)(sp + 1 + argc + 1);
	run(envp);
}

__asm__(".globl _start\n"
	"_start:\n"
	"  mov %rsp, %rdi\n"
	"  and $-16, %rsp\n"
	"  call start_c\n"
	"  hlt\n");
