/*
 * vmm/vcpu.c — a gmvm vCPU thread: KVM_RUN and every exit reason. PIO and
 * MMIO are dispatched through gm_space's I/O ranges (gm_space_io_find);
 * a full dirty ring is harvested into gm_space; every other exit (and an
 * access no device claims) is reported with its reason, suberror, RIP and
 * the instruction bytes read from guest memory (a page-table walk through
 * gm_space). Pausing uses a signal that sets kvm_run.immediate_exit, and
 * a parked vCPU has completed its pending I/O (a KVM_RUN with
 * immediate_exit), so its state can be saved. Also: vCPU state save/load
 * for migration (regs, sregs, XSAVE, XCRs, MSRs, LAPIC, events, MP state,
 * debug registers).
 */
#define _GNU_SOURCE
#include "vm.h"

#include <stdatomic.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

static _Thread_local struct kvm_run *tl_run;

static void kick_handler(int sig)
{
	(void)sig;
	if (tl_run)
		tl_run->immediate_exit = 1;
}

void gmvm_vcpu_install_kick(void);
void gmvm_vcpu_install_kick(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = kick_handler;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL);
}

/* ---- reading guest memory for reports --------------------------------------- */

static int read_gpa(struct gmvm_vm *vm, uint64_t gpa, void *buf, size_t n)
{
	uint8_t *b = buf;
	gm_rcu_read_lock();
	for (size_t i = 0; i < n; i++) {
		uint64_t hva;
		if (gm_space_gfn_to_hva(vm->mem.space, NULL, (gpa + i) >> 12, &hva)) {
			gm_rcu_read_unlock();
			return -EFAULT;
		}
		b[i] = *(volatile uint8_t *)(uintptr_t)(hva + ((gpa + i) & 4095));
	}
	gm_rcu_read_unlock();
	return 0;
}

/* gva -> gpa through the guest's 4-level page tables (or identity without
 * paging). */
static int gva_to_gpa(struct gmvm_vm *vm, const struct kvm_sregs *sr, uint64_t gva, uint64_t *gpa)
{
	if (!(sr->cr0 & 0x80000000u)) {
		*gpa = gva;
		return 0;
	}
	uint64_t table = sr->cr3 & 0x000ffffffffff000ull;
	for (int level = 3; level >= 0; level--) {
		uint64_t e;
		if (read_gpa(vm, table + ((gva >> (12 + 9 * level)) & 511) * 8, &e, 8))
			return -EFAULT;
		if (!(e & 1))
			return -ENOENT;
		uint64_t addr = e & 0x000ffffffffff000ull;
		if (level && level < 3 && (e & 0x80)) { /* 1 GiB or 2 MiB page */
			uint64_t mask = (1ull << (12 + 9 * level)) - 1;
			*gpa = (addr & ~mask) | (gva & mask);
			return 0;
		}
		table = addr;
	}
	*gpa = table | (gva & 4095);
	return 0;
}

