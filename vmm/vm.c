/*
 * vmm/vm.c — creating a gmvm VM (KVM VM, gm_space memory and its slots,
 * devices registered as gm_space I/O ranges, vCPUs entered directly in
 * long mode), loading the built-in guest (identity page tables with 2 MiB
 * pages, GDT, parameter page, code), running, pausing and stopping its
 * vCPU threads, and checking the guest's checksums against the host's.
 */
#define _GNU_SOURCE
#include "vm.h"

#include <stdatomic.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

extern const uint8_t gmvm_guest_start[];
extern const uint8_t *const gmvm_guest_end_ptr;
void gmvm_vcpu_install_kick(void);

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

static uint64_t align_up(uint64_t x, uint64_t a)
{
	return (x + a - 1) & ~(a - 1);
}

void gmvm_config_default(struct gmvm_config *c)
{
	memset(c, 0, sizeof(*c));
	c->nvcpus = 1;
	c->ram_bytes = 64ull << 20;
	c->ram_slots = 1;
	c->workload = W_SEQ;
	c->rounds = 4;
	c->writes = 4096;
	c->hot_bytes = 1ull << 20;
	c->seed = 1;
	c->dma = 4096;
	c->serial_out = stdout;
	c->timeout_s = 120;
}

static uint64_t host_ram_bytes(void)
{
	long pages = sysconf(_SC_PHYS_PAGES), ps = sysconf(_SC_PAGESIZE);
	return pages > 0 && ps > 0 ? (uint64_t)pages * (uint64_t)ps : 0;
}

/* Where the workload region is and how big. */
static uint64_t work_gpa(const struct gmvm_config *c)
{
	return c->sparse_bytes ? align_up(GMVM_RAM_GPA + c->ram_bytes, 2ull << 20) : GMVM_RAM_GPA;
}

static uint64_t work_bytes(const struct gmvm_config *c)
{
	return c->sparse_bytes ? c->sparse_bytes : c->ram_bytes;
}

static uint64_t mapped_top(const struct gmvm_config *c)
{
	return work_gpa(c) + work_bytes(c);
}

int gmvm_config_check(const struct gmvm_config *c, char *err, size_t errlen)
{
	uint64_t host = host_ram_bytes();
	if (c->nvcpus < 1 || c->nvcpus > GMVM_MAX_VCPUS)
		return fail(err, errlen, -EINVAL, "--vcpus %u: gmvm runs 1 to %u vCPUs", c->nvcpus,
			    GMVM_MAX_VCPUS);
	if (c->ram_slots < 1 || c->ram_slots > 512)
		return fail(err, errlen, -EINVAL, "--slots %u: 1 to 512 RAM slots", c->ram_slots);
	if (!c->ram_bytes || c->ram_bytes % (4096ull * c->ram_slots))
		return fail(err, errlen, -EINVAL,
			    "--mem %llu: must be a non-zero multiple of 4 KiB times --slots (%u)",
			    (unsigned long long)c->ram_bytes, c->ram_slots);
	if (host && c->ram_bytes > host)
		return fail(err, errlen, -ENOMEM,
			    "--mem %llu MiB: more than the host's %llu MiB of RAM (use --sparse for a large sparse slot)",
			    (unsigned long long)(c->ram_bytes >> 20), (unsigned long long)(host >> 20));
	if (c->sparse_bytes % (2ull << 20))
		return fail(err, errlen, -EINVAL, "--sparse: a multiple of 2 MiB");
	if (c->ram_bytes > (1ull << 46) || c->sparse_bytes > (1ull << 46) ||
	    mapped_top(c) > (uint64_t)GMVM_MAX_MAPPED_GIB << 30)
		return fail(err, errlen, -EINVAL,
			    "guest memory up to gpa 0x%llx: the built-in guest maps at most %u GiB",
			    (unsigned long long)mapped_top(c), GMVM_MAX_MAPPED_GIB);
	if (c->workload < W_SEQ || c->workload > W_FAULT)
		return fail(err, errlen, -EINVAL, "unknown workload %d", c->workload);
	uint64_t stride = (work_bytes(c) / c->nvcpus) & ~4095ull;
	uint64_t span = c->workload == W_HOT ? c->hot_bytes : (c->span ? c->span : stride);
	if (!stride || span < 4096 || span % 4096 || span > stride)
		return fail(err, errlen, -EINVAL,
			    "each vCPU writes %llu bytes (--hot/--span) of a %llu-byte share: must be a multiple of 4 KiB, at most the share",
			    (unsigned long long)span, (unsigned long long)stride);
	if (c->dma > span || c->dma % 8)
		return fail(err, errlen, -EINVAL, "--dma %llu: a multiple of 8, at most the span %llu",
			    (unsigned long long)c->dma, (unsigned long long)span);
	if (c->ring_entries && (c->ring_entries & (c->ring_entries - 1)))
		return fail(err, errlen, -EINVAL, "--ring-entries %u: a power of two", c->ring_entries);
	if (c->pool_bytes % (2ull << 20) || c->pool_bytes > (64ull << 30))
		return fail(err, errlen, -EINVAL, "hotplug pool: a multiple of 2 MiB, at most 64 GiB");
	if (c->nextra > GMVM_MAX_EXTRA_SLOTS)
		return fail(err, errlen, -EINVAL, "at most %u --slot options", GMVM_MAX_EXTRA_SLOTS);
	for (unsigned i = 0; i < c->nextra; i++)
		if (!c->extra[i].bytes || c->extra[i].bytes > (64ull << 30))
			return fail(err, errlen, -EINVAL, "--slot %u: size 1 byte to 64 GiB", i);
	return 0;
}

/* ---- building the guest ----------------------------------------------------- */

static uint8_t *boot_ptr(struct gmvm_vm *vm, uint64_t gpa)
{
	return vm->region[REGION_BOOT].hva + gpa;
}

static void put64(uint8_t *p, uint64_t v)
{
	memcpy(p, &v, 8);
}

static int load_guest(struct gmvm_vm *vm, char *err, size_t errlen)
{
	const struct gmvm_config *c = &vm->cfg;
	size_t code = (size_t)(gmvm_guest_end_ptr - gmvm_guest_start);
	if (code > GMVM_CODE_MAX)
		return fail(err, errlen, -E2BIG, "guest image of %zu bytes", code);
	memcpy(boot_ptr(vm, GMVM_CODE_GPA), gmvm_guest_start, code);
	/* GDT: null, 64-bit code, data */
	put64(boot_ptr(vm, GMVM_GDT_GPA + 8), 0x00af9b000000ffffull);
	put64(boot_ptr(vm, GMVM_GDT_GPA + 16), 0x00cf93000000ffffull);
	put64(boot_ptr(vm, GMVM_GDT_GPA + 24), 0x00affb000000ffffull);
	put64(boot_ptr(vm, GMVM_GDT_GPA + 32), 0x00cff3000000ffffull);
	/* identity map of [0, mapped_top) with 2 MiB pages */
	uint64_t gib = align_up(mapped_top(c), 1ull << 30) >> 30;
	put64(boot_ptr(vm, GMVM_PML4_GPA), GMVM_PDPT_GPA | 7);
	for (uint64_t i = 0; i < gib; i++) {
		uint64_t pd = GMVM_PD_GPA + i * 4096;
		put64(boot_ptr(vm, GMVM_PDPT_GPA + i * 8), pd | 7);
		for (uint64_t j = 0; j < 512; j++)
			put64(boot_ptr(vm, pd + j * 8), ((i << 30) + (j << 21)) | 0x87);
	}
	uint8_t *p = boot_ptr(vm, GMVM_PARAMS_GPA);
	put64(p + P_MAGIC, GMVM_PARAMS_MAGIC);
	put64(p + P_WORKLOAD, (uint64_t)c->workload);
	put64(p + P_BASE, vm->work_base);
	put64(p + P_STRIDE, vm->work_stride);
	put64(p + P_SPAN, vm->work_span);
	put64(p + P_ROUNDS, c->rounds);
	put64(p + P_WRITES, c->writes);
	put64(p + P_SEED, c->seed);
	put64(p + P_DELAY, c->delay);
	put64(p + P_DMA, c->dma);
	put64(p + P_NVCPUS, vm->nvcpus);
	put64(p + P_QUIET, c->quiet);
	/* the host wrote the boot slot: its log says so */
	const struct gm_space_slot *boot = gm_space_id_to_slot(vm->mem.space, 0);
	if (boot && (boot->flags & GM_SPACE_SLOT_DIRTY_LOG))
		gm_space_dirty_restore(vm->mem.space, boot, 0, boot->npages);
	return 0;
}