void gmvm_vcpu_report(struct gmvm_vcpu *v, const char *what)
{
	struct gmvm_vm *vm = v->vm;
	struct kvm_run *run = v->k.run;
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	char bytes[3 * 16 + 32] = "unreadable";
	memset(&regs, 0, sizeof(regs));
	memset(&sregs, 0, sizeof(sregs));
	ioctl(v->k.fd, KVM_GET_REGS, &regs);
	ioctl(v->k.fd, KVM_GET_SREGS, &sregs);
	uint64_t gpa = 0;
	uint8_t insn[15];
	if (gva_to_gpa(vm, &sregs, regs.rip, &gpa) == 0 && read_gpa(vm, gpa, insn, sizeof(insn)) == 0) {
		size_t o = 0;
		for (size_t i = 0; i < sizeof(insn); i++)
			o += (size_t)snprintf(bytes + o, sizeof(bytes) - o, "%02x%s", insn[i],
					      i + 1 < sizeof(insn) ? " " : "");
	}
	char extra[200] = "";
	if (run->exit_reason == KVM_EXIT_INTERNAL_ERROR) {
		size_t o = (size_t)snprintf(extra, sizeof(extra), " suberror %u%s ndata %u:",
					    run->internal.suberror,
					    run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION
						    ? " (emulation failure)" : "",
					    run->internal.ndata);
		for (unsigned i = 0; i < run->internal.ndata && i < 4 && o < sizeof(extra); i++)
			o += (size_t)snprintf(extra + o, sizeof(extra) - o, " 0x%llx",
					      (unsigned long long)run->internal.data[i]);
	} else if (run->exit_reason == KVM_EXIT_FAIL_ENTRY) {
		snprintf(extra, sizeof(extra), " hardware entry failure reason 0x%llx",
			 (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
	} else if (run->exit_reason == KVM_EXIT_SYSTEM_EVENT) {
		snprintf(extra, sizeof(extra), " event type %u", run->system_event.type);
	}
	snprintf(v->error, sizeof(v->error),
		 "vCPU %u: %s: exit %u (%s)%s; RIP 0x%llx (gpa 0x%llx), CR0 0x%llx CR3 0x%llx, instruction bytes: %s",
		 v->index, what, run->exit_reason, gmvm_exit_name(run->exit_reason), extra,
		 (unsigned long long)regs.rip, (unsigned long long)gpa,
		 (unsigned long long)sregs.cr0, (unsigned long long)sregs.cr3, bytes);
	v->failed = true;
}

/* ---- exits ------------------------------------------------------------------- */

static void do_pio(struct gmvm_vcpu *v)
{
	struct kvm_run *run = v->k.run;
	uint8_t *data = (uint8_t *)run + run->io.data_offset;
	struct gm_space_io io;
	bool write = run->io.direction == KVM_EXIT_IO_OUT;
	v->exits_io++;
	gm_rcu_read_lock();
	int rc = gm_space_io_find(v->vm->mem.space, GM_SPACE_PIO, run->io.port, &io);
	gm_rcu_read_unlock();
	for (uint32_t i = 0; i < run->io.count; i++, data += run->io.size) {
		if (rc == 0)
			io.fn(io.ctx, run->io.port, data, run->io.size, write);
		else if (!write)
			memset(data, 0xff, run->io.size);
	}
}

static void do_mmio(struct gmvm_vcpu *v)
{
	struct kvm_run *run = v->k.run;
	struct gm_space_io io;
	unsigned len = run->mmio.len > 8 ? 8 : run->mmio.len;
	v->exits_mmio++;
	gm_rcu_read_lock();
	int rc = gm_space_io_find(v->vm->mem.space, GM_SPACE_MMIO, run->mmio.phys_addr, &io);
	gm_rcu_read_unlock();
	if (rc == 0 && run->mmio.phys_addr + len - 1 <= io.last) {
		io.fn(io.ctx, run->mmio.phys_addr, run->mmio.data, len, run->mmio.is_write);
		return;
	}
	if (!run->mmio.is_write)
		memset(run->mmio.data, 0xff, len);
	if (v->unassigned_mmio++ < 4 && !v->vm->cfg.quiet)
		fprintf(stderr, "gmvm: vCPU %u: %s of %u bytes at gpa 0x%llx: no RAM, no device (%s)\n",
			v->index, run->mmio.is_write ? "write" : "read", len,
			(unsigned long long)run->mmio.phys_addr,
			run->mmio.is_write ? "dropped" : "reads all ones");
}

/* Handles one exit; false when the vCPU must stop (v->error says why, if
 * it failed). */
static bool handle_exit(struct gmvm_vcpu *v)
{
	struct kvm_run *run = v->k.run;
	v->exits++;
	switch (run->exit_reason) {
	case KVM_EXIT_IO:
		do_pio(v);
		return true;
	case KVM_EXIT_MMIO:
		do_mmio(v);
		return true;
	case KVM_EXIT_INTR:
	case KVM_EXIT_IRQ_WINDOW_OPEN:
		return true;
	case KVM_EXIT_DIRTY_RING_FULL:
		v->exits_ring_full++;
		gmvm_ring_collect(v->vm, v);
		ioctl(v->vm->kvm.vm_fd, KVM_RESET_DIRTY_RINGS, 0);
		return true;
	case KVM_EXIT_HLT:
		gmvm_vcpu_report(v, "the guest halted without saying done");
		return false;
	case KVM_EXIT_SHUTDOWN:
		gmvm_vcpu_report(v, "the guest shut down (triple fault)");
		return false;
	case KVM_EXIT_INTERNAL_ERROR:
		gmvm_vcpu_report(v, "KVM could not run the guest (internal error)");
		return false;
	case KVM_EXIT_FAIL_ENTRY:
		gmvm_vcpu_report(v, "VM entry failed");
		return false;
	case KVM_EXIT_SYSTEM_EVENT:
		gmvm_vcpu_report(v, "system event");
		return false;
	default:
		gmvm_vcpu_report(v, "unhandled exit");
		return false;
	}
}

static bool bank_done(struct gmvm_vcpu *v)
{
	struct gmvm_testdev *d = &v->vm->dev;
	pthread_mutex_lock(&d->lock);
	bool done = d->bank[v->index].done;
	pthread_mutex_unlock(&d->lock);
	return done;
}

/* Completes a pending I/O exit without running guest code. */
static void complete_pending(struct gmvm_vcpu *v)
{
	v->k.run->immediate_exit = 1;
	ioctl(v->k.fd, KVM_RUN, 0);
	v->k.run->immediate_exit = 0;
}

static void park(struct gmvm_vcpu *v)
{
	struct gmvm_vm *vm = v->vm;
	complete_pending(v);
	pthread_mutex_lock(&vm->ctl);
	atomic_store(&v->parked, true);
	pthread_cond_broadcast(&vm->ctl_cond);
	while (atomic_load(&vm->pause_req) && !atomic_load(&vm->stop_req))
		pthread_cond_wait(&vm->ctl_cond, &vm->ctl);
	atomic_store(&v->parked, false);
	pthread_mutex_unlock(&vm->ctl);
}

void *gmvm_vcpu_thread(void *arg)
{
	struct gmvm_vcpu *v = arg;
	struct gmvm_vm *vm = v->vm;
	gm_rcu_register_thread();
	tl_run = v->k.run;
	for (;;) {
		if (atomic_load(&vm->stop_req) || atomic_load(&vm->exitport.requested))
			break;
		if (atomic_load(&vm->pause_req)) {
			park(v);
			continue;
		}
		int rc = ioctl(v->k.fd, KVM_RUN, 0);
		if (rc < 0) {
			if (errno == EINTR || errno == EAGAIN) {
				v->k.run->immediate_exit = 0;
				continue;
			}
			snprintf(v->error, sizeof(v->error), "vCPU %u: KVM_RUN: %s", v->index,
				 strerror(errno));
			v->failed = true;
			break;
		}
		if (!handle_exit(v))
			break;
		if (bank_done(v))
			break;
	}
	complete_pending(v);
	tl_run = NULL;
	pthread_mutex_lock(&vm->ctl);
	atomic_store(&v->finished, true);
	pthread_cond_broadcast(&vm->ctl_cond);
	pthread_mutex_unlock(&vm->ctl);
	gm_rcu_unregister_thread();
	return NULL;
}

/* ---- state ---------------------------------------------------------------- */

#define MAX_MSRS 256

struct gmvm_vcpu_state {
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_xsave *xsave;
	size_t xsave_bytes;
	struct kvm_xcrs xcrs;
	struct kvm_lapic_state lapic;
	struct kvm_vcpu_events events;
	struct kvm_mp_state mp;
	struct kvm_debugregs debugregs;
	struct kvm_msrs *msrs;           /* MAX_MSRS entries */
};

static struct kvm_msrs *msrs_new(unsigned n)
{
	struct kvm_msrs *m = calloc(1, sizeof(*m) + n * sizeof(struct kvm_msr_entry));
	if (m)
		m->nmsrs = n;
	return m;
}

struct gmvm_vcpu_state *gmvm_vcpu_state_new(void)
{
	struct gmvm_vcpu_state *st = calloc(1, sizeof(*st));
	if (!st)
		return NULL;
	st->xsave_bytes = 16384;
	st->xsave = calloc(1, st->xsave_bytes);
	st->msrs = msrs_new(MAX_MSRS);
	if (!st->xsave || !st->msrs) {
		gmvm_vcpu_state_free(st);
		return NULL;
	}
	return st;
}

void gmvm_vcpu_state_free(struct gmvm_vcpu_state *st)
{
	if (st) {
		free(st->xsave);
		free(st->msrs);
	}
	free(st);
}

/* The MSRs KVM lists that this vCPU can read (each tried once). */
static int msr_list(struct gmvm_vcpu *v, uint32_t *idx, unsigned max)
{
	enum { N = 1024 };
	struct kvm_msr_list *list = calloc(1, sizeof(*list) + N * sizeof(uint32_t));
	struct kvm_msrs *one = msrs_new(1);
	int n = 0;
	if (!list || !one) {
		n = -ENOMEM;
		goto out;
	}
	list->nmsrs = N;
	if (ioctl(v->vm->kvm.kvm_fd, KVM_GET_MSR_INDEX_LIST, list) < 0) {
		n = -errno;
		goto out;
	}
	for (unsigned i = 0; i < list->nmsrs && (unsigned)n < max; i++) {
		one->nmsrs = 1;
		one->entries[0] = (struct kvm_msr_entry){.index = list->indices[i]};
		if (ioctl(v->k.fd, KVM_GET_MSRS, one) == 1)
			idx[n++] = list->indices[i];
	}
out:
	free(list);
	free(one);
	return n;
}

#define GET(req, field, name)                                                              \
	do {                                                                               \
		if (ioctl(v->k.fd, req, field) < 0) {                                      \
			snprintf(err, errlen, "vCPU %u: " name ": %s", v->index, strerror(errno)); \
			return -errno;                                                     \
		}                                                                          \
	} while (0)

int gmvm_vcpu_save(struct gmvm_vcpu *v, struct gmvm_vcpu_state *st, char *err, size_t errlen)
{
	GET(KVM_GET_REGS, &st->regs, "KVM_GET_REGS");
	GET(KVM_GET_SREGS, &st->sregs, "KVM_GET_SREGS");
	int xb = ioctl(v->vm->kvm.vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);
	if (xb > 0 && (size_t)xb <= st->xsave_bytes)
		GET(KVM_GET_XSAVE2, st->xsave, "KVM_GET_XSAVE2");
	else
		GET(KVM_GET_XSAVE, st->xsave, "KVM_GET_XSAVE");
	GET(KVM_GET_XCRS, &st->xcrs, "KVM_GET_XCRS");
	GET(KVM_GET_LAPIC, &st->lapic, "KVM_GET_LAPIC");
	GET(KVM_GET_VCPU_EVENTS, &st->events, "KVM_GET_VCPU_EVENTS");
	GET(KVM_GET_MP_STATE, &st->mp, "KVM_GET_MP_STATE");
	GET(KVM_GET_DEBUGREGS, &st->debugregs, "KVM_GET_DEBUGREGS");
	uint32_t idx[MAX_MSRS];
	int n = msr_list(v, idx, MAX_MSRS);
	if (n < 0) {
		snprintf(err, errlen, "vCPU %u: KVM_GET_MSR_INDEX_LIST: %s", v->index, strerror(-n));
		return n;
	}
	st->msrs->nmsrs = (uint32_t)n;
	for (int i = 0; i < n; i++)
		st->msrs->entries[i] = (struct kvm_msr_entry){.index = idx[i]};
	int got = ioctl(v->k.fd, KVM_GET_MSRS, st->msrs);
	if (got != n) {
		snprintf(err, errlen, "vCPU %u: KVM_GET_MSRS read %d of %d MSRs", v->index, got, n);
		return -EIO;
	}
	return 0;
}

#define SET(req, field, name)                                                              \
	do {                                                                               \
		if (ioctl(v->k.fd, req, field) < 0) {                                      \
			snprintf(err, errlen, "vCPU %u: " name ": %s", v->index, strerror(errno)); \
			return -errno;                                                     \
		}                                                                          \
	} while (0)

int gmvm_vcpu_load(struct gmvm_vcpu *v, const struct gmvm_vcpu_state *st, char *err,
		   size_t errlen)
{
	SET(KVM_SET_SREGS, &st->sregs, "KVM_SET_SREGS");
	SET(KVM_SET_REGS, &st->regs, "KVM_SET_REGS");
	SET(KVM_SET_XSAVE, st->xsave, "KVM_SET_XSAVE");
	SET(KVM_SET_XCRS, &st->xcrs, "KVM_SET_XCRS");
	/* MSRs one by one past any KVM refuses, which are reported */
	uint32_t n = st->msrs->nmsrs, done = 0;
	struct kvm_msrs *m = msrs_new(MAX_MSRS);
	if (!m) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	while (done < n) {
		m->nmsrs = n - done;
		memcpy(m->entries, st->msrs->entries + done, (n - done) * sizeof(m->entries[0]));
		int set = ioctl(v->k.fd, KVM_SET_MSRS, m);
		if (set < 0) {
			int rc = -errno;
			snprintf(err, errlen, "vCPU %u: KVM_SET_MSRS: %s", v->index, strerror(errno));
			free(m);
			return rc;
		}
		done += (uint32_t)set;
		if (done < n) {
			if (v->vm->cfg.verbose)
				fprintf(stderr, "gmvm: vCPU %u: KVM refused MSR 0x%x = 0x%llx (skipped)\n",
					v->index, st->msrs->entries[done].index,
					(unsigned long long)st->msrs->entries[done].data);
			done++;
		}
	}
	free(m);
	SET(KVM_SET_LAPIC, &st->lapic, "KVM_SET_LAPIC");
	SET(KVM_SET_MP_STATE, &st->mp, "KVM_SET_MP_STATE");
	SET(KVM_SET_VCPU_EVENTS, &st->events, "KVM_SET_VCPU_EVENTS");
	SET(KVM_SET_DEBUGREGS, &st->debugregs, "KVM_SET_DEBUGREGS");
	return 0;
}