static int setup_vcpu_regs(struct gmvm_vcpu *v, char *err, size_t errlen)
{
	struct kvm_sregs s;
	if (ioctl(v->k.fd, KVM_GET_SREGS, &s) < 0)
		return fail(err, errlen, -errno, "KVM_GET_SREGS: %s", strerror(errno));
	struct kvm_segment code = {.base = 0, .limit = 0xffffffff, .selector = 8, .type = 11,
				   .present = 1, .s = 1, .l = 1, .g = 1};
	struct kvm_segment data = {.base = 0, .limit = 0xffffffff, .selector = 16, .type = 3,
				   .present = 1, .s = 1, .db = 1, .g = 1};
	s.cs = code;
	s.ds = s.es = s.fs = s.gs = s.ss = data;
	s.gdt.base = GMVM_GDT_GPA;
	s.gdt.limit = 39;
	if (!v->vm->cfg.cpl0) {
		code.selector = 0x1b;
		code.dpl = 3;
		data.selector = 0x23;
		data.dpl = 3;
		s.cs = code;
		s.ds = s.es = s.fs = s.gs = s.ss = data;
	}
	s.cr3 = GMVM_PML4_GPA;
	s.cr4 = 0x620;      /* PAE, OSFXSR, OSXMMEXCPT */
	s.cr0 = 0x80010033; /* PG, WP, NE, ET, MP, PE */
	s.efer = 0x500;     /* LME, LMA */
	if (ioctl(v->k.fd, KVM_SET_SREGS, &s) < 0)
		return fail(err, errlen, -errno, "KVM_SET_SREGS (long mode): %s", strerror(errno));
	struct kvm_regs r = {0};
	r.rip = GMVM_CODE_GPA;
	r.rflags = v->vm->cfg.cpl0 ? 2 : 0x3002; /* CPL 3: IOPL 3 for PIO */
	r.rdi = v->index;
	r.rsi = GMVM_PARAMS_GPA;
	r.rsp = GMVM_STACKS_GPA + (uint64_t)(v->index + 1) * 4096;
	if (ioctl(v->k.fd, KVM_SET_REGS, &r) < 0)
		return fail(err, errlen, -errno, "KVM_SET_REGS: %s", strerror(errno));
	/* with the in-kernel LAPIC an AP waits for INIT/SIPI: start it now */
	struct kvm_mp_state mp = {.mp_state = KVM_MP_STATE_RUNNABLE};
	if (ioctl(v->k.fd, KVM_SET_MP_STATE, &mp) < 0)
		return fail(err, errlen, -errno, "KVM_SET_MP_STATE: %s", strerror(errno));
	return 0;
}

static int setup_cpuid(struct gmvm_vm *vm, struct gmvm_vcpu *v, char *err, size_t errlen)
{
	enum { N = 256 };
	struct kvm_cpuid2 *cpuid = calloc(1, sizeof(*cpuid) + N * sizeof(struct kvm_cpuid_entry2));
	if (!cpuid)
		return fail(err, errlen, -ENOMEM, "out of memory");
	cpuid->nent = N;
	int rc = 0;
	if (ioctl(vm->kvm.kvm_fd, KVM_GET_SUPPORTED_CPUID, cpuid) < 0)
		rc = fail(err, errlen, -errno, "KVM_GET_SUPPORTED_CPUID: %s", strerror(errno));
	else if (ioctl(v->k.fd, KVM_SET_CPUID2, cpuid) < 0)
		rc = fail(err, errlen, -errno, "KVM_SET_CPUID2: %s", strerror(errno));
	free(cpuid);
	return rc;
}

/* ---- memory ------------------------------------------------------------------ */

static uint32_t slot_flags(const struct gmvm_config *c)
{
	return c->dirty_log ? GM_SPACE_SLOT_DIRTY_LOG : 0;
}

static int map_regions(struct gmvm_vm *vm, bool incoming, char *err, size_t errlen)
{
	const struct gmvm_config *c = &vm->cfg;
	(void)incoming;
	struct {
		unsigned idx;
		uint64_t bytes;
		bool memfd, noreserve;
	} want[] = {
		{REGION_BOOT, GMVM_BOOT_BYTES, false, false},
		{REGION_RAM, c->ram_bytes, c->memfd, false},
		{REGION_SPARSE, c->sparse_bytes, false, true},
		{REGION_POOL, c->pool_bytes, c->memfd, true},
	};
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		if (!want[i].bytes)
			continue;
		int rc = gmvm_ram_map(&vm->region[want[i].idx], want[i].bytes, want[i].memfd,
				      want[i].noreserve);
		if (rc)
			return fail(err, errlen, rc, "mapping %llu MiB of guest memory: %s",
				    (unsigned long long)(want[i].bytes >> 20), strerror(-rc));
	}
	for (unsigned i = 0; i < c->nextra; i++) {
		uint64_t bytes = align_up(c->extra[i].bytes, 4096);
		int rc = gmvm_ram_map(&vm->region[REGION_EXTRA + i], bytes, false, true);
		if (rc)
			return fail(err, errlen, rc, "mapping --slot %u: %s", i, strerror(-rc));
	}
	return 0;
}

static int add_slots(struct gmvm_vm *vm, char *err, size_t errlen)
{
	const struct gmvm_config *c = &vm->cfg;
	uint32_t fl = slot_flags(c);
	struct gmvm_change ch[1 + 512 + 1 + GMVM_MAX_EXTRA_SLOTS];
	size_t n = 0;
	ch[n++] = (struct gmvm_change){GMVM_ADD, 0, 0, GMVM_BOOT_BYTES,
				       (uintptr_t)vm->region[REGION_BOOT].hva, fl};
	uint64_t per = c->ram_bytes / c->ram_slots;
	for (unsigned i = 0; i < c->ram_slots; i++)
		ch[n++] = (struct gmvm_change){GMVM_ADD, 1 + i, GMVM_RAM_GPA + i * per, per,
					       (uintptr_t)vm->region[REGION_RAM].hva + i * per, fl};
	if (c->sparse_bytes)
		ch[n++] = (struct gmvm_change){GMVM_ADD, 1 + c->ram_slots, work_gpa(c), c->sparse_bytes,
					       (uintptr_t)vm->region[REGION_SPARSE].hva, fl};
	int rc = gmvm_mem_apply(&vm->mem, ch, n, err, errlen);
	if (rc)
		return rc;
	/* extra slots one by one, so a bad one is named */
	for (unsigned i = 0; i < c->nextra; i++) {
		struct gmvm_change x = {GMVM_ADD, 2 + c->ram_slots + i, c->extra[i].gpa,
					c->extra[i].bytes,
					(uintptr_t)vm->region[REGION_EXTRA + i].hva,
					fl | (c->extra[i].readonly ? GM_SPACE_SLOT_READONLY : 0)};
		char why[300];
		rc = gmvm_mem_apply(&vm->mem, &x, 1, why, sizeof(why));
		if (rc)
			return fail(err, errlen, rc, "--slot 0x%llx:0x%llx refused: %s",
				    (unsigned long long)c->extra[i].gpa,
				    (unsigned long long)c->extra[i].bytes, why);
	}
	return 0;
}

/* ---- create / destroy ---------------------------------------------------------- */

int gmvm_vm_create(struct gmvm_vm *vm, const struct gmvm_config *cfg, bool incoming,
		   char *err, size_t errlen)
{
	memset(vm, 0, sizeof(*vm));
	vm->cfg = *cfg;
	vm->nvcpus = cfg->nvcpus;
	for (unsigned i = 0; i < GMVM_MAX_REGIONS; i++)
		vm->region[i].memfd = -1;
	vm->kvm.kvm_fd = vm->kvm.vm_fd = -1;
	int rc = gmvm_config_check(cfg, err, errlen);
	if (rc)
		return rc;
	const char *why = NULL;
	rc = gmvm_kvm_open(&vm->kvm, cfg->ring_entries, cfg->no_manual_protect, &why);
	if (rc)
		return fail(err, errlen, rc, "%s: %s", why, strerror(-rc));
	pthread_mutex_init(&vm->ctl, NULL);
	pthread_cond_init(&vm->ctl_cond, NULL);
	vm->created = true;
	if ((rc = gmvm_mem_init(&vm->mem, &vm->kvm))) {
		fail(err, errlen, rc, "gm_space_create: %s", strerror(-rc));
		goto out;
	}
	gmvm_serial_init(&vm->serial, cfg->serial_out);
	gmvm_testdev_init(&vm->dev, vm->mem.space, vm->nvcpus);
	vm->dev.verbose = cfg->verbose;
	pthread_mutex_lock(&vm->mem.lock);
	rc = gmvm_devices_register(vm->mem.space, &vm->serial, cfg->no_testdev ? NULL : &vm->dev,
				   &vm->exitport);
	pthread_mutex_unlock(&vm->mem.lock);
	if (rc) {
		fail(err, errlen, rc, "registering devices: %s", strerror(-rc));
		goto out;
	}
	vm->work_base = work_gpa(cfg);
	vm->work_stride = (work_bytes(cfg) / cfg->nvcpus) & ~4095ull;
	vm->work_span = cfg->workload == W_HOT ? cfg->hot_bytes : (cfg->span ? cfg->span : vm->work_stride);
	if ((rc = map_regions(vm, incoming, err, errlen)) || (rc = add_slots(vm, err, errlen)))
		goto out;
	if (!incoming && (rc = load_guest(vm, err, errlen)))
		goto out;
	for (unsigned i = 0; i < vm->nvcpus; i++) {
		struct gmvm_vcpu *v = &vm->vcpu[i];
		v->vm = vm;
		v->index = i;
		pthread_mutex_init(&v->ring_lock, NULL);
		rc = gmvm_kvm_vcpu_create(&vm->kvm, i, &v->k);
		if (rc) {
			fail(err, errlen, rc, "KVM_CREATE_VCPU %u: %s", i, strerror(-rc));
			goto out;
		}
		if ((rc = setup_cpuid(vm, v, err, errlen)))
			goto out;
		if (!incoming && (rc = setup_vcpu_regs(v, err, errlen)))
			goto out;
	}
	gmvm_vcpu_install_kick();
	return 0;
out:
	gmvm_vm_destroy(vm);
	return rc;
}

void gmvm_vm_destroy(struct gmvm_vm *vm)
{
	if (!vm->created)
		return;
	gmvm_vm_stop(vm);
	for (unsigned i = 0; i < vm->nvcpus; i++) {
		if (vm->vcpu[i].k.run)
			gmvm_kvm_vcpu_destroy(&vm->kvm, &vm->vcpu[i].k);
		pthread_mutex_destroy(&vm->vcpu[i].ring_lock);
	}
	gmvm_kvm_close(&vm->kvm);
	if (vm->mem.space) {
		gmvm_serial_destroy(&vm->serial);
		gmvm_testdev_destroy(&vm->dev);
		gmvm_mem_destroy(&vm->mem);
	}
	for (unsigned i = 0; i < GMVM_MAX_REGIONS; i++)
		gmvm_ram_unmap(&vm->region[i]);
	pthread_mutex_destroy(&vm->ctl);
	pthread_cond_destroy(&vm->ctl_cond);
	vm->created = false;
}

/* ---- running ------------------------------------------------------------------- */

int gmvm_vm_start(struct gmvm_vm *vm, char *err, size_t errlen)
{
	for (unsigned i = 0; i < vm->nvcpus; i++) {
		struct gmvm_vcpu *v = &vm->vcpu[i];
		if (v->thread_started)
			continue;
		if (vm->dev.bank[i].done) { /* finished before a migration */
			atomic_store(&v->finished, true);
			continue;
		}
		atomic_store(&v->finished, false);
		int rc = pthread_create(&v->thread, NULL, gmvm_vcpu_thread, v);
		if (rc) {
			gmvm_vm_stop(vm);
			return fail(err, errlen, -rc, "starting vCPU %u: %s", i, strerror(rc));
		}
		v->thread_started = true;
	}
	return 0;
}

static void kick_all(struct gmvm_vm *vm)
{
	for (unsigned i = 0; i < vm->nvcpus; i++)
		if (vm->vcpu[i].thread_started && !atomic_load(&vm->vcpu[i].finished))
			pthread_kill(vm->vcpu[i].thread, SIGUSR1);
}

static bool all_settled(struct gmvm_vm *vm, bool parked_ok)
{
	for (unsigned i = 0; i < vm->nvcpus; i++) {
		struct gmvm_vcpu *v = &vm->vcpu[i];
		if (!v->thread_started || atomic_load(&v->finished))
			continue;
		if (!(parked_ok && atomic_load(&v->parked)))
			return false;
	}
	return true;
}

/* Waits on ctl_cond for up to 1 ms (callers re-kick between waits). */
static void ctl_wait_1ms(struct gmvm_vm *vm)
{
	struct timespec t;
	clock_gettime(CLOCK_REALTIME, &t);
	t.tv_nsec += 1000000;
	if (t.tv_nsec >= 1000000000) {
		t.tv_sec++;
		t.tv_nsec -= 1000000000;
	}
	pthread_cond_timedwait(&vm->ctl_cond, &vm->ctl, &t);
}

void gmvm_vm_pause(struct gmvm_vm *vm)
{
	atomic_store(&vm->pause_req, true);
	pthread_mutex_lock(&vm->ctl);
	while (!all_settled(vm, true)) {
		pthread_mutex_unlock(&vm->ctl);
		kick_all(vm);
		pthread_mutex_lock(&vm->ctl);
		ctl_wait_1ms(vm);
	}
	pthread_mutex_unlock(&vm->ctl);
}

void gmvm_vm_resume(struct gmvm_vm *vm)
{
	pthread_mutex_lock(&vm->ctl);
	atomic_store(&vm->pause_req, false);
	pthread_cond_broadcast(&vm->ctl_cond);
	pthread_mutex_unlock(&vm->ctl);
}

static void join_all(struct gmvm_vm *vm)
{
	for (unsigned i = 0; i < vm->nvcpus; i++)
		if (vm->vcpu[i].thread_started) {
			pthread_join(vm->vcpu[i].thread, NULL);
			vm->vcpu[i].thread_started = false;
		}
}

void gmvm_vm_stop(struct gmvm_vm *vm)
{
	pthread_mutex_lock(&vm->ctl);
	atomic_store(&vm->stop_req, true);
	pthread_cond_broadcast(&vm->ctl_cond);
	while (!all_settled(vm, false)) {
		pthread_mutex_unlock(&vm->ctl);
		kick_all(vm);
		pthread_mutex_lock(&vm->ctl);
		ctl_wait_1ms(vm);
	}
	pthread_mutex_unlock(&vm->ctl);
	join_all(vm);
}

int gmvm_vm_wait(struct gmvm_vm *vm, char *err, size_t errlen)
{
	struct timespec t0, t;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	pthread_mutex_lock(&vm->ctl);
	for (;;) {
		if (all_settled(vm, false) || atomic_load(&vm->exitport.requested))
			break;
		clock_gettime(CLOCK_MONOTONIC, &t);
		if (vm->cfg.timeout_s && t.tv_sec - t0.tv_sec >= (time_t)vm->cfg.timeout_s) {
			pthread_mutex_unlock(&vm->ctl);
			bool unfinished[GMVM_MAX_VCPUS];
			for (unsigned i = 0; i < vm->nvcpus; i++)
				unfinished[i] = !atomic_load(&vm->vcpu[i].finished);
			gmvm_vm_stop(vm);
			gmvm_serial_flush(&vm->serial);
			char where[256] = "";
			size_t o = 0;
			for (unsigned i = 0; i < vm->nvcpus && o < sizeof(where) - 40; i++) {
				struct kvm_regs r;
				if (unfinished[i] && ioctl(vm->vcpu[i].k.fd, KVM_GET_REGS, &r) == 0)
					o += (size_t)snprintf(where + o, sizeof(where) - o,
							      " vCPU %u at RIP 0x%llx;", i,
							      (unsigned long long)r.rip);
			}
			return fail(err, errlen, -ETIMEDOUT,
				    "timeout: the guest did not finish in %u s (--timeout):%s",
				    vm->cfg.timeout_s, where);
		}
		ctl_wait_1ms(vm);
	}
	pthread_mutex_unlock(&vm->ctl);
	gmvm_vm_stop(vm);
	gmvm_serial_flush(&vm->serial);
	int ex = atomic_load(&vm->exitport.requested);
	for (unsigned i = 0; i < vm->nvcpus; i++)
		if (vm->vcpu[i].failed)
			return fail(err, errlen, -EIO, "%s", vm->vcpu[i].error);
	if (ex)
		return fail(err, errlen, -EIO, "the guest stopped through the exit port with status %d",
			    ex - 1);
	return 0;
}

int gmvm_vm_check(struct gmvm_vm *vm, uint64_t *combined, char *err, size_t errlen)
{
	uint64_t all = GMVM_FNV_BASIS;
	struct gm_space_cache cache;
	gm_space_cache_init(&cache);
	for (unsigned i = 0; i < vm->nvcpus; i++) {
		struct gmvm_bank *b = &vm->dev.bank[i];
		if (!b->done || !b->reported)
			return fail(err, errlen, -EIO, "vCPU %u finished without reporting a checksum%s%s",
				    i, vm->dev.last_refusal[0] ? "; last device refusal: " : "",
				    vm->dev.last_refusal);
		uint64_t host = 0;
		char why[200];
		int rc = gmvm_dma_checksum(vm->mem.space, &cache, vm->work_base + i * vm->work_stride,
					   vm->work_span, &host, why, sizeof(why));
		if (rc)
			return fail(err, errlen, rc, "host checksum of vCPU %u: %s", i, why);
		if (host != b->checksum)
			return fail(err, errlen, -EIO,
				    "vCPU %u: guest checksum 0x%016llx, host computes 0x%016llx", i,
				    (unsigned long long)b->checksum, (unsigned long long)host);
		all = gmvm_fnv(all, &host, 8);
	}
	*combined = all;
	return 0;
}

uint64_t gmvm_vm_peer_hva(const struct gmvm_vm *vm, const struct gmvm_vm *peer, uint64_t hva)
{
	for (unsigned i = 0; i < GMVM_MAX_REGIONS; i++) {
		const struct gmvm_ram *p = &peer->region[i], *m = &vm->region[i];
		if (p->hva && hva - (uintptr_t)p->hva < p->bytes && m->hva && m->bytes == p->bytes)
			return (uintptr_t)m->hva + (hva - (uintptr_t)p->hva);
	}
	return 0;
}
